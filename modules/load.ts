// From a kernel file to callable kernels: compile it for the chosen backend (codegen/), then build
// or import and load it (runtime/module.ts). The one place that joins the compiler and the runtime,
// which do not import each other (docs/architecture.md).
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import type { CompileOptions } from "../codegen/compile.ts";
import type { EmittedModule, Target } from "../dsl/abi.ts";
import { version as packageVersion } from "../package.json";
import { chooseBackend, type BackendRequest } from "../runtime/backend.ts";
import { defaultCacheDir, untrustedProblem, writeAtomic } from "../runtime/cache.ts";
import { openModule, type ModuleOptions, type KernelModule } from "../runtime/module.ts";

export interface LoadOptions extends CompileOptions, ModuleOptions {
  // boundsChecks (CompileOptions) defaults to true here: a bad index in a user's kernel is reported
  // as an error instead of corrupting memory or killing the process. Proven kernels turn it off.
  /** Backend: auto (default: $NGPK_BACKEND, else cuda > cpu > js), cuda, cpu or js. */
  backend?: BackendRequest;
}

export async function loadKernels(file: string, opts: LoadOptions = {}): Promise<KernelModule> {
  const { backend, reason } = chooseBackend({ backend: opts.backend });
  const { COMPILER_VERSION } = await import("../codegen/emit/common.ts");
  const { kernels, config, text, variant, maxUnroll } = opts;
  const compile: CompileOptions = { kernels, config, text, variant, maxUnroll, boundsChecks: opts.boundsChecks ?? true };
  const emitted = await emit(file, backend, compile, opts.cacheDir);
  // The compiler's identity in cache keys: its version plus the package version.
  const compilerId = `${COMPILER_VERSION}; package ${packageVersion}`;
  return openModule(emitted, basename(file).replace(/\.ts$/, ""), backend, reason, { ...opts, compilerId });
}

/**
 * The emitted module of `file`: compiled, or kept from an earlier compile of this process or, in
 * the build cache (`<name>-<target>-<key>.emitted.json`), of an earlier process. Compiling is about
 * 2 s of CPU for a grid (the compiler's import included), which each HashGrid.create paid, and each
 * process even when its library was cached: each command, each rank of an MPI job, each child
 * process of the tests. The key hashes the compiler's own files (codegen/, dsl/), the package and
 * ts-morph versions, the target and the options; an entry holds the sha256 of every file its compile
 * read (the kernel file, its imports, the variant) and is used only while they all hash the same.
 * Entries are written only to a cache directory that is already there and trusted (as its
 * libraries). Given text (opts.text) is not kept; nor is a compile with mistakes: its diagnostics
 * are raised every time. The caller gets a copy.
 */
async function emit(file: string, target: Target, opts: CompileOptions, cacheDir: string | undefined): Promise<EmittedModule> {
  const key = opts.text === undefined ? emittedKey(file, target, opts) : undefined;
  const dir = cacheDir || defaultCacheDir();
  const entry = key && trustedDir(dir) ? join(dir, `${basename(file).replace(/\.ts$/, "").replace(/[^\w.-]/g, "_").slice(0, 64)}-${target}-${key}.emitted.json`) : undefined;
  const found = (key && kept.get(key)) || (entry ? readEntry(entry) : undefined);
  if (found && (await unchanged(found.sources))) {
    if (key) kept.set(key, found);
    return structuredClone(found.module);
  }
  // The compiler (ts-morph) is loaded here, on first use, so that a command's usage errors need none of it.
  const [{ compileFile }, { recordSources }] = await Promise.all([import("../codegen/compile.ts"), import("../codegen/diagnostics.ts")]);
  const { result, sources } = recordSources(() => compileFile(file, target, opts));
  if (key) {
    const record: Emitted = { sources: [...sources].map(([f, t]) => [f, sha256(t)]), module: structuredClone(result) };
    kept.set(key, record);
    if (kept.size > KEPT) kept.delete(kept.keys().next().value!); // the oldest
    try {
      if (entry) writeAtomic(entry, JSON.stringify(record));
    } catch {
      // A read-only cache: compiled again by the next process.
    }
  }
  return result;
}

interface Emitted {
  /** Every file the compile read, with the sha256 of its text. */
  sources: [string, string][];
  module: EmittedModule;
}
/** This process's emitted modules, by key; at most KEPT (a grid's C++ is about 100 KB). */
const kept = new Map<string, Emitted>();
const KEPT = 64;

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

let compilerHash: string | undefined;
/** sha256 of the compiler's files (codegen/ and dsl/, by path and content) and its ts-morph. */
function compilerIdentity(): string {
  if (compilerHash) return compilerHash;
  const root = resolve(import.meta.dir, "..");
  const h = createHash("sha256").update(`package ${packageVersion}\n`);
  for (const dir of ["codegen", "dsl"]) {
    const files = (readdirSync(join(root, dir), { recursive: true }) as string[]).filter((f) => f.endsWith(".ts")).sort();
    for (const f of files) h.update(`${dir}/${f}\n`).update(readFileSync(join(root, dir, f))).update("\n");
  }
  try {
    h.update(readFileSync(join(root, "node_modules/ts-morph/package.json")));
  } catch {
    h.update("ts-morph elsewhere");
  }
  return (compilerHash = h.digest("hex"));
}

/** The key of a compile, or undefined where its options do not serialize exactly (a BigInt: then compiled every time). */
function emittedKey(file: string, target: Target, opts: CompileOptions): string | undefined {
  // -0, NaN and the infinities spelled out (JSON writes 0 and null); paths resolved.
  const exact = (_: string, v: unknown) => (typeof v === "number" && (!Number.isFinite(v) || Object.is(v, -0)) ? `number:${Object.is(v, -0) ? "-0" : v}` : v);
  try {
    return sha256(JSON.stringify([compilerIdentity(), resolve(file), target, { ...opts, variant: opts.variant === undefined ? undefined : resolve(opts.variant) }], exact));
  } catch {
    return undefined;
  }
}

/** Whether entries may be read from and written to `dir`: it is there, and no one else could have written it. */
function trustedDir(dir: string): boolean {
  return existsSync(dir) && untrustedProblem(dir) === undefined;
}

function readEntry(path: string): Emitted | undefined {
  try {
    return untrustedProblem(path) === undefined ? (JSON.parse(readFileSync(path, "utf8")) as Emitted) : undefined;
  } catch {
    return undefined; // absent or unreadable
  }
}

/** Every file still hashes as recorded; their texts registered for diagnostics at run time. */
async function unchanged(sources: [string, string][]): Promise<boolean> {
  const texts: [string, string][] = [];
  for (const [f, hash] of sources) {
    try {
      const text = readFileSync(f, "utf8");
      if (sha256(text) !== hash) return false;
      texts.push([f, text]);
    } catch {
      return false;
    }
  }
  const { registerSource } = await import("../codegen/diagnostics.ts");
  for (const [f, text] of texts) registerSource(f, text);
  return true;
}

export type { KernelModule };

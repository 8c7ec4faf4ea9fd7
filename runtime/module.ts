// From a kernel file to callable kernels: compile for the chosen backend, build (native) or import
// (JS) through the content-addressed cache, load, and wrap every kernel in a validating function.
// Callers never see which backend runs: `mod.kernels.saxpy(n, a, x, y, out)` works on all three.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { basename, join } from "node:path";
import type { CompileOptions } from "../codegen/compile.ts";
import { version as packageVersion } from "../package.json";
import { COMPILER_VERSION } from "../codegen/emit/common.ts";
import type { ElemType, EmittedModule, KernelSignature } from "./abi.ts";
import { chooseBackend, type Backend, type BackendRequest } from "./backend.ts";
import { allocBuffer, type ArrayOf, type DeviceBuffer } from "./buffer.ts";
import { buildCached, defaultCacheDir, removeStaleTemporaries, trustedCacheDir, untrustedProblem, writableCacheDir, writeAtomic, type BuildResult } from "./cache.ts";
import { closedModuleError, loadNativeModule, wrapKernel, type Kernel, type NativeModule } from "./ffi.ts";
import { CPU_FLAGS, cudaFlags, findCxx, findNvcc } from "./toolchain.ts";

export interface LoadOptions extends CompileOptions {
  // boundsChecks (CompileOptions) defaults to true here: a bad index in a user's kernel is reported
  // as an error instead of corrupting memory or killing the process. Proven kernels turn it off.
  /** Backend: auto (default: $NGPK_BACKEND, else cuda > cpu > js), cuda, cpu or js. */
  backend?: BackendRequest;
  /**
   * Build cache directory (default $NGPK_CACHE_DIR, else ~/.cache/ngp-kernels; an unusable default
   * is replaced by a temporary directory with a warning, a chosen one is an error).
   */
  cacheDir?: string;
  /** CUDA architectures to build for (default: the present devices'). */
  cudaArchs?: string[];
  /**
   * Progress messages (a native build on first use takes seconds; default: stderr when it is a
   * terminal) and warnings (a temporary cache, a rebuilt library; default: stderr).
   */
  log?: (message: string) => void;
}

const defaultLog = (message: string) => {
  if (process.stderr.isTTY) process.stderr.write(`${message}\n`);
};

export interface KernelModule {
  readonly backend: Backend;
  /** One line: why this backend was chosen. */
  readonly reason: string;
  readonly emitted: EmittedModule;
  /** The native build (cache hit or not, time); undefined for the JS backend. */
  readonly build: BuildResult | undefined;
  readonly kernels: Readonly<Record<string, Kernel>>;
  /** A zeroed buffer on this module's backend. */
  alloc<E extends ElemType>(elem: E, length: number): DeviceBuffer<E>;
  /** A buffer on this module's backend holding a copy of `data`. */
  upload<E extends ElemType>(elem: E, data: ArrayLike<number>): DeviceBuffer<E>;
  /** Waits for queued device work (CUDA); a no-op on host backends. */
  synchronize(): void;
  close(): void;
}

/** The compiler's identity in cache keys: its version plus the package version. */
export const COMPILER_ID = `${COMPILER_VERSION}; package ${packageVersion}`;

export async function loadKernels(file: string, opts: LoadOptions = {}): Promise<KernelModule> {
  const { backend, reason } = chooseBackend({ backend: opts.backend });
  // Always run the front end: diagnostics are raised even when a library is cached. The compiler
  // (ts-morph) is loaded here, on first use, so that a command's usage errors need none of it.
  const { compileFile } = await import("../codegen/compile.ts");
  const emitted = compileFile(file, backend, { ...opts, boundsChecks: opts.boundsChecks ?? true });
  const name = basename(file).replace(/\.ts$/, "");
  if (backend === "js") return jsModule(emitted, name, reason, opts);
  const build = await buildNative(emitted, name, opts);
  const native = loadNativeModule(build.path, emitted.kernels, backend);
  return nativeModule(native, emitted, backend, reason, build);
}

/** Build an emitted native module through the cache; throws BuildError with the compiler output. */
export async function buildNative(emitted: EmittedModule, name: string, opts: Pick<LoadOptions, "cacheDir" | "cudaArchs" | "log"> = {}): Promise<BuildResult> {
  const cuda = emitted.target === "cuda";
  const lookup = cuda ? findNvcc() : findCxx();
  if (!lookup.tool) throw new Error(`cannot build ${name} for ${emitted.target}: ${lookup.reason}`);
  return buildCached({
    source: emitted.source,
    lang: cuda ? "cu" : "cpp",
    tool: lookup.tool,
    flags: cuda ? cudaFlags(opts.cudaArchs) : CPU_FLAGS,
    compilerVersion: COMPILER_ID,
    cacheDir: opts.cacheDir,
    name,
    log: opts.log,
    onCompile: () => (opts.log ?? defaultLog)(`ngp-kernels: compiling ${name} for ${emitted.target} with ${lookup.tool!.path} (first use; cached afterwards)`),
  });
}

function nativeModule(native: NativeModule, emitted: EmittedModule, backend: Backend, reason: string, build: BuildResult): KernelModule {
  const memory = native.cuda?.memory;
  const alloc = <E extends ElemType>(elem: E, length: number) => allocBuffer(backend, elem, length, memory);
  return {
    backend,
    reason,
    emitted,
    build,
    kernels: native.kernels,
    alloc,
    upload: (elem, data) => uploaded(alloc(elem, data.length), data),
    synchronize: () => native.cuda?.synchronize(),
    close: () => native.close(),
  };
}

async function jsModule(emitted: EmittedModule, name: string, reason: string, opts: LoadOptions): Promise<KernelModule> {
  // Content-addressed like native libraries: a module path is imported once per process. A file
  // whose text differs from the source (corrupted) is rewritten; a read-only cache still serves
  // what it holds.
  const file = `${name}-${createHash("sha256").update(emitted.source).digest("hex").slice(0, 24)}.mjs`;
  const holds = (path: string) => {
    try {
      return untrustedProblem(path) === undefined && readFileSync(path, "utf8") === emitted.source;
    } catch {
      return false;
    }
  };
  const chosen = trustedCacheDir(opts.cacheDir || defaultCacheDir(), opts.cacheDir, opts.log);
  let path = join(chosen, file);
  if (!holds(path)) {
    const dir = writableCacheDir(chosen, opts.cacheDir, opts.log);
    path = join(dir, file);
    if (!holds(path)) {
      removeStaleTemporaries(dir);
      writeAtomic(path, emitted.source);
    }
  }
  const functions = (await import(path)) as Record<string, (...args: unknown[]) => void>;
  let closed = false;
  const checkOpen = (kernel: string) => () => {
    if (closed) throw closedModuleError(kernel, path);
  };
  const kernels: Record<string, Kernel> = {};
  for (const k of emitted.kernels) kernels[k.name] = jsKernel(k, functions[k.name]!, checkOpen(k.name));
  const alloc = <E extends ElemType>(elem: E, length: number) => allocBuffer("js", elem, length);
  return {
    backend: "js",
    reason,
    emitted,
    build: undefined,
    kernels,
    alloc,
    upload: (elem, data) => uploaded(alloc(elem, data.length), data),
    synchronize: () => {},
    close: () => {
      closed = true; // like a native module: its kernels throw afterwards
    },
  };
}

function jsKernel(k: KernelSignature, fn: (...args: unknown[]) => void, checkOpen: () => void): Kernel {
  return wrapKernel(k, "js", (...args) => (fn(...args), 0), checkOpen, undefined);
}

function uploaded<E extends ElemType>(buf: DeviceBuffer<E>, data: ArrayLike<number>): DeviceBuffer<E> {
  buf.upload(data);
  return buf;
}

export type { ArrayOf, DeviceBuffer, Kernel };

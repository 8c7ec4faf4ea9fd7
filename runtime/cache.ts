// Content-addressed build cache: emitted source + toolchain -> shared library on disk.
//
// The key hashes everything that can change the binary, and the library's file name contains the
// key, because dlopen of a path that is already loaded returns the old library even if the file
// was replaced. Libraries appear only by atomic rename of a complete, validated file, so readers
// never see a half-written one and concurrent builders of one key never share a temporary name.
//
// Layout of <cacheDir>, per key, with <stem> = <name>-<key>:
//   <stem>.so            the library
//   <stem>.cpp | .cu     the source it was built from (for people to read)
//   <stem>.log           the command line and compiler output
//   <stem>.failed.json   present while the last build of this key failed

import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { basename, join } from "node:path";
import { validateSharedLibrary } from "./elf.ts";
import { cpuIdentity, type Tool } from "./toolchain.ts";

/** Bump when the layout or the key material changes, so old entries are not misread. */
const CACHE_FORMAT = "ngpk-cache-1";

export interface BuildRequest {
  source: string;
  lang: "cpp" | "cu";
  tool: Tool;
  flags: readonly string[];
  /** Version of our kernel compiler (codegen), so a codegen change never reuses old binaries. */
  compilerVersion: string;
  cacheDir?: string;
  /** Human hint for file names (not part of the key). */
  name?: string;
  /** Compile even if a library or a recorded failure exists for this key (not part of the key). */
  rebuild?: boolean;
  /** Called just before the compiler starts (a cache miss): builds take seconds, say so. */
  onCompile?: () => void;
}

export interface BuildResult {
  path: string;
  key: string;
  hit: boolean;
  ms: number;
}

interface FailureRecord {
  compiler: string;
  command: string[];
  /** Exit status, or null when the compiler did not exit normally (not started, killed). */
  status: number | null;
  output: string;
  sourcePath: string;
}

export class BuildError extends Error {
  constructor(
    readonly failure: FailureRecord,
    /** True when re-raised from a failure recorded by an earlier build. */
    readonly recorded = false,
  ) {
    const how = failure.status === null ? "did not complete" : `exited with status ${failure.status}`;
    const again = recorded ? "\n(recorded failure of an earlier build; pass rebuild: true to compile again)" : "";
    super(
      `${failure.compiler} ${how} compiling ${failure.sourcePath}\n${failure.output.trimEnd()}\n` +
        `command: ${failure.command.join(" ")}${again}`,
    );
    this.name = "BuildError";
  }
}

/** $NGPK_CACHE_DIR, else $XDG_CACHE_HOME/ngp-kernels, else ~/.cache/ngp-kernels. */
export function defaultCacheDir(): string {
  const env = process.env;
  if (env.NGPK_CACHE_DIR) return env.NGPK_CACHE_DIR;
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "ngp-kernels");
}

/** sha256 (hex) of everything that determines the library built for `req` on this machine. */
export function cacheKey(req: BuildRequest): string {
  const material = JSON.stringify({
    format: CACHE_FORMAT,
    source: req.source,
    lang: req.lang,
    tool: [req.tool.path, req.tool.version],
    flags: req.flags,
    compilerVersion: req.compilerVersion,
    cpu: cpuIdentity(),
  });
  return createHash("sha256").update(material).digest("hex");
}

/** The library for `req`, from the cache or freshly built. Throws BuildError if it cannot be built. */
export async function buildCached(req: BuildRequest): Promise<BuildResult> {
  const start = performance.now();
  const key = cacheKey(req);
  const files = entryFiles(req.cacheDir ?? defaultCacheDir(), req.name, key, req.lang);
  mkdirSync(files.dir, { recursive: true });
  const result = (hit: boolean): BuildResult => ({ path: files.library, key, hit, ms: performance.now() - start });

  if (!req.rebuild) {
    const failure = readFailure(files.failure);
    if (failure) throw new BuildError(failure, true);
    if (existsSync(files.library)) {
      if (validateSharedLibrary(files.library) === undefined) return result(true);
      // Loading it could SIGBUS the process; it was never valid, so drop it and build again.
      rmSync(files.library, { force: true });
    }
  }
  req.onCompile?.();
  await compile(req, files);
  return result(false);
}

interface EntryFiles {
  dir: string;
  library: string;
  source: string;
  log: string;
  failure: string;
}

function entryFiles(dir: string, name: string | undefined, key: string, lang: BuildRequest["lang"]): EntryFiles {
  const stem = join(dir, `${(name ?? "module").replace(/[^\w.-]/g, "_").slice(0, 64)}-${key}`);
  return { dir, library: `${stem}.so`, source: `${stem}.${lang}`, log: `${stem}.log`, failure: `${stem}.failed.json` };
}

async function compile(req: BuildRequest, files: EntryFiles): Promise<void> {
  // The compiler runs in a private directory (its stray outputs stay there) on a file named like
  // the kept copy, so its diagnostics point at a file name people can find in the cache.
  const work = mkdtempSync(join(tmpdir(), "ngpk-build-"));
  const sourceName = basename(files.source);
  const tmpLibrary = uniqueTemp(files.library);
  const command = [req.tool.path, ...req.flags, sourceName, "-o", tmpLibrary];
  try {
    writeFileSync(join(work, sourceName), req.source);
    writeAtomic(files.source, req.source);
    const started = performance.now();
    const { status, output } = await run(command, work);
    const ms = Math.round(performance.now() - started);
    writeAtomic(files.log, `$ ${command.join(" ")}\n${output}\n[exit status ${status ?? "none"} after ${ms} ms]\n`);
    const failure = { compiler: req.tool.path, command, status, output, sourcePath: files.source };
    if (status !== 0) {
      // Only a compiler that ran and rejected the source is deterministic enough to remember;
      // a missing or killed compiler may work next time.
      if (status !== null) writeAtomic(files.failure, JSON.stringify(failure, null, 2));
      throw new BuildError(failure);
    }
    const problem = validateSharedLibrary(tmpLibrary);
    if (problem) throw new BuildError({ ...failure, output: `${output}\nthe compiler wrote an invalid library: ${problem}` });
    renameSync(tmpLibrary, files.library);
    rmSync(files.failure, { force: true });
  } finally {
    rmSync(work, { recursive: true, force: true });
    rmSync(tmpLibrary, { force: true });
  }
}

async function run(command: string[], cwd: string): Promise<{ status: number | null; output: string }> {
  let proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  try {
    proc = Bun.spawn(command, { cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  } catch (error) {
    return { status: null, output: `could not start ${command[0]}: ${(error as Error).message}` };
  }
  const [stdout, stderr, status] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  const output = stdout + stderr;
  return proc.signalCode ? { status: null, output: `${output}\nkilled by ${proc.signalCode}` } : { status, output };
}

function readFailure(path: string): FailureRecord | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as FailureRecord;
  } catch {
    return undefined; // absent, or unreadable: then it is rewritten by the next build
  }
}

/** Writes through a process-unique temporary name and renames, so readers see all or nothing. */
function writeAtomic(path: string, data: string): void {
  const tmp = uniqueTemp(path);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } finally {
    rmSync(tmp, { force: true });
  }
}

function uniqueTemp(path: string): string {
  return `${path}.${process.pid}-${randomBytes(6).toString("hex")}.tmp`;
}

// Content-addressed build cache: emitted source + toolchain -> shared library on disk.
//
// The key hashes everything that can change the binary, and the library's file name contains the
// key, because dlopen of a path that is already loaded returns the old library even if the file
// was replaced. Libraries appear only by atomic rename of a complete, validated file, so readers
// never see a half-written one and concurrent builders of one key never share a temporary name.
// A library whose headers are intact can still hold corrupted code (which crashes the process
// when loaded) or be another build's file: a hit is used only if its bytes match the digest
// recorded when it was published; anything else is rebuilt, never loaded.
//
// Layout of <cacheDir>, per key, with <stem> = <name>-<key>:
//   <stem>.so            the library
//   <stem>.so.sha256     its sha256, in sha256sum's format
//   <stem>.cpp | .cu     the source it was built from (for people to read)
//   <stem>.log           the command line and compiler output
//   <stem>.failed.json   present while the last build of this key failed
//   <stem>.lock          the pid of the process building this key, while it builds
// Temporaries are named <path>.<pid>-<hex>.tmp; those of dead processes are removed by later builds.
// Builders of one key at once (the ranks of an MPI job, parallel test workers, one process's own
// concurrent loads) compile it once: the others wait while the lock's holder is alive, then load.
// Anyone who can write the directory can replace a library and its digest together, so a directory
// or library writable by other users is not loaded from (untrustedProblem).

import { createHash, randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { basename, join } from "node:path";
import { validateSharedLibrary } from "./elf.ts";
import { cpuIdentity, type Tool } from "./toolchain.ts";
import { ExpectedError } from "../dsl/errors.ts";

/** Bump when the layout or the key material changes, so old entries are not misread. */
const CACHE_FORMAT = "ngpk-cache-2";

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
  /** Warnings: a cache directory replaced by a temporary one, a cached library rebuilt (default: stderr). */
  log?: (message: string) => void;
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
  const log = req.log ?? warn;
  const entry = (dir: string) => entryFiles(dir, req.name, key, req.lang);
  const result = (files: EntryFiles, hit: boolean): BuildResult => ({ path: files.library, key, hit, ms: performance.now() - start });

  // Look before asking for a writable directory: a read-only cache still serves what it holds.
  let files = entry(trustedCacheDir(req.cacheDir || defaultCacheDir(), req.cacheDir, log));
  if (!req.rebuild && cachedEntry(files, log)) return result(files, true);
  const writable = writableCacheDir(files.dir, req.cacheDir, log);
  if (writable !== files.dir) {
    files = entry(writable);
    if (!req.rebuild && cachedEntry(files, log)) return result(files, true);
  }
  removeStaleTemporaries(files.dir);
  const { release, waited } = await lockEntry(files.lock);
  try {
    // Built (or failed) by the process we waited for.
    if (waited && !req.rebuild && cachedEntry(files, log)) return result(files, true);
    req.onCompile?.();
    await compile(req, files);
  } finally {
    release();
  }
  return result(files, false);
}

const LOCK_POLL_MS = 100;

/**
 * Takes `lock` (a file holding our pid), waiting while another live process holds it. A lock whose
 * process is gone (killed mid-build), or not touched for STALE_TEMP_MS (its holder touches it every
 * few seconds; one in another pid namespace can look alive), is removed and taken. Where the lock
 * cannot be written the build goes on without it (two builders then both compile, as atomically).
 */
async function lockEntry(lock: string): Promise<{ release: () => void; waited: boolean }> {
  let waited = false;
  for (;;) {
    try {
      writeFileSync(lock, `${process.pid}\n`, { flag: "wx", mode: 0o644 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") return { release: () => {}, waited };
      let holder: number, age: number;
      try {
        holder = Number.parseInt(readFileSync(lock, "utf8"), 10);
        age = Date.now() - statSync(lock).mtimeMs;
      } catch {
        continue; // released just now
      }
      if (!holder || !processAlive(holder) || age > STALE_TEMP_MS) rmSync(lock, { force: true });
      else (await Bun.sleep(LOCK_POLL_MS), (waited = true));
      continue;
    }
    const touch = setInterval(() => {
      try {
        utimesSync(lock, new Date(), new Date());
      } catch {
        // Taken over or removed: the build goes on, its rename is atomic.
      }
    }, STALE_TEMP_MS / 6);
    touch.unref();
    const release = () => {
      clearInterval(touch);
      try {
        if (Number.parseInt(readFileSync(lock, "utf8"), 10) === process.pid) rmSync(lock, { force: true });
      } catch {
        // Removed already (taken over as stale, and released).
      }
    };
    return { release, waited };
  }
}

/** True when `files` holds a verified library; throws the recorded failure of an earlier build. */
function cachedEntry(files: EntryFiles, log: (message: string) => void): boolean {
  const failure = readFailure(files.failure);
  if (failure) throw new BuildError(failure, true);
  if (!existsSync(files.library)) return false;
  // The ELF check first: it is cheaper than hashing and says more about a truncated file.
  const problem = untrustedProblem(files.library) ?? untrustedProblem(files.digest) ?? validateSharedLibrary(files.library) ?? digestProblem(files);
  if (problem === undefined) return true;
  log(`ngp-kernels: cached library ${files.library} failed verification (${problem}); rebuilding`);
  return false; // compile() renames the new library over it
}

function digestProblem(files: EntryFiles): string | undefined {
  let recorded: string;
  try {
    recorded = readFileSync(files.digest, "utf8").slice(0, 64);
  } catch {
    return `no recorded digest ${basename(files.digest)}`;
  }
  const actual = sha256File(files.library);
  return actual === recorded ? undefined : `its sha256 ${actual.slice(0, 16)}… differs from the recorded ${recorded.slice(0, 16)}…`;
}

function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

const warn = (message: string) => process.stderr.write(`${message}\n`);

export class CacheDirError extends ExpectedError {}

/** Unusable directory -> this process's temporary cache, so that the warning is given once. */
const fallbacks = new Map<string, string>();

/**
 * `dir` if builds can be written there. Otherwise: when the user chose it (`explicit`, the cacheDir
 * option, or $NGPK_CACHE_DIR) a CacheDirError saying what is wrong; when it is only the default,
 * a private temporary directory for this process, with a warning through `log`.
 */
export function writableCacheDir(dir: string, explicit: string | undefined, log: (message: string) => void = warn): string {
  return usableCacheDir(dir, explicit, log, cacheDirProblem(dir), "a writable directory");
}

/**
 * `dir` if the libraries in it can be trusted (see untrustedProblem); otherwise as writableCacheDir:
 * a CacheDirError when the user chose it, a temporary cache with a warning when it is the default.
 */
export function trustedCacheDir(dir: string, explicit: string | undefined, log: (message: string) => void = warn): string {
  return usableCacheDir(dir, explicit, log, untrustedProblem(dir), `a private directory (chmod 700 ${dir})`);
}

function usableCacheDir(dir: string, explicit: string | undefined, log: (message: string) => void, problem: string | undefined, fix: string): string {
  const known = fallbacks.get(dir);
  if (known) return known;
  if (problem === undefined) return dir;
  const what = `ngp-kernels: cache directory ${dir} ${problem}`;
  if (explicit) throw new CacheDirError(`${what}; it was passed as the cacheDir option: pass ${fix}, or omit cacheDir to use $NGPK_CACHE_DIR or the default`);
  if (process.env.NGPK_CACHE_DIR) throw new CacheDirError(`${what}; it was chosen by NGPK_CACHE_DIR: set NGPK_CACHE_DIR to ${fix}, or unset it for the default`);
  let temp: string;
  try {
    temp = mkdtempSync(join(tmpdir(), "ngpk-cache-"));
  } catch (error) {
    throw new CacheDirError(`${what}, and no temporary cache can be made (${(error as Error).message}): set NGPK_CACHE_DIR to ${fix}`);
  }
  process.once("exit", () => rmSync(temp, { recursive: true, force: true }));
  fallbacks.set(dir, temp);
  log(`${what}; using a temporary cache ${temp} for this process (set NGPK_CACHE_DIR to ${fix} to keep builds)`);
  return temp;
}

const uid = process.getuid?.();

/**
 * Why code loaded from `path` (a cache directory or a file in one) could be someone else's, as ssh
 * judges key files: it is writable by users other than its owner (group or other write bits; a
 * sticky bit does not help, since anyone may add a library under a key not yet built), or it is
 * owned by another user and we are root (root runs only what root or the loading user built).
 * A non-root user may load a shared cache that another user built and keeps read-only. Undefined
 * when trusted, or absent (a directory is then created private, and a file is built).
 */
export function untrustedProblem(path: string): string | undefined {
  let mode: number, owner: number;
  try {
    ({ mode, uid: owner } = statSync(path));
  } catch {
    return undefined;
  }
  if (uid === undefined) return undefined; // no user ids (Windows)
  if (mode & 0o022) return `is writable by ${mode & 0o002 ? "all users" : "its group"} (mode ${(mode & 0o7777).toString(8).padStart(4, "0")})`;
  if (uid === 0 && owner !== 0) return `is owned by another user (uid ${owner}) and this process runs as root`;
  return undefined;
}

/** What stops builds from being written into `dir` (created if absent, private), or undefined. */
function cacheDirProblem(dir: string): string | undefined {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // Writing is the only test that holds for every cause (permissions, ACLs, read-only mounts).
    const probe = uniqueTemp(join(dir, ".write-probe"));
    writeFileSync(probe, "");
    rmSync(probe);
    return undefined;
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException;
    if (code === "EEXIST") return "is not a directory (a file is in its place)";
    if (code === "ENOTDIR") return "cannot be created (a part of its path is a file)";
    if (code === "EACCES" || code === "EPERM") return "cannot be written (permission denied)";
    if (code === "EROFS") return "cannot be written (read-only file system)";
    if (code === "ENOSPC" || code === "EDQUOT") return "cannot be written (no space left)";
    return `cannot be used (${message})`;
  }
}

// A temporary's mtime must be this old too: a cache shared across machines or containers sees
// other pid namespaces, where a live builder's pid can look dead. Temporaries are written just
// before their rename, so a live one is never this old.
const STALE_TEMP_MS = 60_000;

/**
 * Removes the temporaries left in `dir` by processes that were killed mid-build (or mid-write):
 * names matching `pattern`, whose first group is the pid of a process no longer running.
 */
export function removeStaleTemporaries(dir: string, pattern = /\.(\d+)-[0-9a-f]+\.tmp$/): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(pattern.exec(name)?.[1]);
    if (!pid || processAlive(pid)) continue;
    const path = join(dir, name);
    try {
      if (Date.now() - statSync(path).mtimeMs > STALE_TEMP_MS) rmSync(path, { force: true });
    } catch {
      // Gone already (another process cleaning up), or not ours to remove: leave it.
    }
  }
}

/** Whether process `pid` exists on this machine (one of another user's included). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ESRCH"; // EPERM: alive, another user's
  }
}

interface EntryFiles {
  dir: string;
  library: string;
  digest: string;
  source: string;
  log: string;
  failure: string;
  lock: string;
}

function entryFiles(dir: string, name: string | undefined, key: string, lang: BuildRequest["lang"]): EntryFiles {
  const stem = join(dir, `${(name ?? "module").replace(/[^\w.-]/g, "_").slice(0, 64)}-${key}`);
  return { dir, library: `${stem}.so`, digest: `${stem}.so.sha256`, source: `${stem}.${lang}`, log: `${stem}.log`, failure: `${stem}.failed.json`, lock: `${stem}.lock` };
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
    chmodSync(tmpLibrary, 0o755); // not group-writable under umask 002, or the next load distrusts it
    // The digest first, so a reader never sees this library without it. Between the two renames a
    // reader sees the new digest beside the old library (or a concurrent builder's different
    // bytes): it rebuilds, which is slow but safe.
    writeAtomic(files.digest, `${sha256File(tmpLibrary)}  ${basename(files.library)}\n`);
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
    // env: process.env as it is now (Bun's default is the environment at start: runtime/mpi.ts detachFromLauncher).
    proc = Bun.spawn(command, { cwd, env: process.env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
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
export function writeAtomic(path: string, data: string): void {
  const tmp = uniqueTemp(path);
  try {
    writeFileSync(tmp, data, { mode: 0o644 });
    renameSync(tmp, path);
  } finally {
    rmSync(tmp, { force: true });
  }
}

function uniqueTemp(path: string): string {
  return `${path}.${process.pid}-${randomBytes(6).toString("hex")}.tmp`;
}

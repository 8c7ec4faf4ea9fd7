// Ranks: the processes of one job started by an MPI launcher (mpirun, mpiexec, srun), and the
// collectives data-parallel training needs (an in-place f32 sum, a broadcast, a barrier, flags).
//
// MPI is reached through a small C shim (mpi_shim.cpp) built on first use through the kernels'
// build cache against the MPI found at run time (mpicc, else pkg-config ompi-c or mpich) and loaded
// with bun:ffi. A process that no launcher started is one rank and needs no MPI at all (openRanks).
// Errors are returned, not fatal (MPI_ERRORS_RETURN), and become an MpiError naming the MPI call.
// A rank that dies is the launcher's to handle: Open MPI's mpirun ends the whole job when a rank
// exits without MPI_Finalize or with a non-zero status, srun does so with --kill-on-bad-exit
// (docs/distributed.md). Only the JS thread calls MPI (MPI_THREAD_FUNNELED).

import { dlopen, type Library } from "bun:ffi";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ExpectedError } from "../dsl/errors.ts";
import { CudaBuffer, HostBuffer, type ArrayOf, type DeviceBuffer } from "./buffer.ts";
import { BuildError, buildCached } from "./cache.ts";
import { progressLog } from "./module.ts";
import { findCxx } from "./toolchain.ts";

/** What to tell a user whose launcher started ranks but whose machine has no usable MPI. */
export const INSTALL_MPI = "install Open MPI (apt-get install openmpi-bin libopenmpi-dev) or, on a cluster, load it (module load openmpi)";

/** The largest element count one MPI call takes is 2^31 - 1 (an int); pieces are this size. */
export const DEFAULT_PIECE = 2 ** 30;

const SHIM_SOURCE = join(import.meta.dir, "mpi_shim.cpp");
/** Part of the shim's cache key: bump when the build changes in a way its source does not show. */
const SHIM_VERSION = "mpi-shim-1";

const SYMBOLS = {
  ngp_mpi_failed_call: { args: [], returns: "cstring" },
  ngp_mpi_error_string: { args: ["i32", "ptr", "i32"], returns: "void" },
  ngp_mpi_library_version: { args: ["ptr", "i32"], returns: "void" },
  ngp_mpi_init: { args: ["ptr"], returns: "i32" },
  ngp_mpi_allreduce_f32: { args: ["ptr", "i64", "i64"], returns: "i32" },
  ngp_mpi_bcast: { args: ["ptr", "i64", "i64", "i32"], returns: "i32" },
  ngp_mpi_allreduce_bor: { args: ["ptr", "i64", "i64", "i32"], returns: "i32" },
  ngp_mpi_allreduce_small: { args: ["ptr", "i32", "i32", "i32"], returns: "i32" },
  ngp_mpi_allgather_u32: { args: ["ptr", "i32", "ptr", "ptr", "i32"], returns: "i32" },
  ngp_mpi_barrier: { args: [], returns: "i32" },
  ngp_mpi_ibarrier: { args: [], returns: "i32" },
  ngp_mpi_test_barrier: { args: ["ptr"], returns: "i32" },
  ngp_mpi_abort: { args: ["i32"], returns: "i32" },
  ngp_mpi_finalize: { args: [], returns: "i32" },
} as const;
type Shim = Library<typeof SYMBOLS>["symbols"];

/** An MPI call returned an error (a peer that died, a network failure, a bad argument). */
export class MpiError extends Error {
  constructor(
    readonly call: string,
    readonly code: number,
    detail: string,
  ) {
    super(`${call} failed: ${detail} (MPI error ${code})`);
    this.name = "MpiError";
  }
}

/** Ranks were asked for (a launcher started this process) but MPI cannot be found, built or started. */
export class MpiUnavailableError extends ExpectedError {}

/** The ranks of a job disagree on something that must be the same everywhere (agree()). */
export class RanksDisagreeError extends ExpectedError {}

// ---------------------------------------------------------------------------------------------
// Finding MPI and the launcher

export interface MpiInstall {
  /** Compiler and linker flags for the shim (-I, -L, -l, -Wl,...; -Wl,-rpath for every -L). */
  flags: string[];
  /** One line naming the MPI (part of the shim's cache key). */
  version: string;
  /** Where the flags came from: "/usr/bin/mpicc -showme", "pkg-config ompi-c". */
  source: string;
}

export interface MpiLookup {
  mpi: MpiInstall | undefined;
  /** What was found where, or everything that was tried. */
  reason: string;
}

const lookups = new Map<string, MpiLookup>();

/**
 * The MPI to build against: $MPICC (and nothing else when set) or mpicc on PATH first, the wrapper
 * that `module load` puts beside its mpirun (Open MPI's -showme, MPICH's and Intel MPI's -show),
 * else pkg-config's ompi-c or mpich. Never throws; memoized per $MPICC, $PATH, $PKG_CONFIG_PATH.
 */
export function findMpi(): MpiLookup {
  const env = process.env;
  const key = JSON.stringify([env.MPICC, env.PATH, env.PKG_CONFIG_PATH]);
  let found = lookups.get(key);
  if (!found) lookups.set(key, (found = probeMpi(env.MPICC?.trim() || undefined)));
  return found;
}

function probeMpi(requested: string | undefined): MpiLookup {
  const tried: string[] = [];
  const wrapper = Bun.which(requested ?? "mpicc", { PATH: process.env.PATH ?? "" });
  // An explicit choice that does not work is reported, not silently replaced (as $CXX and $NVCC).
  if (requested && !wrapper) return { mpi: undefined, reason: `no MPI found: MPICC=${requested} is not an executable file or on PATH` };
  if (wrapper) {
    for (const option of ["-showme", "-show"]) {
      const line = output([wrapper, option]);
      if (line === undefined) continue;
      // The first word is the compiler the wrapper would run; the rest are its MPI flags.
      const version = firstLine(output([wrapper, "--showme:version"]) ?? output([wrapper, "-v"]) ?? "") || wrapper;
      return found(line.split(/\s+/).slice(1), version, `${wrapper} ${option}`);
    }
    tried.push(`${wrapper} answers neither -showme nor -show`);
  } else {
    tried.push("mpicc is not on PATH");
  }
  const pkgConfig = Bun.which("pkg-config", { PATH: process.env.PATH ?? "" });
  for (const name of pkgConfig ? ["ompi-c", "mpich"] : []) {
    const flags = output([pkgConfig!, "--cflags", "--libs", name]);
    if (flags) return found(flags.split(/\s+/), `${name} ${output([pkgConfig!, "--modversion", name]) ?? ""}`.trim(), `pkg-config ${name}`);
  }
  tried.push(pkgConfig ? "pkg-config knows neither ompi-c nor mpich" : "pkg-config is not on PATH");
  return { mpi: undefined, reason: `no MPI found: ${tried.join("; ")}` };
}

function found(words: string[], version: string, source: string): MpiLookup {
  const flags = words.filter((w) => /^-(I|L|l|D|Wl,|pthread)/.test(w));
  // The library is found at load time where it was at build time, without LD_LIBRARY_PATH.
  const rpaths = flags.filter((f) => f.startsWith("-L")).map((f) => `-Wl,-rpath,${f.slice(2)}`);
  return { mpi: { flags: [...flags, ...rpaths], version, source }, reason: `${version} (flags from ${source})` };
}

/** stdout of `command` (trimmed) when it exits 0, else undefined. */
function output(command: string[]): string | undefined {
  try {
    const result = Bun.spawnSync(command, { env: process.env, stdout: "pipe", stderr: "pipe", timeout: 30_000 });
    return result.success ? result.stdout.toString().trim() : undefined;
  } catch {
    return undefined;
  }
}

function firstLine(text: string): string {
  return text.trim().split("\n")[0]?.trim() ?? "";
}

export interface Launch {
  /** The launcher, in words: "Open MPI's mpirun", "srun", ... */
  launcher: string;
  /** The environment variable that told, as NAME=value. */
  evidence: string;
  /** The number of ranks started, when the environment says it. */
  size: number | undefined;
}

/**
 * How this process was started, read from the variables launchers set: Open MPI's mpirun
 * (OMPI_COMM_WORLD_SIZE), MPICH's Hydra and Slurm's PMI-2 (PMI_SIZE), srun (SLURM_STEP_NUM_TASKS:
 * set in a step, not in the batch script itself), PMIx (PMIX_RANK). Undefined without a launcher.
 */
export function detectLaunch(env: Record<string, string | undefined> = process.env): Launch | undefined {
  const sizes: [string, string][] = [
    ["OMPI_COMM_WORLD_SIZE", "Open MPI's mpirun"],
    ["PMI_SIZE", "a PMI launcher (MPICH's mpiexec, srun --mpi=pmi2)"],
    ["SLURM_STEP_NUM_TASKS", "srun"],
  ];
  for (const [name, launcher] of sizes) {
    const value = env[name];
    if (value === undefined) continue;
    const size = Number(value);
    return { launcher, evidence: `${name}=${value}`, size: Number.isSafeInteger(size) && size > 0 ? size : undefined };
  }
  if (env.PMIX_RANK !== undefined) return { launcher: "a PMIx launcher", evidence: `PMIX_RANK=${env.PMIX_RANK}`, size: undefined };
  return undefined;
}

/** Names of the variables by which a launcher makes a process a rank (Open MPI, PMI, PMIx, srun's step). */
const LAUNCHER_VARIABLE = /^(OMPI_|PMI|SLURM_STEP)/;

/**
 * Removes a launcher's variables (OMPI_*, PMI*, PMIX_*, SLURM_STEP*) from process.env, after MPI
 * has started: the processes this one spawns then do not try to become ranks of its job, and
 * openRanks() here answers one process (a sweep's training runs each in one rank). MPI itself
 * read them at its start and keeps its own copy (the C environment is not changed). Bun.spawn's
 * default environment is the one the process started with: the runtime's spawns (compilers, tool
 * probes) pass process.env, and so must any other spawn that should not be a rank. Returns the
 * names removed.
 */
export function detachFromLauncher(env: Record<string, string | undefined> = process.env): string[] {
  const names = Object.keys(env).filter((name) => LAUNCHER_VARIABLE.test(name));
  for (const name of names) delete env[name];
  return names;
}

// ---------------------------------------------------------------------------------------------
// Ranks

export interface RanksOptions {
  /** Build cache directory for the shim (as the kernels': default $NGPK_CACHE_DIR, ~/.cache/ngp-kernels). */
  cacheDir?: string;
  /** Largest element count of one MPI call (default 2^30; tests pass a small one to cross pieces). */
  pieceElements?: number;
  /** Progress and warnings, as loadKernels' (default: stderr; progress only when it is a terminal). */
  log?: (message: string) => void;
}

/** The MPI state of this process: MPI starts once, and cannot start again after MPI_Finalize. */
let world: Ranks | undefined;
let finalized = false;

/**
 * This process's ranks: a one-rank stand-in (no MPI needed) when no launcher started it or the
 * launcher started one rank, else MPI's world. Started by a launcher without a usable MPI, or with
 * an MPI that is not the launcher's (it sees fewer ranks than were started): MpiUnavailableError.
 */
export async function openRanks(opts: RanksOptions = {}): Promise<Ranks> {
  const launch = detectLaunch();
  if (!launch || launch.size === 1) {
    const description = `one process (${launch ? launch.evidence : "no launcher"})`;
    return new Ranks(undefined, { rank: 0, size: 1, localRank: 0, localSize: 1 }, description, checkedPiece(opts.pieceElements));
  }
  const started = `started by ${launch.launcher} (${launch.evidence})`;
  let ranks: Ranks;
  try {
    ranks = await openMpi(opts);
  } catch (error) {
    if (error instanceof MpiUnavailableError) throw new MpiUnavailableError(`${started}, but ${error.message}`);
    throw error;
  }
  if (launch.size !== undefined && ranks.size !== launch.size) {
    throw new MpiUnavailableError(
      `${started}, but MPI (${ranks.description}) sees ${ranks.size} rank${ranks.size === 1 ? "" : "s"}: the MPI found is not the launcher's; ` +
        "launch with the mpirun of the MPI that mpicc belongs to (or set MPICC to the launcher's), or srun --mpi=pmix with an MPI built for Slurm",
    );
  }
  return ranks;
}

/**
 * MPI's world, whatever started the process (without a launcher MPI starts one rank): the shim
 * built and loaded, MPI_Init_thread(FUNNELED). MpiUnavailableError when there is no MPI or no
 * C++ compiler or the shim does not build; the same Ranks while it is open.
 */
export async function openMpi(opts: RanksOptions = {}): Promise<Ranks> {
  if (world && !world.closed) return world;
  if (finalized) throw new Error("MPI was finalized in this process (Ranks.close()) and cannot start again");
  const piece = checkedPiece(opts.pieceElements);
  const shim = await loadShim(opts);
  const info = new Int32Array(5);
  check(shim, shim.ngp_mpi_init(info));
  const text = new Uint8Array(4096);
  shim.ngp_mpi_library_version(text, text.length);
  const version = firstLine(new TextDecoder().decode(text.subarray(0, text.indexOf(0))));
  const [, rank, size, localRank, localSize] = Array.from(info) as [number, number, number, number, number];
  world = new Ranks(shim, { rank, size, localRank, localSize }, version, piece);
  return world;
}

async function loadShim(opts: RanksOptions): Promise<Shim> {
  const { mpi, reason } = findMpi();
  if (!mpi) throw new MpiUnavailableError(`${reason}: ${INSTALL_MPI}`);
  const cxx = findCxx();
  if (!cxx.tool) throw new MpiUnavailableError(`the MPI shim cannot be built: ${cxx.reason}; install a C++ compiler (apt-get install g++)`);
  let path: string;
  try {
    ({ path } = await buildCached({
      source: readFileSync(SHIM_SOURCE, "utf8"),
      lang: "cpp",
      tool: cxx.tool,
      // -z defs: a missing MPI symbol fails the build, not a later call; --no-as-needed: libmpi is
      // kept although it is named before the source (buildCached puts the flags first).
      flags: ["-O2", "-std=c++17", "-fPIC", "-shared", "-Wl,-z,now", "-Wl,-z,defs", "-Wl,--no-as-needed", ...mpi.flags],
      compilerVersion: `${SHIM_VERSION}; ${mpi.version}`,
      cacheDir: opts.cacheDir,
      name: "mpi_shim",
      log: opts.log,
      onCompile: () => (opts.log ?? progressLog)(`ngp-kernels: compiling the MPI shim against ${mpi.version} (first use; cached afterwards)`),
    }));
  } catch (error) {
    if (!(error instanceof BuildError)) throw error;
    const log = error.failure.sourcePath.replace(/\.cpp$/, ".log");
    throw new MpiUnavailableError(`the MPI shim did not build against ${mpi.version} (flags from ${mpi.source}): ${firstLine(error.message)}; the compiler's output is in ${log}`);
  }
  return dlopen(path, SYMBOLS).symbols;
}

function checkedPiece(piece: number = DEFAULT_PIECE): number {
  if (!Number.isSafeInteger(piece) || piece < 1 || piece >= 2 ** 31) throw new RangeError(`pieceElements must be an integer in [1, 2^31), got ${piece}`);
  return piece;
}

function check(shim: Shim, code: number): void {
  if (code === 0) return;
  const text = new Uint8Array(1024);
  shim.ngp_mpi_error_string(code, text, text.length);
  const detail = new TextDecoder().decode(text.subarray(0, text.indexOf(0))) || "unknown error";
  const call = String(shim.ngp_mpi_failed_call()).replace(/\(.*$/s, "");
  throw new MpiError(call, code, detail);
}

/** A buffer's values on the host: a cpu or js buffer's own memory, a CUDA buffer's download (the caller uploads it back). */
function hostView<E extends "f32" | "u32">(method: string, elem: E, data: DeviceBuffer<E>): ArrayOf<E> {
  if (data.disposed || data.elem !== elem) throw new TypeError(`${method} takes ${elem} data, got ${data.disposed ? "a disposed" : "a"} ${data.backend} ${data.elem}[${data.length}] buffer`);
  if (data instanceof HostBuffer) return data.data as ArrayOf<E>;
  if (!(data instanceof CudaBuffer)) throw new TypeError(`${method}: unknown buffer kind ${data.backend}`);
  return data.download() as ArrayOf<E>;
}

const OPS = { sum: 0, max: 1, min: 2 } as const;

interface Placement {
  rank: number;
  size: number;
  /** This rank among those on its machine (a GPU index), and how many share the machine. */
  localRank: number;
  localSize: number;
}

/**
 * The ranks of one job, seen from one of them. Every rank must call the same collectives in the
 * same order with the same sizes (else MPI waits forever, or until the launcher ends the job).
 * Without MPI (one rank), every collective returns its input.
 */
export class Ranks {
  readonly rank: number;
  readonly size: number;
  readonly localRank: number;
  readonly localSize: number;
  readonly #shim: Shim | undefined;
  #closed = false;

  /** @internal openRanks and openMpi make Ranks. */
  constructor(
    shim: Shim | undefined,
    placement: Placement,
    /** The MPI library ("Open MPI v4.1.4, ..."), or "one process (no launcher)". */
    readonly description: string,
    /** Largest element count of one MPI call. */
    readonly pieceElements: number,
  ) {
    this.#shim = shim;
    ({ rank: this.rank, size: this.size, localRank: this.localRank, localSize: this.localSize } = placement);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Sums `data` over all ranks, in place, in pieces of at most pieceElements. Host memory (a
   * Float32Array, a cpu or js buffer) is reduced where it lies; a CUDA buffer goes through a host
   * copy (device buffers through NCCL: runtime/nccl.ts openAllReduce).
   */
  allReduceSum(data: Float32Array | DeviceBuffer<"f32">): void {
    const shim = this.#mpi("allReduceSum");
    const host = data instanceof Float32Array ? data : hostView("allReduceSum", "f32", data);
    if (shim && host.length > 0) check(shim, shim.ngp_mpi_allreduce_f32(host, host.length, this.pieceElements));
    if (data instanceof CudaBuffer) data.upload(host);
  }

  /**
   * Bitwise or of `data` over all ranks (MPI_BOR), in place, in pieces of at most pieceElements
   * values: u32 words or bytes (sparse updates' touched bitmaps). Buffers as allReduceSum's.
   */
  allReduceOr(data: Uint32Array | Uint8Array | DeviceBuffer<"u32">): void {
    const shim = this.#mpi("allReduceOr");
    const host = data instanceof Uint32Array || data instanceof Uint8Array ? data : hostView("allReduceOr", "u32", data);
    if (shim && host.length > 0) check(shim, shim.ngp_mpi_allreduce_bor(host, host.length, this.pieceElements, host instanceof Uint32Array ? 0 : 1));
    if (data instanceof CudaBuffer) data.upload(host);
  }

  /** Copies `data` (any typed array, by its bytes) from rank `root` into every rank's `data`. */
  broadcast(data: ArrayBufferView, root = 0): void {
    const shim = this.#mpi("broadcast");
    if (!Number.isInteger(root) || root < 0 || root >= this.size) throw new RangeError(`broadcast: root ${root} is not a rank of ${this.size}`);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (shim && bytes.length > 0) check(shim, shim.ngp_mpi_bcast(bytes, bytes.length, this.pieceElements, root));
  }

  /** Reduces a small array over all ranks in place: per element, the sum, the maximum or the minimum. */
  allReduce(values: Int32Array | Float64Array, op: keyof typeof OPS): void {
    const shim = this.#mpi("allReduce");
    if (!(op in OPS)) throw new TypeError(`allReduce: op must be sum, max or min, got ${op}`);
    if (values.length >= 2 ** 31) throw new RangeError(`allReduce is for small arrays: ${values.length} elements`);
    if (shim && values.length > 0) check(shim, shim.ngp_mpi_allreduce_small(values, values.length, values instanceof Int32Array ? 0 : 1, OPS[op]));
  }

  /**
   * Every rank's `data` (its own length on each rank), as one array per rank, by rank: an
   * all-gather (MPI_Allgatherv). Their total must be below 2^31 values. Without MPI: [data].
   */
  allGather(data: Uint32Array): Uint32Array[] {
    const shim = this.#mpi("allGather");
    if (!shim) return [data];
    const counts = new Int32Array(this.size);
    if (data.length >= 2 ** 31) throw new RangeError(`allGather: ${data.length} values on rank ${this.rank}: at most 2^31 - 1`);
    counts[this.rank] = data.length;
    this.allReduce(counts, "sum");
    const total = counts.reduce((a, c) => a + c, 0);
    if (total >= 2 ** 31) throw new RangeError(`allGather: ${total} values over ${this.size} ranks: at most 2^31 - 1 in all`);
    const out = new Uint32Array(Math.max(1, total));
    // bun:ffi passes an empty array as a null pointer: MPI reads no value from it.
    check(shim, shim.ngp_mpi_allgather_u32(data.length ? data : new Uint32Array(1), data.length, out, counts, this.size));
    let at = 0;
    return Array.from(counts, (c) => out.subarray(at, (at += c)));
  }

  /** True on every rank when `flag` is true on any (a non-finite loss, a stop request). */
  any(flag: boolean): boolean {
    const value = new Int32Array([flag ? 1 : 0]);
    this.allReduce(value, "max");
    return value[0] === 1;
  }

  /**
   * Where any rank has a problem (a string; undefined: none), every rank learns the first one's,
   * by rank: that rank, its text (at most `bytes` of UTF-8) and the other ranks that have one.
   * Undefined on every rank where none has.
   */
  firstProblem(problem: string | undefined, bytes = 2048): { rank: number; problem: string; others: number[] } | undefined {
    const has = new Int32Array(this.size);
    has[this.rank] = problem === undefined ? 0 : 1;
    this.allReduce(has, "sum");
    const first = has.findIndex((x) => x !== 0);
    if (first < 0) return undefined;
    const text = new Uint8Array(bytes);
    if (this.rank === first) new TextEncoder().encodeInto(problem!, text.subarray(0, bytes - 1));
    this.broadcast(text, first);
    const end = text.indexOf(0);
    return { rank: first, problem: new TextDecoder().decode(text.subarray(0, end < 0 ? bytes : end)), others: [...has.keys()].filter((r) => has[r] && r !== first) };
  }

  /**
   * Checks that every rank holds the same `value` (a configuration's hash): rank 0's is broadcast
   * and compared. Throws RanksDisagreeError on every rank, naming the ranks that differ.
   */
  agree(value: string, what = "configuration"): void {
    const own = createHash("sha256").update(value).digest();
    const root = new Uint8Array(own);
    this.broadcast(root);
    const differs = new Int32Array(this.size);
    differs[this.rank] = Buffer.compare(own, root) === 0 ? 0 : 1;
    this.allReduce(differs, "sum");
    const ranks = [...differs.keys()].filter((r) => differs[r] !== 0);
    if (ranks.length === 0) return;
    const named = ranks.length === 1 ? `rank ${ranks[0]}` : `ranks ${ranks.join(", ")}`;
    throw new RanksDisagreeError(`${named} of ${this.size} ${ranks.length === 1 ? "has" : "have"} a different ${what} than rank 0: start every rank with the same flags and files`);
  }

  /** Waits until every rank has called barrier(). */
  barrier(): void {
    const shim = this.#mpi("barrier");
    if (shim) check(shim, shim.ngp_mpi_barrier());
  }

  /**
   * Waits until every rank has called it, as barrier(), but asleep: MPI is asked every `pollMs`
   * and the event loop runs meanwhile (a rank done with its share waits for slower ones without
   * taking a core from them, as MPI's own waiting would).
   */
  async quietBarrier(pollMs = 50): Promise<void> {
    const shim = this.#mpi("quietBarrier");
    if (!shim) return;
    check(shim, shim.ngp_mpi_ibarrier());
    const done = new Int32Array(1);
    for (;;) {
      check(shim, shim.ngp_mpi_test_barrier(done));
      if (done[0]) return;
      await Bun.sleep(pollMs);
    }
  }

  /** Ends every rank of the job with exit status `code` (MPI_Abort); without MPI, this process. */
  abort(code: number): never {
    const shim = this.#mpi("abort");
    if (shim) shim.ngp_mpi_abort(code);
    process.exit(code);
  }

  /**
   * MPI_Finalize; later uses throw, calling it again does nothing. Every rank must call it, and
   * only where every rank gets to it: it waits for all of them, so a rank that finalizes while
   * another waits in a collective waits forever. A rank that fails alone exits without close()
   * (Open MPI's mpirun then ends the job).
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#shim) return;
    finalized = true;
    check(this.#shim, this.#shim.ngp_mpi_finalize());
  }

  #mpi(method: string): Shim | undefined {
    if (this.#closed) throw new Error(`Ranks.${method} called after close()`);
    return this.#shim;
  }
}

// NCCL between the GPUs of a job's ranks, and the all-reduce that picks it for device buffers.
//
// libnccl.so.2 is loaded at run time when it is there ($NGPK_NCCL names the file, else the loader's
// path and the CUDA installs are tried): it is in neither Debian's main archive nor the CUDA
// toolkit, so nothing here links it. The bootstrap is NCCL's documented one over MPI: rank 0's
// ncclGetUniqueId, broadcast to every rank (Ranks.broadcast), cudaSetDevice(localRank) on each,
// then ncclCommInitRank. One C function (nccl_shim.cpp) makes that last call: it takes the 128-byte
// id by value, which bun:ffi cannot pass. NCCL_* variables are NCCL's own and are left as they are.
//
// openAllReduce is what a data-parallel trainer calls: CUDA buffers through NCCL, in place on a
// stream of their own, when every rank has NCCL; anything else through MPI (Ranks.allReduceSum,
// which copies a CUDA buffer through host memory).

import { dlopen, type Library } from "bun:ffi";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ExpectedError } from "../dsl/errors.ts";
import { CudaBuffer, type DeviceBuffer } from "./buffer.ts";
import { BuildError, buildCached } from "./cache.ts";
import { openCudaControl, type CudaControl } from "./device.ts";
import { progressLog } from "./module.ts";
import type { Ranks } from "./mpi.ts";
import { findCxx } from "./toolchain.ts";

const NCCL_SYMBOLS = {
  ncclGetVersion: { args: ["ptr"], returns: "i32" },
  ncclGetErrorString: { args: ["i32"], returns: "cstring" },
  ncclGetUniqueId: { args: ["ptr"], returns: "i32" },
  ncclCommInitRank: { args: [], returns: "void" }, // (checked here, called through the shim)
  ncclAllReduce: { args: ["u64", "u64", "u64", "i32", "i32", "u64", "u64"], returns: "i32" },
  ncclGroupStart: { args: [], returns: "i32" },
  ncclGroupEnd: { args: [], returns: "i32" },
  ncclCommDestroy: { args: ["u64"], returns: "i32" },
} as const;
type Nccl = Library<typeof NCCL_SYMBOLS>;

const SHIM_SYMBOLS = { ngp_nccl_comm_init_rank: { args: ["ptr", "ptr", "i32", "ptr", "i32"], returns: "i32" } } as const;
const SHIM_SOURCE = join(import.meta.dir, "nccl_shim.cpp");

/** NCCL_UNIQUE_ID_BYTES; ncclFloat32 and ncclSum of nccl.h. */
const UNIQUE_ID_BYTES = 128;
const NCCL_FLOAT32 = 7;
const NCCL_SUM = 0;

// Names the loader resolves itself (LD_LIBRARY_PATH, ld.so.cache), after the CUDA installs.
const LOADER_NAMES = ["libnccl.so.2", "libnccl.so"];

/** An NCCL call returned an error. */
export class NcclError extends Error {
  constructor(
    readonly call: string,
    readonly code: number,
    detail: string,
  ) {
    super(`${call} failed: ${detail} (NCCL result ${code})`);
    this.name = "NcclError";
  }
}

/** NCCL was asked for but cannot be used here (no library, no device for this rank, no compiler for the shim). */
export class NcclUnavailableError extends ExpectedError {}

export interface NcclLookup {
  /** The library to load (a path, or a name for the loader), when one loads. */
  library: string | undefined;
  /** "NCCL 2.23.4 (libnccl.so.2)", or why there is none. */
  reason: string;
}

const lookups = new Map<string, NcclLookup>();

/**
 * The libnccl to use: $NGPK_NCCL (a file; "off" for none), else libnccl.so.2 under $CUDA_HOME,
 * $CUDA_PATH or /usr/local/cuda, else the loader's path. Never throws; memoized per $NGPK_NCCL.
 */
export function findNccl(): NcclLookup {
  const requested = process.env.NGPK_NCCL?.trim() || undefined;
  const key = requested ?? "";
  let found = lookups.get(key);
  if (!found) lookups.set(key, (found = probeNccl(requested)));
  return found;
}

function probeNccl(requested: string | undefined): NcclLookup {
  if (requested === "off") return { library: undefined, reason: "NGPK_NCCL=off" };
  const roots = [process.env.CUDA_HOME, process.env.CUDA_PATH, "/usr/local/cuda"].filter((r): r is string => !!r);
  const candidates = requested ? [requested] : [...roots.flatMap((r) => ["lib64", "lib"].map((sub) => join(r, sub, "libnccl.so.2"))), ...LOADER_NAMES];
  const errors: string[] = [];
  for (const candidate of candidates) {
    try {
      const lib = dlopen(candidate, NCCL_SYMBOLS);
      const version = versionOf(lib);
      lib.close();
      return { library: candidate, reason: `NCCL ${version} (${candidate})` };
    } catch (error) {
      if (requested || !/cannot open shared object|No such file/i.test((error as Error).message)) errors.push(`${candidate}: ${(error as Error).message}`);
    }
  }
  if (requested) return { library: undefined, reason: `NGPK_NCCL=${requested} does not load: ${errors[0]}` };
  return { library: undefined, reason: errors.length ? `libnccl does not load: ${errors[0]}` : "libnccl.so.2 is not installed (neither in the CUDA install nor on the loader's path; NGPK_NCCL names the file)" };
}

function versionOf(lib: Nccl): string {
  const out = new Int32Array(1);
  if (lib.symbols.ncclGetVersion(out) !== 0) return "(version unknown)";
  const v = out[0]!;
  // NCCL_VERSION_CODE: major*10000 + minor*100 + patch since 2.9, major*1000 + minor*100 + patch before.
  return v >= 10000 ? `${Math.floor(v / 10000)}.${Math.floor(v / 100) % 100}.${v % 100}` : `${Math.floor(v / 1000)}.${Math.floor(v / 100) % 10}.${v % 100}`;
}

export interface NcclOptions {
  /** The libnccl to load (default: findNccl()'s). */
  library?: string;
  /** The CUDA runtime to pick the device and make the stream with (default: libcudart, as the kernels'). */
  cudart?: string;
  /** Build cache directory for the shim (as the kernels'). */
  cacheDir?: string;
  log?: (message: string) => void;
}

/** One NCCL communicator over every rank of `ranks`, each on the GPU of its local rank. */
export class NcclComm {
  readonly #nccl: Nccl;
  readonly #cuda: CudaControl;
  #comm: bigint | undefined;
  readonly #stream: bigint;

  private constructor(
    nccl: Nccl,
    cuda: CudaControl,
    comm: bigint,
    stream: bigint,
    /** "NCCL 2.23.4 (libnccl.so.2), 2 ranks, this one on GPU 1". */
    readonly description: string,
    readonly device: number,
  ) {
    this.#nccl = nccl;
    this.#cuda = cuda;
    this.#comm = comm;
    this.#stream = stream;
  }

  /**
   * The bootstrap, on every rank together: cudaSetDevice(localRank), rank 0's ncclGetUniqueId
   * broadcast over MPI (with its result, so that a failure there stops every rank alike),
   * ncclCommInitRank, and a stream for the all-reduces.
   */
  static async open(ranks: Ranks, opts: NcclOptions = {}): Promise<NcclComm> {
    const lookup = opts.library === undefined ? findNccl() : { library: opts.library, reason: opts.library };
    if (!lookup.library) throw new NcclUnavailableError(lookup.reason);
    const cuda = openCudaControl(opts.cudart);
    if (typeof cuda === "string") throw new NcclUnavailableError(cuda);
    const count = cuda.deviceCount();
    if (ranks.localRank >= count)
      throw new NcclUnavailableError(`rank ${ranks.rank}'s local rank ${ranks.localRank} has no GPU: this machine has ${count} and NCCL needs one per rank (start at most ${count} ranks per machine)`);
    const shim = await loadShim(opts);
    const nccl = dlopen(lookup.library, NCCL_SYMBOLS);
    cuda.setDevice(ranks.localRank);
    const check = (code: number, call: string) => {
      if (code !== 0) throw new NcclError(call, code, nccl.symbols.ncclGetErrorString(code)?.toString() ?? "unknown result");
    };
    // [result of ncclGetUniqueId as an i32][the id]: every rank learns rank 0's failure.
    const message = new Uint8Array(4 + UNIQUE_ID_BYTES);
    const result = new Int32Array(message.buffer, 0, 1);
    if (ranks.rank === 0) result[0] = nccl.symbols.ncclGetUniqueId(message.subarray(4));
    ranks.broadcast(message, 0);
    check(result[0]!, "ncclGetUniqueId (on rank 0)");
    const comm = new BigUint64Array(1);
    const init = `ncclCommInitRank(${ranks.size} ranks, rank ${ranks.rank}, GPU ${ranks.localRank})`;
    const code = shim.ngp_nccl_comm_init_rank(Buffer.from(`${lookup.library}\0`), comm, ranks.size, message.subarray(4), ranks.rank);
    if (code === -1) throw new NcclUnavailableError(`${init}: ${lookup.library} is not loaded where the NCCL shim looks`);
    check(code, init);
    const description = `NCCL ${versionOf(nccl)} (${lookup.library}), ${ranks.size} rank${ranks.size === 1 ? "" : "s"}, this one on GPU ${ranks.localRank}`;
    return new NcclComm(nccl, cuda, comm[0]!, cuda.createStream(), description, ranks.localRank);
  }

  /**
   * Sums every buffer over the ranks, in place, on this communicator's stream (one group when
   * there are several), and waits for it. The stream is an ordinary one: it starts after the
   * kernels already queued on the default stream, and the kernels queued afterwards wait for it.
   */
  allReduceSum(buffers: readonly CudaBuffer[]): void {
    if (this.#comm === undefined) throw new Error("NcclComm.allReduceSum called after close()");
    for (const b of buffers) if (b.disposed || b.elem !== "f32") throw new TypeError(`NCCL all-reduce takes f32 CUDA buffers, got ${b.disposed ? "a disposed" : "a"} cuda ${b.elem}[${b.length}] buffer`);
    const live = buffers.filter((b) => b.length > 0);
    if (live.length === 0) return;
    const nccl = this.#nccl.symbols;
    const check = (code: number, call: string) => {
      if (code !== 0) throw new NcclError(call, code, nccl.ncclGetErrorString(code)?.toString() ?? "unknown result");
    };
    const grouped = live.length > 1;
    if (grouped) check(nccl.ncclGroupStart(), "ncclGroupStart");
    for (const b of live) check(nccl.ncclAllReduce(b.ptr, b.ptr, BigInt(b.length), NCCL_FLOAT32, NCCL_SUM, this.#comm, this.#stream), `ncclAllReduce(${b.length} floats)`);
    if (grouped) check(nccl.ncclGroupEnd(), "ncclGroupEnd");
    this.#cuda.synchronizeStream(this.#stream);
  }

  /** ncclCommDestroy and the stream; on every rank, at the end. Calling it again does nothing. */
  close(): void {
    if (this.#comm === undefined) return;
    const comm = this.#comm;
    this.#comm = undefined;
    const code = this.#nccl.symbols.ncclCommDestroy(comm);
    this.#cuda.destroyStream(this.#stream);
    if (code !== 0) throw new NcclError("ncclCommDestroy", code, this.#nccl.symbols.ncclGetErrorString(code)?.toString() ?? "unknown result");
  }
}

async function loadShim(opts: NcclOptions): Promise<Library<typeof SHIM_SYMBOLS>["symbols"]> {
  const cxx = findCxx();
  if (!cxx.tool) throw new NcclUnavailableError(`the NCCL shim cannot be built: ${cxx.reason}; install a C++ compiler (apt-get install g++)`);
  try {
    const { path } = await buildCached({
      source: readFileSync(SHIM_SOURCE, "utf8"),
      lang: "cpp",
      tool: cxx.tool,
      flags: ["-O2", "-std=c++17", "-fPIC", "-shared", "-Wl,-z,now", "-Wl,-z,defs"],
      compilerVersion: "nccl-shim-1",
      cacheDir: opts.cacheDir,
      name: "nccl_shim",
      log: opts.log,
      onCompile: () => (opts.log ?? progressLog)("ngp-kernels: compiling the NCCL shim (first use; cached afterwards)"),
    });
    return dlopen(path, SHIM_SYMBOLS).symbols;
  } catch (error) {
    if (!(error instanceof BuildError)) throw error;
    throw new NcclUnavailableError(`the NCCL shim did not build: ${error.message.split("\n")[0]}`);
  }
}

// ---------------------------------------------------------------------------------------------
// The all-reduce a data-parallel trainer uses

export interface AllReduce {
  /** "nccl" (CUDA buffers through NCCL), "mpi" (everything through Ranks.allReduceSum), "none" (one rank). */
  readonly via: "nccl" | "mpi" | "none";
  /** One line: what is used, and why not NCCL where it is not. */
  readonly reason: string;
  /** The GPU this rank uses (its local rank), when `cuda` was asked for and a device was set. */
  readonly device: number | undefined;
  /** Sums every buffer over the ranks, in place: CUDA buffers in one NCCL group (via "nccl"), the rest through MPI. */
  allReduceSum(buffers: readonly (Float32Array | DeviceBuffer<"f32">)[]): void;
  /** The NCCL communicator's end (on every rank, at the end); nothing for MPI. */
  close(): void;
}

export interface AllReduceOptions extends NcclOptions {
  /** The trainer's buffers are CUDA buffers: pick this rank's GPU (its local rank), and NCCL if every rank has it. */
  cuda: boolean;
}

/**
 * The all-reduce of a job's ranks, on every rank together (a collective: call it before any CUDA
 * buffer is made, since it sets this rank's device). With more than one rank: NCCL when every rank
 * has CUDA buffers (`cuda`) and loads NCCL (one rank without sends all through MPI, as NCCL cannot
 * start on some ranks only; every rank's reason names the first such rank and why), else MPI
 * through host memory. Errors of NCCL's bootstrap are thrown.
 */
export async function openAllReduce(ranks: Ranks, opts: AllReduceOptions): Promise<AllReduce> {
  let device: number | undefined;
  let why: string | undefined;
  let cuda: CudaControl | undefined;
  if (opts.cuda) {
    const control = openCudaControl(opts.cudart);
    if (typeof control === "string") why = control;
    else {
      cuda = control;
      const count = cuda.deviceCount();
      // Several ranks may share a GPU through MPI; NCCL refuses that.
      device = count > 0 ? ranks.localRank % count : undefined;
      if (ranks.localRank >= count) why = `${ranks.localSize} ranks share this machine's ${count} GPU${count === 1 ? "" : "s"} and NCCL needs one GPU per rank`;
    }
  }
  const host = (via: "mpi" | "none", reason: string): AllReduce => {
    if (device !== undefined) cuda!.setDevice(device);
    return hostReduce(ranks, via, reason, device);
  };
  if (ranks.size === 1) return host("none", "one rank: nothing to reduce");
  const lookup = !opts.cuda ? undefined : opts.library === undefined ? findNccl() : { library: opts.library, reason: opts.library };
  if (!lookup) why = "its buffers are in host memory (not CUDA)";
  else if (!why && !lookup.library) why = lookup.reason;
  // NCCL starts on every rank or on none.
  const first = ranks.firstProblem(why);
  if (first) {
    const others = first.others.length ? ` (also ranks ${first.others.join(", ")})` : "";
    return host("mpi", opts.cuda ? `MPI through host memory, not NCCL: rank ${first.rank}: ${first.problem}${others}` : `MPI (${ranks.description.split(",")[0]}): host buffers`);
  }
  const comm = await NcclComm.open(ranks, { ...opts, library: lookup!.library });
  return {
    via: "nccl",
    reason: comm.description,
    device,
    allReduceSum(buffers) {
      comm.allReduceSum(buffers.filter((b): b is CudaBuffer<"f32"> => b instanceof CudaBuffer));
      for (const b of buffers) if (!(b instanceof CudaBuffer)) ranks.allReduceSum(b);
    },
    close: () => comm.close(),
  };
}

function hostReduce(ranks: Ranks, via: "mpi" | "none", reason: string, device: number | undefined): AllReduce {
  return {
    via,
    reason,
    device,
    allReduceSum(buffers) {
      for (const b of buffers) ranks.allReduceSum(b);
    },
    close() {},
  };
}

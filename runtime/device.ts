// CUDA device detection without building anything: load libcudart and ask it.
//
// This runs on every machine, most of which have no GPU (or no CUDA at all), so every failure
// becomes a count of 0 and a reason. Without a driver, cudaGetDeviceCount returns error 35
// (cudaErrorInsufficientDriver) cleanly.

import { dlopen, type Library } from "bun:ffi";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { CudaError } from "./cuda.ts";
import { validateSharedLibrary } from "./elf.ts";

export interface CudaDevices {
  count: number;
  /** `sm_XY` of each device, in device order. */
  archs: string[];
  /** One line: the devices found, or why there are none. */
  reason: string;
}

const CUDART_SYMBOLS = {
  cudaGetDeviceCount: { args: ["ptr"], returns: "i32" },
  cudaGetErrorName: { args: ["i32"], returns: "cstring" },
  cudaDeviceGetAttribute: { args: ["ptr", "i32", "i32"], returns: "i32" },
} as const;

type Cudart = Library<typeof CUDART_SYMBOLS>["symbols"];

/** What a rank needs beyond detection: pick its device, and a stream for collectives (runtime/nccl.ts). */
const CUDART_CONTROL_SYMBOLS = {
  cudaGetDeviceCount: { args: ["ptr"], returns: "i32" },
  cudaGetErrorName: { args: ["i32"], returns: "cstring" },
  cudaSetDevice: { args: ["i32"], returns: "i32" },
  cudaStreamCreate: { args: ["ptr"], returns: "i32" },
  cudaStreamSynchronize: { args: ["u64"], returns: "i32" },
  cudaStreamDestroy: { args: ["u64"], returns: "i32" },
} as const;

const ATTR_COMPUTE_CAPABILITY_MAJOR = 75;
const ATTR_COMPUTE_CAPABILITY_MINOR = 76;

// Names the loader resolves itself (LD_LIBRARY_PATH, ld.so.cache), tried after the install dirs.
const LOADER_NAMES = ["libcudart.so", "libcudart.so.13", "libcudart.so.12"];

let detected: CudaDevices | undefined;

/** The CUDA devices of this machine (memoized: the answer does not change within a process). */
export function detectCudaDevices(): CudaDevices {
  return (detected ??= probe());
}

function probe(): CudaDevices {
  const cudart = openCudart();
  if (typeof cudart === "string") return { count: 0, archs: [], reason: cudart };
  try {
    return queryDevices(cudart);
  } catch (error) {
    return { count: 0, archs: [], reason: `CUDA runtime query failed: ${(error as Error).message}` };
  }
}

function queryDevices(cudart: Cudart): CudaDevices {
  const out = new Int32Array(1);
  const status = cudart.cudaGetDeviceCount(out);
  if (status !== 0) return { count: 0, archs: [], reason: failed(cudart, "cudaGetDeviceCount", status) };
  const count = out[0]!;
  if (count === 0) return { count: 0, archs: [], reason: "cudaGetDeviceCount found no devices" };
  const archs: string[] = [];
  for (let device = 0; device < count; device++) {
    const major = attribute(cudart, ATTR_COMPUTE_CAPABILITY_MAJOR, device);
    const minor = attribute(cudart, ATTR_COMPUTE_CAPABILITY_MINOR, device);
    if (typeof major === "string") return { count: 0, archs: [], reason: major };
    if (typeof minor === "string") return { count: 0, archs: [], reason: minor };
    archs.push(`sm_${major}${minor}`);
  }
  return { count, archs, reason: `${count} CUDA device${count === 1 ? "" : "s"} (${archs.join(", ")})` };
}

function attribute(cudart: Cudart, attr: number, device: number): number | string {
  const out = new Int32Array(1);
  const status = cudart.cudaDeviceGetAttribute(out, attr, device);
  return status === 0 ? out[0]! : failed(cudart, `cudaDeviceGetAttribute(${attr}, device ${device})`, status);
}

function failed(cudart: Cudart, call: string, status: number): string {
  return `${call} returned ${status} (${cudart.cudaGetErrorName(status)})`;
}

/**
 * The CUDA runtime calls a rank makes itself (the kernels' modules link the same shared libcudart,
 * so the device set here is theirs): its device, and a stream. Each call throws a CudaError.
 */
export interface CudaControl {
  deviceCount(): number;
  /** cudaSetDevice: the device of this thread's later allocations, kernels and streams. */
  setDevice(device: number): void;
  createStream(): bigint;
  synchronizeStream(stream: bigint): void;
  destroyStream(stream: bigint): void;
}

/** libcudart's control calls (`path`: another library with the same symbols, e.g. a mock), or why it cannot be loaded. */
export function openCudaControl(path?: string): CudaControl | string {
  const cudart = openCudart(CUDART_CONTROL_SYMBOLS, path === undefined ? undefined : [path]);
  if (typeof cudart === "string") return cudart;
  const check = (status: number, call: string) => {
    if (status !== 0) throw new CudaError(status, cudart.cudaGetErrorName(status) ?? `unknown CUDA error ${status}`, call);
  };
  return {
    deviceCount() {
      const out = new Int32Array(1);
      check(cudart.cudaGetDeviceCount(out), "cudaGetDeviceCount");
      return out[0]!;
    },
    setDevice: (device) => check(cudart.cudaSetDevice(device), `cudaSetDevice(${device})`),
    createStream() {
      const out = new BigUint64Array(1);
      check(cudart.cudaStreamCreate(out), "cudaStreamCreate");
      return out[0]!;
    },
    synchronizeStream: (stream) => check(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize"),
    destroyStream: (stream) => check(cudart.cudaStreamDestroy(stream), "cudaStreamDestroy"),
  };
}

/** The CUDA runtime's symbols, or why it could not be loaded. */
function openCudart<S extends typeof CUDART_SYMBOLS | typeof CUDART_CONTROL_SYMBOLS = typeof CUDART_SYMBOLS>(
  symbols: S = CUDART_SYMBOLS as S,
  candidates: string[] = [...installedCudarts(), ...LOADER_NAMES],
): Library<S>["symbols"] | string {
  const errors: string[] = [];
  for (const candidate of candidates) {
    // A path we found ourselves is checked first: a truncated file would crash dlopen.
    const problem = candidate.includes("/") ? validateSharedLibrary(candidate) : undefined;
    if (problem) {
      errors.push(`${candidate}: ${problem}`);
      continue;
    }
    try {
      return dlopen(candidate, symbols).symbols;
    } catch (error) {
      errors.push((error as Error).message);
    }
  }
  // The first error is the most telling: it concerns an installed copy if there is one.
  return `libcudart could not be loaded: ${errors[0]}`;
}

/** libcudart.so under $CUDA_HOME, $CUDA_PATH, /usr/local/cuda, /usr/local/cuda-X.Y (newest first), /opt/cuda. */
function installedCudarts(): string[] {
  const versioned = listDir("/usr/local")
    .filter((name) => /^cuda-\d/.test(name))
    .sort((a, b) => b.localeCompare(a, undefined, { numeric: true }))
    .map((name) => join("/usr/local", name));
  const roots = [process.env.CUDA_HOME, process.env.CUDA_PATH, "/usr/local/cuda", ...versioned, "/opt/cuda"];
  const targetLib = `targets/${process.arch === "arm64" ? "sbsa" : "x86_64"}-linux/lib`;
  const paths = roots
    .filter((root): root is string => !!root)
    .flatMap((root) => ["lib64", "lib", targetLib].map((sub) => join(root, sub, "libcudart.so")));
  return [...new Set(paths)].filter((path) => existsSync(path));
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

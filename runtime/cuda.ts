// Device memory through the `ngp_cuda_*` entry points that every generated CUDA module exports.
//
// Going through the module (rather than loading libcudart ourselves) guarantees that buffers and
// kernels use the same CUDA runtime. Each entry point returns a cudaError_t; nonzero becomes a
// CudaError carrying the runtime's name for it.

import { dlopen, type Library } from "bun:ffi";
import type { CudaMemory } from "./buffer.ts";

export const CUDA_RUNTIME_SYMBOLS = {
  ngp_cuda_malloc: { args: ["u64", "ptr"], returns: "i32" },
  ngp_cuda_free: { args: ["u64"], returns: "i32" },
  ngp_cuda_memcpy_htod: { args: ["u64", "ptr", "u64"], returns: "i32" },
  ngp_cuda_memcpy_dtoh: { args: ["ptr", "u64", "u64"], returns: "i32" },
  ngp_cuda_memset: { args: ["u64", "i32", "u64"], returns: "i32" },
  ngp_cuda_synchronize: { args: [], returns: "i32" },
  ngp_cuda_error_name: { args: ["i32"], returns: "cstring" },
} as const;

export class CudaError extends Error {
  constructor(
    readonly code: number,
    readonly errorName: string,
    call: string,
  ) {
    super(`${call} failed: ${errorName} (${code})`);
    this.name = "CudaError";
  }
}

export interface CudaRuntime {
  readonly memory: CudaMemory;
  /** Waits for all queued work; surfaces errors of asynchronous kernel launches. */
  synchronize(): void;
  errorName(code: number): string;
  close(): void;
}

/** The CUDA runtime entry points of the module at `path` (which must have passed ELF validation). */
export function openCudaRuntime(path: string): CudaRuntime {
  const lib: Library<typeof CUDA_RUNTIME_SYMBOLS> = dlopen(path, CUDA_RUNTIME_SYMBOLS);
  let closed = false;
  // After close the entry points may be unmapped: a buffer that outlives its module (or its
  // finalizer) must get an exception, not a jump into freed code.
  const cuda = () => {
    if (closed) throw new Error(`CUDA runtime of ${path} used after close()`);
    return lib.symbols;
  };
  const errorName = (code: number) => cuda().ngp_cuda_error_name(code) ?? `unknown CUDA error ${code}`;
  const check = (status: number, call: () => string) => {
    if (status !== 0) throw new CudaError(status, errorName(status), call());
  };
  const memory: CudaMemory = {
    malloc(bytes) {
      const out = new BigUint64Array(1);
      check(cuda().ngp_cuda_malloc(bytes, out), () => `cudaMalloc(${bytes} bytes)`);
      return out[0]!;
    },
    free(ptr) {
      check(cuda().ngp_cuda_free(ptr), () => `cudaFree(0x${ptr.toString(16)})`);
    },
    htod(dst, src) {
      const bytes = src.byteLength;
      check(cuda().ngp_cuda_memcpy_htod(dst, src, BigInt(bytes)), () => `copy of ${bytes} bytes to the device`);
    },
    dtoh(dst, src) {
      const bytes = dst.byteLength;
      check(cuda().ngp_cuda_memcpy_dtoh(dst, src, BigInt(bytes)), () => `copy of ${bytes} bytes from the device`);
    },
    memset0(ptr, bytes) {
      check(cuda().ngp_cuda_memset(ptr, 0, bytes), () => `cudaMemset(${bytes} bytes)`);
    },
  };
  return {
    memory,
    synchronize: () => check(cuda().ngp_cuda_synchronize(), () => "cudaDeviceSynchronize"),
    errorName,
    close() {
      if (closed) return;
      closed = true;
      lib.close();
    },
  };
}

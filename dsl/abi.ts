// The contract between the compiler (codegen/) and the runtime (runtime/): what an emitted module
// exports and how each kernel is called. Both sides import these types; nothing else crosses. It is
// the language's calling convention (how a kernel's `Buf<f32>` and `u32` parameters are passed), so
// it sits in dsl/, the bottom layer both stand on, and imports only the names of the value types
// (dsl/types.ts, which imports nothing; docs/architecture.md).
//
// Native (CPU and CUDA) modules export, for every kernel, one C symbol
//     int32_t <name>(int64_t n, <args...>)
// that runs the kernel body for every index i in [0, n). Each buffer parameter becomes two
// arguments, `T* <p>, int64_t <p>_len` (element count), each scalar one argument
// (f32 -> float, i32 -> int32_t, u32 -> uint32_t, bool -> int32_t). The return value is 0 on
// success, else an error code: NGP_ERR_OUT_OF_BOUNDS (a bounds-checked kernel indexed outside a
// buffer), or on CUDA the cudaError_t of the launch. A bounds-checked module also exports
//     void ngp_bounds_fault(uint64_t out[2])
// the fault record of its last launch: the first out-of-range access of the lowest thread that
// made one, as out[0] = thread << 32 | parameter position << 1 | (index < 0) and
// out[1] = thread << 32 | (uint32_t)index.
// JS modules export `function <name>(n, ...args)` with TypedArrays for buffers (no lengths); a
// bounds-checked one throws at the first out-of-range access (threads run in order) an error
// whose `ngpFault` is { buffer, index, length, thread }.
import type { Scalar } from "./types.ts";

/** Element types a buffer may hold (f16 is storage-only). */
export type ElemType = "f32" | "i32" | "u32" | "f16";
/** Scalar kernel argument types. */
export type ScalarType = Scalar;
export type Target = "cpu" | "cuda" | "js";

export type KernelParam =
  /** `writes`: the kernel stores into the buffer (the runtime refuses arguments that overlap it). */
  | { name: string; kind: "buffer"; elem: ElemType; writes?: boolean }
  | { name: string; kind: "scalar"; type: ScalarType };

export interface KernelSignature {
  name: string;
  params: KernelParam[];
  /** A block kernel: the bytes of its tiles (on CUDA, static shared memory per thread block). */
  tileBytes?: number;
}

export interface EmittedModule {
  target: Target;
  /** The full source text (C++ for cpu, CUDA C++ for cuda, an ES module for js). */
  source: string;
  kernels: KernelSignature[];
}

/** Returned by a bounds-checked native kernel that indexed outside a buffer (above cudaError_t's range). */
export const NGP_ERR_OUT_OF_BOUNDS = 1000001;

/** Returned by a block kernel whose launch could not allocate its partial sums (CPU). */
export const NGP_ERR_NO_MEMORY = 1000002;

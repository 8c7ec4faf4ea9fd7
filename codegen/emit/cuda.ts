// CUDA delta of the C emitter: the same kernel bodies as __device__ functions, a __global__
// wrapper with a grid-stride loop, and `extern "C"` host entry points for launching, device memory
// and error names, so the runtime needs nothing but this library and libcudart.
import { NGP_ERR_OUT_OF_BOUNDS, type EmittedModule } from "../../runtime/abi.ts";
import type { SpecializedKernel } from "../specialize.ts";
import { emitC, type CTarget, type EmitOptions } from "./c_base.ts";

export const CUDA_BLOCK_SIZE = 128;
const MAX_BLOCKS = 65535 * 32;

/** Host entry points for memory and errors; every CUDA module carries them (see runtime/abi.ts). */
const HOST_API = `extern "C" int32_t ngp_cuda_device_count(int32_t* out) { int n = 0; cudaError_t e = cudaGetDeviceCount(&n); *out = n; return (int32_t)e; }
extern "C" int32_t ngp_cuda_malloc(uint64_t bytes, uint64_t* out) { void* p = nullptr; cudaError_t e = cudaMalloc(&p, bytes); *out = (uint64_t)p; return (int32_t)e; }
extern "C" int32_t ngp_cuda_free(uint64_t ptr) { return (int32_t)cudaFree((void*)ptr); }
extern "C" int32_t ngp_cuda_memcpy_htod(uint64_t dst, const void* src, uint64_t bytes) { return (int32_t)cudaMemcpy((void*)dst, src, bytes, cudaMemcpyHostToDevice); }
extern "C" int32_t ngp_cuda_memcpy_dtoh(void* dst, uint64_t src, uint64_t bytes) { return (int32_t)cudaMemcpy(dst, (const void*)src, bytes, cudaMemcpyDeviceToHost); }
extern "C" int32_t ngp_cuda_memset(uint64_t dst, int32_t value, uint64_t bytes) { return (int32_t)cudaMemset((void*)dst, value, bytes); }
extern "C" int32_t ngp_cuda_synchronize() { return (int32_t)cudaDeviceSynchronize(); }
extern "C" const char* ngp_cuda_error_name(int32_t code) { return cudaGetErrorName((cudaError_t)code); }`;

const cuda: CTarget = {
  name: "cuda",
  head: `#include <cstdint>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#define NGP_FN static __device__ __forceinline__`,
  checkedState: `__device__ int32_t ngp_error;
__device__ __align__(16) char ngp_dummy[16];
NGP_FN void ngp_flag_out_of_bounds() { ngp_error = ${NGP_ERR_OUT_OF_BOUNDS}; }`,
  // The flag lives on the device: clear it, wait for the launch, read it back.
  checkedLaunch: {
    before: "{ const int32_t ngp_zero = 0; cudaMemcpyToSymbol(ngp_error, &ngp_zero, sizeof ngp_zero); }",
    after: "{ int32_t ngp_flag = 0; cudaError_t ngp_e = cudaDeviceSynchronize(); if (ngp_e == cudaSuccess) ngp_e = cudaMemcpyFromSymbol(&ngp_flag, ngp_error, sizeof ngp_flag); return ngp_e != cudaSuccess ? (int32_t)ngp_e : ngp_flag; }",
  },
  tableQualifier: "static __device__ const",
  f16Type: "__half",
  loadF16: (x) => `__half2float(${x})`,
  storeF16: (x) => `__float2half_rn(${x})`,
  kernel(k, params, body) {
    const idx = k.index.ty === "u32" ? "uint32_t" : "int32_t";
    const decls = ["int64_t ngp_n", ...params.flatMap((p) => p.body)].join(", ");
    const args = params.flatMap((p) => p.args);
    const code = `${body(`${k.name}_body`, k.body)}

__global__ void ${k.name}_kernel(${decls}) {
  const int64_t ngp_stride = (int64_t)blockDim.x * gridDim.x;
  for (int64_t ngp_i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; ngp_i < ngp_n; ngp_i += ngp_stride)
    ${k.name}_body(${[`(${idx})ngp_i`, ...args].join(", ")});
}`;
    // A grid-stride loop covers any n with a bounded grid.
    const launch = `  if (ngp_n <= 0) return 0;
  const int64_t ngp_blocks = (ngp_n + ${CUDA_BLOCK_SIZE} - 1) / ${CUDA_BLOCK_SIZE};
  ${k.name}_kernel<<<(unsigned)(ngp_blocks < ${MAX_BLOCKS} ? ngp_blocks : ${MAX_BLOCKS}), ${CUDA_BLOCK_SIZE}>>>(${["ngp_n", ...args].join(", ")});`;
    return { code, launch, status: "(int32_t)cudaGetLastError()" };
  },
  tail: HOST_API,
};

export function emitCuda(kernels: SpecializedKernel[], opts: EmitOptions = {}): EmittedModule {
  return emitC(kernels, cuda, opts);
}

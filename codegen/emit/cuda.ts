// CUDA delta of the C emitter: the same kernel bodies as __device__ functions, a __global__
// wrapper with a grid-stride loop, and `extern "C"` host entry points for launching, device memory
// and error names, so the runtime needs nothing but this library and libcudart.
import type { EmittedModule } from "../../runtime/abi.ts";
import type { SpecializedKernel } from "../specialize.ts";
import { emitC, entryParams, type CTarget } from "./c_base.ts";

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
  tableQualifier: "static __device__ const",
  f16Type: "__half",
  loadF16: (x) => `__half2float(${x})`,
  storeF16: (x) => `__float2half_rn(${x})`,
  kernel(k, params, body) {
    const idx = k.index.ty === "u32" ? "uint32_t" : "int32_t";
    const decls = ["int64_t ngp_n", ...params.map((p) => p.decl)].join(", ");
    const args = params.map((p) => p.name);
    return `${body(`${k.name}_body`, k.body)}

__global__ void ${k.name}_kernel(${decls}) {
  const int64_t ngp_stride = (int64_t)blockDim.x * gridDim.x;
  for (int64_t ngp_i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; ngp_i < ngp_n; ngp_i += ngp_stride)
    ${k.name}_body(${[`(${idx})ngp_i`, ...args].join(", ")});
}

extern "C" int32_t ${k.name}(${entryParams(params)}) {
  if (ngp_n <= 0) return 0;
  // A grid-stride loop covers any n with a bounded grid.
  const int64_t ngp_blocks = (ngp_n + ${CUDA_BLOCK_SIZE} - 1) / ${CUDA_BLOCK_SIZE};
  ${k.name}_kernel<<<(unsigned)(ngp_blocks < ${MAX_BLOCKS} ? ngp_blocks : ${MAX_BLOCKS}), ${CUDA_BLOCK_SIZE}>>>(${["ngp_n", ...args].join(", ")});
  return (int32_t)cudaGetLastError();
}`;
  },
  tail: HOST_API,
};

export function emitCuda(kernels: SpecializedKernel[]): EmittedModule {
  return emitC(kernels, cuda);
}

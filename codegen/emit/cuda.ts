// CUDA delta of the C emitter: the same kernel bodies as __device__ functions, a __global__
// wrapper with a grid-stride loop, and `extern "C"` host entry points for launching, device memory
// and error names, so the runtime needs nothing but this library and libcudart.
import type { EmittedModule } from "../../dsl/abi.ts";
import type { SpecializedKernel } from "../ir.ts";
import { emitC, type BodyRenderer, type CParam, type CTarget, type EmitOptions } from "./c_base.ts";
import { CUDA_TILES } from "./tile_prelude.ts";

export const CUDA_BLOCK_SIZE = 128;
const MAX_BLOCKS = 65535 * 32;

/** Host entry points for memory and errors; every CUDA module carries them (see dsl/abi.ts). */
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
  checkedState: `__device__ uint64_t ngp_fault_rec[2];
__device__ __align__(16) char ngp_dummy[16];
#define NGP_COLD static __device__ __noinline__
NGP_FN uint64_t ngp_load_u64(uint64_t* p) { return *(volatile uint64_t*)p; }
NGP_FN void ngp_min_u64(uint64_t* p, uint64_t v) { atomicMin((unsigned long long*)p, (unsigned long long)v); }`,
  // The record lives on the device: reset it, wait for the launch, read it back.
  checkedLaunch: {
    before: `{ const uint64_t ngp_none[2] = {~(uint64_t)0, ~(uint64_t)0}; const cudaError_t ngp_e = cudaMemcpyToSymbol(ngp_fault_rec, ngp_none, sizeof ngp_none); if (ngp_e != cudaSuccess) return (int32_t)ngp_e; }`,
    after: `{ cudaError_t ngp_e = cudaDeviceSynchronize(); if (ngp_e == cudaSuccess) ngp_e = cudaMemcpyFromSymbol(ngp_fault_host, ngp_fault_rec, sizeof ngp_fault_host); if (ngp_e != cudaSuccess) return (int32_t)ngp_e; }`,
  },
  tableQualifier: "static __device__ const",
  f16Type: "__half",
  loadF16: (x) => `__half2float(${x})`,
  storeF16: (x) => `__float2half_rn(${x})`,
  tiles: CUDA_TILES,
  kernel(k, params, body) {
    if (k.block) return blocks(k, k.block.rows, params, body);
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

/**
 * A block kernel: one thread block of CUDA_BLOCK_SIZE threads per batch tile (grid-stride over the tiles),
 * its tiles in shared memory, every tile operation shared by the block's threads.
 */
function blocks(k: SpecializedKernel, rows: number, params: CParam[], body: BodyRenderer): ReturnType<CTarget["kernel"]> {
  const decls = ["int64_t ngp_n", ...params.flatMap((p) => p.body)].join(", ");
  const args = params.flatMap((p) => p.args);
  const code = `${body(`${k.name}_body`, k.body)}

__global__ void ${k.name}_kernel(${decls}) {
  const int64_t ngp_blocks = (ngp_n + ${rows - 1}) / ${rows};
  for (int64_t ngp_b = blockIdx.x; ngp_b < ngp_blocks; ngp_b += gridDim.x)
    ${k.name}_body(${["(uint32_t)ngp_b", "ngp_n", ...args].join(", ")});
}`;
  const launch = `  if (ngp_n <= 0) return 0;
  const int64_t ngp_blocks = (ngp_n + ${rows - 1}) / ${rows};
  ${k.name}_kernel<<<(unsigned)(ngp_blocks < ${MAX_BLOCKS} ? ngp_blocks : ${MAX_BLOCKS}), ${CUDA_BLOCK_SIZE}>>>(${["ngp_n", ...args].join(", ")});`;
  return { code, launch, status: "(int32_t)cudaGetLastError()" };
}

export function emitCuda(kernels: SpecializedKernel[], opts: EmitOptions = {}): EmittedModule {
  return emitC(kernels, cuda, opts);
}

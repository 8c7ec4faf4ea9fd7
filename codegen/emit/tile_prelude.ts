// The tile preludes (one per target, included only in modules with a block kernel): what a
// block kernel's code needs besides its operations' helpers (dsl/tile_helpers.ts, defined through
// the intrinsic table like every intrinsic's): the macros of a block's tile storage and threads,
// the CPU's vector macros that the CPU helpers use, the launchers' partial sums, and the bounds
// checks of the tile operations.
//
// A block kernel's launch on the CPU and in JS gives each of at most SLOTS slots of consecutive
// blocks its own zeroed partial sums of every buffer the kernel accumulates into, runs the slots in
// parallel (the blocks of a slot in order), and adds the slots into the buffer in slot order: no
// atomics, and the same result for any number of threads. CUDA adds each block's tile atomically.

/** Slots of partial sums per accumulated buffer (CPU and JS). */
export const SLOTS = 16;

/** The CPU: one thread per block, vector macros for the helpers (AVX-512 or AVX2), the slots' sums. */
export const CPU_TILES = `#include <cstdlib>
// One thread runs a block: its tiles are aligned local arrays and it needs no barrier.
#define NGP_TILE alignas(64)
#define NGP_TID 0
#define NGP_NTHREADS 1
#define NGP_SYNC() ((void)0)
#if defined(__AVX512F__)
#include <immintrin.h>
// 16 lanes; micro-tiles of up to 24 accumulators (6 rows x 4 vectors, 8 x 3, 12 x 2, 24 x 1) keep
// the accumulators, a row of B and a broadcast in the 32 zmm registers.
#define NGP_VL 16
#define NGP_ACC 24
#define NGP_NV 4
typedef __m512 ngp_v;
#define ngp_vload _mm512_loadu_ps
#define ngp_vstore _mm512_storeu_ps
#define ngp_vset1 _mm512_set1_ps
#define ngp_vfma _mm512_fmadd_ps
#define ngp_vzero _mm512_setzero_ps
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
// 8 lanes; up to 12 accumulators (4 rows x 3 vectors, 6 x 2, 12 x 1), a row of B and a broadcast
// in the 16 ymm registers.
#define NGP_VL 8
#define NGP_ACC 12
#define NGP_NV 3
typedef __m256 ngp_v;
#define ngp_vload _mm256_loadu_ps
#define ngp_vstore _mm256_storeu_ps
#define ngp_vset1 _mm256_set1_ps
#define ngp_vfma _mm256_fmadd_ps
#define ngp_vzero _mm256_setzero_ps
#endif

// A launch's zeroed partial sums (n floats), in storage that grows as needed and is kept.
static float* ngp_partials(float** store, size_t* cap, size_t n) {
  if (n > *cap) {
    free(*store);
    *store = (float*)malloc(n * sizeof(float));
    *cap = *store ? n : 0;
    if (!*store) return nullptr;
  }
  memset(*store, 0, n * sizeof(float));
  return *store;
}

// After a launch: buf[i] += the slots' partial sums, added in slot order (the result does not
// depend on the number of threads).
static void ngp_reduce_slots(float* __restrict__ buf, const float* __restrict__ parts, int64_t slots, int64_t len) {
  #pragma omp parallel for schedule(static) if (len >= 65536)
  for (int64_t i = 0; i < len; ++i) {
    float acc = parts[i];
    for (int64_t s = 1; s < slots; ++s) acc += parts[s * len + i];
    buf[i] += acc;
  }
}`;

/** CUDA: the block's threads share every operation, tiles in shared memory. */
export const CUDA_TILES = `// The block's threads share every operation; tiles live in shared memory.
#define NGP_TILE __shared__
#define NGP_TID ((int32_t)threadIdx.x)
#define NGP_NTHREADS ((int32_t)blockDim.x)
#define NGP_SYNC() __syncthreads()`;

/** JS: the slots' sums, as the CPU's. */
export const JS_TILES = `const __reduce_slots = (buf, parts, slots) => {
  const len = buf.length;
  for (let i = 0; i < len; i++) {
    let acc = parts[i];
    for (let s = 1; s < slots; s++) acc = Math.fround(acc + parts[s * len + i]);
    buf[i] = Math.fround(buf[i] + acc);
  }
};`;


/**
 * Bounds-checked mode (CPU and CUDA): whether a tile operation's buffer range is inside the
 * buffer, checking its indices in the operation's order and recording the first bad one as an
 * element access would (ngp_fault); the operation runs only when all are inside.
 */
export const C_TILE_CHECKS = `template <int R, int C>
NGP_FN bool ngp_tile_rows_ok(int64_t len, int64_t stride, int64_t col, int64_t block, int64_t n, uint32_t param, int64_t thread) {
  const int64_t row0 = block * R, valid = n - row0 < R ? n - row0 : R;
  for (int64_t r = 0; r < valid; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const int64_t i = (row0 + r) * stride + col + c;
      if ((uint64_t)i >= (uint64_t)len) return ngp_fault(thread, param, i), false;
    }
  return true;
}
template <int R, int C>
NGP_FN bool ngp_tile_span_ok(int64_t len, int64_t offset, uint32_t param, int64_t thread) {
  for (int64_t e = 0; e < (int64_t)R * C; ++e)
    if ((uint64_t)(offset + e) >= (uint64_t)len) return ngp_fault(thread, param, offset + e), false;
  return true;
}`;

/** Bounds-checked mode (JS): the same checks through __chk, which throws at the first bad index. */
export const JS_TILE_CHECKS = `const __tile_rows_ok = (R, C, buf, stride, col, block, n, name) => {
  const row0 = block * R;
  for (let r = 0; r < R && row0 + r < n; r++) for (let c = 0; c < C; c++) __chk((row0 + r) * stride + col + c, buf, name);
};
const __tile_span_ok = (R, C, buf, offset, name) => {
  for (let e = 0; e < R * C; e++) __chk(offset + e, buf, name);
};`;

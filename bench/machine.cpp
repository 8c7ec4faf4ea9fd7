// The machine's own limits, measured in the benchmark's process (bench/machine.ts loads this):
//   machine_fma_peak  independent vector FMA chains on every OpenMP thread: f32 FLOP/s at peak;
//   machine_triad     the stream triad a[i] = b[i] + s * c[i] over arrays far larger than L3.
// Built with the project's CPU flags (runtime/toolchain.ts CPU_FLAGS: -O3 -march=native
// -ffp-contract=off ...): explicit intrinsics, so the vector width is what the compiler's target
// macros allow (__AVX512F__: 512-bit, __AVX2__ && __FMA__: 256-bit, else scalar fmaf).

#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__AVX512F__)
#include <immintrin.h>
#define M_BITS 512
#define M_LANES 16
// FMA latency 4 (Zen 4/5, Sapphire Rapids) x 2 pipes = 8 chains in flight; 16 leave margin and
// still fit the 32 zmm registers with the two operands.
#define M_CHAINS 16
typedef __m512 mv;
static inline mv m_set1(float x) { return _mm512_set1_ps(x); }
static inline mv m_fma(mv a, mv b, mv c) { return _mm512_fmadd_ps(a, b, c); }
static inline mv m_add(mv a, mv b) { return _mm512_add_ps(a, b); }
static inline mv m_load(const float* p) { return _mm512_load_ps(p); }
static inline void m_store(float* p, mv v) { _mm512_store_ps(p, v); }
static inline void m_stream(float* p, mv v) { _mm512_stream_ps(p, v); }
static inline float m_sum(mv v) { return _mm512_reduce_add_ps(v); }
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define M_BITS 256
#define M_LANES 8
// FMA latency 5 (Zen 1/2) or 4 (Intel) x 2 pipes = 10 chains; 12 accumulators + 2 operands fit 16 ymm.
#define M_CHAINS 12
typedef __m256 mv;
static inline mv m_set1(float x) { return _mm256_set1_ps(x); }
static inline mv m_fma(mv a, mv b, mv c) { return _mm256_fmadd_ps(a, b, c); }
static inline mv m_add(mv a, mv b) { return _mm256_add_ps(a, b); }
static inline mv m_load(const float* p) { return _mm256_load_ps(p); }
static inline void m_store(float* p, mv v) { _mm256_store_ps(p, v); }
static inline void m_stream(float* p, mv v) { _mm256_stream_ps(p, v); }
static inline float m_sum(mv v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#else
#define M_BITS 32
#define M_LANES 1
#define M_CHAINS 8
typedef float mv;
static inline mv m_set1(float x) { return x; }
static inline mv m_fma(mv a, mv b, mv c) { return fmaf(a, b, c); }
static inline mv m_add(mv a, mv b) { return a + b; }
static inline mv m_load(const float* p) { return *p; }
static inline void m_store(float* p, mv v) { *p = v; }
static inline void m_stream(float* p, mv v) { *p = v; }
static inline float m_sum(mv v) { return v; }
#endif

extern "C" {

/** Vector bits the intrinsics use: 512 (AVX-512), 256 (AVX2 + FMA) or 32 (scalar). */
int32_t machine_vector_bits(void) { return M_BITS; }
int32_t machine_fma_chains(void) { return M_CHAINS; }
int32_t machine_threads(void) { return omp_get_max_threads(); }

/**
 * Every thread runs `iters` rounds of M_CHAINS independent FMAs (acc = acc * a + b, which stays at
 * 1.0: no overflow, no denormals). Writes the wall seconds of the parallel region to *seconds and
 * returns the f32 FLOP/s (2 * lanes per FMA).
 */
double machine_fma_peak(int64_t iters, double* seconds) {
  if (iters < 1) return -1;
  double sink = 0;
  int threads = 1;
  const double t0 = omp_get_wtime();
#pragma omp parallel reduction(+ : sink)
  {
#pragma omp single
    threads = omp_get_num_threads();
    const mv a = m_set1(0.999f), b = m_set1(0.001f);
    mv acc[M_CHAINS];
#pragma GCC unroll 16
    for (int j = 0; j < M_CHAINS; ++j) acc[j] = m_set1(1.0f + 1e-7f * (float)(j + omp_get_thread_num()));
    for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
      for (int j = 0; j < M_CHAINS; ++j) acc[j] = m_fma(acc[j], a, b);
    }
    mv s = acc[0];
#pragma GCC unroll 16
    for (int j = 1; j < M_CHAINS; ++j) s = m_add(s, acc[j]);
    sink += m_sum(s);
  }
  const double dt = omp_get_wtime() - t0;
  *seconds = dt;
  // The sum is about threads * chains * lanes; anything else means the loop went wrong.
  if (!(std::fabs(sink - (double)threads * M_CHAINS * M_LANES) < 1e-2 * threads * M_CHAINS * M_LANES)) return -2;
  return 2.0 * M_LANES * (double)M_CHAINS * (double)iters * threads / dt;
}

/**
 * Stream triad over n floats per array (n a multiple of 64): allocates a, b, c (64-byte aligned,
 * first touched by the threads that use them), then times `reps` runs of a[i] = b[i] + s * c[i]
 * (plain stores when streaming == 0, non-temporal stores otherwise) into times[0 .. reps).
 * Returns 0, or an error code.
 */
int32_t machine_triad(int64_t n, int32_t reps, int32_t streaming, double* times) {
  if (n < 64 || n % 64 != 0 || reps < 1) return 1;
  float* a = (float*)std::aligned_alloc(64, (size_t)n * 4);
  float* b = (float*)std::aligned_alloc(64, (size_t)n * 4);
  float* c = (float*)std::aligned_alloc(64, (size_t)n * 4);
  if (!a || !b || !c) {
    std::free(a), std::free(b), std::free(c);
    return 2;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i += 64)
    for (int64_t k = i; k < i + 64; ++k) a[k] = 0.0f, b[k] = 1.0f, c[k] = 2.0f;
  const mv s = m_set1(3.0f);
  for (int r = 0; r < reps; ++r) {
    const double t0 = omp_get_wtime();
    if (streaming) {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; i += 64)
#pragma GCC unroll 16
        for (int64_t k = i; k < i + 64; k += M_LANES) m_stream(a + k, m_fma(s, m_load(c + k), m_load(b + k)));
    } else {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; i += 64)
#pragma GCC unroll 16
        for (int64_t k = i; k < i + 64; k += M_LANES) m_store(a + k, m_fma(s, m_load(c + k), m_load(b + k)));
    }
    times[r] = omp_get_wtime() - t0;
  }
  const int32_t ok = a[0] == 7.0f && a[n - 1] == 7.0f ? 0 : 3;
  std::free(a), std::free(b), std::free(c);
  return ok;
}

}  // extern "C"

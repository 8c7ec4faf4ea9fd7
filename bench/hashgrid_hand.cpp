// Hand-written multiresolution hash-grid encoding (Instant-NGP / tiny-cuda-nn `grid.h`), forward
// and backward to the parameters, linear interpolation. This is the "competent engineer, one day"
// side of the benchmark: templated on D and F, built with the project's CPU flags (runtime
// CPU_FLAGS: -O3 -march=native -ffp-contract=off ...), no fast-math.
//
// Two implementations of the same functions:
//   hand_grid_{forward,backward}_scalar  plain scalar C++, the definition of the semantics;
//   hand_grid_{forward,backward}         vectorized across the points of one level: AVX-512
//                                        (16 points per vector) or AVX2 + FMA (8 points per
//                                        vector), chosen by #if from the target; the scalar code
//                                        where neither is available (and for D > 4).
// Both perform the same float operations in the same order, so their results are bit-identical
// (forward outputs and backward gradients alike); only the work is laid out differently.
//
// Semantics, per point i, level l, axis d (linear interpolation):
//   xd    = clamp(x[i*D+d], 0, 1)              min(a,b) = b < a ? b : a, max(a,b) = a < b ? b : a
//   r     = floorf(fmaf(xd, s, 0.5f))          s = scale[l*D+d]
//   g     = fmaf(xd, s, 0.5f - r) < 0 ? r - 1 : r   (the cell of the exact x*s + 0.5)
//   cell  = u32(g)                             saturating, NaN -> 0 (the DSL's u32(f32))
//   w1    = fmaf(xd, s, 0.5f - g)
//   w0    = fmaf(-xd, s, g + 0.5f)
//   corner c = 0 .. 2^D-1: coord_d = cell_d + bit_d(c), w = 1; w *= bit_d ? w1_d : w0_d (d ascending)
//   slot  = (hashed ? XOR_d coord_d * PRIME_d : sum_d coord_d * stride_d) % size[l]   (u32 wrap)
//   forward:  acc_f = fmaf(w, params[(offset[l] + slot) * F + f], acc_f) over corners in order
//   backward: grad[(offset[l] + slot) * F + f] += w * dy[(i*L + l)*F + f] (points ascending,
//             corners ascending within a point)
//
// Parallelism: forward over chunks of 128 points (levels looped inside a chunk); backward over
// levels (`schedule(dynamic,1)`, largest table first), each thread walking all points for its
// level, so every gradient entry has exactly one writer and no atomics are needed. Within a level
// the points are visited in ascending order, which keeps the summation order of the scalar code.
//
// The vector code: one work item is W points at one level (W = 16 with AVX-512, 8 with AVX2). Item
// t computes cells, weights and slots (W lanes) and prefetches the table lines of its even corners
// (levels >= 512 KiB); item t-K (K = 64/W: the same 64 points ahead on both) then does the table
// loads (forward: plain 4/8/16/32-byte loads inserted into vectors, not hardware gathers,
// accumulated with fma in corner order) or the read-modify-writes (backward: w*dy products
// computed as vectors, then added entry by entry in the scalar order). The pipeline is written
// once over W-lane vectors; each instruction set supplies a handful of primitives (load, fma,
// floor, f32 -> u32, the lane gathers and permutes), each the lane-wise image of a scalar step.

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

// The vector path, chosen at compile time from the target (-march=native, or -mno-avx512f to
// build the AVX2 path on an AVX-512 machine): 512 (AVX-512 F/DQ/VL/BW), 256 (AVX2 + FMA), or 0
// (the fast entry points run the scalar code).
#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && defined(__AVX512BW__)
#define HAND_VEC 512
#elif defined(__AVX2__) && defined(__FMA__)
#define HAND_VEC 256
#else
#define HAND_VEC 0
#endif
#if HAND_VEC
#include <immintrin.h>
#endif

#define HAND_INLINE inline __attribute__((always_inline))

namespace {

constexpr uint32_t PRIMES[8] = {1u, 2654435761u, 805459861u, 3674653429u, 2097192037u, 1434869437u, 2165219737u, 3367900313u};
constexpr int MAX_D = 8;       // scalar path
constexpr int MAX_FAST_D = 4;  // vector path (2^D corners per item kept in a small ring buffer)

struct Config {
    int D, L, F;
    const float* scale;      // [L*D]
    const uint32_t* stride;  // [L*D]
    const uint32_t* size;    // [L]
    const uint32_t* offset;  // [L], in entries
    const uint32_t* hashed;  // [L], 0/1
};

// ---------------------------------------------------------------------------------------------
// Scalar definition
// ---------------------------------------------------------------------------------------------

HAND_INLINE float fmin_(float a, float b) { return b < a ? b : a; }
HAND_INLINE float fmax_(float a, float b) { return a < b ? b : a; }
HAND_INLINE float clamp01(float v) { return fmin_(fmax_(v, 0.0f), 1.0f); }
// f32 -> u32 truncating, saturating, NaN -> 0 (C's cast is undefined outside [0, 2^32)).
HAND_INLINE uint32_t f2u(float v) {
    return v != v || v <= 0.0f ? 0u : v >= 4294967296.0f ? 4294967295u : (uint32_t)v;
}

template <int D>
HAND_INLINE void locate_scalar(const float* xp, const float* sc, uint32_t* cell, float* w0, float* w1) {
    for (int d = 0; d < D; ++d) {
        const float xd = clamp01(xp[d]);
        const float s = sc[d];
        const float r = floorf(fmaf(xd, s, 0.5f));
        const float g = fmaf(xd, s, 0.5f - r) < 0.0f ? r - 1.0f : r;
        cell[d] = f2u(g);
        w1[d] = fmaf(xd, s, 0.5f - g);
        w0[d] = fmaf(-xd, s, g + 0.5f);
    }
}

template <int D>
HAND_INLINE uint32_t slot_scalar(const Config& cf, int l, const uint32_t* cell, int c) {
    uint32_t h = 0;
    if (cf.hashed[l]) {
        for (int d = 0; d < D; ++d) h ^= (cell[d] + (uint32_t)((c >> d) & 1)) * PRIMES[d];
    } else {
        for (int d = 0; d < D; ++d) h += (cell[d] + (uint32_t)((c >> d) & 1)) * cf.stride[l * D + d];
    }
    return h % cf.size[l];
}

template <int D>
HAND_INLINE float weight_scalar(const float* w0, const float* w1, int c) {
    float w = 1.0f;
    for (int d = 0; d < D; ++d) w *= ((c >> d) & 1) ? w1[d] : w0[d];
    return w;
}

template <int D, int F>
void forward_scalar(const Config& cf, int64_t n, const float* __restrict x, const float* __restrict params,
                    float* __restrict out) {
    const int L = cf.L;
#pragma omp parallel for schedule(static) if (n * L >= 4096)
    for (int64_t i = 0; i < n; ++i) {
        for (int l = 0; l < L; ++l) {
            uint32_t cell[D];
            float w0[D], w1[D];
            locate_scalar<D>(x + i * D, cf.scale + l * D, cell, w0, w1);
            float acc[F];
            for (int f = 0; f < F; ++f) acc[f] = 0.0f;
            for (int c = 0; c < (1 << D); ++c) {
                const float w = weight_scalar<D>(w0, w1, c);
                const float* p = params + ((size_t)cf.offset[l] + slot_scalar<D>(cf, l, cell, c)) * F;
                for (int f = 0; f < F; ++f) acc[f] = fmaf(w, p[f], acc[f]);
            }
            float* o = out + ((size_t)i * L + l) * F;
            for (int f = 0; f < F; ++f) o[f] = acc[f];
        }
    }
}

// Levels in the order threads should take them: largest table first (a greedy longest-first
// schedule for `dynamic,1`; the big hashed levels miss the caches and cost the most).
std::vector<int> level_order(const Config& cf) {
    std::vector<int> order(cf.L);
    for (int l = 0; l < cf.L; ++l) order[l] = l;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return cf.size[a] > cf.size[b]; });
    return order;
}

template <int D, int F>
void backward_scalar(const Config& cf, int64_t n, const float* __restrict x, const float* __restrict dy,
                     float* __restrict grad) {
    const int L = cf.L;
    const std::vector<int> order = level_order(cf);
#pragma omp parallel for schedule(dynamic, 1) if (n * L >= 4096)
    for (int li = 0; li < L; ++li) {
        const int l = order[li];
        for (int64_t i = 0; i < n; ++i) {
            uint32_t cell[D];
            float w0[D], w1[D];
            locate_scalar<D>(x + i * D, cf.scale + l * D, cell, w0, w1);
            const float* g = dy + ((size_t)i * L + l) * F;
            for (int c = 0; c < (1 << D); ++c) {
                const float w = weight_scalar<D>(w0, w1, c);
                float* p = grad + ((size_t)cf.offset[l] + slot_scalar<D>(cf, l, cell, c)) * F;
                for (int f = 0; f < F; ++f) p[f] += w * g[f];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Vector implementation: one pipeline, written once over W-lane vectors, on two sets of
// primitives (AVX-512: W = 16; AVX2 + FMA: W = 8). Every primitive performs, lane by lane, the
// float operation the scalar definition performs, so both paths are bit-identical to it.
// ---------------------------------------------------------------------------------------------

#if HAND_VEC

#if HAND_VEC == 512

constexpr int W = 16;    // lanes (points per item)
constexpr int RING = 8;  // ring buffer of items; > max pipeline depth
using VF = __m512;
using VI = __m512i;

HAND_INLINE VF vset1(float a) { return _mm512_set1_ps(a); }
HAND_INLINE VI iset1(uint32_t a) { return _mm512_set1_epi32((int)a); }
HAND_INLINE VF vzero() { return _mm512_setzero_ps(); }
HAND_INLINE VF vload(const float* p) { return _mm512_load_ps(p); }
HAND_INLINE void vstore(float* p, VF v) { _mm512_store_ps(p, v); }
HAND_INLINE void istore(uint32_t* p, VI v) { _mm512_store_si512(p, v); }
HAND_INLINE VF vadd(VF a, VF b) { return _mm512_add_ps(a, b); }
HAND_INLINE VF vsub(VF a, VF b) { return _mm512_sub_ps(a, b); }
HAND_INLINE VF vmul(VF a, VF b) { return _mm512_mul_ps(a, b); }
HAND_INLINE VF vfmadd(VF a, VF b, VF c) { return _mm512_fmadd_ps(a, b, c); }
HAND_INLINE VF vfnmadd(VF a, VF b, VF c) { return _mm512_fnmadd_ps(a, b, c); }
HAND_INLINE VI iadd(VI a, VI b) { return _mm512_add_epi32(a, b); }
HAND_INLINE VI isub(VI a, VI b) { return _mm512_sub_epi32(a, b); }
HAND_INLINE VI imul(VI a, VI b) { return _mm512_mullo_epi32(a, b); }
HAND_INLINE VI ixor(VI a, VI b) { return _mm512_xor_si512(a, b); }
HAND_INLINE VI iand(VI a, VI b) { return _mm512_and_si512(a, b); }
HAND_INLINE VI iminu(VI a, VI b) { return _mm512_min_epu32(a, b); }

// Clamp to [0, 1] with the scalar code's NaN behaviour: vmaxps(a, b) = a > b ? a : b, so
// max(0, v) = 0 > v ? 0 : v = (v < 0 ? 0 : v), and min(1, v) = (1 < v ? 1 : v).
HAND_INLINE VF clamp01_v(VF v) { return _mm512_min_ps(_mm512_set1_ps(1.0f), _mm512_max_ps(_mm512_setzero_ps(), v)); }

// g = the cell of the exact x*s + 0.5: floor of the f32 sum, one step back where that sum rounded
// up onto the next integer (negative fraction).
HAND_INLINE VF cell_floor(VF x, VF s) {
    const VF half = _mm512_set1_ps(0.5f);
    const VF r = _mm512_roundscale_ps(_mm512_fmadd_ps(x, s, half), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __mmask16 up = _mm512_cmp_ps_mask(_mm512_fmadd_ps(x, s, _mm512_sub_ps(half, r)), _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_sub_ps(r, up, r, _mm512_set1_ps(1.0f));
}

// f2u: max(g, 0) maps NaN and negatives to 0 (vmaxps returns its second operand on NaN);
// vcvttps2udq saturates to 0xFFFFFFFF above 2^32.
HAND_INLINE VI f2u_v(VF g) { return _mm512_cvttps_epu32(_mm512_max_ps(g, _mm512_setzero_ps())); }

// Loads W points' coordinates (AoS, D floats each) as D vectors of W lanes, clamped to [0, 1];
// lanes >= valid are 0.
template <int D>
HAND_INLINE void load_xw(const float* xp, int valid, VF* xv) {
    __m512 r[D];
    const int nf = valid * D;
    for (int k = 0; k < D; ++k) {
        const int m = std::clamp(nf - 16 * k, 0, 16);
        r[k] = _mm512_maskz_loadu_ps((__mmask16)((1u << m) - 1u), xp + 16 * k);
    }
    if constexpr (D == 1) {
        xv[0] = clamp01_v(r[0]);
    } else {
        for (int d = 0; d < D; ++d) {
            alignas(64) int lo[16], hi[16];
            __mmask16 upper = 0;
            for (int j = 0; j < 16; ++j) {
                const int e = j * D + d;
                lo[j] = e & 31;
                hi[j] = (e - 32) & 31;
                if (e >= 32) upper |= (__mmask16)(1u << j);
            }
            __m512 v = _mm512_permutex2var_ps(r[0], _mm512_load_si512(lo), r[D >= 2 ? 1 : 0]);
            if constexpr (D > 2) {
                const __m512 u = _mm512_permutex2var_ps(r[2], _mm512_load_si512(hi), r[D >= 4 ? 3 : 2]);
                v = _mm512_mask_blend_ps(upper, v, u);
            }
            xv[d] = clamp01_v(v);
        }
    }
}

// W lanes of F floats each, lane k of vector `part` (W/F lanes per vector) read from
// base + off[part*(W/F) + k] * F: the result holds lane-major [lane][feature] values.
template <int F>
HAND_INLINE VF load_lanes(const float* base, const uint32_t* off, int part) {
    constexpr int NL = 16 / F;
    const uint32_t* o = off + part * NL;
    auto p = [&](int k) { return base + (size_t)o[k] * F; };
    if constexpr (F == 1) {
        __m128 q[4];
        for (int k = 0; k < 4; ++k) q[k] = _mm_setr_ps(*p(4 * k), *p(4 * k + 1), *p(4 * k + 2), *p(4 * k + 3));
        const __m256 a = _mm256_insertf128_ps(_mm256_castps128_ps256(q[0]), q[1], 1);
        const __m256 b = _mm256_insertf128_ps(_mm256_castps128_ps256(q[2]), q[3], 1);
        return _mm512_insertf32x8(_mm512_castps256_ps512(a), b, 1);
    } else if constexpr (F == 2) {
        auto pd = [&](int k) { return (const double*)p(k); };
        const __m128d a0 = _mm_loadh_pd(_mm_load_sd(pd(0)), pd(1));
        const __m128d a1 = _mm_loadh_pd(_mm_load_sd(pd(2)), pd(3));
        const __m128d a2 = _mm_loadh_pd(_mm_load_sd(pd(4)), pd(5));
        const __m128d a3 = _mm_loadh_pd(_mm_load_sd(pd(6)), pd(7));
        const __m256d b0 = _mm256_insertf128_pd(_mm256_castpd128_pd256(a0), a1, 1);
        const __m256d b1 = _mm256_insertf128_pd(_mm256_castpd128_pd256(a2), a3, 1);
        return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(b0), b1, 1));
    } else if constexpr (F == 4) {
        __m512 v = _mm512_castps128_ps512(_mm_loadu_ps(p(0)));
        v = _mm512_insertf32x4(v, _mm_loadu_ps(p(1)), 1);
        v = _mm512_insertf32x4(v, _mm_loadu_ps(p(2)), 2);
        return _mm512_insertf32x4(v, _mm_loadu_ps(p(3)), 3);
    } else {
        static_assert(F == 8);
        return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(p(0))), _mm256_loadu_ps(p(1)), 1);
    }
}

// Weights of lanes part*(W/F) .. part*(W/F) + W/F - 1, each repeated F times.
template <int F>
HAND_INLINE VF spread(VF w, int part) {
    if constexpr (F == 1) {
        return w;
    } else {
        alignas(64) int perm[16];
        for (int k = 0; k < 16; ++k) perm[k] = part * (16 / F) + k / F;
        return _mm512_permutexvar_ps(_mm512_load_si512(perm), w);
    }
}

#elif HAND_VEC == 256

constexpr int W = 8;      // lanes (points per item)
constexpr int RING = 16;  // ring buffer of items (half the size of AVX-512's); > max pipeline depth
using VF = __m256;
using VI = __m256i;

HAND_INLINE VF vset1(float a) { return _mm256_set1_ps(a); }
HAND_INLINE VI iset1(uint32_t a) { return _mm256_set1_epi32((int)a); }
HAND_INLINE VF vzero() { return _mm256_setzero_ps(); }
HAND_INLINE VF vload(const float* p) { return _mm256_load_ps(p); }
HAND_INLINE void vstore(float* p, VF v) { _mm256_store_ps(p, v); }
HAND_INLINE void istore(uint32_t* p, VI v) { _mm256_store_si256((__m256i*)p, v); }
HAND_INLINE VF vadd(VF a, VF b) { return _mm256_add_ps(a, b); }
HAND_INLINE VF vsub(VF a, VF b) { return _mm256_sub_ps(a, b); }
HAND_INLINE VF vmul(VF a, VF b) { return _mm256_mul_ps(a, b); }
HAND_INLINE VF vfmadd(VF a, VF b, VF c) { return _mm256_fmadd_ps(a, b, c); }
HAND_INLINE VF vfnmadd(VF a, VF b, VF c) { return _mm256_fnmadd_ps(a, b, c); }
HAND_INLINE VI iadd(VI a, VI b) { return _mm256_add_epi32(a, b); }
HAND_INLINE VI isub(VI a, VI b) { return _mm256_sub_epi32(a, b); }
HAND_INLINE VI imul(VI a, VI b) { return _mm256_mullo_epi32(a, b); }
HAND_INLINE VI ixor(VI a, VI b) { return _mm256_xor_si256(a, b); }
HAND_INLINE VI iand(VI a, VI b) { return _mm256_and_si256(a, b); }
HAND_INLINE VI iminu(VI a, VI b) { return _mm256_min_epu32(a, b); }

// As the AVX-512 version: vmaxps/vminps(a, b) = a > b / a < b ? a : b, NaN passes through.
HAND_INLINE VF clamp01_v(VF v) { return _mm256_min_ps(_mm256_set1_ps(1.0f), _mm256_max_ps(_mm256_setzero_ps(), v)); }

HAND_INLINE VF cell_floor(VF x, VF s) {
    const VF half = _mm256_set1_ps(0.5f);
    const VF r = _mm256_round_ps(_mm256_fmadd_ps(x, s, half), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const VF up = _mm256_cmp_ps(_mm256_fmadd_ps(x, s, _mm256_sub_ps(half, r)), _mm256_setzero_ps(), _CMP_LT_OQ);
    return _mm256_blendv_ps(r, _mm256_sub_ps(r, _mm256_set1_ps(1.0f)), up);
}

// f2u without vcvttps2udq: t = max(g, 0) (NaN and negatives -> 0); below 2^31 a signed convert;
// in [2^31, 2^32) a signed convert of t - 2^31 (exact there) with the top bit set; from 2^32 on
// (inf included) 0xFFFFFFFF.
HAND_INLINE VI f2u_v(VF g) {
    const VF t = _mm256_max_ps(g, _mm256_setzero_ps());
    const VF two31 = _mm256_set1_ps(2147483648.0f);
    const VI lo = _mm256_cvttps_epi32(t);
    const VI hi = _mm256_xor_si256(_mm256_cvttps_epi32(_mm256_sub_ps(t, two31)), _mm256_set1_epi32((int)0x80000000u));
    const VF big = _mm256_cmp_ps(t, two31, _CMP_GE_OQ);
    const VF sat = _mm256_cmp_ps(t, _mm256_set1_ps(4294967296.0f), _CMP_GE_OQ);
    const VI r = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(lo), _mm256_castsi256_ps(hi), big));
    return _mm256_or_si256(r, _mm256_castps_si256(sat));
}

template <int D>
HAND_INLINE void load_xw(const float* xp, int valid, VF* xv) {
    __m256 r[D];
    const int nf = valid * D;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int k = 0; k < D; ++k) {
        const int m = std::clamp(nf - 8 * k, 0, 8);
        r[k] = m == 8 ? _mm256_loadu_ps(xp + 8 * k) : _mm256_maskload_ps(xp + 8 * k, _mm256_cmpgt_epi32(_mm256_set1_epi32(m), lane));
    }
    if constexpr (D == 1) {
        xv[0] = clamp01_v(r[0]);
    } else {
        // Coordinate d of point j is float e = j*D + d: element e % 8 of vector e / 8.
        for (int d = 0; d < D; ++d) {
            alignas(32) int idx[8], src[8];
            for (int j = 0; j < 8; ++j) {
                idx[j] = (j * D + d) & 7;
                src[j] = (j * D + d) >> 3;
            }
            const __m256i iv = _mm256_load_si256((const __m256i*)idx);
            const __m256i sv = _mm256_load_si256((const __m256i*)src);
            __m256 v = _mm256_permutevar8x32_ps(r[0], iv);
            for (int k = 1; k < D; ++k) {
                const __m256 from = _mm256_castsi256_ps(_mm256_cmpeq_epi32(sv, _mm256_set1_epi32(k)));
                v = _mm256_blendv_ps(v, _mm256_permutevar8x32_ps(r[k], iv), from);
            }
            xv[d] = clamp01_v(v);
        }
    }
}

template <int F>
HAND_INLINE VF load_lanes(const float* base, const uint32_t* off, int part) {
    constexpr int NL = 8 / F;
    const uint32_t* o = off + part * NL;
    auto p = [&](int k) { return base + (size_t)o[k] * F; };
    if constexpr (F == 1) {
        const __m128 a = _mm_setr_ps(*p(0), *p(1), *p(2), *p(3));
        const __m128 b = _mm_setr_ps(*p(4), *p(5), *p(6), *p(7));
        return _mm256_insertf128_ps(_mm256_castps128_ps256(a), b, 1);
    } else if constexpr (F == 2) {
        auto pd = [&](int k) { return (const double*)p(k); };
        const __m128d a0 = _mm_loadh_pd(_mm_load_sd(pd(0)), pd(1));
        const __m128d a1 = _mm_loadh_pd(_mm_load_sd(pd(2)), pd(3));
        return _mm256_castpd_ps(_mm256_insertf128_pd(_mm256_castpd128_pd256(a0), a1, 1));
    } else if constexpr (F == 4) {
        return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p(0))), _mm_loadu_ps(p(1)), 1);
    } else {
        static_assert(F == 8);
        return _mm256_loadu_ps(p(0));
    }
}

template <int F>
HAND_INLINE VF spread(VF w, int part) {
    if constexpr (F == 1) {
        return w;
    } else {
        alignas(32) int perm[8];
        for (int k = 0; k < 8; ++k) perm[k] = part * (8 / F) + k / F;
        return _mm256_permutevar8x32_ps(w, _mm256_load_si256((const __m256i*)perm));
    }
}

#endif  // HAND_VEC == 256

constexpr int CHUNK = 128;           // forward: points per chunk (levels looped inside)
constexpr int DY_AHEAD = 128 / W;    // backward: items whose dy rows are prefetched ahead (128 points)

// Tunables, settable through hand_grid_set_tuning (for ablations); defaults measured on the
// 2-core machines this project runs on.
struct Tuning {
    int pipeline = 64 / W;                // items (W points x 1 level) computed ahead of their loads
    size_t prefetch_min_bytes = 1u << 19; // prefetch the corners of levels whose table is at least this big
};
Tuning g_tuning;

// How a level reduces its slot modulo size[l], chosen per call from the configuration.
enum ModMode : int {
    MOD_MASK = 0,     // size is a power of two: h & (size - 1)
    MOD_CONDSUB = 1,  // dense level with every h < 2*size: h >= size ? h - size : h
    MOD_GENERIC = 2,  // anything else: h % size per lane
};

struct Level {
    VF scale[MAX_FAST_D];
    VI stride[MAX_FAST_D];
    VI corner_add[1 << MAX_FAST_D];  // dense: sum over set bits of stride_d (wrapping)
    VI size_v, mask_v;
    uint32_t size;
    int mode;
    bool hashed;
    bool prefetch;
    size_t off;  // first float of the level's table: offset[l] * F
};

template <int D>
std::vector<Level> make_levels(const Config& cf) {
    std::vector<Level> lv(cf.L);
    for (int l = 0; l < cf.L; ++l) {
        Level& v = lv[l];
        const uint32_t T = cf.size[l];
        v.size = T;
        v.hashed = cf.hashed[l] != 0;
        v.off = (size_t)cf.offset[l] * cf.F;
        v.size_v = iset1(T);
        v.mask_v = iset1(T - 1);
        v.prefetch = (size_t)T * cf.F * sizeof(float) >= g_tuning.prefetch_min_bytes;
        for (int d = 0; d < D; ++d) {
            v.scale[d] = vset1(cf.scale[l * D + d]);
            v.stride[d] = iset1(cf.stride[l * D + d]);
        }
        for (int c = 0; c < (1 << D); ++c) {
            uint32_t a = 0;
            for (int d = 0; d < D; ++d)
                if ((c >> d) & 1) a += cf.stride[l * D + d];
            v.corner_add[c] = iset1(a);
        }
        if ((T & (T - 1)) == 0) {
            v.mode = MOD_MASK;
        } else {
            v.mode = MOD_GENERIC;
            if (!v.hashed) {
                // Largest dense h: each cell is at most u32(floor(fma(1, s, 0.5))) (monotonic in x
                // for s >= 0, and x is clamped to [0, 1]); the corner adds 1.
                bool ok = true;
                uint64_t maxh = 0;
                for (int d = 0; d < D; ++d) {
                    const float s = cf.scale[l * D + d];
                    if (!(s >= 0.0f)) ok = false;  // negative or NaN: no bound
                    const uint64_t cmax = (uint64_t)f2u(floorf(fmaf(1.0f, s, 0.5f))) + 1;
                    maxh += cmax * cf.stride[l * D + d];
                }
                if (ok && maxh < 2 * (uint64_t)T && 2 * (uint64_t)T <= (1ull << 32)) v.mode = MOD_CONDSUB;
            }
        }
    }
    return lv;
}

// Cells, corner weights and slots of W points at one level.
template <int D>
HAND_INLINE void corners_w(const Level& v, const VF* xv, VF* wt, uint32_t (*idx)[W]) {
    constexpr int NC = 1 << D;
    const VF half = vset1(0.5f);
    VI cell[D];
    VF w0[D], w1[D];
    for (int d = 0; d < D; ++d) {
        const VF s = v.scale[d];
        const VF g = cell_floor(xv[d], s);
        cell[d] = f2u_v(g);
        w1[d] = vfmadd(xv[d], s, vsub(half, g));
        w0[d] = vfnmadd(xv[d], s, vadd(g, half));
    }
    // w_c = ((w_{bit0} * w_{bit1}) * w_{bit2}) ..., the scalar product order.
    wt[0] = w0[0];
    wt[1] = w1[0];
    for (int d = 1; d < D; ++d) {
        for (int c = 0; c < (1 << d); ++c) {
            wt[c | (1 << d)] = vmul(wt[c], w1[d]);
            wt[c] = vmul(wt[c], w0[d]);
        }
    }
    VI h[NC];
    if (v.hashed) {
        // coord * P = cell * P (+ P for the upper corner), wrapping; XOR is order-free.
        h[0] = cell[0];
        h[1] = iadd(cell[0], iset1(1));
        for (int d = 1; d < D; ++d) {
            const VI p = iset1(PRIMES[d]);
            const VI a = imul(cell[d], p);
            const VI b = iadd(a, p);
            for (int c = 0; c < (1 << d); ++c) {
                h[c | (1 << d)] = ixor(h[c], b);
                h[c] = ixor(h[c], a);
            }
        }
    } else {
        // sum_d (cell_d + bit_d) * stride_d = sum_d cell_d * stride_d + sum_{bits} stride_d (mod 2^32)
        VI base = imul(cell[0], v.stride[0]);
        for (int d = 1; d < D; ++d) base = iadd(base, imul(cell[d], v.stride[d]));
        for (int c = 0; c < NC; ++c) h[c] = iadd(base, v.corner_add[c]);
    }
    if (v.mode == MOD_MASK) {
        for (int c = 0; c < NC; ++c) istore(idx[c], iand(h[c], v.mask_v));
    } else if (v.mode == MOD_CONDSUB) {
        for (int c = 0; c < NC; ++c) istore(idx[c], iminu(h[c], isub(h[c], v.size_v)));
    } else {
        for (int c = 0; c < NC; ++c) {
            istore(idx[c], h[c]);
            for (int j = 0; j < W; ++j) idx[c][j] %= v.size;
        }
    }
}

// Prefetches the table lines of the even corners (the odd corner, x + 1, is usually in the same
// line: the next entry when dense, the same hash with the lowest bit flipped when hashed).
template <int D, int F>
HAND_INLINE void prefetch_corners(const float* tbl, const uint32_t (*idx)[W], int hint_write) {
    for (int c = 0; c < (1 << D); c += 2) {
        for (int j = 0; j < W; ++j) {
            const char* a = (const char*)(tbl + (size_t)idx[c][j] * F);
            if (hint_write)
                _mm_prefetch(a, _MM_HINT_ET0);
            else
                _mm_prefetch(a, _MM_HINT_T0);
        }
    }
}

// ---- forward ----

template <int D>
struct alignas(64) FwdItem {
    uint32_t idx[1 << D][W];
    VF w[1 << D];
    int l, g;
};

// Loads and interpolation of one item (kept out of line: inlined into the pipeline loop, GCC runs
// short of registers and spills the addresses).
template <int D, int F>
__attribute__((noinline)) void fwd_item(const float* __restrict tbl, const FwdItem<D>& __restrict it, float* __restrict res) {
    VF acc[F];
    for (int v = 0; v < F; ++v) acc[v] = vzero();
    for (int c = 0; c < (1 << D); ++c) {
        for (int v = 0; v < F; ++v) acc[v] = vfmadd(spread<F>(it.w[c], v), load_lanes<F>(tbl, it.idx[c], v), acc[v]);
    }
    for (int v = 0; v < F; ++v) vstore(res + W * v, acc[v]);
}

template <int D, int F>
void fwd_chunk(const Level* lv, int L, int64_t i0, int cn, const float* __restrict x, const float* __restrict params,
               float* __restrict out) {
    alignas(64) float xs[D][CHUNK];
    const int G = (cn + W - 1) / W;
    for (int g = 0; g < G; ++g) {
        VF xv[D];
        load_xw<D>(x + (i0 + W * g) * D, std::min(W, cn - W * g), xv);
        for (int d = 0; d < D; ++d) vstore(xs[d] + W * g, xv[d]);
    }
    FwdItem<D> ring[RING];
    alignas(64) float res[W * F];
    const int K = g_tuning.pipeline;
    const int items = L * G;
    for (int t = 0; t < items + K; ++t) {
        if (t < items) {
            FwdItem<D>& it = ring[t % RING];
            it.l = t / G;
            it.g = t % G;
            const Level& v = lv[it.l];
            VF xv[D];
            for (int d = 0; d < D; ++d) xv[d] = vload(xs[d] + W * it.g);
            corners_w<D>(v, xv, it.w, it.idx);
            if (v.prefetch) prefetch_corners<D, F>(params + v.off, it.idx, 0);
        }
        if (t >= K) {
            const FwdItem<D>& it = ring[(t - K) % RING];
            fwd_item<D, F>(params + lv[it.l].off, it, res);
            const int valid = std::min(W, cn - W * it.g);
            float* o = out + ((size_t)(i0 + W * it.g) * L + it.l) * F;
            for (int j = 0; j < valid; ++j) std::memcpy(o + (size_t)j * L * F, res + j * F, F * sizeof(float));
        }
    }
}

template <int D, int F>
void forward_fast(const Config& cf, int64_t n, const float* __restrict x, const float* __restrict params,
                  float* __restrict out) {
    const std::vector<Level> lv = make_levels<D>(cf);
    const int64_t chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(dynamic, 4) if (chunks >= 4)
    for (int64_t k = 0; k < chunks; ++k) {
        const int64_t i0 = k * CHUNK;
        fwd_chunk<D, F>(lv.data(), cf.L, i0, (int)std::min<int64_t>(CHUNK, n - i0), x, params, out);
    }
}

// ---- backward ----

template <int D, int F>
struct alignas(64) BwdItem {
    uint32_t idx[1 << D][W];
    float prod[1 << D][W * F];  // w * dy, [corner][lane][feature]
    int64_t i0;
    int valid;
};

// The scatter of one item: lanes (points) ascending, corners ascending, features ascending,
// exactly the scalar order.
template <int D, int F>
__attribute__((noinline)) void bwd_item(float* __restrict tbl, const BwdItem<D, F>& __restrict it) {
    for (int j = 0; j < it.valid; ++j) {
        for (int c = 0; c < (1 << D); ++c) {
            float* p = tbl + (size_t)it.idx[c][j] * F;
            const float* q = it.prod[c] + j * F;
            if constexpr (F == 1) {
                p[0] += q[0];
            } else if constexpr (F == 2) {
                const __m128 a = _mm_castpd_ps(_mm_load_sd((const double*)p));
                const __m128 b = _mm_castpd_ps(_mm_load_sd((const double*)q));
                _mm_store_sd((double*)p, _mm_castps_pd(_mm_add_ps(a, b)));
            } else if constexpr (F == 4) {
                _mm_storeu_ps(p, _mm_add_ps(_mm_loadu_ps(p), _mm_loadu_ps(q)));
            } else {
                _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(q)));
            }
        }
    }
}

template <int D, int F>
void bwd_level(const Level& v, int l, int L, int64_t n, const float* __restrict x, const float* __restrict dy,
               float* __restrict grad) {
    constexpr int NC = 1 << D;
    float* tbl = grad + v.off;
    BwdItem<D, F> ring[RING];
    const int K = g_tuning.pipeline;
    const int64_t items = (n + W - 1) / W;
    for (int64_t t = 0; t < items + K; ++t) {
        if (t < items) {
            BwdItem<D, F>& it = ring[t % RING];
            it.i0 = W * t;
            it.valid = (int)std::min<int64_t>(W, n - it.i0);
            VF xv[D], wt[NC];
            load_xw<D>(x + it.i0 * D, it.valid, xv);
            corners_w<D>(v, xv, wt, it.idx);
            if (v.prefetch) prefetch_corners<D, F>(tbl, it.idx, 1);
            // The dy rows of an item further ahead: one line per point, strided by L*F floats, so
            // the hardware prefetcher alone leaves these loads waiting on memory at large n.
            if (t + DY_AHEAD < items) {
                const float* ahead = dy + ((size_t)(t + DY_AHEAD) * W * L + l) * F;
                const int m = (int)std::min<int64_t>(W, n - (t + DY_AHEAD) * W);
                for (int j = 0; j < m; ++j) _mm_prefetch((const char*)(ahead + (size_t)j * L * F), _MM_HINT_T0);
            }
            // dy of the W points at this level; missing lanes read point i0's row (never scattered).
            alignas(64) uint32_t rows[W];
            for (int j = 0; j < W; ++j) rows[j] = (uint32_t)(j < it.valid ? j * L : 0);
            const float* dy0 = dy + ((size_t)it.i0 * L + l) * F;
            for (int part = 0; part < F; ++part) {
                const VF g = load_lanes<F>(dy0, rows, part);
                for (int c = 0; c < NC; ++c) vstore(it.prod[c] + W * part, vmul(spread<F>(wt[c], part), g));
            }
        }
        if (t >= K) bwd_item<D, F>(tbl, ring[(t - K) % RING]);
    }
}

template <int D, int F>
void backward_fast(const Config& cf, int64_t n, const float* __restrict x, const float* __restrict dy,
                   float* __restrict grad) {
    const std::vector<Level> lv = make_levels<D>(cf);
    const std::vector<int> order = level_order(cf);
    const int L = cf.L;
#pragma omp parallel for schedule(dynamic, 1) if (n * L >= 4096)
    for (int li = 0; li < L; ++li) {
        const int l = order[li];
        bwd_level<D, F>(lv[l], l, L, n, x, dy, grad);
    }
}

#endif  // HAND_VEC

// ---------------------------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------------------------

enum Kind { FWD_SCALAR, BWD_SCALAR, FWD_FAST, BWD_FAST };

template <int D, int F>
void run(Kind kind, const Config& cf, int64_t n, const float* x, const float* a, float* b) {
    switch (kind) {
        case FWD_SCALAR: forward_scalar<D, F>(cf, n, x, a, b); return;
        case BWD_SCALAR: backward_scalar<D, F>(cf, n, x, a, b); return;
#if HAND_VEC
        case FWD_FAST:
            if constexpr (D <= MAX_FAST_D) forward_fast<D, F>(cf, n, x, a, b);
            else forward_scalar<D, F>(cf, n, x, a, b);
            return;
        case BWD_FAST:
            if constexpr (D <= MAX_FAST_D) backward_fast<D, F>(cf, n, x, a, b);
            else backward_scalar<D, F>(cf, n, x, a, b);
            return;
#else
        case FWD_FAST: forward_scalar<D, F>(cf, n, x, a, b); return;
        case BWD_FAST: backward_scalar<D, F>(cf, n, x, a, b); return;
#endif
    }
}

template <int D>
int run_f(Kind kind, const Config& cf, int64_t n, const float* x, const float* a, float* b) {
    switch (cf.F) {
        case 1: run<D, 1>(kind, cf, n, x, a, b); return 0;
        case 2: run<D, 2>(kind, cf, n, x, a, b); return 0;
        case 4: run<D, 4>(kind, cf, n, x, a, b); return 0;
        case 8: run<D, 8>(kind, cf, n, x, a, b); return 0;
        default: return 1;
    }
}

int dispatch(Kind kind, int32_t D, int32_t L, int32_t F, const float* scale, const uint32_t* stride, const uint32_t* size,
             const uint32_t* offset, const uint32_t* hashed, int64_t n, const float* x, const float* a, float* b) {
    if (D < 1 || D > MAX_D || (F != 1 && F != 2 && F != 4 && F != 8) || L < 0 || n < 0) return 1;
    for (int l = 0; l < L; ++l)
        if (size[l] == 0) return 1;  // x % 0
    if (n == 0 || L == 0) return 0;
    const Config cf{D, L, F, scale, stride, size, offset, hashed};
    switch (D) {
        case 1: return run_f<1>(kind, cf, n, x, a, b);
        case 2: return run_f<2>(kind, cf, n, x, a, b);
        case 3: return run_f<3>(kind, cf, n, x, a, b);
        case 4: return run_f<4>(kind, cf, n, x, a, b);
        case 5: return run_f<5>(kind, cf, n, x, a, b);
        case 6: return run_f<6>(kind, cf, n, x, a, b);
        case 7: return run_f<7>(kind, cf, n, x, a, b);
        case 8: return run_f<8>(kind, cf, n, x, a, b);
    }
    return 1;
}

}  // namespace

#define HAND_CONFIG_ARGS                                                                                        \
    int32_t D, int32_t L, int32_t F, const float *scale, const uint32_t *stride, const uint32_t *size, \
        const uint32_t *offset, const uint32_t *hashed
#define HAND_CONFIG D, L, F, scale, stride, size, offset, hashed

extern "C" {

/** out[(i*L + l)*F + f] = encoding of point i. Returns 0, or 1 for an unsupported D (1..8) / F (1, 2, 4, 8). */
int32_t hand_grid_forward(HAND_CONFIG_ARGS, int64_t n, const float* x, const float* params, float* out) {
    return dispatch(FWD_FAST, HAND_CONFIG, n, x, params, out);
}

/** grad += d(sum out * dy)/d params (the caller zeroes grad). */
int32_t hand_grid_backward(HAND_CONFIG_ARGS, int64_t n, const float* x, const float* dy, float* grad) {
    return dispatch(BWD_FAST, HAND_CONFIG, n, x, dy, grad);
}

int32_t hand_grid_forward_scalar(HAND_CONFIG_ARGS, int64_t n, const float* x, const float* params, float* out) {
    return dispatch(FWD_SCALAR, HAND_CONFIG, n, x, params, out);
}

int32_t hand_grid_backward_scalar(HAND_CONFIG_ARGS, int64_t n, const float* x, const float* dy, float* grad) {
    return dispatch(BWD_SCALAR, HAND_CONFIG, n, x, dy, grad);
}

/** 1 if hand_grid_forward/backward use vector kernels (AVX-512 or AVX2), 0 if they run the scalar code. */
int32_t hand_grid_vectorized(void) { return HAND_VEC != 0; }

/** Bits per vector of hand_grid_forward/backward: 512 (AVX-512), 256 (AVX2 + FMA) or 0 (scalar). */
int32_t hand_grid_vector_bits(void) { return HAND_VEC; }

/**
 * Tuning for ablations: pipeline depth in items of W points (0..7 with AVX-512, 0..15 with AVX2; 0 disables computing ahead)
 * and the smallest table (bytes) whose corners are prefetched (-1 keeps the current value).
 * Returns 0, or 1 if a value is out of range. Not thread-safe against running kernels.
 */
int32_t hand_grid_set_tuning(int32_t pipeline, int64_t prefetch_min_bytes) {
#if HAND_VEC
    if (pipeline < -1 || pipeline > RING - 1 || prefetch_min_bytes < -1) return 1;
    if (pipeline >= 0) g_tuning.pipeline = pipeline;
    if (prefetch_min_bytes >= 0) g_tuning.prefetch_min_bytes = (size_t)prefetch_min_bytes;
#else
    (void)pipeline;
    (void)prefetch_min_bytes;
#endif
    return 0;
}

}  // extern "C"

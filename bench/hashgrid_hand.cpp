// Hand-written multiresolution hash-grid encoding (Instant-NGP / tiny-cuda-nn `grid.h`), forward
// and backward to the parameters, linear interpolation. This is the "competent engineer, one day"
// side of the benchmark: templated on D and F, built with the project's CPU flags (runtime
// CPU_FLAGS: -O3 -march=native -ffp-contract=off ...), no fast-math.
//
// Two implementations of the same functions:
//   hand_grid_{forward,backward}_scalar  plain scalar C++, the definition of the semantics;
//   hand_grid_{forward,backward}         AVX-512 (16 points of one level per vector), with a
//                                        portable fallback to the scalar code.
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
// The vector code: one work item is 16 points at one level. Item t computes cells, weights and
// slots (AVX-512, 16 lanes) and prefetches the table lines of its even corners (levels >= 512 KiB);
// item t-4 then does the table loads (forward: plain 4/8/16/32-byte loads inserted into vectors,
// not hardware gathers, accumulated with fma in corner order) or the read-modify-writes (backward:
// w*dy products computed as vectors, then added entry by entry in the scalar order).

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && defined(__AVX512BW__)
#define HAND_AVX512 1
#include <immintrin.h>
#else
#define HAND_AVX512 0
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
// AVX-512 implementation
// ---------------------------------------------------------------------------------------------

#if HAND_AVX512

// Tunables, settable through hand_grid_set_tuning (for ablations); defaults measured on the
// 2-core AVX-512 machines this project runs on.
struct Tuning {
    int pipeline = 4;                     // items (16 points x 1 level) computed ahead of their loads
    size_t prefetch_min_bytes = 1u << 19; // prefetch the corners of levels whose table is at least this big
};
Tuning g_tuning;

constexpr int CHUNK = 128;  // forward: points per chunk (levels looped inside)
constexpr int RING = 8;     // ring buffer of items; > max pipeline depth
constexpr int DY_AHEAD = 8; // backward: groups of 16 points whose dy rows are prefetched ahead

// How a level reduces its slot modulo size[l], chosen per call from the configuration.
enum ModMode : int {
    MOD_MASK = 0,     // size is a power of two: h & (size - 1)
    MOD_CONDSUB = 1,  // dense level with every h < 2*size: h >= size ? h - size : h
    MOD_GENERIC = 2,  // anything else: h % size per lane
};

struct Level {
    __m512 scale[MAX_FAST_D];
    __m512i stride[MAX_FAST_D];
    __m512i corner_add[1 << MAX_FAST_D];  // dense: sum over set bits of stride_d (wrapping)
    __m512i size_v, mask_v;
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
        v.size_v = _mm512_set1_epi32((int)T);
        v.mask_v = _mm512_set1_epi32((int)(T - 1));
        v.prefetch = (size_t)T * cf.F * sizeof(float) >= g_tuning.prefetch_min_bytes;
        for (int d = 0; d < D; ++d) {
            v.scale[d] = _mm512_set1_ps(cf.scale[l * D + d]);
            v.stride[d] = _mm512_set1_epi32((int)cf.stride[l * D + d]);
        }
        for (int c = 0; c < (1 << D); ++c) {
            uint32_t a = 0;
            for (int d = 0; d < D; ++d)
                if ((c >> d) & 1) a += cf.stride[l * D + d];
            v.corner_add[c] = _mm512_set1_epi32((int)a);
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

// Clamp to [0, 1] with the scalar code's NaN behaviour: vmaxps(a, b) = a > b ? a : b, so
// max(0, v) = 0 > v ? 0 : v = (v < 0 ? 0 : v), and min(1, v) = (1 < v ? 1 : v).
HAND_INLINE __m512 clamp01_v(__m512 v) {
    return _mm512_min_ps(_mm512_set1_ps(1.0f), _mm512_max_ps(_mm512_setzero_ps(), v));
}

// Loads 16 points' coordinates (AoS, D floats each) as D vectors of 16 lanes, clamped to [0, 1];
// lanes >= valid are 0.
template <int D>
HAND_INLINE void load_x16(const float* xp, int valid, __m512* xv) {
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

// Cells, corner weights and slots of 16 points at one level.
template <int D>
HAND_INLINE void corners16(const Level& v, const __m512* xv, __m512* wt, uint32_t (*idx)[16]) {
    constexpr int NC = 1 << D;
    const __m512 half = _mm512_set1_ps(0.5f), zero = _mm512_setzero_ps();
    __m512i cell[D];
    __m512 w0[D], w1[D];
    for (int d = 0; d < D; ++d) {
        const __m512 s = v.scale[d];
        const __m512 r = _mm512_roundscale_ps(_mm512_fmadd_ps(xv[d], s, half), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        // One step back where the f32 sum rounded up onto the next integer (negative fraction).
        const __mmask16 up = _mm512_cmp_ps_mask(_mm512_fmadd_ps(xv[d], s, _mm512_sub_ps(half, r)), zero, _CMP_LT_OQ);
        const __m512 g = _mm512_mask_sub_ps(r, up, r, _mm512_set1_ps(1.0f));
        // f2u: max(g, 0) maps NaN and negatives to 0 (vmaxps returns its second operand on NaN);
        // vcvttps2udq saturates to 0xFFFFFFFF above 2^32.
        cell[d] = _mm512_cvttps_epu32(_mm512_max_ps(g, zero));
        w1[d] = _mm512_fmadd_ps(xv[d], s, _mm512_sub_ps(half, g));
        w0[d] = _mm512_fnmadd_ps(xv[d], s, _mm512_add_ps(g, half));
    }
    // w_c = ((w_{bit0} * w_{bit1}) * w_{bit2}) ..., the scalar product order.
    wt[0] = w0[0];
    wt[1] = w1[0];
    for (int d = 1; d < D; ++d) {
        for (int c = 0; c < (1 << d); ++c) {
            wt[c | (1 << d)] = _mm512_mul_ps(wt[c], w1[d]);
            wt[c] = _mm512_mul_ps(wt[c], w0[d]);
        }
    }
    __m512i h[NC];
    if (v.hashed) {
        // coord * P = cell * P (+ P for the upper corner), wrapping; XOR is order-free.
        h[0] = cell[0];
        h[1] = _mm512_add_epi32(cell[0], _mm512_set1_epi32(1));
        for (int d = 1; d < D; ++d) {
            const __m512i p = _mm512_set1_epi32((int)PRIMES[d]);
            const __m512i a = _mm512_mullo_epi32(cell[d], p);
            const __m512i b = _mm512_add_epi32(a, p);
            for (int c = 0; c < (1 << d); ++c) {
                h[c | (1 << d)] = _mm512_xor_si512(h[c], b);
                h[c] = _mm512_xor_si512(h[c], a);
            }
        }
    } else {
        // sum_d (cell_d + bit_d) * stride_d = sum_d cell_d * stride_d + sum_{bits} stride_d (mod 2^32)
        __m512i base = _mm512_mullo_epi32(cell[0], v.stride[0]);
        for (int d = 1; d < D; ++d) base = _mm512_add_epi32(base, _mm512_mullo_epi32(cell[d], v.stride[d]));
        for (int c = 0; c < NC; ++c) h[c] = _mm512_add_epi32(base, v.corner_add[c]);
    }
    if (v.mode == MOD_MASK) {
        for (int c = 0; c < NC; ++c) _mm512_store_si512(idx[c], _mm512_and_si512(h[c], v.mask_v));
    } else if (v.mode == MOD_CONDSUB) {
        for (int c = 0; c < NC; ++c) _mm512_store_si512(idx[c], _mm512_min_epu32(h[c], _mm512_sub_epi32(h[c], v.size_v)));
    } else {
        for (int c = 0; c < NC; ++c) {
            _mm512_store_si512(idx[c], h[c]);
            for (int j = 0; j < 16; ++j) idx[c][j] %= v.size;
        }
    }
}

// 16 lanes of F floats each, lane k of vector `part` (16/F lanes per vector) read from
// base + off[part*(16/F) + k] * F: the result holds lane-major [lane][feature] values.
template <int F>
HAND_INLINE __m512 load_lanes(const float* base, const uint32_t* off, int part) {
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

// Weights of lanes part*(16/F) .. part*(16/F) + 16/F - 1, each repeated F times.
template <int F>
HAND_INLINE __m512 spread(__m512 w, int part) {
    if constexpr (F == 1) {
        return w;
    } else {
        alignas(64) int perm[16];
        for (int k = 0; k < 16; ++k) perm[k] = part * (16 / F) + k / F;
        return _mm512_permutexvar_ps(_mm512_load_si512(perm), w);
    }
}

// Prefetches the table lines of the even corners (the odd corner, x + 1, is usually in the same
// line: the next entry when dense, the same hash with the lowest bit flipped when hashed).
template <int D, int F>
HAND_INLINE void prefetch_corners(const float* tbl, const uint32_t (*idx)[16], int hint_write) {
    for (int c = 0; c < (1 << D); c += 2) {
        for (int j = 0; j < 16; ++j) {
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
    uint32_t idx[1 << D][16];
    __m512 w[1 << D];
    int l, g;
};

// Loads and interpolation of one item (kept out of line: inlined into the pipeline loop, GCC runs
// short of registers and spills the addresses).
template <int D, int F>
__attribute__((noinline)) void fwd_item(const float* __restrict tbl, const FwdItem<D>& __restrict it, float* __restrict res) {
    __m512 acc[F];
    for (int v = 0; v < F; ++v) acc[v] = _mm512_setzero_ps();
    for (int c = 0; c < (1 << D); ++c) {
        for (int v = 0; v < F; ++v) acc[v] = _mm512_fmadd_ps(spread<F>(it.w[c], v), load_lanes<F>(tbl, it.idx[c], v), acc[v]);
    }
    for (int v = 0; v < F; ++v) _mm512_store_ps(res + 16 * v, acc[v]);
}

template <int D, int F>
void fwd_chunk(const Level* lv, int L, int64_t i0, int cn, const float* __restrict x, const float* __restrict params,
               float* __restrict out) {
    alignas(64) float xs[D][CHUNK];
    const int G = (cn + 15) / 16;
    for (int g = 0; g < G; ++g) {
        __m512 xv[D];
        load_x16<D>(x + (i0 + 16 * g) * D, std::min(16, cn - 16 * g), xv);
        for (int d = 0; d < D; ++d) _mm512_store_ps(xs[d] + 16 * g, xv[d]);
    }
    FwdItem<D> ring[RING];
    alignas(64) float res[16 * F];
    const int K = g_tuning.pipeline;
    const int items = L * G;
    for (int t = 0; t < items + K; ++t) {
        if (t < items) {
            FwdItem<D>& it = ring[t % RING];
            it.l = t / G;
            it.g = t % G;
            const Level& v = lv[it.l];
            __m512 xv[D];
            for (int d = 0; d < D; ++d) xv[d] = _mm512_load_ps(xs[d] + 16 * it.g);
            corners16<D>(v, xv, it.w, it.idx);
            if (v.prefetch) prefetch_corners<D, F>(params + v.off, it.idx, 0);
        }
        if (t >= K) {
            const FwdItem<D>& it = ring[(t - K) % RING];
            fwd_item<D, F>(params + lv[it.l].off, it, res);
            const int valid = std::min(16, cn - 16 * it.g);
            float* o = out + ((size_t)(i0 + 16 * it.g) * L + it.l) * F;
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
    uint32_t idx[1 << D][16];
    float prod[1 << D][16 * F];  // w * dy, [corner][lane][feature]
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
    const int64_t items = (n + 15) / 16;
    for (int64_t t = 0; t < items + K; ++t) {
        if (t < items) {
            BwdItem<D, F>& it = ring[t % RING];
            it.i0 = 16 * t;
            it.valid = (int)std::min<int64_t>(16, n - it.i0);
            __m512 xv[D], wt[NC];
            load_x16<D>(x + it.i0 * D, it.valid, xv);
            corners16<D>(v, xv, wt, it.idx);
            if (v.prefetch) prefetch_corners<D, F>(tbl, it.idx, 1);
            // The dy rows of a group further ahead: one line per point, strided by L*F floats, so
            // the hardware prefetcher alone leaves these loads waiting on memory at large n.
            if (t + DY_AHEAD < items) {
                const float* ahead = dy + ((size_t)(t + DY_AHEAD) * 16 * L + l) * F;
                const int m = (int)std::min<int64_t>(16, n - (t + DY_AHEAD) * 16);
                for (int j = 0; j < m; ++j) _mm_prefetch((const char*)(ahead + (size_t)j * L * F), _MM_HINT_T0);
            }
            // dy of the 16 points at this level; missing lanes read point i0's row (never scattered).
            alignas(64) uint32_t rows[16];
            for (int j = 0; j < 16; ++j) rows[j] = (uint32_t)(j < it.valid ? j * L : 0);
            const float* dy0 = dy + ((size_t)it.i0 * L + l) * F;
            for (int part = 0; part < F; ++part) {
                const __m512 g = load_lanes<F>(dy0, rows, part);
                for (int c = 0; c < NC; ++c) _mm512_store_ps(it.prod[c] + 16 * part, _mm512_mul_ps(spread<F>(wt[c], part), g));
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

#endif  // HAND_AVX512

// ---------------------------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------------------------

enum Kind { FWD_SCALAR, BWD_SCALAR, FWD_FAST, BWD_FAST };

template <int D, int F>
void run(Kind kind, const Config& cf, int64_t n, const float* x, const float* a, float* b) {
    switch (kind) {
        case FWD_SCALAR: forward_scalar<D, F>(cf, n, x, a, b); return;
        case BWD_SCALAR: backward_scalar<D, F>(cf, n, x, a, b); return;
#if HAND_AVX512
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

/** 1 if hand_grid_forward/backward use the AVX-512 kernels, 0 if they fall back to the scalar code. */
int32_t hand_grid_vectorized(void) { return HAND_AVX512; }

/**
 * Tuning for ablations: pipeline depth in items of 16 points (0..7; 0 disables computing ahead)
 * and the smallest table (bytes) whose corners are prefetched (-1 keeps the current value).
 * Returns 0, or 1 if a value is out of range. Not thread-safe against running kernels.
 */
int32_t hand_grid_set_tuning(int32_t pipeline, int64_t prefetch_min_bytes) {
#if HAND_AVX512
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

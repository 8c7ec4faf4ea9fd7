// Hand-written fused MLP training step (the "competent engineer" side of `bun run bench:mlp`):
// the same work as dsl/kernels/mlp.ts mlpTrain for a bias-free ReLU network with a linear output
// and the L2 loss, built with the project's CPU flags (runtime/toolchain.ts CPU_FLAGS) and loaded
// by bench/mlp.ts through bun:ffi.
//
// Semantics (as mlpTrain with inputGrad off): for items i < n, h_0 = relu(x_i W_0^T),
// h_l = relu(h_{l-1} W_l^T) (l < H), y = h_{H-1} W_H^T; loss += sum scale * (y - t)^2;
// dy = 2 * (y - t) * scale; backward through every layer into grads (+=). dL/dx is not computed.
// W_l is row-major [fanOut][fanIn] at params[off_l], off_0 = 0, off_1 = IN * W, ...
//
// Layout and blocking: blocks of BS = 64 items, activations item-major ([item][feature], features
// in vector lanes, as the inputs arrive). Every matrix product is one register-blocked kernel
// "out(i, c) = sum_k A(i, k) * B[k][c]": a broadcast of A(i, k) times RB x NQB vectors of B's row k,
// RB x NQB accumulators kept in registers over the k loop (24 zmm with AVX-512, 12 ymm with AVX2):
//   forward     h_l   = relu(h_{l-1} . W_l^T)   B = W_l^T (transposed once per call, not per block)
//   weight grad dW_l += g_l^T . h_{l-1}         A(i, k) = g_l[k][i], accumulated in the registers
//                                               over the block's 64 items, then added to this
//                                               thread's partial dW
//   input grad  g_{l-1} = (g_l . W_l) * [h_{l-1} > 0]   B = W_l as stored, written over h_{l-1}
// The output layer (3 outputs) is per item: dot products with a horizontal sum, then dy, the
// loss, dW_H and g_{H-1} in the same pass (as the shared reference's MLP does); it also prefetches
// the next block's inputs, which otherwise arrive from memory at the first product's pace.
// Threads: OpenMP over chunks of CHUNK consecutive blocks, dynamically scheduled (a thread that
// shares its core with another process takes fewer chunks, as the generated launcher's slots
// do), each thread with its own zeroed dW partial sums, reduced into grads after a barrier (no
// atomics).

#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#define HI inline __attribute__((always_inline))

#if defined(__AVX512F__)
#include <immintrin.h>
#define HAND_BITS 512
constexpr int VL = 16;
constexpr int NACC = 24;  // accumulators of the micro-kernel: 24 + 4 operands + 1 broadcast <= 32 zmm
constexpr int MAXQ = 4;   // vectors of B per micro-tile
typedef __m512 V;
static HI V vload(const float* p) { return _mm512_loadu_ps(p); }
static HI void vstore(float* p, V v) { _mm512_storeu_ps(p, v); }
static HI V vset1(float x) { return _mm512_set1_ps(x); }
static HI V vzero() { return _mm512_setzero_ps(); }
static HI V vfma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
static HI V vmul(V a, V b) { return _mm512_mul_ps(a, b); }
static HI V vadd(V a, V b) { return _mm512_add_ps(a, b); }
static HI V vrelu(V v) { return _mm512_max_ps(v, _mm512_setzero_ps()); }
// v where ref > 0, else 0
static HI V vkeep(V v, V ref) { return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(ref, _mm512_setzero_ps(), _CMP_GT_OQ), v); }
static HI float vsum(V v) { return _mm512_reduce_add_ps(v); }
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define HAND_BITS 256
constexpr int VL = 8;
constexpr int NACC = 12;  // 12 + 2 operands + 1 broadcast <= 16 ymm
constexpr int MAXQ = 2;
typedef __m256 V;
static HI V vload(const float* p) { return _mm256_loadu_ps(p); }
static HI void vstore(float* p, V v) { _mm256_storeu_ps(p, v); }
static HI V vset1(float x) { return _mm256_set1_ps(x); }
static HI V vzero() { return _mm256_setzero_ps(); }
static HI V vfma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
static HI V vmul(V a, V b) { return _mm256_mul_ps(a, b); }
static HI V vadd(V a, V b) { return _mm256_add_ps(a, b); }
static HI V vrelu(V v) { return _mm256_max_ps(v, _mm256_setzero_ps()); }
static HI V vkeep(V v, V ref) { return _mm256_and_ps(v, _mm256_cmp_ps(ref, _mm256_setzero_ps(), _CMP_GT_OQ)); }
static HI float vsum(V v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#else
#define HAND_BITS 32
constexpr int VL = 1;
constexpr int NACC = 8;
constexpr int MAXQ = 1;
typedef float V;
static HI V vload(const float* p) { return *p; }
static HI void vstore(float* p, V v) { *p = v; }
static HI V vset1(float x) { return x; }
static HI V vzero() { return 0.0f; }
static HI V vfma(V a, V b, V c) { return fmaf(a, b, c); }
static HI V vmul(V a, V b) { return a * b; }
static HI V vadd(V a, V b) { return a + b; }
static HI V vrelu(V v) { return v > 0.0f ? v : 0.0f; }
static HI V vkeep(V v, V ref) { return ref > 0.0f ? v : 0.0f; }
static HI float vsum(V v) { return v; }
#endif

namespace {

constexpr int BS = 64;     // items per block
constexpr int CHUNK = 8;   // blocks per unit of work of a thread

enum Epilogue { STORE, RELU, KEEP_POSITIVE, ACCUMULATE };

// out[i * LDO + c] (op)= sum_{k < K} A[i * SI + k * SK] * B[k * LDB + c], i < RB, c < NQB * VL.
template <int RB, int NQB, int K, int SI, int SK, int LDB, int LDO, Epilogue EPI>
static HI void micro(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ out) {
  V acc[RB][NQB];
#pragma GCC unroll 32
  for (int i = 0; i < RB; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NQB; ++j) acc[i][j] = vzero();
#pragma GCC unroll 2
  for (int k = 0; k < K; ++k) {
    V b[NQB];
#pragma GCC unroll 8
    for (int j = 0; j < NQB; ++j) b[j] = vload(B + k * LDB + j * VL);
#pragma GCC unroll 32
    for (int i = 0; i < RB; ++i) {
      const V a = vset1(A[i * SI + k * SK]);
#pragma GCC unroll 8
      for (int j = 0; j < NQB; ++j) acc[i][j] = vfma(a, b[j], acc[i][j]);
    }
  }
#pragma GCC unroll 32
  for (int i = 0; i < RB; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NQB; ++j) {
      float* o = out + i * LDO + j * VL;
      V v = acc[i][j];
      if constexpr (EPI == RELU) v = vrelu(v);
      if constexpr (EPI == KEEP_POSITIVE) v = vkeep(v, vload(o));
      if constexpr (EPI == ACCUMULATE) v = vadd(vload(o), v);
      vstore(o, v);
    }
}

// The R x C product out = A (R x K, element (i, k) at A[i * SI + k * SK]) . B (K x C, row stride
// LDB), C a multiple of VL; column blocks of NQB vectors, row blocks of RB.
template <int R, int K, int C, int SI, int SK, int LDB, int LDO, Epilogue EPI>
static HI void gemm(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ out) {
  static_assert(C % VL == 0, "columns must be whole vectors");
  constexpr int NQ = C / VL;
  constexpr int NQB = NQ < MAXQ ? NQ : MAXQ;
  static_assert(NQ % NQB == 0, "column blocks must tile the columns");
  constexpr int RB = NACC / NQB;
  constexpr int FULL = R / RB * RB;
  for (int c0 = 0; c0 < C; c0 += NQB * VL) {
    for (int i0 = 0; i0 < FULL; i0 += RB) micro<RB, NQB, K, SI, SK, LDB, LDO, EPI>(A + i0 * SI, B + c0, out + i0 * LDO + c0);
    if constexpr (R % RB != 0) micro<R % RB, NQB, K, SI, SK, LDB, LDO, EPI>(A + FULL * SI, B + c0, out + FULL * LDO + c0);
  }
}

template <int IN, int W, int OUT>
struct Net {
  static constexpr int NQ = W / VL;
  int hidden;           // H hidden layers
  const float* params;  // W_0 [W][IN], W_1..W_{H-1} [W][W], W_H [OUT][W]
  const float* wt;      // W_l^T, l < H: [IN][W] then [W][W] each
  float scale;

  const float* weight(int l) const { return params + (l == 0 ? 0 : IN * W + (l - 1) * W * W); }
  const float* weightT(int l) const { return wt + (l == 0 ? 0 : IN * W + (l - 1) * W * W); }
  static int64_t paramCount(int hidden) { return (int64_t)IN * W + (int64_t)(hidden - 1) * W * W + OUT * W; }

  // One block: x [BS][IN], t [BS][OUT]; items >= valid are padding (x = 0, no loss, dy = 0).
  // h: hidden * BS * W floats of scratch; dW: this thread's partial gradient. Returns the loss sum.
  // next: the following block's inputs (prefetched into the cache during this block), or null.
  double block(const float* __restrict__ x, const float* __restrict__ t, int valid, float* __restrict__ h, float* __restrict__ dW,
               const float* next) const {
    const int H = hidden;
    // Forward through the hidden layers.
    gemm<BS, IN, W, IN, 1, W, W, RELU>(x, weightT(0), h);
    for (int l = 1; l < H; ++l) gemm<BS, W, W, W, 1, W, W, RELU>(h + (l - 1) * BS * W, weightT(l), h + l * BS * W);
    // Output layer per item: y, loss, dy, dW_H += dy h^T, g_{H-1} = (dy W_H) * [h > 0] in place.
    float* hl = h + (H - 1) * BS * W;
    const float* WH = weight(H);
    float* dWH = dW + (IN * W + (H - 1) * W * W);
    V gw[OUT][NQ];
    for (int o = 0; o < OUT; ++o)
      for (int q = 0; q < NQ; ++q) gw[o][q] = vzero();
    double loss = 0;
    for (int s = 0; s < BS; ++s) {
      // The next block's inputs arrive from memory while this block computes (BS * IN * 4 bytes:
      // IN * 4 / 64 = 2 cache lines per item for IN = 32).
      if (next)
        for (int c = 0; c < IN * 4; c += 64) __builtin_prefetch((const char*)(next + s * IN) + c);
      float* hs = hl + s * W;
      V hv[NQ];
      for (int q = 0; q < NQ; ++q) hv[q] = vload(hs + q * VL);
      float dy[OUT];
      for (int o = 0; o < OUT; ++o) {
        V a = vmul(hv[0], vload(WH + o * W));
        for (int q = 1; q < NQ; ++q) a = vfma(hv[q], vload(WH + o * W + q * VL), a);
        const float d = vsum(a) - t[s * OUT + o];
        const bool live = s < valid;
        loss += live ? (double)(d * d * scale) : 0.0;
        dy[o] = live ? 2.0f * d * scale : 0.0f;
      }
      for (int q = 0; q < NQ; ++q) {
        V g = vzero();
        for (int o = 0; o < OUT; ++o) {
          const V d = vset1(dy[o]);
          gw[o][q] = vfma(d, hv[q], gw[o][q]);
          g = vfma(d, vload(WH + o * W + q * VL), g);
        }
        vstore(hs + q * VL, vkeep(g, hv[q]));
      }
    }
    for (int o = 0; o < OUT; ++o)
      for (int q = 0; q < NQ; ++q) vstore(dWH + o * W + q * VL, vadd(vload(dWH + o * W + q * VL), gw[o][q]));
    // Hidden layers backward: dW_l += g_l^T h_{l-1}; g_{l-1} = (g_l W_l) * [h_{l-1} > 0] over h_{l-1}.
    for (int l = H - 1; l >= 1; --l) {
      float* g = h + l * BS * W;
      float* hp = h + (l - 1) * BS * W;
      gemm<W, BS, W, 1, W, W, W, ACCUMULATE>(g, hp, dW + IN * W + (l - 1) * W * W);
      gemm<BS, W, W, W, 1, W, W, KEEP_POSITIVE>(g, weight(l), hp);
    }
    gemm<W, BS, IN, 1, W, IN, IN, ACCUMULATE>(h, x, dW);
    return loss;
  }
};

template <int IN, int W, int OUT>
int32_t train(int32_t hidden, int64_t n, const float* x, const float* target, const float* params, float* grads, float* lossOut, float scale) {
  using N = Net<IN, W, OUT>;
  const int64_t P = N::paramCount(hidden);
  const int64_t TP = (int64_t)IN * W + (int64_t)(hidden - 1) * W * W;
  const int64_t Pad = (P + 15) / 16 * 16;
  float* wt = (float*)std::aligned_alloc(64, (size_t)((TP + 15) / 16 * 16) * 4);
  if (!wt) return 2;
  // W_l^T for the forward products, once per call.
  for (int l = 0; l < hidden; ++l) {
    const int fi = l == 0 ? IN : W;
    const int64_t off = l == 0 ? 0 : (int64_t)IN * W + (int64_t)(l - 1) * W * W;
    for (int o = 0; o < W; ++o)
      for (int k = 0; k < fi; ++k) wt[off + k * W + o] = params[off + o * fi + k];
  }
  const N net{hidden, params, wt, scale};
  const int64_t blocks = (n + BS - 1) / BS;
  const int threads = omp_get_max_threads();
  float* parts = (float*)std::aligned_alloc(64, (size_t)(threads * Pad) * 4);
  float* scratch = (float*)std::aligned_alloc(64, (size_t)threads * ((size_t)hidden * BS * W + BS * IN + BS * OUT + 64) * 4);
  if (!parts || !scratch) {
    std::free(wt), std::free(parts), std::free(scratch);
    return 2;
  }
  double loss = 0;
#pragma omp parallel reduction(+ : loss)
  {
    const int T = omp_get_num_threads(), id = omp_get_thread_num();
    float* dW = parts + id * Pad;
    std::memset(dW, 0, (size_t)P * 4);
    float* h = scratch + (size_t)id * ((size_t)hidden * BS * W + BS * IN + BS * OUT + 64);
    float* xs = h + (size_t)hidden * BS * W;
    float* ts = xs + BS * IN;
    const int64_t chunks = (blocks + CHUNK - 1) / CHUNK;
#pragma omp for schedule(dynamic, 1) nowait
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const int64_t b1 = (chunk + 1) * CHUNK < blocks ? (chunk + 1) * CHUNK : blocks;
      for (int64_t b = chunk * CHUNK; b < b1; ++b) {
        const int64_t row0 = b * BS;
        const int valid = n - row0 < BS ? (int)(n - row0) : BS;
        const float* xb = x + row0 * IN;
        const float* tb = target + row0 * OUT;
        if (valid < BS) {  // the last, partial block: zero-padded copies
          std::memset(xs, 0, BS * IN * 4), std::memset(ts, 0, BS * OUT * 4);
          std::memcpy(xs, xb, (size_t)valid * IN * 4), std::memcpy(ts, tb, (size_t)valid * OUT * 4);
          xb = xs, tb = ts;
        }
        const float* next = b + 1 < b1 && n - row0 >= 2 * BS ? x + (row0 + BS) * IN : nullptr;
        loss += net.block(xb, tb, valid, h, dW, next);
      }
    }
#pragma omp barrier
    const int64_t i0 = P * id / T, i1 = P * (id + 1) / T;
    for (int64_t i = i0; i < i1; ++i) {
      float s = parts[i];
      for (int k = 1; k < T; ++k) s += parts[k * Pad + i];
      grads[i] += s;
    }
  }
  lossOut[0] += (float)loss;
  std::free(wt), std::free(parts), std::free(scratch);
  return 0;
}

}  // namespace

extern "C" {

int32_t hand_mlp_vector_bits(void) { return HAND_BITS; }

/**
 * The fused step for inputs 32, outputs 3, width 16/32/64/128, 1..8 hidden layers (ReLU, no
 * biases, L2 loss). grads and loss[0] are added to. Returns 0, 1 for an unsupported shape, 2 when
 * memory runs out.
 */
int32_t hand_mlp_train(int32_t inputs, int32_t width, int32_t outputs, int32_t hidden, int64_t n, const float* x, const float* target,
                       const float* params, float* grads, float* loss, float scale) {
  if (inputs != 32 || outputs != 3 || hidden < 1 || hidden > 8 || n < 0) return 1;
  if (n == 0) return 0;
  switch (width) {
    case 16: return train<32, 16, 3>(hidden, n, x, target, params, grads, loss, scale);
    case 32: return train<32, 32, 3>(hidden, n, x, target, params, grads, loss, scale);
    case 64: return train<32, 64, 3>(hidden, n, x, target, params, grads, loss, scale);
    case 128: return train<32, 128, 3>(hidden, n, x, target, params, grads, loss, scale);
    default: return 1;
  }
}

}  // extern "C"

// The helpers of the tile operations (dsl/tiles.ts): the templates their C spellings call and the
// JS twins of those, one entry each (see HELPERS in dsl/intrinsics.ts), so that a module defines
// only those of the operations it runs. Tiles are row-major f32 arrays; every operation's
// arithmetic is fixed so that the targets agree bit for bit:
//   matmul   each element is a sum over k = 0..K-1 in order, one fma per term, starting from +0;
//   sum      plain f32 adds in index order, starting from +0;
//   the rest copies values.
// CPU: templates on the shapes, so every loop bound is a compile-time constant; register-blocked
// loop nests on explicit AVX-512 or AVX2 vectors (the ngp_v* macros of the CPU's tile prelude,
// codegen/emit/tile_prelude.ts, chosen by the compiler's target macros; scalar fmaf elsewhere).
// CUDA: the block's threads share each operation (elements strided by thread), then synchronize.
// JS: the CPU's loops and order, with exact f32 arithmetic. The tile preludes hold what is not an
// operation's: the macros of a block's storage and threads, and the launchers' slot reductions.

export const TILE_HELPERS = {
  mmElement: {
    cuda: `// Element e = r * C + c of op(A) op(B): the sum over k in order, one fma per term.
template <int R, int K, int C, bool TA, bool TB>
NGP_FN float ngp_mm_element(const float* __restrict__ A, const float* __restrict__ B, int e) {
  const int r = e / C, c = e % C;
  float acc = 0.0f;
  for (int k = 0; k < K; ++k) acc = fmaf(TA ? A[k * R + r] : A[r * K + k], TB ? B[c * K + k] : B[k * C + c], acc);
  return acc;
}`,
  },
  tileMm: {
    cpu: `// out[r][c] = sum_k a(r, k) * B[k][c] over rows [r0, r0 + RB) and columns [c0, c1), one fma per term.
template <int RB, int K, int C, int SR, int SK>
NGP_FN void ngp_mm_scalar(float* __restrict__ out, const float* __restrict__ A, const float* __restrict__ B, int r0, int c0, int c1) {
  for (int i = 0; i < RB; ++i)
    for (int c = c0; c < c1; ++c) {
      float acc = 0.0f;
      for (int k = 0; k < K; ++k) acc = fmaf(A[(r0 + i) * SR + k * SK], B[k * C + c], acc);
      out[(r0 + i) * C + c] = acc;
    }
}

#ifdef NGP_VL
// The micro-kernel: RB rows x NV vectors of accumulators, kept in registers across the k loop.
template <int RB, int NV, int K, int C, int SR, int SK>
NGP_FN void ngp_mm_micro(float* __restrict__ out, const float* __restrict__ A, const float* __restrict__ B, int r0, int c0) {
  ngp_v acc[RB][NV];
  for (int i = 0; i < RB; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = ngp_vzero();
  for (int k = 0; k < K; ++k) {
    ngp_v b[NV];
    for (int j = 0; j < NV; ++j) b[j] = ngp_vload(B + k * C + c0 + j * NGP_VL);
    for (int i = 0; i < RB; ++i) {
      const ngp_v a = ngp_vset1(A[(r0 + i) * SR + k * SK]);
      for (int j = 0; j < NV; ++j) acc[i][j] = ngp_vfma(a, b[j], acc[i][j]);
    }
  }
  for (int i = 0; i < RB; ++i)
    for (int j = 0; j < NV; ++j) ngp_vstore(out + (r0 + i) * C + c0 + j * NGP_VL, acc[i][j]);
}
#endif

// One band of RB rows: full micro-tiles, then the remaining whole vectors, then scalar columns.
template <int RB, int K, int C, int SR, int SK>
NGP_FN void ngp_mm_rows(float* __restrict__ out, const float* __restrict__ A, const float* __restrict__ B, int r0) {
#ifdef NGP_VL
  constexpr int W = NGP_NV * NGP_VL, FULL = C / W * W, REST = (C - FULL) / NGP_VL;
  for (int c0 = 0; c0 < FULL; c0 += W) ngp_mm_micro<RB, NGP_NV, K, C, SR, SK>(out, A, B, r0, c0);
  if constexpr (REST > 0) ngp_mm_micro<RB, REST, K, C, SR, SK>(out, A, B, r0, FULL);
  if constexpr (C % NGP_VL != 0) ngp_mm_scalar<RB, K, C, SR, SK>(out, A, B, r0, C - C % NGP_VL, C);
#else
  ngp_mm_scalar<RB, K, C, SR, SK>(out, A, B, r0, 0, C);
#endif
}

// Rows in bands of RB (the rest in one smaller band): out (R x C) = a · B, a(r, k) = A[r * SR + k * SK].
// The band height fills the accumulators: narrow outputs (few vectors) get more rows per band.
template <int R, int K, int C, int SR, int SK>
NGP_FN void ngp_mm_bands(float* __restrict__ out, const float* __restrict__ A, const float* __restrict__ B) {
#ifdef NGP_VL
  constexpr int VECS = C / NGP_VL < NGP_NV ? C / NGP_VL : NGP_NV;
  constexpr int RB = VECS > 0 ? NGP_ACC / VECS : 1;
#else
  constexpr int RB = 1;
#endif
  constexpr int FULL = R / RB * RB;
  for (int r0 = 0; r0 < FULL; r0 += RB) ngp_mm_rows<RB, K, C, SR, SK>(out, A, B, r0);
  if constexpr (R % RB != 0) ngp_mm_rows<R % RB, K, C, SR, SK>(out, A, B, FULL);
}

// out (R x C) = op(A) op(B): A is R x K (TA: K x R), B is K x C (TB: C x K).
template <int R, int K, int C, bool TA, bool TB>
NGP_FN void ngp_tile_mm(float* __restrict__ out, const float* __restrict__ A, const float* __restrict__ B) {
  constexpr int SR = TA ? 1 : K, SK = TA ? R : 1;
  if constexpr (TB) {
    // B^T once per call (K x C floats): the k loop then reads contiguous rows of B.
    alignas(64) float Bt[K * C];
    for (int c = 0; c < C; ++c)
      for (int k = 0; k < K; ++k) Bt[k * C + c] = B[c * K + k];
    ngp_tile_mm<R, K, C, TA, false>(out, A, Bt);
#ifdef NGP_VL
  } else if constexpr (C < NGP_VL && R >= NGP_VL) {
    // Fewer columns than lanes (an output layer): vectorize along the rows of out^T = B^T a^T.
    alignas(64) float At[K * R];
    for (int r = 0; r < R; ++r)
      for (int k = 0; k < K; ++k) At[k * R + r] = A[r * SR + k * SK];
    alignas(64) float outT[C * R];
    ngp_mm_bands<C, K, R, 1, C>(outT, B, At); // B^T(c, k) = B[k * C + c]
    for (int c = 0; c < C; ++c)
      for (int r = 0; r < R; ++r) out[r * C + c] = outT[c * R + r];
#endif
  } else {
    ngp_mm_bands<R, K, C, SR, SK>(out, A, B);
  }
}`,
    cuda: `template <int R, int K, int C, bool TA, bool TB>
NGP_FN void ngp_tile_mm(float* __restrict__ out, const float* __restrict__ A, const float* __restrict__ B) {
  for (int e = NGP_TID; e < R * C; e += NGP_NTHREADS) out[e] = ngp_mm_element<R, K, C, TA, TB>(A, B, e);
  __syncthreads();
}`,
    js: `const __tile_mm = (R, K, C, TA, TB, out, A, B) => {
  for (let r = 0; r < R; r++)
    for (let c = 0; c < C; c++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc = __fma(TA ? A[k * R + r] : A[r * K + k], TB ? B[c * K + k] : B[k * C + c], acc);
      out[r * C + c] = acc;
    }
};`,
    needs: ["fma", "mmElement"],
  },
  tileLoadRows: {
    cpu: `template <int R, int C>
NGP_FN void ngp_tile_load_rows(float* __restrict__ out, const float* __restrict__ buf, int64_t stride, int64_t col, int64_t block, int64_t n) {
  const int64_t row0 = block * R, valid = n - row0 < R ? n - row0 : R;
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) out[r * C + c] = r < valid ? buf[(row0 + r) * stride + col + c] : 0.0f;
}`,
    cuda: `template <int R, int C>
NGP_FN void ngp_tile_load_rows(float* __restrict__ out, const float* __restrict__ buf, int64_t stride, int64_t col, int64_t block, int64_t n) {
  const int64_t row0 = block * R;
  for (int e = NGP_TID; e < R * C; e += NGP_NTHREADS) {
    const int r = e / C, c = e % C;
    out[e] = row0 + r < n ? buf[(row0 + r) * stride + col + c] : 0.0f;
  }
  __syncthreads();
}`,
    js: `const __tile_load_rows = (R, C, out, buf, stride, col, block, n) => {
  const row0 = block * R;
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) out[r * C + c] = row0 + r < n ? buf[(row0 + r) * stride + col + c] : 0;
};`,
  },
  tileStoreRows: {
    cpu: `template <int R, int C>
NGP_FN void ngp_tile_store_rows(float* __restrict__ buf, int64_t stride, int64_t col, const float* __restrict__ t, int64_t block, int64_t n) {
  const int64_t row0 = block * R, valid = n - row0 < R ? n - row0 : R;
  for (int r = 0; r < valid; ++r)
    for (int c = 0; c < C; ++c) buf[(row0 + r) * stride + col + c] = t[r * C + c];
}`,
    cuda: `template <int R, int C>
NGP_FN void ngp_tile_store_rows(float* __restrict__ buf, int64_t stride, int64_t col, const float* __restrict__ t, int64_t block, int64_t n) {
  const int64_t row0 = block * R;
  for (int e = NGP_TID; e < R * C; e += NGP_NTHREADS) {
    const int r = e / C, c = e % C;
    if (row0 + r < n) buf[(row0 + r) * stride + col + c] = t[e];
  }
  __syncthreads();
}`,
    js: `const __tile_store_rows = (R, C, buf, stride, col, t, block, n) => {
  const row0 = block * R;
  for (let r = 0; r < R && row0 + r < n; r++) for (let c = 0; c < C; c++) buf[(row0 + r) * stride + col + c] = t[r * C + c];
};`,
  },
  tileLoad: {
    cpu: `template <int R, int C>
NGP_FN void ngp_tile_load(float* __restrict__ out, const float* __restrict__ buf, int64_t offset) {
  for (int e = 0; e < R * C; ++e) out[e] = buf[offset + e];
}`,
    cuda: `template <int R, int C>
NGP_FN void ngp_tile_load(float* __restrict__ out, const float* __restrict__ buf, int64_t offset) {
  for (int e = NGP_TID; e < R * C; e += NGP_NTHREADS) out[e] = buf[offset + e];
  __syncthreads();
}`,
    js: `const __tile_load = (R, C, out, buf, offset) => {
  for (let e = 0; e < R * C; e++) out[e] = buf[offset + e];
};`,
  },
  tileSum: {
    cpu: `template <int R, int C, int AXIS>
NGP_FN void ngp_tile_sum(float* __restrict__ out, const float* __restrict__ t) {
  if constexpr (AXIS == 0) {
    for (int c = 0; c < C; ++c) out[c] = 0.0f;
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < C; ++c) out[c] += t[r * C + c];
  } else {
    for (int r = 0; r < R; ++r) {
      float acc = 0.0f;
      for (int c = 0; c < C; ++c) acc += t[r * C + c];
      out[r] = acc;
    }
  }
}`,
    cuda: `template <int R, int C, int AXIS>
NGP_FN void ngp_tile_sum(float* __restrict__ out, const float* __restrict__ t) {
  for (int o = NGP_TID; o < (AXIS == 0 ? C : R); o += NGP_NTHREADS) {
    float acc = 0.0f;
    for (int i = 0; i < (AXIS == 0 ? R : C); ++i) acc += AXIS == 0 ? t[i * C + o] : t[o * C + i];
    out[o] = acc;
  }
  __syncthreads();
}`,
    js: `const __tile_sum = (R, C, AXIS, out, t) => {
  for (let o = 0; o < (AXIS === 0 ? C : R); o++) {
    let acc = 0;
    for (let i = 0; i < (AXIS === 0 ? R : C); i++) acc = Math.fround(acc + (AXIS === 0 ? t[i * C + o] : t[o * C + i]));
    out[o] = acc;
  }
};`,
  },
  tileAccumulate: {
    cpu: `// On the CPU, buf is this block's slot of partial sums (the launcher reduces the slots in order).
template <int R, int C>
NGP_FN void ngp_tile_accumulate(float* __restrict__ buf, int64_t offset, const float* __restrict__ t) {
  for (int e = 0; e < R * C; ++e) buf[offset + e] += t[e];
}`,
    cuda: `// The tile is already this block's sum: one atomic per element and block.
template <int R, int C>
NGP_FN void ngp_tile_accumulate(float* buf, int64_t offset, const float* __restrict__ t) {
  for (int e = NGP_TID; e < R * C; e += NGP_NTHREADS) atomicAdd(&buf[offset + e], t[e]);
  __syncthreads();
}`,
    js: `const __tile_accumulate = (R, C, buf, offset, t) => {
  for (let e = 0; e < R * C; e++) buf[offset + e] = Math.fround(buf[offset + e] + t[e]);
};`,
  },
  tileMmAccumulate: {
    cpu: `// accumulate(buf, offset, op(A) op(B)): the product in a stack array, then added (as the two operations).
template <int R, int K, int C, bool TA, bool TB>
NGP_FN void ngp_tile_mm_accumulate(float* __restrict__ buf, int64_t offset, const float* __restrict__ A, const float* __restrict__ B) {
  alignas(64) float t[R * C];
  ngp_tile_mm<R, K, C, TA, TB>(t, A, B);
  ngp_tile_accumulate<R, C>(buf, offset, t);
}`,
    cuda: `// accumulate(buf, offset, op(A) op(B)): each element of the product added as it is computed, so
// the product takes no shared memory (a weight gradient can be larger than a block's).
template <int R, int K, int C, bool TA, bool TB>
NGP_FN void ngp_tile_mm_accumulate(float* buf, int64_t offset, const float* __restrict__ A, const float* __restrict__ B) {
  for (int e = NGP_TID; e < R * C; e += NGP_NTHREADS) atomicAdd(&buf[offset + e], ngp_mm_element<R, K, C, TA, TB>(A, B, e));
  __syncthreads();
}`,
    js: `const __tile_mm_accumulate = (R, K, C, TA, TB, buf, offset, A, B) => {
  const t = new Float32Array(R * C);
  __tile_mm(R, K, C, TA, TB, t, A, B);
  __tile_accumulate(R, C, buf, offset, t);
};`,
    needs: ["mmElement", "tileMm", "tileAccumulate"],
  },
  tileRowMask: {
    cpu: `template <int R>
NGP_FN void ngp_tile_row_mask(float* __restrict__ out, int64_t block, int64_t n) {
  for (int r = 0; r < R; ++r) out[r] = block * R + r < n ? 1.0f : 0.0f;
}`,
    cuda: `template <int R>
NGP_FN void ngp_tile_row_mask(float* __restrict__ out, int64_t block, int64_t n) {
  for (int r = NGP_TID; r < R; r += NGP_NTHREADS) out[r] = block * R + r < n ? 1.0f : 0.0f;
  __syncthreads();
}`,
    js: `const __tile_row_mask = (R, out, block, n) => {
  for (let r = 0; r < R; r++) out[r] = block * R + r < n ? 1 : 0;
};`,
  },
} as const;

// Optimizers, one parameter group per launch (index i runs over the group's elements). The
// gradient is read, used and zeroed in the same pass, so that the next step's backward passes can
// accumulate into it without a separate clearing pass.
import { type Buf, type Const, type f16, type f32, type i32, popcount, prefetch, sqrt, u32 } from "../index.ts";
import { logitGradRow, refreshRow } from "./probe.ts";

/**
 * Adam as tiny-cuda-nn's: g = gradScale * grad + weightDecay * param (L2), m and v the moving
 * averages, and param -= stepSize * m / (sqrt(v) + eps), where the caller folds the bias
 * corrections into stepSize = lr * sqrt(1 - beta2^t) / (1 - beta1^t). gradScale is 1 but for a
 * partial group of accumulated micro-batches.
 */
function adam(i: u32, params: Buf<f32>, grads: Buf<f32>, m: Buf<f32>, v: Buf<f32>, stepSize: f32, beta1: f32, beta2: f32, eps: f32, weightDecay: f32, gradScale: f32): void {
  const g = gradScale * grads[i] + weightDecay * params[i];
  const mi = beta1 * m[i] + (1.0 - beta1) * g;
  const vi = beta2 * v[i] + (1.0 - beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  params[i] = params[i] - stepSize * mi / (sqrt(vi) + eps);
  grads[i] = 0.0;
}

/** Plain gradient descent with L2 weight decay: param -= lr * (gradScale * grad + weightDecay * param). */
function sgd(i: u32, params: Buf<f32>, grads: Buf<f32>, lr: f32, weightDecay: f32, gradScale: f32): void {
  params[i] = params[i] - lr * (gradScale * grads[i] + weightDecay * params[i]);
  grads[i] = 0.0;
}

/** @kernel */
export function adamStep(i: u32, params: Buf<f32>, grads: Buf<f32>, m: Buf<f32>, v: Buf<f32>, stepSize: f32, beta1: f32, beta2: f32, eps: f32, weightDecay: f32, gradScale: f32): void {
  adam(i, params, grads, m, v, stepSize, beta1, beta2, eps, weightDecay, gradScale);
}

/** @kernel */
export function sgdStep(i: u32, params: Buf<f32>, grads: Buf<f32>, lr: f32, weightDecay: f32, gradScale: f32): void {
  sgd(i, params, grads, lr, weightDecay, gradScale);
}

/** Rows of `width` parameters whose argmax and softmax are kept (learned probing's logits, N_p per row). */
export interface RowsConfig {
  width: i32;
}

/** Adam over row `row` of a rows group (see adamStepRows). */
function adamRow(width: i32, row: u32, params: Buf<f32>, grads: Buf<f32>, m: Buf<f32>, v: Buf<f32>, argmax: Buf<u32>, softmax: Buf<f32>, stepSize: f32, beta1: f32, beta2: f32, eps: f32, weightDecay: f32, gradScale: f32): void {
  logitGradRow(width, row, grads, softmax);
  for (let p = 0; p < width; p++) {
    adam(row * u32(width) + u32(p), params, grads, m, v, stepSize, beta1, beta2, eps, weightDecay, gradScale);
  }
  refreshRow(width, row, params, argmax, softmax);
}

/** Gradient descent over row `row` of a rows group (see adamStepRows). */
function sgdRow(width: i32, row: u32, params: Buf<f32>, grads: Buf<f32>, argmax: Buf<u32>, softmax: Buf<f32>, lr: f32, weightDecay: f32, gradScale: f32): void {
  logitGradRow(width, row, grads, softmax);
  for (let p = 0; p < width; p++) {
    sgd(row * u32(width) + u32(p), params, grads, lr, weightDecay, gradScale);
  }
  refreshRow(width, row, params, argmax, softmax);
}

/**
 * Adam over a group of rows (thread i: row i) whose gradient is given with respect to each row's
 * softmax (what the grid's backward accumulates for learned probing's logits): the step maps it to
 * the logits through the softmax's Jacobian (probe.ts, logitGradRow), updates them, and refreshes
 * the row's argmax and softmax in the same pass: the probe table follows its logits with no pass
 * of its own. On the CPU in lane form (16 rows per call, vectorized across rows).
 * @kernel
 * @schedule lanes
 */
export function adamStepRows(i: u32, cfg: Const<RowsConfig>, params: Buf<f32>, grads: Buf<f32>, m: Buf<f32>, v: Buf<f32>, argmax: Buf<u32>, softmax: Buf<f32>, stepSize: f32, beta1: f32, beta2: f32, eps: f32, weightDecay: f32, gradScale: f32): void {
  adamRow(cfg.width, i, params, grads, m, v, argmax, softmax, stepSize, beta1, beta2, eps, weightDecay, gradScale);
}

/**
 * Gradient descent over rows, as adamStepRows.
 * @kernel
 * @schedule lanes
 */
export function sgdStepRows(i: u32, cfg: Const<RowsConfig>, params: Buf<f32>, grads: Buf<f32>, argmax: Buf<u32>, softmax: Buf<f32>, lr: f32, weightDecay: f32, gradScale: f32): void {
  sgdRow(cfg.width, i, params, grads, argmax, softmax, lr, weightDecay, gradScale);
}

// Sparse updates (modules/optimizer.ts, a group with `touched`), over rows of `width` values (a
// table entry's features, or a codebook row's logits): only the touched rows are read and written,
// and their gradient cleared. Lazy Adam: a touched row's m and v take its gradient, an untouched
// row's m, v and parameters stay as they are (dense Adam would decay its moments and move it by
// them); the bias correction folded into stepSize is the global step's, as PyTorch's SparseAdam. A
// row touched in every step gets exactly the dense step (the same operations in the same order).
//
// The table's entries come as a bitmap (HashGrid.trackTouched): thread j takes word
// bitmap[firstWord + j] and updates rows first + 32 j + b for its set bits b, in increasing order,
// so that the step walks the table in its own order (streaming, where a list in the order of the
// points made every row a cache miss) and skips a word without bits at the cost of reading it.

/** The position of the lowest set bit of w (not 0): the count of the bits below it. */
export function lowestBit(w: u32): u32 {
  return popcount(~w & (w - 1));
}

/** How many words ahead a sparse step prefetches the touched rows (their lines are not adjacent: the hardware's prefetch misses them). */
export const PREFETCH_WORDS = 32;

/** @kernel */
export function adamStepSparse(j: u32, cfg: Const<RowsConfig>, bitmap: Buf<u32>, firstWord: u32, first: u32, words: u32, params: Buf<f32>, grads: Buf<f32>, m: Buf<f32>, v: Buf<f32>, stepSize: f32, beta1: f32, beta2: f32, eps: f32, weightDecay: f32, gradScale: f32): void {
  if (j + PREFETCH_WORDS < words) {
    let ahead = bitmap[firstWord + j + PREFETCH_WORDS];
    const na = popcount(ahead);
    for (let k: u32 = 0; k < na; k++) {
      const at = (first + (j + PREFETCH_WORDS) * 32 + lowestBit(ahead)) * u32(cfg.width);
      ahead = ahead & (ahead - 1);
      prefetch(params, at);
      prefetch(grads, at);
      prefetch(m, at);
      prefetch(v, at);
    }
  }
  let bits = bitmap[firstWord + j];
  const n = popcount(bits);
  for (let k: u32 = 0; k < n; k++) {
    const row = first + j * 32 + lowestBit(bits);
    bits = bits & (bits - 1);
    for (let p = 0; p < cfg.width; p++) {
      adam(row * u32(cfg.width) + u32(p), params, grads, m, v, stepSize, beta1, beta2, eps, weightDecay, gradScale);
    }
  }
}

/** @kernel */
export function sgdStepSparse(j: u32, cfg: Const<RowsConfig>, bitmap: Buf<u32>, firstWord: u32, first: u32, params: Buf<f32>, grads: Buf<f32>, lr: f32, weightDecay: f32, gradScale: f32): void {
  let bits = bitmap[firstWord + j];
  const n = popcount(bits);
  for (let k: u32 = 0; k < n; k++) {
    const row = first + j * 32 + lowestBit(bits);
    bits = bits & (bits - 1);
    for (let p = 0; p < cfg.width; p++) {
      sgd(row * u32(cfg.width) + u32(p), params, grads, lr, weightDecay, gradScale);
    }
  }
}

/** storeHalf over the touched rows only (the bitmap, as adamStepSparse). @kernel */
export function storeHalfSparse(j: u32, cfg: Const<RowsConfig>, bitmap: Buf<u32>, firstWord: u32, first: u32, master: Buf<f32>, params: Buf<f16>): void {
  let bits = bitmap[firstWord + j];
  const n = popcount(bits);
  for (let k: u32 = 0; k < n; k++) {
    const row = first + j * 32 + lowestBit(bits);
    bits = bits & (bits - 1);
    for (let p = 0; p < cfg.width; p++) {
      params[row * u32(cfg.width) + u32(p)] = master[row * u32(cfg.width) + u32(p)];
    }
  }
}

// Learned probing's codebook rows come as a list (HashGrid.touched().rows: few rows, each N_p
// logits wide): thread j updates row list[first + j].

/**
 * adamStepRows over the listed rows only (in lane form too: 16 listed rows per call).
 * @kernel
 * @schedule lanes
 */
export function adamStepRowsSparse(j: u32, cfg: Const<RowsConfig>, list: Buf<u32>, first: u32, params: Buf<f32>, grads: Buf<f32>, m: Buf<f32>, v: Buf<f32>, argmax: Buf<u32>, softmax: Buf<f32>, stepSize: f32, beta1: f32, beta2: f32, eps: f32, weightDecay: f32, gradScale: f32): void {
  adamRow(cfg.width, list[first + j], params, grads, m, v, argmax, softmax, stepSize, beta1, beta2, eps, weightDecay, gradScale);
}

/**
 * sgdStepRows over the listed rows only.
 * @kernel
 * @schedule lanes
 */
export function sgdStepRowsSparse(j: u32, cfg: Const<RowsConfig>, list: Buf<u32>, first: u32, params: Buf<f32>, grads: Buf<f32>, argmax: Buf<u32>, softmax: Buf<f32>, lr: f32, weightDecay: f32, gradScale: f32): void {
  sgdRow(cfg.width, list[first + j], params, grads, argmax, softmax, lr, weightDecay, gradScale);
}

/**
 * Mixed precision: an f16 parameter is its f32 master weight rounded to nearest.
 * @kernel
 */
export function storeHalf(i: u32, master: Buf<f32>, params: Buf<f16>): void {
  params[i] = master[i];
}

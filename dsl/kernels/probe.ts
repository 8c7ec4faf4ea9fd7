// Learned hash probing's per-row state, derived from a codebook row's N_p logits in one pass: the
// argmax slot (the first of equals), which the forward reads, and the softmax, through which the
// straight-through gradient reaches the logits. Computed when the logits change (the optimizer
// step, optimizer.ts; HashGrid.refreshProbes), once per row rather than once per lookup; so is
// the softmax's Jacobian (logitGradRow).
import { type Buf, type f32, type i32, exp, fma, localArray, max, select, u32 } from "../index.ts";

/** probe[row] = argmax and softmax[row][p] = softmax(logits[row][.])_p, for rows of `width`. */
export function refreshRow(width: i32, row: u32, logits: Buf<f32>, probe: Buf<u32>, softmax: Buf<f32>): void {
  const first = row * u32(width);
  const e = localArray<f32>(width);
  let best: u32 = 0;
  let top = logits[first];
  for (let p = 1; p < width; p++) {
    best = select(logits[first + u32(p)] > top, u32(p), best);
    top = max(top, logits[first + u32(p)]);
  }
  let total: f32 = 0.0;
  for (let p = 0; p < width; p++) {
    e[p] = exp(logits[first + u32(p)] - top);
    total += e[p];
  }
  for (let p = 0; p < width; p++) {
    softmax[first + u32(p)] = e[p] / total;
  }
  probe[row] = best;
}

/**
 * The logits' gradient of a row from the gradient with respect to its softmax, in place: the
 * backward accumulates G_p = d loss / d s_p (grid.ts), and d loss / d logit_p =
 * s_p * (G_p - sum_q s_q G_q), with s the softmax the backward ran under (the last refresh's).
 */
export function logitGradRow(width: i32, row: u32, grads: Buf<f32>, softmax: Buf<f32>): void {
  const first = row * u32(width);
  let mean: f32 = 0.0;
  for (let p = 0; p < width; p++) {
    mean = fma(softmax[first + u32(p)], grads[first + u32(p)], mean);
  }
  for (let p = 0; p < width; p++) {
    grads[first + u32(p)] = softmax[first + u32(p)] * (grads[first + u32(p)] - mean);
  }
}

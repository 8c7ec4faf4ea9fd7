// Learned hash probing's per-row state, derived from a codebook row's N_p logits in one pass: the
// argmax slot (the first of equals), which the forward reads, and the softmax, which the
// backward's straight-through gradient reads. Computed when the logits change (the optimizer
// step, optimizer.ts; HashGrid.refreshProbes), once per row rather than once per lookup.
import { type Buf, type f32, type i32, exp, localArray, max, u32 } from "../index.ts";

/** probe[row] = argmax and softmax[row][p] = softmax(logits[row][.])_p, for rows of `width`. */
export function refreshRow(width: i32, row: u32, logits: Buf<f32>, probe: Buf<u32>, softmax: Buf<f32>): void {
  const first = row * u32(width);
  const e = localArray<f32>(width);
  let best: u32 = 0;
  let top = logits[first];
  for (let p = 1; p < width; p++) {
    if (logits[first + u32(p)] > top) {
      best = u32(p);
    }
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

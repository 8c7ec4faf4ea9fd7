// Losses fused with their gradient. Per element of a prediction p and its target t; `scale` is
// the caller's factor (1 / element count for a mean, times a loss scale), applied to both the value
// and the gradient. Relative L2 is tiny-cuda-nn's (its denominator treated as a constant).
import { type Buf, type Const, type f32, type i32, type u32, abs, detach, select } from "../index.ts";
import { accumulate, loadRows, rowMask, storeRows, tileMap, tileSum } from "../tiles.ts";

export const L2 = 0;
export const RELATIVE_L2 = 1;
export const L1 = 2;
export const HUBER = 3;

/** The loss of one element, times scale. */
export function lossValue(p: f32, t: f32, kind: i32, delta: f32, scale: f32): f32 {
  const d = p - t;
  let v = d * d;
  if (kind === RELATIVE_L2) {
    v = d * d / detach(p * p + 0.01); // tiny-cuda-nn's gradient holds the denominator fixed
  } else if (kind === L1) {
    v = abs(d);
  } else if (kind === HUBER) {
    v = select(abs(d) <= delta, 0.5 * d * d, delta * (abs(d) - 0.5 * delta));
  }
  return v * scale;
}

/** d loss / d p of one element, times scale. */
export function lossGrad(p: f32, t: f32, kind: i32, delta: f32, scale: f32): f32 {
  const d = p - t;
  let g = 2.0 * d;
  if (kind === RELATIVE_L2) {
    g = 2.0 * d / (p * p + 0.01);
  } else if (kind === L1) {
    g = select(d > 0.0, 1.0, select(d < 0.0, -1.0, 0.0));
  } else if (kind === HUBER) {
    g = select(abs(d) <= delta, d, select(d > 0.0, delta, -delta));
  }
  return g * scale;
}

/** The loss of a masked element (rows past the batch have mask 0). */
export function maskedLoss(p: f32, t: f32, mask: f32, kind: i32, delta: f32, scale: f32): f32 {
  return select(mask > 0.0, lossValue(p, t, kind, delta, scale), 0.0);
}

/** The loss gradient of a masked element. */
export function maskedLossGrad(p: f32, t: f32, mask: f32, kind: i32, delta: f32, scale: f32): f32 {
  return select(mask > 0.0, lossGrad(p, t, kind, delta, scale), 0.0);
}

export interface LossConfig {
  /** Items per block. */
  rows: i32;
  /** Values per item. */
  width: i32;
  kind: i32;
  huberDelta: f32;
}

/**
 * grad[i][c] = d loss / d pred[i][c] and loss[0] += the summed loss (both times scale), for
 * predictions and targets of `width` values per item.
 * @kernel
 * @block rows
 */
export function lossAndGrad(block: u32, cfg: Const<LossConfig>, pred: Buf<f32>, target: Buf<f32>, grad: Buf<f32>, loss: Buf<f32>, scale: f32): void {
  const p = loadRows(pred, cfg.width, 0, cfg.width);
  const t = loadRows(target, cfg.width, 0, cfg.width);
  const mask = rowMask();
  storeRows(grad, cfg.width, 0, tileMap(maskedLossGrad, p, t, mask, cfg.kind, cfg.huberDelta, scale));
  accumulate(loss, 0, tileSum(tileSum(tileMap(maskedLoss, p, t, mask, cfg.kind, cfg.huberDelta, scale), 0), 1));
}

// Losses. Per element of a prediction p and its target t; `scale` is the caller's factor (1 /
// element count for a mean, times a loss scale). Their gradients are the compiler's (`@adjoint`):
// relative L2 is tiny-cuda-nn's, its denominator held constant (detach); L1's gradient at d = 0 is 0.
import { type Buf, type Const, type f32, type i32, type u32, abs, detach, select } from "../index.ts";
import { accumulate, loadRows, rowMask, tileMap, tileSum } from "../tiles.ts";

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

/** The loss of a masked element (rows past the batch have mask 0). */
export function maskedLoss(p: f32, t: f32, mask: f32, kind: i32, delta: f32, scale: f32): f32 {
  return select(mask > 0.0, lossValue(p, t, kind, delta, scale), 0.0);
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
 * loss[0] += the summed loss of predictions against targets of `width` values per item (times
 * scale). Its derived adjoint, which also writes the loss (`outputs`), is lossAndGrad: the loss
 * and d loss / d pred (added to d_pred) in one pass, from d_loss[0] = 1.
 * @kernel
 * @block rows
 * @adjoint lossAndGrad pred outputs
 */
export function lossSum(block: u32, cfg: Const<LossConfig>, pred: Buf<f32>, target: Buf<f32>, loss: Buf<f32>, scale: f32): void {
  const p = loadRows(pred, cfg.width, 0, cfg.width);
  const t = loadRows(target, cfg.width, 0, cfg.width);
  accumulate(loss, 0, tileSum(tileSum(tileMap(maskedLoss, p, t, rowMask(), cfg.kind, cfg.huberDelta, scale), 0), 1));
}

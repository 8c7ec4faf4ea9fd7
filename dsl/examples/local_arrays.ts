// Local arrays: a fixed-size window gathered into registers, then a weighted sum and a max.
import { type Buf, type Const, type f32, type i32, type u32, localArray, max, i32 as toI32 } from "../index.ts";

export interface WindowConfig {
  width: i32;
  weights: f32[];
}

/** @kernel */
export function window(i: u32, cfg: Const<WindowConfig>, n: i32, x: Buf<f32>, sum: Buf<f32>, peak: Buf<f32>): void {
  const vals = localArray<f32>(cfg.width);
  for (let k = 0; k < cfg.width; k++) {
    // Clamp-to-edge reads.
    let j = toI32(i) + k - cfg.width / 2;
    if (j < 0) {
      j = 0;
    }
    if (j > n - 1) {
      j = n - 1;
    }
    vals[k] = x[j];
  }
  let s: f32 = 0.0;
  let m = vals[0];
  for (let k = 0; k < cfg.width; k++) {
    s += cfg.weights[k] * vals[k];
    m = max(m, vals[k]);
  }
  sum[i] = s;
  peak[i] = m;
}

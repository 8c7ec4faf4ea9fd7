// An exponential moving average of parameters (modules/ema.ts), one parameter group per launch
// (index i runs over the group's elements), and the buffer exchange that lets evaluation run on
// the averaged weights in place.
import { type Buf, type Const, type f32, u32 } from "../index.ts";
import type { RowsConfig } from "./optimizer.ts";

/**
 * ema = decay * ema + (1 - decay) * param, rounded in this order: t1 = decay * ema,
 * t2 = (1 - decay) * param, ema = t1 + t2 (each operation rounded to f32, no contraction).
 * @kernel
 */
export function emaUpdate(i: u32, params: Buf<f32>, ema: Buf<f32>, decay: f32): void {
  ema[i] = decay * ema[i] + (1.0 - decay) * params[i];
}

/**
 * emaUpdate over the rows list[first + j] of `width` values only (sparse updates: the rows the
 * step touched; an unlisted row's average stays as it is, where the dense update would move it
 * toward its unchanged parameters).
 * @kernel
 */
export function emaUpdateSparse(j: u32, cfg: Const<RowsConfig>, list: Buf<u32>, first: u32, params: Buf<f32>, ema: Buf<f32>, decay: f32): void {
  const row = list[first + j];
  for (let p = 0; p < cfg.width; p++) {
    const k = row * u32(cfg.width) + u32(p);
    ema[k] = decay * ema[k] + (1.0 - decay) * params[k];
  }
}

/**
 * Exchanges the contents of a and b.
 * @kernel
 */
export function swapBuffers(i: u32, a: Buf<f32>, b: Buf<f32>): void {
  const t = a[i];
  a[i] = b[i];
  b[i] = t;
}

/**
 * dst = src (bit for bit).
 * @kernel
 */
export function copyBuffer(i: u32, src: Buf<f32>, dst: Buf<f32>): void {
  dst[i] = src[i];
}

// An exponential moving average of parameters (modules/ema.ts), one parameter group per launch
// (index i runs over the group's elements), and the buffer exchange that lets evaluation run on
// the averaged weights in place.
import { type Buf, type Const, type f32, popcount, u32 } from "../index.ts";
import { lowestBit, type RowsConfig } from "./optimizer.ts";

/**
 * ema = decay * ema + (1 - decay) * param, rounded in this order: t1 = decay * ema,
 * t2 = (1 - decay) * param, ema = t1 + t2 (each operation rounded to f32, no contraction).
 * @kernel
 */
export function emaUpdate(i: u32, params: Buf<f32>, ema: Buf<f32>, decay: f32): void {
  ema[i] = decay * ema[i] + (1.0 - decay) * params[i];
}

/**
 * emaUpdate over the touched rows of `width` values only (sparse updates; the bitmap as
 * optimizer.ts adamStepSparse: thread j, rows first + 32 j + b for the set bits b of word
 * bitmap[firstWord + j]). An untouched row's average stays as it is, where the dense update would
 * move it toward its unchanged parameters.
 * @kernel
 */
export function emaUpdateSparse(j: u32, cfg: Const<RowsConfig>, bitmap: Buf<u32>, firstWord: u32, first: u32, params: Buf<f32>, ema: Buf<f32>, decay: f32): void {
  let bits = bitmap[firstWord + j];
  const n = popcount(bits);
  for (let k: u32 = 0; k < n; k++) {
    const row = first + j * 32 + lowestBit(bits);
    bits = bits & (bits - 1);
    for (let p = 0; p < cfg.width; p++) {
      const i = row * u32(cfg.width) + u32(p);
      ema[i] = decay * ema[i] + (1.0 - decay) * params[i];
    }
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

// Elementwise: out = a * x + y, with one rounding per operation (no FMA contraction).
import { type Buf, type f32, type u32 } from "../index.ts";

/** @kernel */
export function saxpy(i: u32, a: f32, x: Buf<f32>, y: Buf<f32>, out: Buf<f32>): void {
  out[i] = a * x[i] + y[i];
}

// Atomic scatter-add: many threads accumulate into the same bins (a histogram of values
// weighted by w). The CPU backend uses std::atomic_ref, CUDA atomicAdd.
import { type Buf, type u32, atomicAdd, clamp, f32, floor, i32 } from "../index.ts";

/** @kernel */
export function histogram(i: u32, x: Buf<f32>, w: Buf<f32>, bins: i32, hist: Buf<f32>, counts: Buf<u32>): void {
  const b = clamp(i32(floor(x[i] * f32(bins))), 0, bins - 1);
  atomicAdd(hist, b, w[i]);
  atomicAdd(counts, b, 1);
}

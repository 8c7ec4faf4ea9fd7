// The grid's features blended with a triangle-wave encoding of the same frequency: feature f of
// level l adds BLEND * tri(x_d * res_l / 2), d = f % dims, where tri is the unit triangle wave
// |2 fract(t) - 1|. The wave carries the level's frequency everywhere, also where the table's
// entries collide, and its input gradient is piecewise constant and non-zero (the compiler derives
// it with the rest).
//
//   bun run train --encoding examples/variants/triangle_blend.ts
//
// It works with any dims and levels, so it declares no `requires` (see spacetime.ts).
import { type Buf, type Const, type Float, type f32, type i32, abs, floor, localArray, u32 } from "ngp-kernels/dsl";
import { type GridConfig, inputIndex, levelFeatures, outputIndex } from "ngp-kernels/dsl/kernels/lookup.ts";

/** How much of the wave is added to each feature. */
export const BLEND = 0.25;

/** The unit triangle wave: 1 at integers, 0 halfway between. */
export function tri(t: f32): f32 {
  return abs(2.0 * (t - floor(t)) - 1.0);
}

/** Replaces lookup.ts's encodeLevel: the default features plus the wave. */
export function encodeLevel(cfg: Const<GridConfig>, l: i32, x: Buf<f32>, i: u32, params: Buf<Float>, probe: Buf<u32>, softmax: Buf<f32>, out: Buf<f32>): void {
  const acc = localArray<f32>(cfg.features);
  levelFeatures(cfg, l, x, i, params, probe, softmax, acc);
  const o = outputIndex(cfg, i, l);
  for (let f = 0; f < cfg.features; f++) {
    const d = f % cfg.dims;
    const t = x[inputIndex(cfg, i, d)] * (cfg.scale[l * cfg.dims + d] * 0.5);
    out[o + u32(f)] = acc[f] + BLEND * tri(t);
  }
}

// The parts of the hash-grid encoding a variant may replace. A variant is a kernel file that
// exports functions with these names and signatures (any of them); compiled with it
// (HashGrid's `variant` option, `bun run train --encoding file.ts`), every call of a part below
// resolves to the variant's function instead, inlined into the fused kernels like the default,
// and the gradients come from the compiler (codegen/adjoint.ts). The defaults live in lookup.ts
// and hash.ts under other names, so that a variant can call them (import from
// "ngp-kernels/dsl/kernels/lookup.ts"): e.g. a variant's encodeLevel may blend
// defaultEncodeLevel's features with its own.
import { type Buf, type Const, type Float, type f32, type i32, type u32 } from "../index.ts";
import { coherentHash } from "./hash.ts";
import { weight } from "./interpolate.ts";
import { type GridConfig, defaultCornerSlot, defaultEncodeLevel } from "./lookup.ts";

/** The spatial hash of a grid vertex (hashed levels): any u32, reduced modulo the table size. */
export function spatialHash(coords: u32[], dims: i32): u32 {
  return coherentHash(coords, dims);
}

/** The weight of a corner along one axis, given the fraction t toward it (in [0, 1]). */
export function interpolationWeight(mode: i32, t: f32): f32 {
  return weight(mode, t);
}

/** The index scheme: the slot of vertex `coords` in level l's table (in [0, cfg.size[l])). */
export function cornerSlot(cfg: Const<GridConfig>, l: i32, coords: u32[]): u32 {
  return defaultCornerSlot(cfg, l, coords);
}

/**
 * The whole per-level lookup: writes out[(i * levels + l) * features + f] for f < features,
 * reading params[(offset[l] + slot) * features + f] (probe and softmax: learned probing's table
 * and slot probabilities, for lookup.ts's feature()).
 */
export function encodeLevel(cfg: Const<GridConfig>, l: i32, x: Buf<f32>, i: u32, params: Buf<Float>, probe: Buf<u32>, softmax: Buf<f32>, out: Buf<f32>): void {
  defaultEncodeLevel(cfg, l, x, i, params, probe, softmax, out);
}

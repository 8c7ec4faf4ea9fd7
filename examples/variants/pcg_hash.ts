// A variant of the hash-grid encoding with another spatial hash: each coordinate goes through
// PCG's output permutation (O'Neill 2014; the "pcg3d"-style hash of Jarzynski and Olano, 2020) and
// is chained into the next, instead of tiny-cuda-nn's XOR of coordinate * prime. It decorrelates
// neighbouring vertices better, at the price of the coherent hash's cache locality along x.
//
//   bun run train --encoding examples/variants/pcg_hash.ts
//   bun run gradcheck --encoding examples/variants/pcg_hash.ts
//   bun run compile examples/variants/pcg_hash.ts
//
// It works with any dims and levels, so it declares no `requires` (see spacetime.ts).
import { type i32, type u32 } from "ngp-kernels/dsl";

/** PCG's state step and output permutation of one 32-bit word. */
export function pcg(v: u32): u32 {
  const state: u32 = v * 747796405 + 2891336453;
  const word: u32 = ((state >>> ((state >>> 28) + 4)) ^ state) * 277803737;
  return (word >>> 22) ^ word;
}

/** Replaces lookup.ts's spatialHash: the vertex's coordinates chained through pcg. */
export function spatialHash(coords: u32[], dims: i32): u32 {
  let h: u32 = 0;
  for (let d = 0; d < dims; d++) {
    h = pcg(h + coords[d]);
  }
  return h;
}

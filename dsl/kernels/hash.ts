// Spatial hashing of integer grid coordinates, as in Instant-NGP / tiny-cuda-nn (grid.h):
// the XOR of coordinate * prime in wrapping u32 arithmetic. The first prime is 1, so coherent
// neighbours along the first axis land in neighbouring slots (cache friendly).
import { type i32, type u32 } from "../index.ts";

/** tiny-cuda-nn's primes for D <= 7, extended with one more prime for D = 8. */
export const PRIMES: u32[] = [1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737, 3367900313];

/** A second, independent set of primes (Compact NGP's index hash h2 must not correlate with h1). */
export const PRIMES2: u32[] = [3538334777, 2767054501, 3983978623, 2315877527, 3210981251, 2735576959, 3931168589, 2795684029];

/** XOR over the first `dims` axes of coords[d] * PRIMES[d], wrapping modulo 2^32. */
export function coherentHash(coords: u32[], dims: i32): u32 {
  let h: u32 = 0;
  for (let d = 0; d < dims; d++) {
    h ^= coords[d] * PRIMES[d];
  }
  return h;
}

/** The same XOR over PRIMES2: learned probing's codebook-row hash, independent of coherentHash. */
export function indexHash(coords: u32[], dims: i32): u32 {
  let h: u32 = 0;
  for (let d = 0; d < dims; d++) {
    h ^= coords[d] * PRIMES2[d];
  }
  return h;
}

// Integer hashing in wrapping u32 arithmetic: the coherent-prime spatial hash of Instant-NGP
// (tiny-cuda-nn's grid.h) over an integer grid coordinate, reduced modulo the table size.
import { type Buf, type i32, u32 } from "../index.ts";

const PRIMES: u32[] = [1, 2654435761, 805459861, 3674653429];

/** @kernel */
export function spatialHash(i: u32, coords: Buf<u32>, dims: i32, tableSize: u32, out: Buf<u32>): void {
  let h: u32 = 0;
  for (let d = 0; d < 4; d++) {
    if (d < dims) {
      h ^= coords[i * 4 + u32(d)] * PRIMES[d];
    }
  }
  out[i] = h % tableSize;
}

// Seeded random values (mulberry32): the same seed gives the same values on every machine, so
// initializations, benchmark inputs, test inputs and the points' shuffle are reproducible. The one
// generator of the project.

/** Values in [0, 1) from a seeded generator (mulberry32). */
export function seededUniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` values uniform in [lo, hi) from `seed` (the same inputs for every variant a benchmark compares). */
export function uniformValues(n: number, seed: number, lo = 0, hi = 1): Float32Array {
  const next = seededUniform(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * next());
}

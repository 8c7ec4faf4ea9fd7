// Test utilities shared across suites: a seeded generator (the seed is printed, so a failure on
// fresh random inputs can be replayed with NGPK_TEST_SEED), and ulp distances.

/** The project's seeded generator (mulberry32, modules/random.ts). */
export { seededUniform as rng } from "../modules/random.ts";

/** A fresh seed per run (or NGPK_TEST_SEED), logged so that a failing run can be replayed. */
export function freshSeed(label: string): number {
  const seed = process.env.NGPK_TEST_SEED ? Number(process.env.NGPK_TEST_SEED) : (Math.random() * 2 ** 32) >>> 0;
  console.log(`[${label}] seed ${seed} (replay with NGPK_TEST_SEED=${seed})`);
  return seed;
}

export function uniformF32(r: () => number, n: number, lo: number, hi: number): Float32Array {
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * r());
}

const f32 = new Float32Array(1);
const i32 = new Int32Array(f32.buffer);
/** Distance in units in the last place between two f32 values (0 when bit-identical). */
export function ulpDistance(a: number, b: number): number {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b) ? 0 : Infinity;
  const ordered = (x: number) => {
    f32[0] = x;
    const bits = i32[0]!;
    return bits < 0 ? -2147483648 - bits : bits;
  };
  return Math.abs(ordered(a) - ordered(b));
}

/** The largest ulp distance between two f32 arrays (any difference for integer arrays), and where. */
export function maxUlp(a: ArrayLike<number>, b: ArrayLike<number>): { ulp: number; at: number } {
  const float = a instanceof Float32Array || a instanceof Float64Array;
  if (a.length !== b.length) return { ulp: Infinity, at: Math.min(a.length, b.length) };
  let worst = { ulp: 0, at: -1 };
  for (let i = 0; i < a.length; i++) {
    const d = float ? ulpDistance(a[i]!, b[i]!) : a[i] === b[i] ? 0 : Infinity;
    if (d > worst.ulp) worst = { ulp: d, at: i };
  }
  return worst;
}

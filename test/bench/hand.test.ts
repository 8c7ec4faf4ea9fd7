// The hand-written hash grid (bench/hashgrid_hand.cpp): the vector kernels must equal the scalar
// definition bit for bit, and both must agree with an independent float64 implementation written
// here. Fresh random configurations and inputs each run (the seed is printed). Two builds are
// checked: the native one (AVX-512 here) and one with -mno-avx512f (the AVX2 path, which an
// AVX2-only machine gets natively); the AVX2 build's forward must also equal the generated CPU
// kernel's bit for bit, as bench/hashgrid.ts requires before it times them.

import { beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { DEFAULT_GRID_2D, DEFAULT_GRID_3D } from "../../modules/shipped.ts";
import { HashGrid } from "../../modules/hashgrid.ts";
import {
  gridTables,
  handBackward,
  handBackwardScalar,
  handForward,
  handForwardScalar,
  loadHand,
  type HandGridConfig,
  type HandLib,
} from "../../bench/hand.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { freshSeed, rng } from "../util.ts";

const CXX = findCxx().tool;
const PRIMES = [1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737, 3367900313];

let lib: HandLib;
let avx2: HandLib;
beforeAll(async () => {
  if (!CXX) return;
  // The first builds take a while on 2 cores.
  [lib, avx2] = await Promise.all([loadHand(), loadHand({ isa: "avx2" })]);
  console.log(`[hand grid] native build: ${lib.vectorPath}; -mno-avx512f build: ${avx2.vectorPath}`);
}, 300_000);
const CPUINFO = (() => {
  try {
    return readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return "";
  }
})();
const HAS_AVX2 = /\bavx2\b/.test(CPUINFO) && /\bfma\b/.test(CPUINFO);
const HAS_AVX512 = ["avx512f", "avx512dq", "avx512vl", "avx512bw"].every((f) => new RegExp(`\\b${f}\\b`).test(CPUINFO));

// ---------------------------------------------------------------------------------------------
// Independent float64 reference
// ---------------------------------------------------------------------------------------------

/**
 * The f32 value of x*s + 0.5 rounded once (what fmaf computes), from double arithmetic: x*s of
 * two f32 values is exact in double, the sum is split into hi + lo exactly (two-sum), and a tie of
 * the f32 rounding of hi is broken by the sign of lo.
 */
function fmaF32(x: number, s: number, c: number): number {
  const p = x * s;
  const hi = p + c;
  const bb = hi - p;
  const lo = p - (hi - bb) + (c - bb);
  const r = Math.fround(hi);
  if (lo === 0 || r === hi) return r;
  // The neighbouring f32 on the other side of hi.
  const up = hi > r;
  const other = nextF32(r, up);
  if (Math.abs(other - hi) !== Math.abs(hi - r)) return r; // not a tie: lo cannot change the side
  // A tie between r and other, broken by lo.
  return lo > 0 === other > r ? other : r;
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);
function nextF32(v: number, up: boolean): number {
  f32buf[0] = v;
  if (v === 0) {
    u32buf[0] = up ? 1 : 0x80000001;
  } else if (v > 0 === up) {
    u32buf[0]++;
  } else {
    u32buf[0]--;
  }
  return f32buf[0]!;
}

interface Corner {
  entry: number; // table entry (offset included)
  w: number; // weight, float64
}

/** The 2^D corners of point xp at level l, computed in float64 (cells as the f32 semantics choose them). */
function corners64(cfg: HandGridConfig, l: number, xp: ArrayLike<number>): Corner[] {
  const D = cfg.dims;
  const cell: number[] = [];
  const w0: number[] = [];
  const w1: number[] = [];
  for (let d = 0; d < D; d++) {
    const xd = Math.min(Math.max(xp[d]!, 0), 1);
    const s = cfg.scale[l * D + d]!;
    const rounded = Math.floor(fmaF32(xd, s, 0.5));
    // The cell of the exact x*s + 0.5 (the f32 sum may round up onto the next integer).
    const g = xd * s + 0.5 - rounded < 0 ? rounded - 1 : rounded;
    cell.push(g);
    const frac = xd * s + 0.5 - g; // x*s exact; one double rounding
    w1.push(Math.min(Math.max(frac, 0), 1));
    w0.push(Math.min(Math.max(1 - frac, 0), 1));
  }
  const out: Corner[] = [];
  for (let c = 0; c < 1 << D; c++) {
    let w = 1;
    let h = 0;
    for (let d = 0; d < D; d++) {
      const bit = (c >> d) & 1;
      w *= bit ? w1[d]! : w0[d]!;
      const coord = (cell[d]! + bit) >>> 0;
      if (cfg.hashed[l]) h = (h ^ Math.imul(coord, PRIMES[d]!)) >>> 0;
      else h = (h + Math.imul(coord, cfg.stride[l * D + d]!)) >>> 0;
    }
    out.push({ entry: cfg.offset[l]! + (h % cfg.size[l]!), w });
  }
  return out;
}

/** Forward in float64: value and sum |w*v| per output. */
function forward64(cfg: HandGridConfig, n: number, x: Float32Array, params: Float32Array) {
  const { dims: D, levels: L, features: F } = cfg;
  const val = new Float64Array(n * L * F);
  const mag = new Float64Array(n * L * F);
  for (let i = 0; i < n; i++) {
    const xp = x.subarray(i * D, i * D + D);
    for (let l = 0; l < L; l++) {
      for (const { entry, w } of corners64(cfg, l, xp)) {
        for (let f = 0; f < F; f++) {
          const v = params[entry * F + f]!;
          val[(i * L + l) * F + f]! += w * v;
          mag[(i * L + l) * F + f]! += Math.abs(w * v);
        }
      }
    }
  }
  return { val, mag };
}

/** Backward in float64: gradient and sum |w*dy| per parameter. */
function backward64(cfg: HandGridConfig, n: number, x: Float32Array, dy: Float32Array, nParams: number) {
  const { dims: D, levels: L, features: F } = cfg;
  const val = new Float64Array(nParams);
  const mag = new Float64Array(nParams);
  for (let i = 0; i < n; i++) {
    const xp = x.subarray(i * D, i * D + D);
    for (let l = 0; l < L; l++) {
      for (const { entry, w } of corners64(cfg, l, xp)) {
        for (let f = 0; f < F; f++) {
          const g = w * dy[(i * L + l) * F + f]!;
          val[entry * F + f]! += g;
          mag[entry * F + f]! += Math.abs(g);
        }
      }
    }
  }
  return { val, mag };
}

/** Largest |got - want| / mag; an entry with mag 0 must be exactly 0. */
function maxRelError(got: Float32Array, want: Float64Array, mag: Float64Array): number {
  let worst = 0;
  for (let k = 0; k < got.length; k++) {
    const err = Math.abs(got[k]! - want[k]!);
    if (mag[k] === 0) {
      if (got[k] !== 0) return Infinity;
    } else {
      worst = Math.max(worst, err / mag[k]!);
    }
  }
  return worst;
}

/** Index of the first element whose bits differ, or -1. */
function firstBitDifference(a: Float32Array, b: Float32Array): number {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let k = 0; k < ua.length; k++) if (ua[k] !== ub[k]) return k;
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

const SPECIAL = [0, 1, 0.5, -0.25, 1.5, -0, 0.99999994, 1e-30, 5.9604645e-8, -1e30, 1e30, Infinity, -Infinity, 0.25, 0.75];

/** n points: a few of every coordinate in SPECIAL, the rest uniform in [-0.05, 1.05]. */
function points(r: () => number, n: number, D: number): Float32Array {
  const x = new Float32Array(n * D);
  for (let k = 0; k < n * D; k++) x[k] = -0.05 + 1.1 * r();
  const special = Math.min(n, 3 * SPECIAL.length);
  for (let i = 0; i < special; i++) {
    for (let d = 0; d < D; d++) {
      // All coordinates special for the first SPECIAL.length points, mixed with random after.
      if (i < SPECIAL.length || r() < 0.5) x[i * D + d] = SPECIAL[(i + d * 5) % SPECIAL.length]!;
    }
  }
  return x;
}

function uniform(r: () => number, n: number, lo: number, hi: number): Float32Array {
  const a = new Float32Array(n);
  for (let k = 0; k < n; k++) a[k] = lo + (hi - lo) * r();
  return a;
}

/** Runs all four kernels on one configuration and checks them against each other and float64. */
function checkConfig(cfg: HandGridConfig, paramCount: number, n: number, r: () => number, label: string, build: HandLib = lib) {
  const { dims: D, levels: L, features: F } = cfg;
  const x = points(r, n, D);
  const params = uniform(r, paramCount, -1, 1);
  const dy = uniform(r, n * L * F, -1, 1);

  const outFast = new Float32Array(n * L * F).fill(NaN);
  const outScalar = new Float32Array(n * L * F).fill(NaN);
  handForward(cfg, n, x, params, outFast, build);
  handForwardScalar(cfg, n, x, params, outScalar, build);
  const fwdDiff = firstBitDifference(outFast, outScalar);
  if (fwdDiff >= 0) throw new Error(`${label}: forward differs at ${fwdDiff}: fast ${outFast[fwdDiff]} scalar ${outScalar[fwdDiff]}`);

  const ref = forward64(cfg, n, x, params);
  const fwdErr = maxRelError(outScalar, ref.val, ref.mag);
  expect(fwdErr, `${label}: forward vs float64`).toBeLessThan(1e-5);

  // Start from a non-zero gradient: the kernels add into it.
  const grad0 = uniform(r, paramCount, -1, 1);
  const gradFast = grad0.slice();
  const gradScalar = grad0.slice();
  handBackward(cfg, n, x, dy, gradFast, build);
  handBackwardScalar(cfg, n, x, dy, gradScalar, build);
  const bwdDiff = firstBitDifference(gradFast, gradScalar);
  if (bwdDiff >= 0) throw new Error(`${label}: backward differs at ${bwdDiff}: fast ${gradFast[bwdDiff]} scalar ${gradScalar[bwdDiff]}`);

  const gradZero = new Float32Array(paramCount);
  handBackward(cfg, n, x, dy, gradZero, build);
  const bref = backward64(cfg, n, x, dy, paramCount);
  const bwdErr = maxRelError(gradZero, bref.val, bref.mag);
  expect(bwdErr, `${label}: backward vs float64`).toBeLessThan(1e-5);
  return { fwdErr, bwdErr };
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

describe.skipIf(!CXX)("hand-written hash grid", () => {
  test("gridTables reproduces tiny-cuda-nn's tables (the shared reference's configurations)", () => {
    const b = Math.exp(Math.log(2048 / 16) / 15);
    const t2 = gridTables(2, 16, 2, 19, 16, b);
    expect(t2.paramCount).toBe(5_522_000);
    expect([...t2.hashed]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
    expect([...t2.resolution]).toEqual([16, 23, 31, 43, 59, 81, 112, 154, 213, 295, 407, 562, 777, 1073, 1483, 2048]);
    expect(t2.scale[0]).toBe(15);
    expect(t2.stride[2 * 11 + 1]).toBe(562);
    expect(t2.stride[2 * 12 + 1]).toBe(777); // 777 <= 2^19: tcnn keeps it (unused: hashed)
    const t3 = gridTables(3, 16, 2, 19, 16, b);
    expect(t3.paramCount).toBe(12_196_240);
    expect([...t3.hashed].indexOf(1)).toBe(5);
    expect(t3.stride[3 * 15 + 2]).toBe(0); // 2048^2 > 2^19: the loop stops
    let off = 0;
    for (let l = 0; l < 16; l++) {
      expect(t3.offset[l]).toBe(off);
      off += t3.size[l]!;
      expect(t3.size[l]! % 8).toBe(0);
    }
  });

  for (const isa of ["native", "avx2"] as const) {
    const B = () => (isa === "native" ? lib : avx2);
    test(`${isa} build: fast == scalar bit for bit, and both match float64, D = 1..4, F = 1, 2, 4`, () => {
      const build = B();
      const seed = freshSeed(`hand grid ${isa}`);
      const r = rng(seed);
      const worst = { fwd: 0, bwd: 0 };
      for (const D of [1, 2, 3, 4]) {
        for (const F of [1, 2, 4]) {
          const L = 4 + Math.floor(r() * 5);
          const log2T = 10 + Math.floor(r() * 5);
          const baseRes = 2 + Math.floor(r() * 3);
          // Finest resolution well past the table so that the fine levels are hashed.
          const finest = Math.ceil(2 ** (log2T / D) * (2 + 4 * r()));
          const b = Math.exp(Math.log(finest / baseRes) / (L - 1));
          const t = gridTables(D, L, F, log2T, baseRes, b);
          expect(t.hashed[0]).toBe(0);
          expect(t.hashed[L - 1]).toBe(1);
          const n = 300 + Math.floor(r() * 400); // rarely a multiple of 16 or 128: partial groups
          const label = `D=${D} F=${F} L=${L} log2T=${log2T} base=${baseRes} b=${b.toFixed(4)} n=${n}`;
          const e = checkConfig(t, t.paramCount, n, r, label, build);
          worst.fwd = Math.max(worst.fwd, e.fwdErr);
          worst.bwd = Math.max(worst.bwd, e.bwdErr);
          // Tiny batches (serial path, one partial group).
          checkConfig(t, t.paramCount, 1 + Math.floor(r() * 20), r, `${label} (small n)`, build);
        }
      }
      console.log(`[hand grid ${build.vectorPath}] max rel error vs float64: forward ${worst.fwd.toExponential(2)}, backward ${worst.bwd.toExponential(2)}`);
    });

    test(`${isa} build: F = 8, D = 5..6 (scalar fallback) and non-tcnn tables (odd sizes, wrapping strides)`, () => {
      const build = B();
      const seed = freshSeed(`hand grid odd ${isa}`);
      const r = rng(seed);
      for (const D of [1, 2, 3, 4]) checkConfig(gridTables(D, 5, 8, 12, 4, 2.5), gridTables(D, 5, 8, 12, 4, 2.5).paramCount, 333, r, `D=${D} F=8`, build);
      for (const D of [5, 6]) {
        const t = gridTables(D, 3, 2, 12, 2, 2);
        checkConfig(t, t.paramCount, 100, r, `D=${D}`, build);
      }
      // Hashed with a size that is not a power of two; dense with a non-multiple-of-8 size whose
      // indices can exceed 2*size; dense with strides that wrap around 2^32.
      for (const D of [1, 2, 3, 4]) {
        const L = 3;
        const scale = new Float32Array(L * D);
        const stride = new Uint32Array(L * D);
        for (let d = 0; d < D; d++) {
          scale[0 * D + d] = 40.5;
          scale[1 * D + d] = 7.25;
          stride[1 * D + d] = 3 + 11 * d;
          scale[2 * D + d] = 12;
          stride[2 * D + d] = (0x9e3779b9 * (d + 1)) >>> 0;
        }
        const size = new Uint32Array([1000, 37, 1001]);
        const offset = new Uint32Array([0, 1000, 1037]);
        const cfg: HandGridConfig = { dims: D, levels: L, features: 2, scale, stride, size, offset, hashed: new Uint32Array([1, 0, 0]) };
        checkConfig(cfg, (1037 + 1001) * 2, 250, r, `odd tables D=${D}`, build);
      }
    });

    test(`${isa} build: NaN coordinates stay in bounds and agree between fast and scalar`, () => {
      const build = B();
      for (const D of [1, 2, 3, 4]) {
        const t = gridTables(D, 6, 2, 10, 3, 2);
        const n = 37;
        const x = new Float32Array(n * D).fill(0.3);
        for (let i = 0; i < n; i += 2) x[i * D + (i % D)] = NaN;
        const params = new Float32Array(t.paramCount).fill(0.5);
        const a = new Float32Array(n * 12);
        const b = new Float32Array(n * 12);
        handForward(t, n, x, params, a, build);
        handForwardScalar(t, n, x, params, b, build);
        for (let k = 0; k < a.length; k++) expect(Number.isNaN(a[k]!) ? NaN : a[k]).toBe(Number.isNaN(b[k]!) ? NaN : b[k]!);
        expect(Number.isNaN(a[0]!)).toBe(true);
        expect(a[12]).toBeCloseTo(0.5, 6);
        const g1 = new Float32Array(t.paramCount);
        const g2 = new Float32Array(t.paramCount);
        const dy = new Float32Array(n * 12).fill(1);
        handBackward(t, n, x, dy, g1, build);
        handBackwardScalar(t, n, x, dy, g2, build);
        for (let k = 0; k < g1.length; k++) expect(Number.isNaN(g1[k]!)).toBe(Number.isNaN(g2[k]!));
      }
    });


    test(`${isa} build: cells past 2^31 and 2^32 (f32 -> u32 saturation) agree between fast and scalar`, () => {
      // Dense levels whose scale puts the cells in [2^31, 2^32) and beyond (saturated to 2^32 - 1):
      // the AVX2 path converts to u32 without vcvttps2udq. Not checked against float64 (which wraps).
      const build = B();
      const r = rng(freshSeed(`hand grid huge ${isa}`));
      for (const D of [1, 2, 3, 4]) {
        const L = 3;
        const scale = new Float32Array(L * D);
        const stride = new Uint32Array(L * D);
        for (let d = 0; d < D; d++) {
          scale[0 * D + d] = 3e9 + 1e8 * d;
          stride[0 * D + d] = 1 + 2 * d;
          scale[1 * D + d] = 6e9;
          stride[1 * D + d] = 7 + d;
          scale[2 * D + d] = 2 ** 31;
          stride[2 * D + d] = 3;
        }
        const size = new Uint32Array([999, 1024, 1000]);
        const offset = new Uint32Array([0, 999, 2023]);
        const cfg: HandGridConfig = { dims: D, levels: L, features: 2, scale, stride, size, offset, hashed: new Uint32Array([0, 0, 1]) };
        const n = 97;
        const x = points(r, n, D);
        const params = uniform(r, 3023 * 2, -1, 1);
        const a = new Float32Array(n * L * 2);
        const b = new Float32Array(n * L * 2);
        handForward(cfg, n, x, params, a, build);
        handForwardScalar(cfg, n, x, params, b, build);
        expect(firstBitDifference(a, b), `forward D=${D}`).toBe(-1);
        const dy = uniform(r, n * L * 2, -1, 1);
        const g1 = new Float32Array(3023 * 2);
        const g2 = new Float32Array(3023 * 2);
        handBackward(cfg, n, x, dy, g1, build);
        handBackwardScalar(cfg, n, x, dy, g2, build);
        expect(firstBitDifference(g1, g2), `backward D=${D}`).toBe(-1);
      }
    });
  }

  test("the native build is AVX-512 where the CPU has it; the -mno-avx512f build is AVX2 where the CPU has AVX2", () => {
    expect(lib.isa).toBe("native");
    expect(avx2.isa).toBe("avx2");
    expect(avx2.vectorBits).toBe(HAS_AVX2 ? 256 : 0);
    expect(lib.vectorBits).toBe(HAS_AVX512 ? 512 : HAS_AVX2 ? 256 : 0);
    expect(avx2.path).not.toBe(lib.path);
  });

  test("generated CPU forward == hand-written forward bit for bit, native and AVX2 builds (the bench's precondition)", async () => {
    const r = rng(freshSeed("hand vs generated"));
    // The defaults' structure (dense coarse levels, hashed fine ones) with 4 levels, not 16: a build
    // of the full defaults costs the suite half a minute and tests nothing more.
    for (const opts of [{ ...DEFAULT_GRID_2D, levels: 4 }, { ...DEFAULT_GRID_3D, levels: 4 }]) {
      const grid = await HashGrid.create(opts, { backend: "cpu" });
      expect(grid.levels.some((l) => l.hashed) && grid.levels.some((l) => !l.hashed)).toBe(true);
      const b = Math.exp(Math.log(opts.finestResolution / opts.baseResolution) / (opts.levels - 1));
      const t = gridTables(opts.dims, opts.levels, opts.featuresPerLevel, opts.log2HashmapSize, opts.baseResolution, b);
      expect(t.paramCount).toBe(grid.paramCount);
      const n = 3000 + Math.floor(r() * 500);
      const x = points(r, n, opts.dims);
      // Random parameters (the grid's initial ones are tiny): upload through the module's buffer.
      const params = uniform(r, grid.paramCount, -1, 1);
      grid.params.upload(params);
      const generated = grid.forward(x).download() as Float32Array;
      for (const build of [lib, avx2]) {
        const hand = new Float32Array(n * grid.outputDim).fill(NaN);
        handForward(t, n, x, params, hand, build);
        const k = firstBitDifference(generated, hand);
        if (k >= 0) throw new Error(`D=${opts.dims} ${build.vectorPath}: hand forward differs from generated at ${k}: ${hand[k]} vs ${generated[k]}`);
      }
    }
  }, 300_000);

  test("argument checks", () => {
    const t = gridTables(2, 4, 2, 10, 4, 1.5);
    const x = new Float32Array(20);
    const params = new Float32Array(t.paramCount);
    expect(() => handForward(t, 10, x, params, new Float32Array(10 * 4 * 2 - 1))).toThrow(/out has 79 elements/);
    expect(() => handForward(t, 11, x, params, new Float32Array(11 * 8))).toThrow(/x has 20 elements, needs 22/);
    expect(() => handForward(t, 10, x, params.subarray(1), new Float32Array(80))).toThrow(/params/);
    expect(() => handBackward({ ...t, features: 3 }, 10, x, new Float32Array(120), params)).toThrow(/features/);
    expect(() => handForward({ ...t, size: new Uint32Array([8, 8, 0, 8]) }, 10, x, params, new Float32Array(80))).toThrow(/size\[2\] is 0/);
    handForward(t, 0, new Float32Array(0), params, new Float32Array(0)); // nothing to do
    // The native entry points reject what they cannot run.
    const { scale, stride, size, offset, hashed } = t;
    expect(lib.forward(9, 4, 2, scale, stride, size, offset, hashed, 10, x, params, new Float32Array(80))).toBe(1);
    expect(lib.backwardScalar(2, 4, 3, scale, stride, size, offset, hashed, 10, x, new Float32Array(120), params)).toBe(1);
  });
});

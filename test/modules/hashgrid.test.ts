// The hash-grid encoding against an independent float64 scalar implementation written here
// (BigInt indices, double weights), on fresh random points, for D = 1, 2, 3, 4, 7, every grid
// type and interpolation; the JS and CPU backends against each other; the gradients against
// finite differences; large resolutions without overflow; impossible configurations refused.
import { describe, expect, test } from "bun:test";
import { ConfigError, HashGrid, hashGridParamCount, parseHashGridOptions, type HashGridOptionsInput } from "../../modules/hashgrid.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { cacheDir, freshSeed, maxUlp, rng } from "../util.ts";

const CPU = findCxx().tool ? "cpu" : undefined;

// ---- the float64 reference --------------------------------------------------------------------

const PRIMES = [1n, 2654435761n, 805459861n, 3674653429n, 2097192037n, 1434869437n, 2165219737n, 3367900313n];
const M32 = (1n << 32n) - 1n;

interface RefLevel {
  scale: number[];
  res: bigint[];
  size: bigint;
  offset: bigint;
  hashed: boolean;
}

/** tiny-cuda-nn's level tables, derived independently of modules/hashgrid.ts. */
function refLevels(o: Required<Pick<HashGridOptionsInput, "dims" | "levels" | "log2HashmapSize" | "gridType">> & { base: number; finest: number }): RefLevel[] {
  const b = o.levels > 1 ? Math.exp(Math.log(o.finest / o.base) / (o.levels - 1)) : 2;
  const out: RefLevel[] = [];
  let offset = 0n;
  for (let l = 0; l < o.levels; l++) {
    const s = Math.fround(Math.pow(2, l * Math.log2(b)) * o.base - 1);
    const res = BigInt(Math.ceil(s) + 1);
    const vertices = res ** BigInt(o.dims);
    let size = ((vertices + 7n) / 8n) * 8n;
    if (o.gridType === "hash" && size > 1n << BigInt(o.log2HashmapSize)) size = 1n << BigInt(o.log2HashmapSize);
    if (o.gridType === "tiled" && size > BigInt(Math.ceil(o.base)) ** BigInt(o.dims)) size = BigInt(Math.ceil(o.base)) ** BigInt(o.dims);
    out.push({ scale: Array(o.dims).fill(s), res: Array(o.dims).fill(res), size, offset, hashed: o.gridType === "hash" && vertices > size });
    offset += size;
  }
  return out;
}

function refIndex(lv: RefLevel, coords: bigint[]): bigint {
  let idx = 0n;
  if (lv.hashed) {
    for (let d = 0; d < coords.length; d++) idx ^= (coords[d]! * PRIMES[d]!) & M32;
  } else {
    // tiny-cuda-nn: an axis joins the dense index only while its stride fits the table.
    let stride = 1n;
    for (let d = 0; d < coords.length && stride <= lv.size; d++) {
      idx += coords[d]! * stride;
      stride *= lv.res[d]!;
    }
    idx &= M32;
  }
  return lv.offset + (idx % lv.size);
}

type Interp = "nearest" | "linear" | "smoothstep";
const sm = (t: number) => t * t * (3 - 2 * t);
const dsm = (t: number) => 6 * t * (1 - t);

/** Per point, level, corner: the entry, weight and d weight / d x. */
function* refCorners(levels: RefLevel[], interp: Interp, xp: ArrayLike<number>) {
  const D = xp.length;
  for (let l = 0; l < levels.length; l++) {
    const lv = levels[l]!;
    const cell: bigint[] = [];
    const frac: number[] = [];
    for (let d = 0; d < D; d++) {
      const xd = Math.min(Math.max(xp[d]!, 0), 1);
      const pos = xd * lv.scale[d]! + 0.5;
      const g = Math.floor(pos);
      cell.push(BigInt(g));
      frac.push(pos - g);
    }
    if (interp === "nearest") {
      yield { l, entry: refIndex(lv, cell), w: 1, dw: Array(D).fill(0) };
      continue;
    }
    for (let c = 0; c < 1 << D; c++) {
      const coords = cell.map((g, d) => g + BigInt((c >> d) & 1));
      const ws = frac.map((f, d) => {
        const s = interp === "smoothstep" ? sm(f) : f;
        return (c >> d) & 1 ? s : 1 - s;
      });
      const dws = frac.map((f, d) => ((c >> d) & 1 ? 1 : -1) * lv.scale[d]! * (interp === "smoothstep" ? dsm(f) : 1));
      const w = ws.reduce((a, b) => a * b, 1);
      const dw = dws.map((v, d) => (xp[d]! < 0 || xp[d]! > 1 ? 0 : v * ws.reduce((a, b, k) => (k === d ? a : a * b), 1)));
      yield { l, entry: refIndex(lv, coords), w, dw };
    }
  }
}

function refForward(levels: RefLevel[], interp: Interp, F: number, params: Float32Array, x: Float32Array, D: number) {
  const n = x.length / D;
  const L = levels.length;
  const y = new Float64Array(n * L * F);
  const mag = new Float64Array(n * L * F); // sum |w v|: the scale of each output's rounding error
  for (let i = 0; i < n; i++) {
    for (const { l, entry, w } of refCorners(levels, interp, x.subarray(i * D, (i + 1) * D))) {
      for (let f = 0; f < F; f++) {
        const v = params[Number(entry) * F + f]!;
        y[(i * L + l) * F + f] += w * v;
        mag[(i * L + l) * F + f] += Math.abs(w * v);
      }
    }
  }
  return { y, mag };
}

function refBackward(levels: RefLevel[], interp: Interp, F: number, params: Float32Array, x: Float32Array, D: number, dy: Float32Array) {
  const n = x.length / D;
  const L = levels.length;
  const grad = new Float64Array(params.length);
  const gmag = new Float64Array(params.length);
  const dx = new Float64Array(n * D);
  for (let i = 0; i < n; i++) {
    for (const { l, entry, w, dw } of refCorners(levels, interp, x.subarray(i * D, (i + 1) * D))) {
      let g = 0;
      for (let f = 0; f < F; f++) {
        const dyv = dy[(i * L + l) * F + f]!;
        grad[Number(entry) * F + f] += w * dyv;
        gmag[Number(entry) * F + f] += Math.abs(w * dyv);
        g += dyv * params[Number(entry) * F + f]!;
      }
      for (let d = 0; d < D; d++) dx[i * D + d] += g * dw[d]!;
    }
  }
  return { grad, gmag, dx };
}

// ---- inputs -----------------------------------------------------------------------------------

/** Random points, with exact edges (0, 1) and points outside [0, 1] mixed in. */
function points(r: () => number, n: number, D: number): Float32Array {
  const edges = [0, 1, -0.25, 1.5, 0.5];
  return Float32Array.from({ length: n * D }, () => (r() < 0.05 ? edges[Math.floor(r() * edges.length)]! : r()));
}

/**
 * Drop points within `margin` (in cell units) of a cell boundary at any level: there the f32 and
 * the exact cell may differ (nearest), and a finite difference would straddle a kink.
 */
function awayFromBoundaries(levels: RefLevel[], x: Float32Array, D: number, margin = 1e-4): Float32Array {
  const keep: number[] = [];
  for (let i = 0; i < x.length / D; i++) {
    const p = x.subarray(i * D, (i + 1) * D);
    const ok = levels.every((lv) => Array.from(p).every((v, d) => {
      const pos = Math.min(Math.max(v, 0), 1) * lv.scale[d]! + 0.5;
      return Math.abs(pos - Math.round(pos)) > margin;
    }));
    if (ok) keep.push(...p);
  }
  return Float32Array.from(keep);
}

interface Case {
  dims: number;
  gridType: "hash" | "dense" | "tiled";
  interpolation: Interp;
  levels: number;
  log2T: number;
  base: number;
  finest: number;
  features: 1 | 2 | 4 | 8;
}

const CASES: Case[] = [];
for (const [dims, levels, base, finest, log2T] of [[1, 4, 4, 4000, 8], [2, 4, 4, 300, 10], [3, 4, 4, 64, 12], [4, 3, 2, 16, 12], [7, 2, 2, 4, 10]] as const) {
  for (const interpolation of ["nearest", "linear", "smoothstep"] as const) {
    CASES.push({ dims, gridType: "hash", interpolation, levels, log2T, base, finest, features: dims === 2 ? 4 : 2 });
    for (const gridType of ["dense", "tiled"] as const) CASES.push({ dims, gridType, interpolation, levels, log2T, base, finest: dims >= 4 ? base * 2 : finest / 4, features: 2 });
  }
}

function options(c: Case): HashGridOptionsInput {
  return { dims: c.dims, levels: c.levels, featuresPerLevel: c.features, log2HashmapSize: c.log2T, baseResolution: c.base, finestResolution: c.finest, gridType: c.gridType, interpolation: c.interpolation };
}

function close(got: ArrayLike<number>, want: Float64Array, mag: Float64Array, rel: number, what: string): void {
  for (let k = 0; k < want.length; k++) {
    const err = Math.abs(got[k]! - want[k]!);
    if (err > rel * mag[k]! + 1e-30) throw new Error(`${what}[${k}]: got ${got[k]}, want ${want[k]} (error ${err.toExponential(2)}, scale ${mag[k]!.toExponential(2)})`);
  }
}

// ---- tests ------------------------------------------------------------------------------------

/**
 * Every case runs on the JS backend (the exact reference of the emitted arithmetic); the CPU
 * backend runs one per dimension but D = 4, chosen so that every grid type and every interpolation
 * is also built natively, and is compared bit for bit with JS there. A native build costs seconds (most of
 * this file's time on a slow machine); the kernels it compiles are the same text for every case.
 */
function nativeCase(c: (typeof CASES)[number]): boolean {
  const d = [1, 2, 3, 4, 7].indexOf(c.dims);
  const interp = ["nearest", "linear", "smoothstep"].indexOf(c.interpolation);
  const grid = ["hash", "dense", "tiled"].indexOf(c.gridType);
  // D = 4 (16 corners, the largest build) repeats D = 1's nearest/hash: JS only.
  return interp === d % 3 && grid === d % 3 && c.dims !== 4;
}

describe("hash grid vs the float64 reference", () => {
  for (const c of CASES) {
    const label = `D=${c.dims} ${c.gridType} ${c.interpolation} (L=${c.levels}, F=${c.features}, T=2^${c.log2T}, ${c.base}..${c.finest})`;
    test(label, async () => {
      const opts = options(c);
      const levels = refLevels({ dims: c.dims, levels: c.levels, log2HashmapSize: c.log2T, gridType: c.gridType, base: c.base, finest: c.finest });
      const backends = (["js", nativeCase(c) ? CPU : undefined].filter(Boolean) as ("js" | "cpu")[]);
      const grids = await Promise.all(backends.map((backend) => HashGrid.create(opts, { backend, cacheDir })));
      // The module derived the same tables as the reference.
      expect(grids[0]!.levels.map((lv) => [lv.size, lv.offset, lv.hashed])).toEqual(levels.map((lv) => [Number(lv.size), Number(lv.offset), lv.hashed]));
      expect(levels.some((lv) => lv.hashed)).toBe(c.gridType === "hash");

      const seed = freshSeed(label);
      const r = rng(seed);
      const params = Float32Array.from({ length: grids[0]!.paramCount }, () => r() * 2 - 1);
      let x = points(r, 300, c.dims);
      if (c.interpolation === "nearest") x = awayFromBoundaries(levels, x, c.dims);
      const n = x.length / c.dims;
      const dy = Float32Array.from({ length: n * grids[0]!.outputDim }, () => r() * 2 - 1);
      const ref = refForward(levels, c.interpolation, c.features, params, x, c.dims);
      const back = refBackward(levels, c.interpolation, c.features, params, x, c.dims, dy);

      const results = grids.map((g) => {
        g.params.upload(params);
        const y = g.forward(x).download();
        const { params: grad, inputs } = g.backward(dy, { inputs: true });
        return { y, grad: grad.download(), dx: inputs!.download() };
      });
      for (const [k, res] of results.entries()) {
        const who = `${backends[k]} (seed ${seed})`;
        close(res.y, ref.y, ref.mag, 1e-5, `${who} forward`);
        close(res.grad, back.grad, back.gmag, 1e-5, `${who} param grad`);
        // dL/dx sums scale * weight terms that cancel; compare against the size of those terms.
        const dxMag = Float64Array.from(back.dx, (v) => Math.abs(v) + 1e-3 * Math.max(...back.dx.map(Math.abs)));
        close(res.dx, back.dx, dxMag, 1e-3, `${who} input grad`);
      }
      if (results.length === 2) {
        // JS and CPU run the same arithmetic: forward and input gradients are bit-identical.
        expect(maxUlp(results[0]!.y, results[1]!.y).ulp).toBe(0);
        expect(maxUlp(results[0]!.dx, results[1]!.dx).ulp).toBe(0);
      }
    }, 60_000);
  }
});

/** A small 2-D smoothstep grid: the finite-difference, collision and NaN tests share its build. */
const FD_OPTIONS: HashGridOptionsInput = { dims: 2, levels: 6, featuresPerLevel: 2, log2HashmapSize: 10, baseResolution: 4, finestResolution: 200, interpolation: "smoothstep" };

describe("gradients vs finite differences", () => {
  const opts = FD_OPTIONS;

  test("parameter gradient of L = <dy, y> matches central differences of the forward", async () => {
    const g = await HashGrid.create(opts, { backend: CPU ?? "js", cacheDir });
    const seed = freshSeed("param FD");
    const r = rng(seed);
    const params = Float32Array.from({ length: g.paramCount }, () => r() * 2 - 1);
    g.params.upload(params);
    const x = points(r, 64, 2);
    const dy = Float32Array.from({ length: 64 * g.outputDim }, () => r() * 2 - 1);
    g.forward(x);
    const grad = g.backward(dy).params.download();
    const loss = () => g.forward(x).download().reduce((a, v, k) => a + v * dy[k]!, 0);
    const touched = [...grad.keys()].filter((k) => grad[k] !== 0);
    expect(touched.length).toBeGreaterThan(20);
    const h = 1e-2; // the encoding is linear in its parameters: only rounding limits the step
    for (const k of touched.filter((_, j) => j % Math.ceil(touched.length / 25) === 0)) {
      const p = g.params.download();
      p[k] = params[k]! + h;
      g.params.upload(p);
      const up = loss();
      p[k] = params[k]! - h;
      g.params.upload(p);
      const down = loss();
      g.params.upload(params);
      expect(Math.abs((up - down) / (2 * h) - grad[k]!)).toBeLessThan(2e-3 * (1 + Math.abs(grad[k]!)));
    }
  });

  test("input gradient matches central differences (float64 reference and the kernels)", async () => {
    const g = await HashGrid.create(opts, { backend: CPU ?? "js", cacheDir });
    const levels = refLevels({ dims: 2, levels: 6, log2HashmapSize: 10, gridType: "hash", base: 4, finest: 200 });
    const seed = freshSeed("input FD");
    const r = rng(seed);
    const params = Float32Array.from({ length: g.paramCount }, () => r() * 2 - 1);
    g.params.upload(params);
    const h = 1e-5;
    // Smoothstep's second derivative jumps at cell boundaries: keep differences off them.
    const x = awayFromBoundaries(levels, Float32Array.from({ length: 120 * 2 }, () => 0.05 + 0.9 * r()), 2, 10 * h * 200);
    expect(x.length).toBeGreaterThan(20);
    const dy = Float32Array.from({ length: (x.length / 2) * g.outputDim }, () => r() * 2 - 1);
    g.forward(x);
    const dx = g.backward(dy, { inputs: true }).inputs!.download();
    // The float64 reference's loss as a function of the inputs, differentiated numerically.
    const loss = (xs: Float32Array) => refForward(levels, "smoothstep", 2, params, xs, 2).y.reduce((a, v, k) => a + v * dy[k]!, 0);
    for (let k = 0; k < x.length; k++) {
      const up = Float32Array.from(x);
      const down = Float32Array.from(x);
      // Perturb in float64 through the reference: use a Float64Array view of the same points.
      up[k] = x[k]! + h;
      down[k] = x[k]! - h;
      const fd = (loss(up) - loss(down)) / (up[k]! - down[k]!);
      expect(Math.abs(fd - dx[k]!)).toBeLessThan(2e-2 * (1 + Math.abs(fd)));
    }
  });
});

describe("large resolutions and refused configurations", () => {
  test("levels with more than 2^32 vertices index without overflow", async () => {
    // 3D, finest 4096: the finest level has 4096^3 = 2^36 vertices (hashed); compare with BigInt.
    const c: Case = { dims: 3, gridType: "hash", interpolation: "linear", levels: 4, log2T: 14, base: 512, finest: 4096, features: 2 };
    const levels = refLevels({ dims: 3, levels: 4, log2HashmapSize: 14, gridType: "hash", base: 512, finest: 4096 });
    expect(levels[3]!.res[0]! ** 3n).toBeGreaterThanOrEqual(2n ** 36n);
    const g = await HashGrid.create(options(c), { backend: CPU ?? "js", cacheDir });
    const r = rng(freshSeed("2^36 vertices"));
    const params = Float32Array.from({ length: g.paramCount }, () => r() * 2 - 1);
    g.params.upload(params);
    const x = points(r, 200, 3);
    const ref = refForward(levels, "linear", 2, params, x, 3);
    close(g.forward(x).download(), ref.y, ref.mag, 1e-5, "forward");
  });

  test("a dense 1-D level of 2^20 vertices indexes exactly", async () => {
    const g = await HashGrid.create({ dims: 1, levels: 2, featuresPerLevel: 1, baseResolution: 1024, finestResolution: 1 << 20, gridType: "dense" }, { backend: CPU ?? "js", cacheDir });
    expect(g.levels[1]!.resolution).toEqual([2 ** 20]);
    expect(g.levels[1]!.size).toBe(2 ** 20);
    const r = rng(freshSeed("dense 2^20"));
    const params = Float32Array.from({ length: g.paramCount }, () => r());
    g.params.upload(params);
    const levels = refLevels({ dims: 1, levels: 2, log2HashmapSize: 19, gridType: "dense", base: 1024, finest: 1 << 20 });
    const x = points(r, 500, 1);
    const ref = refForward(levels, "linear", 1, params, x, 1);
    close(g.forward(x).download(), ref.y, ref.mag, 1e-5, "forward");
  });

  const refused: [string, unknown, RegExp][] = [
    ["a finest resolution of 2^38", { dims: 2, levels: 16, finestResolution: 2 ** 38 }, /finestResolution: level \d+ would have resolution \d+ .* above 8388608/],
    ["a dense 3-D grid at resolution 4096", { dims: 3, levels: 8, finestResolution: 4096, gridType: "dense" }, /parameters .* more than 2147483647 .*gridType/],
    // Levels are bounded by the indices (and memory), not a count: 96 (Earth4D as one 4D grid) is fine.
    ["too many levels", { dims: 2, levels: 2 ** 28, perLevelScale: 1 }, /hashGrid\.levels: 268435456 levels of at least 8 entries would need more than 2147483647/],
    ["no levels", { dims: 2, levels: 0 }, /hashGrid\.levels: 0 .*>= 1/],
    ["9 dimensions", { dims: 9 }, /hashGrid\.dims: .*8/],
    ["3 features per level", { dims: 2, featuresPerLevel: 3 }, /hashGrid\.featuresPerLevel/],
    ["a table of 2^30", { dims: 2, log2HashmapSize: 30 }, /hashGrid\.log2HashmapSize: .*24/],
    ["per-axis values of the wrong length", { dims: 3, baseResolution: [16, 16] }, /hashGrid\.baseResolution: has 2 values but dims is 3/],
    ["an unknown field", { dims: 2, level: 4 }, /hashGrid: .*level/],
  ];
  for (const [what, opts, message] of refused) {
    test(`refuses ${what}, naming the field`, () => {
      let err: unknown;
      try {
        hashGridParamCount(opts as HashGridOptionsInput);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(message);
    });
  }

  test("the parameter count of the shipped configurations", () => {
    // The figures of the hand-written reference (shared/reference/README.md).
    expect(hashGridParamCount({ dims: 2, levels: 16, featuresPerLevel: 2, log2HashmapSize: 19, baseResolution: 16, finestResolution: 2048 })).toBe(5_522_000);
    expect(hashGridParamCount({ dims: 3, levels: 16, featuresPerLevel: 2, log2HashmapSize: 19, baseResolution: 16, finestResolution: 2048 })).toBe(12_196_240);
    expect(parseHashGridOptions({ dims: 2 }).levels).toBe(16);
  });

  test("per-axis resolution: a space-time grid with a coarser time axis", async () => {
    const g = await HashGrid.create({ dims: 3, levels: 4, baseResolution: [16, 16, 4], finestResolution: [256, 256, 16], log2HashmapSize: 14 }, { backend: "js", cacheDir });
    expect(g.levels[3]!.resolution).toEqual([256, 256, 16]);
    const y = g.forward(Float32Array.of(0.3, 0.6, 0.9)).download();
    expect(y.length).toBe(8);
    expect(y.some((v) => v !== 0)).toBe(true);
  });
});

describe("collision statistics", () => {
  test("dense levels of a hash grid collide only through tiny-cuda-nn's wrap-around; hashed ones do", async () => {
    const g = await HashGrid.create({ dims: 2, levels: 8, log2HashmapSize: 10, baseResolution: 8, finestResolution: 512 }, { backend: "js", cacheDir });
    const r = rng(freshSeed("collisions"));
    const stats = g.collisionStats(Float32Array.from({ length: 4000 }, () => 0.1 + 0.8 * r()));
    const hashed = stats.filter((s) => s.hashed);
    const dense = stats.filter((s) => !s.hashed);
    expect(hashed.length).toBeGreaterThan(0);
    expect(dense.length).toBeGreaterThan(0);
    // Interior points never reach the wrap-around row of a dense level.
    for (const s of dense) expect(s.collidingFraction).toBe(0);
    // The finest level has more vertices touched than table slots: collisions are certain.
    expect(hashed[hashed.length - 1]!.collidingFraction).toBeGreaterThan(0);
    for (const s of stats) expect(s.vertices).toBeGreaterThan(0);
  });
});

describe("f16 parameter storage", () => {
  test("forward and gradients with f16 parameters match the float64 reference on the rounded parameters", async () => {
    const opts: HashGridOptionsInput = { dims: 3, levels: 4, featuresPerLevel: 2, log2HashmapSize: 12, baseResolution: 4, finestResolution: 64, precision: "f16" };
    const levels = refLevels({ dims: 3, levels: 4, log2HashmapSize: 12, gridType: "hash", base: 4, finest: 64 });
    const seed = freshSeed("f16");
    const backends = ["js", CPU].filter(Boolean) as ("js" | "cpu")[];
    const outs = [];
    for (const backend of backends) {
      const g = await HashGrid.create(opts, { backend, cacheDir });
      expect(g.params.elem).toBe("f16");
      const r = rng(seed);
      const half = Float16Array.from({ length: g.paramCount }, () => r() * 2 - 1);
      g.params.upload(half);
      const x = points(r, 200, 3);
      const dy = Float32Array.from({ length: 200 * g.outputDim }, () => r() * 2 - 1);
      const rounded = Float32Array.from(half); // the values the kernels see
      const ref = refForward(levels, "linear", 2, rounded, x, 3);
      const y = g.forward(x).download();
      close(y, ref.y, ref.mag, 1e-5, `${backend} f16 forward`);
      const back = refBackward(levels, "linear", 2, rounded, x, 3, dy);
      const { params: grad, inputs } = g.backward(dy, { inputs: true });
      expect(grad.elem).toBe("f32"); // gradients accumulate in f32
      close(grad.download(), back.grad, back.gmag, 1e-5, `${backend} f16 param grad`);
      outs.push({ y, dx: inputs!.download() });
    }
    if (outs.length === 2) expect(maxUlp(outs[0]!.y, outs[1]!.y).ulp).toBe(0);
  });
});

describe("scatter-adds that collide", () => {
  test("backward sums every contribution when all points of a SIMD group hit the same entries", async () => {
    // 64 copies of one point: every lane of every 16-point group adds into the same entries.
    // The finite-difference tests' configuration (one native build serves both).
    const opts = FD_OPTIONS;
    const levels = refLevels({ dims: 2, levels: 6, log2HashmapSize: 10, gridType: "hash", base: 4, finest: 200 });
    const g = await HashGrid.create(opts, { backend: CPU ?? "js", cacheDir });
    const n = 64;
    const x = Float32Array.from({ length: n * 2 }, (_, k) => (k % 2 ? 0.3125 : 0.71875));
    const dy = Float32Array.from({ length: n * g.outputDim }, (_, k) => ((k % 7) - 3) / 4); // exact in f32 sums
    g.forward(x);
    const grad = g.backward(dy).params.download();
    const params = (g.params.download() as Float32Array);
    const back = refBackward(levels, "smoothstep", 2, params, x, 2, dy);
    close(grad, back.grad, back.gmag, 1e-6, "collided gradient");
    expect(grad.some((v) => v !== 0)).toBe(true);
  });
});

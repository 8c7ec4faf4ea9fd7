// Learned hash probing (Compact NGP) against a float64 reference written here: the forward reads
// the argmax slot of each vertex's bucket; the logit gradient (the backward's gradient with
// respect to the rows' softmax, through the softmax's Jacobian as the optimizer step applies it)
// is the gradient of the soft surrogate (softmax-weighted slots), checked by central finite
// differences and non-zero, and the optimizer step takes exactly that gradient; N_p = 1
// is the plain grid bit for bit; JS and CPU agree; the optimizer keeps the probe table equal to
// the argmax of the logits; refusals name the field.
import { describe, expect, test } from "bun:test";
import { argmaxRows, ConfigError, HashGrid, type HashGridOptionsInput } from "../../modules/hashgrid.ts";
import { Optimizer } from "../../modules/optimizer.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { cacheDir, freshSeed, maxUlp, rng, uniformF32 } from "../util.ts";

const CPU = findCxx().tool ? "cpu" : undefined;
const load = (backend: "js" | "cpu") => ({ backend, cacheDir });

const PRIMES = [1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737, 3367900313];
const PRIMES2 = [3538334777, 2767054501, 3983978623, 2315877527, 3210981251, 2735576959, 3931168589, 2795684029];
const xorHash = (coords: number[], primes: number[]) => coords.reduce((h, c, d) => (h ^ Math.imul(c, primes[d]!)) >>> 0, 0);

// 2D, 4 levels (16, 32, 64, 128): levels 0 and 1 dense (256 and 1024 entries fit), 2 and 3 hashed
// into 2^10 entries, probed with N_p = 4 (256 buckets) and N_c = 67 rows (134 rows in all: 8 whole
// groups of 16 for the CPU's lane-form optimizer step, and 6 rows after them).
const SMALL: HashGridOptionsInput = { dims: 2, levels: 4, featuresPerLevel: 2, log2HashmapSize: 10, baseResolution: 16, perLevelScale: 2, probing: { range: 4, codebookSize: 67 } };

/**
 * The encoding of point `p` in float64, with each hashed level's slot chosen softly: slot q of the
 * bucket weighted by softmax(logits of the vertex's row)[q] (`hard`: by the argmax, as the kernels).
 */
function reference(grid: HashGrid, params: Float32Array, logits: Float64Array | Float32Array, p: number[], hard: boolean): number[] {
  const { featuresPerLevel: F, dims } = grid.settings;
  const { range: NP, codebookSize: NC, rowOffset, probed } = grid.probing;
  const out: number[] = [];
  grid.levels.forEach((lv, l) => {
    const acc = new Array(F).fill(0);
    const pos = p.map((x, d) => x * lv.scale[d]! + 0.5);
    const cell = pos.map(Math.floor);
    for (let c = 0; c < 1 << dims; c++) {
      const coords = cell.map((v, d) => v + ((c >> d) & 1));
      const w = pos.reduce((a, x, d) => a * (((c >> d) & 1) ? x - cell[d]! : 1 - (x - cell[d]!)), 1);
      const slots: [number, number][] = []; // [entry, weight]
      if (probed[l]) {
        const first = lv.offset + (xorHash(coords, PRIMES) % (lv.size / NP)) * NP;
        const row = rowOffset[l]! + (xorHash(coords, PRIMES2) % NC);
        const z = Array.from({ length: NP }, (_, q) => logits[row * NP + q]!);
        const top = Math.max(...z);
        const e = z.map((v) => Math.exp(v - top));
        const sum = e.reduce((a, b) => a + b, 0);
        const best = z.indexOf(top);
        for (let q = 0; q < NP; q++) slots.push([first + q, hard ? Number(q === best) : e[q]! / sum]);
      } else {
        let idx = 0;
        let stride = 1;
        for (let d = 0; d < dims; d++) (idx += coords[d]! * stride), (stride *= lv.resolution[d]!);
        slots.push([lv.offset + (idx % lv.size), 1]);
      }
      for (const [entry, s] of slots) for (let f = 0; f < F; f++) acc[f] += w * s * params[entry * F + f]!;
    }
    out.push(...acc);
  });
  return out;
}

async function probedGrid(backend: "js" | "cpu", seed: number, options: HashGridOptionsInput = SMALL): Promise<HashGrid> {
  const grid = await HashGrid.create({ ...options, seed }, load(backend));
  // Features and logits of unit scale (not the tiny initial ones), so that the slots differ.
  const r = rng(seed);
  grid.params.upload(uniformF32(r, grid.paramCount, -1, 1));
  grid.logits.upload(uniformF32(r, grid.logitCount, -2, 2));
  grid.refreshProbes();
  return grid;
}

describe("learned probing", () => {
  test("the layout: hashed levels probed, dense levels not; N_c rows of N_p logits each", async () => {
    const grid = await HashGrid.create(SMALL, load("js"));
    expect(grid.levels.map((lv) => lv.hashed)).toEqual([false, false, true, true]);
    expect(grid.probing.probed).toEqual([false, false, true, true]);
    expect(grid.probing.rowOffset).toEqual([0, 0, 0, 67]);
    expect(grid.logitCount).toBe(2 * 67 * 4);
    // Inference: features in f16, and 134 rows of log2(4) = 2 bits = 268 bits: 34 bytes of indices.
    const m = grid.memory(2);
    expect(m.indexBytes).toBe(34);
    expect(m.inferenceBytes).toBe(grid.paramCount * 2 + 34);
    grid.close();
  });

  for (const backend of ["js", ...(CPU ? ["cpu" as const] : [])] as const) {
    test(`${backend}: the forward reads the argmax slot of each vertex's bucket`, async () => {
      const seed = freshSeed(`probing forward ${backend}`);
      const grid = await probedGrid(backend, seed);
      const r = rng(seed + 1);
      const n = 200;
      const x = uniformF32(r, n * 2, 0, 1);
      const y = grid.forward(x).download();
      const params = grid.params.download() as Float32Array;
      const logits = grid.logits.download();
      let worst = 0;
      for (let i = 0; i < n; i++) {
        const ref = reference(grid, params, logits, [x[2 * i]!, x[2 * i + 1]!], true);
        ref.forEach((v, k) => (worst = Math.max(worst, Math.abs(v - y[i * grid.outputDim + k]!))));
      }
      expect(worst).toBeLessThan(1e-5);
      grid.close();
    });

    test(`${backend}: the logit gradient is the soft surrogate's (central differences), and not zero`, async () => {
      const seed = freshSeed(`probing logit gradient ${backend}`);
      const grid = await probedGrid(backend, seed);
      const r = rng(seed + 2);
      const n = 64;
      const x = uniformF32(r, n * 2, 0, 1);
      const dy = uniformF32(r, n * grid.outputDim, -1, 1);
      grid.forward(x);
      grid.backward(dy);
      const got = grid.logitGradient();
      const params = grid.params.download() as Float32Array;
      const logits = Float64Array.from(grid.logits.download());
      // L(logits) = <dy, soft encoding>, in float64.
      const loss = () => {
        let s = 0;
        for (let i = 0; i < n; i++) reference(grid, params, logits, [x[2 * i]!, x[2 * i + 1]!], false).forEach((v, k) => (s += dy[i * grid.outputDim + k]! * v));
        return s;
      };
      // The logits of rows some point touches (others have gradient exactly 0).
      const touched = [...got.keys()].filter((k) => got[k] !== 0);
      expect(touched.length).toBeGreaterThan(20);
      const h = 1e-4;
      let worst = 0;
      let scale = 0;
      for (const k of touched.slice(0, 40)) {
        const v = logits[k]!;
        logits[k] = v + h;
        const up = loss();
        logits[k] = v - h;
        const down = loss();
        logits[k] = v;
        const fd = (up - down) / (2 * h);
        worst = Math.max(worst, Math.abs(fd - got[k]!));
        scale = Math.max(scale, Math.abs(fd));
      }
      expect(scale).toBeGreaterThan(1e-3); // the gradient is not (near) zero
      expect(worst).toBeLessThan(1e-4 * Math.max(1, scale));
      grid.close();
    });
  }

  test("N_p = 64 (no fixed-size array bounds it): forward and logit gradient still match the reference", async () => {
    const seed = freshSeed("probing N_p = 64");
    const options = { ...SMALL, log2HashmapSize: 11, probing: { range: 64, codebookSize: 16 } };
    const grid = await probedGrid("js", seed, options);
    expect(grid.probing.probed).toEqual([false, false, true, true]);
    const r = rng(seed + 5);
    const n = 20;
    const x = uniformF32(r, n * 2, 0, 1);
    const y = grid.forward(x).download();
    const params = grid.params.download() as Float32Array;
    const logits = grid.logits.download();
    for (let i = 0; i < n; i++)
      reference(grid, params, logits, [x[2 * i]!, x[2 * i + 1]!], true).forEach((v, k) => expect(Math.abs(v - y[i * grid.outputDim + k]!)).toBeLessThan(1e-5));
    const dy = uniformF32(r, n * grid.outputDim, -1, 1);
    grid.backward(dy);
    const got = grid.logitGradient();
    // Per touched row the straight-through gradients sum to 0 (softmax's Jacobian), and some are not 0.
    const NP = 64;
    let nonzero = 0;
    for (let row = 0; row < got.length / NP; row++) {
      const g = got.subarray(row * NP, row * NP + NP);
      const sum = g.reduce((a, b) => a + b, 0);
      const mag = g.reduce((a, b) => a + Math.abs(b), 0);
      expect(Math.abs(sum)).toBeLessThan(1e-5 * Math.max(1, mag));
      if (mag > 0) nonzero++;
    }
    expect(nonzero).toBeGreaterThan(3);
    grid.close();
  });

  test("N_p = 1 is the plain grid, bit for bit (forward, both gradients)", async () => {
    const seed = freshSeed("probing N_p = 1");
    const backend = CPU ?? "js";
    const plain = await HashGrid.create({ ...SMALL, probing: undefined, seed }, load(backend));
    const one = await HashGrid.create({ ...SMALL, probing: { range: 1, codebookSize: 64 }, seed }, load(backend));
    expect(one.logitCount).toBe(0);
    const r = rng(seed);
    const x = uniformF32(r, 500 * 2, 0, 1);
    const dy = uniformF32(r, 500 * plain.outputDim, -1, 1);
    const run = (g: HashGrid) => {
      const y = g.forward(x).download();
      const { params, inputs } = g.backward(dy, { inputs: true });
      return [y, params.download(), inputs!.download()];
    };
    const [a, b] = [run(plain), run(one)];
    for (let k = 0; k < 3; k++) expect(maxUlp(a[k]!, b[k]!).ulp).toBe(0);
    plain.close();
    one.close();
  });

  test.skipIf(!CPU)("JS and CPU agree: the forward bit for bit, the gradients to rounding", async () => {
    const seed = freshSeed("probing js vs cpu");
    const [js, cpu] = [await probedGrid("js", seed), await probedGrid("cpu", seed)];
    const r = rng(seed + 3);
    const n = 3000;
    const x = uniformF32(r, n * 2, 0, 1);
    const dy = uniformF32(r, n * js.outputDim, -1, 1);
    for (const g of [js, cpu]) (g.forward(x), g.backward(dy));
    expect(maxUlp(js.forward(x).download(), cpu.forward(x).download()).ulp).toBe(0);
    // The CPU's lane form adds 16 points corner by corner (another summation order), and expf
    // and Math.exp may differ in the last bit: equal to rounding, relative to the largest value.
    for (const buf of ["grad", "logitGrad"] as const) {
      const [a, b] = [js[buf].download(), cpu[buf].download()];
      const scale = a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      let worst = 0;
      a.forEach((v, k) => (worst = Math.max(worst, Math.abs(v - b[k]!))));
      expect(scale).toBeGreaterThan(0);
      expect(worst).toBeLessThan(1e-5 * scale);
    }
    js.close();
    cpu.close();
  });

  test("the optimizer step keeps the probe table and softmax equal to the argmax and softmax of the logits", async () => {
    const seed = freshSeed("probing argmax refresh");
    const backend = CPU ?? "js";
    const grid = await probedGrid(backend, seed);
    const opt = await Optimizer.create(
      [{ name: "logits", params: grid.logits, grad: grid.logitGrad, lr: 0.5, rows: grid.probeRows }],
      {},
      load(backend),
    );
    const r = rng(seed + 4);
    let changed = 0;
    for (let step = 0; step < 5; step++) {
      const before = grid.probe.download();
      grid.forward(uniformF32(r, 400 * 2, 0, 1));
      grid.backward(uniformF32(r, 400 * grid.outputDim, -1, 1));
      opt.update();
      const after = grid.probe.download();
      const logits = grid.logits.download();
      expect([...after]).toEqual([...argmaxRows(logits, grid.probing.range)]);
      // ... and the softmax the backward reads equal to the rows' softmax.
      const soft = grid.softmax.download();
      const NP = grid.probing.range;
      for (let row = 0; row < after.length; row++) {
        const z = Array.from(logits.subarray(row * NP, row * NP + NP));
        const e = z.map((v) => Math.exp(v - Math.max(...z)));
        const sum = e.reduce((a, b) => a + b, 0);
        for (let p = 0; p < NP; p++) expect(Math.abs(soft[row * NP + p]! - e[p]! / sum)).toBeLessThan(1e-6);
      }
      changed += after.filter((v, k) => v !== before[k]).length;
    }
    expect(changed).toBeGreaterThan(0); // the logits did move the probes
    opt.close();
    grid.close();
  });

  test("the optimizer step takes the logits' gradient: the softmax's Jacobian applied to the backward's, row by row", async () => {
    const seed = freshSeed("probing optimizer jacobian");
    const backend = CPU ?? "js";
    const grid = await probedGrid(backend, seed);
    const lr = 0.5;
    const opt = await Optimizer.create([{ name: "logits", params: grid.logits, grad: grid.logitGrad, lr, rows: grid.probeRows }], { kind: "sgd" }, load(backend));
    const r = rng(seed + 6);
    grid.forward(uniformF32(r, 400 * 2, 0, 1));
    grid.backward(uniformF32(r, 400 * grid.outputDim, -1, 1));
    const before = grid.logits.download();
    const want = grid.logitGradient();
    opt.update();
    const after = grid.logits.download();
    const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(scale).toBeGreaterThan(1e-3);
    let worst = 0;
    after.forEach((v, k) => (worst = Math.max(worst, Math.abs(before[k]! - lr * want[k]! - v))));
    expect(worst).toBeLessThan(1e-6 * Math.max(1, lr * scale));
    expect(grid.logitGrad.download().every((v) => v === 0)).toBe(true); // zeroed by the step
    opt.close();
    grid.close();
  });

  test("without codebookSize, N_c is 4 rows per table entry, resolved into the settings", async () => {
    const grid = await HashGrid.create({ ...SMALL, probing: { range: 4 } }, load("js"));
    expect(grid.probing.codebookSize).toBe(4 * 2 ** 10);
    expect(grid.settings.probing?.codebookSize).toBe(4 * 2 ** 10);
    expect(grid.logitCount).toBe(2 * 4 * 2 ** 10 * 4); // 2 hashed levels
    grid.close();
    const plain = await HashGrid.create({ ...SMALL, probing: undefined }, load("js"));
    expect(plain.logitCount).toBe(0);
    plain.close();
  });

  test("refusals name the field and what is allowed", async () => {
    const bad = async (probing: unknown) => HashGrid.create({ ...SMALL, probing } as HashGridOptionsInput, load("js"));
    await expect(bad({ range: 3, codebookSize: 64 })).rejects.toThrow(/hashGrid\.probing\.range: 3 is not allowed \(allowed: a power of two from 1 to 64\)/);
    await expect(bad({ range: 128 })).rejects.toThrow(/probing\.range: 128 is not allowed/);
    await expect(bad({ range: 4, codebookSize: 0 })).rejects.toThrow(/hashGrid\.probing\.codebookSize: 0 is out of range \(allowed: an integer from 1 to 16777216/);
    await expect(bad({ range: 4, codebookSize: 2 ** 25 })).rejects.toThrow(ConfigError);
    await expect(bad({ range: 4, slots: 2 })).rejects.toThrow(/unknown option "slots"/);
  });
});

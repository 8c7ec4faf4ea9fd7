// Sparse updates (docs/training.md, "Sparse updates"): the touched bitmap and row lists of
// HashGrid.trackTouched against the sets computed on the host from the coordinates (gridSlots: the
// entry of every corner), on hashed, dense and tiled levels and with learned probing, the same over
// two runs and after accumulated micro-batches; lazy Adam (modules/optimizer.ts with `sparse`) on
// random touched sets against a float64 reference over several steps, the gradient zeroed exactly
// where the step ran; dense and sparse bit for bit when every row is touched (Adam, SGD, an f16
// group, the EMA, learned probing's rows); a training step on a real grid leaving the gradient all
// zero; the CPU and JS backends giving the same bitmaps and lists.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { TouchedBits, TouchedRows, TouchedSource } from "../../modules/common.ts";
import { Ema } from "../../modules/ema.ts";
import { encodingMembers, memberTrainingBytes } from "../../modules/encoding_config.ts";
import { GRID_KERNELS, HashGrid, type HashGridOptionsInput } from "../../modules/hashgrid.ts";
import { loadKernels } from "../../modules/load.ts";
import { Optimizer, type ParamGroup } from "../../modules/optimizer.ts";
import { allocBuffer, type DeviceBuffer } from "../../runtime/buffer.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { cacheDir, freshSeed, rng, uniformF32 } from "../util.ts";

const CPU = findCxx().tool !== undefined;
const BACKEND = CPU ? "cpu" : "js";
const load = { backend: BACKEND, cacheDir } as const;
const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

function expectBits(a: Float32Array, b: Float32Array, what: string): void {
  const [x, y] = [bits(a), bits(b)];
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) throw new Error(`${what}: [${i}] ${a[i]} vs ${b[i]}`);
}

const GRIDS: [string, HashGridOptionsInput][] = [
  // Coarse levels dense, fine levels hashed.
  ["hashed and dense levels", { dims: 2, levels: 6, featuresPerLevel: 2, log2HashmapSize: 10, baseResolution: 8, finestResolution: 256 }],
  ["tiled levels, 3D", { dims: 3, levels: 4, featuresPerLevel: 4, log2HashmapSize: 10, baseResolution: 4, finestResolution: 64, gridType: "tiled" }],
  ["dense grid", { dims: 2, levels: 3, featuresPerLevel: 2, log2HashmapSize: 10, baseResolution: 4, finestResolution: 40, gridType: "dense" }],
  ["learned probing", { dims: 2, levels: 5, featuresPerLevel: 2, log2HashmapSize: 10, baseResolution: 8, finestResolution: 512, probing: { range: 4, codebookSize: 64 } }],
  ["nearest", { dims: 2, levels: 4, featuresPerLevel: 2, log2HashmapSize: 10, baseResolution: 8, finestResolution: 256, interpolation: "nearest" }],
];

/** The host's lists: per level, each corner's entry (gridSlots) in the order of points and corners, first occurrences. */
async function hostLists(grid: HashGrid, batches: Float32Array[]): Promise<number[][]> {
  const { dims, levels } = grid.settings;
  const corners = grid.settings.interpolation === "nearest" ? 1 : 1 << dims;
  // The grid's own kernel set (HashGrid.create's load, gridSlots among them): its library, no build of its own.
  const { derived: _, ...kernels } = grid.kernels;
  const mod = await loadKernels(GRID_KERNELS, { config: grid.config, kernels: Object.values(kernels), backend: grid.backend, cacheDir, boundsChecks: false });
  const lists = grid.levels.map(() => [] as number[]);
  const seen = grid.levels.map(() => new Set<number>());
  for (const x of batches) {
    const n = x.length / dims;
    const slots = mod.alloc("u32", n * levels * (1 << dims));
    // The slot within the level of every corner (probed levels: through the probe table).
    mod.kernels.gridSlots!(n, mod.upload("f32", x), grid.probe, mod.alloc("u32", n * levels * dims), slots);
    const s = slots.download();
    for (let i = 0; i < n; i++)
      for (let l = 0; l < levels; l++)
        for (let c = 0; c < corners; c++) {
          const e = grid.levels[l]!.offset + s[(i * levels + l) * (1 << dims) + c]!;
          if (!seen[l]!.has(e)) (seen[l]!.add(e), lists[l]!.push(e));
        }
  }
  mod.close();
  return lists;
}

function deviceLists(t: TouchedRows): number[][] {
  const list = t.list.download();
  return t.ranges.map((r) => Array.from(list.subarray(r.first, r.first + r.count)));
}

/** Per range, the rows a bitmap marks, in increasing order (and none past the range's words). */
function bitmapRows(t: TouchedBits): number[][] {
  const bitmap = t.bitmap.download();
  return t.ranges.map((r) => {
    const rows: number[] = [];
    for (let k = 0; k < r.words; k++) for (let b = 0; b < 32; b++) if ((bitmap[r.word + k]! >>> b) & 1) rows.push(r.first + 32 * k + b);
    return rows;
  });
}

describe("the touched lists", () => {
  for (const [name, options] of GRIDS) {
    test(`${name}: the bitmap marks the host's entries from the coordinates, the row lists the host's rows (order included), over accumulated micro-batches, the same in a second run; rows where logitGrad was written`, async () => {
      const r = rng(freshSeed(`touched ${name}`));
      const lists: number[][][] = [];
      const dims = options.dims!;
      const batches = [uniformF32(r, 300 * dims, -0.05, 1.05), uniformF32(r, 200 * dims, 0, 1)];
      const width = (options.levels ?? 16) * (options.featuresPerLevel ?? 2);
      const dys = [0, 1, 2].map((k) => uniformF32(r, (k === 2 ? 200 : 300) * width, -1, 1));
      for (let run = 0; run < 2; run++) {
        const grid = await HashGrid.create({ ...options, seed: 3 }, load);
        await grid.trackTouched();
        let k = 0;
        // Step 1: one batch; step 2: two micro-batches (the second appends what the first did not list).
        for (const [step, xs] of [[1, batches.slice(0, 1)], [2, batches]] as const) {
          for (const x of xs) {
            grid.forward(x);
            grid.backward(dys[k++]!, { accumulate: true });
          }
          const t = grid.touched();
          const got = bitmapRows(t.entries);
          expect(got).toEqual((await hostLists(grid, xs)).map((l) => l.sort((a, b) => a - b)));
          expect(t.entries.ranges.map((q) => q.count)).toEqual(got.map((l) => l.length));
          // Each level's bits from a word of its own, the words of a level covering its entries, the bitmap nothing else.
          t.entries.ranges.forEach((q, l) => {
            expect(q.first).toBe(grid.levels[l]!.offset);
            expect(q.words).toBe(Math.ceil(grid.levels[l]!.size / 32));
            expect(q.word).toBe(l === 0 ? 0 : t.entries.ranges[l - 1]!.word + t.entries.ranges[l - 1]!.words);
            for (const e of got[l]!) expect(e - q.first).toBeLessThan(grid.levels[l]!.size);
          });
          expect(t.entries.bitmap.length).toBe(t.entries.ranges.reduce((a, q) => a + q.words, 0));
          expect(t.entries.width).toBe(grid.settings.featuresPerLevel);
          if (grid.probing.rows) {
            // The rows listed are exactly those whose softmax gradient the backward wrote.
            const g = grid.logitGrad.download();
            const written = new Set<number>();
            for (let row = 0; row < grid.probing.rows; row++)
              for (let p = 0; p < grid.probing.range; p++) if (g[row * grid.probing.range + p] !== 0) written.add(row);
            const rows = deviceLists(t.rows).flat();
            expect(new Set(rows).size).toBe(rows.length);
            expect(new Set(rows)).toEqual(written);
            expect(t.rows.ranges.length).toBe(grid.probing.probed.filter(Boolean).length);
          } else expect(t.rows.ranges).toEqual([]);
          // Exactly the listed entries carry a gradient (random dy: none is exactly zero).
          const g = grid.grad.download();
          const F = grid.settings.featuresPerLevel;
          const listed = new Set(got.flat());
          for (let e = 0; e < g.length / F; e++) {
            const nonzero = g.subarray(e * F, (e + 1) * F).some((v) => v !== 0);
            if (nonzero !== listed.has(e)) throw new Error(`entry ${e}: gradient ${nonzero ? "written" : "zero"} but ${listed.has(e) ? "listed" : "not listed"}`);
          }
          grid.grad.zero();
          grid.logitGrad.zero();
          if (step === 2) lists.push(got);
        }
        grid.close();
      }
      expect(lists[1]).toEqual(lists[0]!);
    });
  }

  test.skipIf(!CPU)("the JS backend marks the same entries and lists the same rows in the same order as the CPU", async () => {
    const r = rng(freshSeed("touched js"));
    const options = GRIDS[3]![1];
    const x = uniformF32(r, 400 * 2, 0, 1);
    const dy = uniformF32(r, 400 * 10, -1, 1);
    const got: number[][][][] = [];
    for (const backend of ["cpu", "js"] as const) {
      const grid = await HashGrid.create({ ...options, seed: 3 }, { backend, cacheDir });
      await grid.trackTouched();
      grid.forward(x);
      grid.backward(dy);
      const t = grid.touched();
      got.push([bitmapRows(t.entries), deviceLists(t.rows)]);
      expect(got.at(-1)![0]!.flat().length).toBeGreaterThan(100);
      expect(got.at(-1)).toEqual(got[0]!);
      grid.close();
    }
  });

  test("over ranks: the union of each grid's set (touchedSet, the bitmaps or'ed, then unionTouched with the rows in rank order) is one grid's set over the same micro-batches (the rows' order included)", async () => {
    const r = rng(freshSeed("touched union"));
    for (const [name, options] of GRIDS) {
      const dims = options.dims!;
      const width = (options.levels ?? 16) * (options.featuresPerLevel ?? 2);
      const xs = [uniformF32(r, 300 * dims, 0, 1), uniformF32(r, 200 * dims, -0.05, 1.05), uniformF32(r, 100 * dims, 0, 1)];
      const dys = xs.map((x) => uniformF32(r, (x.length / dims) * width, -1, 1));
      const grids = await Promise.all([0, 1, 2, 3].map(async () => {
        const g = await HashGrid.create({ ...options, seed: 3 }, load);
        await g.trackTouched();
        return g;
      }));
      const [one, ...ranks] = grids as [HashGrid, ...HashGrid[]];
      // Two steps, so that the second set starts over (a new stamp) after the first was taken.
      for (let step = 0; step < 2; step++) {
        xs.forEach((x, k) => (one.forward(x), one.backward(dys[k]!, { accumulate: true })));
        ranks.forEach((g, k) => (g.forward(xs[k]!), g.backward(dys[k]!, { accumulate: true })));
        const sets = ranks.map((g) => g.touchedSet());
        // What Ranks.allReduceOr gives every rank: the or of the bitmaps, word by word.
        const bitmap = sets.reduce((or, s) => or.map((w, i) => w | s.bitmap[i]!), new Uint32Array(sets[0]!.bitmap.length));
        for (const g of ranks) g.unionTouched({ bitmap: bitmap.slice(), rows: sets.map((s) => s.rows) });
        const want = one.touched();
        for (const g of ranks) {
          const t = g.touched();
          expect({ name, entries: bitmapRows(t.entries), counts: t.entries.ranges, rows: deviceLists(t.rows) }).toEqual({ name, entries: bitmapRows(want.entries), counts: want.entries.ranges, rows: deviceLists(want.rows) });
        }
        expect(() => ranks[0]!.touchedSet()).toThrow("HashGrid.touchedSet: no backward since the last touched() (the set is taken)");
      }
      for (const g of grids) g.close();
    }
  });

  test("the training memory counts what trackTouched allocates: a bit per table entry (whole words per level) and a stamp and list slot per codebook row", async () => {
    const options = GRIDS[3]![1];
    const [member] = encodingMembers(2, [options]);
    const bytes = (sparse: boolean) => memberTrainingBytes(member!, { adam: true, ema: false, sparse });
    const grid = await HashGrid.create({ ...options, seed: 3 }, load);
    await grid.trackTouched();
    grid.forward(uniformF32(rng(1), 2 * 10, 0, 1));
    grid.backward(new Float32Array(10 * 10));
    const t = grid.touched();
    const words = grid.levels.reduce((a, lv) => a + Math.ceil(lv.size / 32), 0);
    expect(t.entries.bitmap.length).toBe(words);
    expect(words).toBeLessThan(grid.paramCount / 2 / 32 + grid.levels.length);
    expect(bytes(true) - bytes(false)).toBe(4 * words + 8 * grid.probing.rows);
    grid.close();
  });

  test("a variant that replaces encodeLevel is refused (its entries are not known)", async () => {
    // Refused before any kernel runs, on any backend: the JS one (no native build).
    const grid = await HashGrid.create({ dims: 4, levels: 4, log2HashmapSize: 10, variant: join(import.meta.dir, "../../examples/variants/spacetime.ts") }, { backend: "js", cacheDir });
    await expect(grid.trackTouched()).rejects.toThrow(/sparse updates: .*spacetime\.ts replaces encodeLevel/);
    grid.close();
  });
});

/**
 * A fixed touched set as a group's `touched`: a bitmap over `rows` rows in two ranges, rows
 * [0, cut) and [cut, rows) with cut = min(70, rows / 2), not a multiple of 32: two launches, the
 * second from a word of its own.
 */
function source(width: number, backend: string, rows: number, set: number[][]): TouchedSource<TouchedBits> & { set(r: number[][]): void } {
  const cut = Math.min(70, rows >> 1);
  const words = [Math.ceil(cut / 32), Math.ceil((rows - cut) / 32)];
  const ranges = [{ first: 0, word: 0, words: words[0]!, count: 0 }, { first: cut, word: words[0]!, words: words[1]!, count: 0 }];
  const bitmap = allocBuffer(backend as never, "u32", words[0]! + words[1]!);
  let current: TouchedBits;
  const put = (rs: number[][]) => {
    const bits = new Uint32Array(bitmap.length);
    const counts = [0, 0];
    for (const row of rs.flat()) {
      const k = row < cut ? 0 : 1;
      const at = row - ranges[k]!.first;
      bits[ranges[k]!.word + (at >> 5)]! |= 1 << (at & 31);
      counts[k]!++;
    }
    bitmap.upload(bits);
    current = { width, bitmap, ranges: ranges.map((r, k) => ({ ...r, count: counts[k]! })) };
  };
  put(set);
  return { width, get: () => current, set: put };
}

/** Random distinct rows of [0, rows), split into two ranges. */
function randomRows(r: () => number, rows: number, k: number): number[][] {
  const all = Array.from({ length: rows }, (_, i) => i);
  for (let i = rows - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  const pick = all.slice(0, k);
  return [pick.slice(0, k >> 1), pick.slice(k >> 1)];
}

describe("lazy Adam", () => {
  test.each(CPU ? ["cpu", "js"] : ["js"])("%s: random touched sets over 4 steps equal a float64 lazy Adam (untouched rows, their m and v unchanged; global bias correction); the gradient zero after each step", async (backend) => {
    const r = rng(freshSeed(`lazy adam ${backend}`));
    const [width, rows] = [3, 200];
    const p0 = uniformF32(r, width * rows, -1, 1);
    const params = allocBuffer(backend as typeof BACKEND, "f32", p0.length);
    params.upload(p0);
    const grad = allocBuffer(backend as typeof BACKEND, "f32", p0.length);
    const touched = source(width, backend, rows, [[]]);
    const [lr, b1, b2, eps, wd] = [0.05, 0.9, 0.99, 1e-8, 0.01];
    const opt = await Optimizer.create([{ name: "encoding", params, grad, touched }], { sparse: true, lr, beta1: b1, beta2: b2, eps, weightDecay: wd }, { backend, cacheDir });
    const [p, m, v] = [Float64Array.from(p0), new Float64Array(p0.length), new Float64Array(p0.length)];
    for (let t = 1; t <= 4; t++) {
      const set = randomRows(r, rows, 30 + 20 * t);
      // Bit 31 of a word in each range (rows 31 and cut + 31 = 101), every other step.
      if (t % 2) for (const [k, row] of [[0, 31], [1, 101]] as const) if (!set.flat().includes(row)) set[k]!.push(row);
      touched.set(set);
      const g = new Float32Array(p0.length);
      for (const row of set.flat()) for (let k = 0; k < width; k++) g[row * width + k] = r() * 2 - 1;
      grad.upload(g);
      opt.update();
      const step = (lr * Math.sqrt(1 - b2 ** t)) / (1 - b1 ** t);
      for (const row of set.flat())
        for (let k = 0; k < width; k++) {
          const i = row * width + k;
          const gi = g[i]! + wd * p[i]!;
          m[i] = b1 * m[i]! + (1 - b1) * gi;
          v[i] = b2 * v[i]! + (1 - b2) * gi * gi;
          p[i] = p[i]! - (step * m[i]!) / (Math.sqrt(v[i]!) + eps);
        }
      const got = params.download();
      const s = opt.state().groups[0]!;
      for (let i = 0; i < p.length; i++) {
        expect(Math.abs(got[i]! - p[i]!)).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(p[i]!)));
        expect(Math.abs(s.m![i]! - m[i]!)).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(m[i]!)));
        expect(Math.abs(s.v![i]! - v[i]!)).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(v[i]!)));
      }
      expect(grad.download().every((x) => x === 0)).toBe(true);
    }
    // Untouched since the start: exactly the initial value, m and v zero.
    opt.close();
  });

  test("a gradient outside the listed rows is left as it is (the step clears exactly the rows it updates)", async () => {
    const r = rng(freshSeed("sparse clears"));
    const params = allocBuffer(BACKEND, "f32", 40);
    params.upload(uniformF32(r, 40, -1, 1));
    const grad = allocBuffer(BACKEND, "f32", 40);
    const g = uniformF32(r, 40, -1, 1);
    grad.upload(g);
    const opt = await Optimizer.create([{ name: "encoding", params, grad, touched: source(2, BACKEND, 20, [[3, 7], [19]]) }], { sparse: true }, load);
    opt.update();
    const after = grad.download();
    for (let row = 0; row < 20; row++)
      for (let k = 0; k < 2; k++) expect(after[row * 2 + k]).toBe([3, 7, 19].includes(row) ? 0 : g[row * 2 + k]!);
    opt.close();
  });
});

describe("dense and sparse bit for bit when every row is listed", () => {
  for (const [kind, precision] of [["adam", "f32"], ["sgd", "f32"], ["adam", "f16"]] as const) {
    test(`${kind}, ${precision} parameters, and the EMA: 3 steps`, async () => {
      const r = rng(freshSeed(`dense sparse ${kind} ${precision}`));
      const [width, rows] = [2, 500];
      const p0 = uniformF32(r, width * rows, -1, 1);
      const grads = [0, 1, 2].map(() => uniformF32(r, p0.length, -1, 1));
      const results: Float32Array[][] = [];
      for (const sparse of [false, true]) {
        const params = allocBuffer(BACKEND, precision, p0.length) as DeviceBuffer<"f32"> | DeviceBuffer<"f16">;
        params.upload(p0);
        const grad = allocBuffer(BACKEND, "f32", p0.length);
        // Every row, in two ranges.
        const touched = source(width, BACKEND, rows, randomRows(r, rows, rows));
        const group: ParamGroup = { name: "encoding", params, grad, touched };
        const opt = await Optimizer.create([group], { kind, sparse }, load);
        const ema = await Ema.create([{ name: "encoding", params: opt.master("encoding"), ...(sparse ? { touched } : {}) }], { decay: 0.9 }, load);
        for (const g of grads) {
          grad.upload(g);
          opt.update();
          ema.update();
        }
        const s = opt.state().groups[0]!;
        results.push([Float32Array.from(params.download() as ArrayLike<number>), opt.master("encoding").download(), ...(s.m ? [s.m, s.v!] : []), ema.state().groups[0]!.ema]);
        opt.close();
        ema.close();
      }
      results[0]!.forEach((a, k) => expectBits(a, results[1]![k]!, `array ${k}`));
    });
  }

  test("learned probing's rows (the probe table and softmax too), and a training step on a real grid leaves the gradient all zero", async () => {
    const r = rng(freshSeed("dense sparse rows"));
    const options = GRIDS[3]![1]; // learned probing (its kernels built above)
    const x = uniformF32(r, 2 * 3000, 0, 1);
    const dys = [0, 1].map(() => uniformF32(r, 3000 * 10, -1, 1));
    const out: Float32Array[][] = [];
    for (const sparse of [false, true]) {
      const grid = await HashGrid.create({ ...options, seed: 5 }, load);
      await grid.trackTouched();
      const opt = await Optimizer.create(
        [
          { name: "encoding", params: grid.params as DeviceBuffer<"f32">, grad: grid.grad, touched: grid.touchedEntries },
          { name: "probing", params: grid.logits, grad: grid.logitGrad, rows: grid.probeRows, touched: grid.touchedCodebookRows },
        ],
        { sparse, lr: 0.1 },
        load,
      );
      for (const dy of dys) {
        grid.forward(x);
        grid.backward(dy, { accumulate: true });
        // 3000 points touch every codebook row; the table's entries too at these levels?
        const t = grid.touched();
        if (sparse) expect(t.rows.ranges.reduce((a, q) => a + q.count, 0)).toBe(grid.probing.rows);
        opt.update();
        expect(grid.grad.download().every((v) => v === 0)).toBe(true);
        expect(grid.logitGrad.download().every((v) => v === 0)).toBe(true);
      }
      out.push([grid.logits.download(), grid.softmax.download(), Float32Array.from(grid.probe.download())]);
      opt.close();
      grid.close();
    }
    out[0]!.forEach((a, k) => expectBits(a, out[1]![k]!, `probing array ${k}`));
  });
});

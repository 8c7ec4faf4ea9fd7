// Several grids as one encoding (modules/encoding.ts): each member grid reads its axes from the
// full input row and writes its part of the concatenated output, so the encoding must equal its
// members run alone on the sliced inputs, bit for bit (forward, parameter and input gradients),
// with learned probing and f16 storage per member; its input gradient is checked by finite
// differences; its configuration errors name the field; the Earth4D preset is counted exactly;
// and a small multi-grid trains on 4D points, resumes exactly.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { findCxx } from "../../runtime/toolchain.ts";
import { Encoding, ENCODING_PRESETS, checkTrainingMemory, encodingMembers, memberTrainingBytes, type MemberOptions } from "../../modules/encoding.ts";
import { HashGrid, gridParamCount, parseHashGridOptions } from "../../modules/hashgrid.ts";
import { readCheckpoint } from "../../train/checkpoint.ts";
import { parseTrainConfig, type TrainConfigInput } from "../../train/config.ts";
import { writePointsFile } from "../../train/data/points.ts";
import { fieldMembers } from "../../train/field.ts";
import { train } from "../../train/trainer.ts";
import { cacheDir, freshSeed, rng, ROOT, runBun } from "../util.ts";

const CPU = findCxx().tool ? "cpu" : undefined;
const BACKENDS = ["js", CPU].filter(Boolean) as ("js" | "cpu")[];

/** Three members over 4 axes: a plain 3D grid, a probed one in f16, a 2D one of F = 4 sharing axis 3. */
const MEMBERS: MemberOptions[] = [
  { axes: [0, 1, 2], levels: 4, log2HashmapSize: 10, baseResolution: 4, finestResolution: 64, seed: 1 },
  { axes: [0, 1, 3], levels: 3, log2HashmapSize: 9, baseResolution: 8, finestResolution: 128, precision: "f16", probing: { range: 4, codebookSize: 64 }, seed: 2 },
  { axes: [3, 1], levels: 2, featuresPerLevel: 4, log2HashmapSize: 8, baseResolution: 16, perLevelScale: 3, seed: 3 },
];

const same = (a: ArrayLike<number>, b: ArrayLike<number>) => a.length === b.length && Array.from(a).every((v, k) => Object.is(v, b[k]));

/** Column block [from, from + w) of each row of a [n][width] array. */
function columns(a: Float32Array, width: number, from: number, w: number): Float32Array {
  const n = a.length / width;
  const out = new Float32Array(n * w);
  for (let i = 0; i < n; i++) out.set(a.subarray(i * width + from, i * width + from + w), i * w);
  return out;
}

for (const backend of BACKENDS) {
  describe(`an encoding of three grids (${backend})`, () => {
    test("forward, parameter and input gradients equal the members run alone on their axes, bit for bit", async () => {
      const seed = freshSeed(`encoding-${backend}`);
      const r = rng(seed);
      const load = { backend, cacheDir };
      const enc = await Encoding.create(4, MEMBERS, load);
      const alone = await Promise.all(MEMBERS.map(({ axes: _, ...o }, i) => HashGrid.create({ ...o, dims: MEMBERS[i]!.axes!.length }, load)));
      try {
        expect(enc.grids.map((g) => g.place.outputOffset)).toEqual([0, 8, 14]);
        expect(enc.outputDim).toBe(22);
        expect(enc.paramCount).toBe(alone.reduce((a, g) => a + g.paramCount, 0));
        const n = 300;
        // Inside [0, 1] and a few outside (clamped: no input gradient there) and NaN (as 0).
        const x = Float32Array.from({ length: n * 4 }, () => r() * 1.2 - 0.1);
        x[7] = NaN;
        // Random parameters and logits, the same in both (f16 grids round them alike).
        for (const [i, g] of enc.grids.entries()) {
          const p = Float32Array.from({ length: g.paramCount }, () => r() * 2 - 1);
          g.params.upload(p);
          alone[i]!.params.upload(p);
          if (g.logitCount) {
            const l = Float32Array.from({ length: g.logitCount }, () => r() * 4 - 2);
            for (const h of [g, alone[i]!]) (h.logits.upload(l), h.refreshProbes());
          }
        }
        const y = enc.forward(x).download() as Float32Array;
        const dy = Float32Array.from({ length: n * enc.outputDim }, () => r() * 2 - 1);
        const { inputs } = enc.backward(dy, { inputs: true });
        const dx = inputs!.download() as Float32Array;
        const sum = new Float32Array(n * 4); // the members' input gradients added in member order
        for (const [i, g] of alone.entries()) {
          const axes = MEMBERS[i]!.axes!;
          const xi = new Float32Array(n * axes.length);
          for (let p = 0; p < n; p++) axes.forEach((a, d) => (xi[p * axes.length + d] = x[p * 4 + a]!));
          const { outputOffset } = enc.grids[i]!.place;
          expect(same(g.forward(xi).download() as Float32Array, columns(y, 22, outputOffset, g.outputDim))).toBe(true);
          const b = g.backward(columns(dy, 22, outputOffset, g.outputDim), { inputs: true });
          expect(same(enc.grids[i]!.grad.download(), b.params.download())).toBe(true);
          if (g.logitCount) expect(same(enc.grids[i]!.logitGrad.download(), g.logitGrad.download())).toBe(true);
          const di = b.inputs!.download();
          for (let p = 0; p < n; p++) axes.forEach((a, d) => (sum[p * 4 + a] = Math.fround(sum[p * 4 + a]! + di[p * axes.length + d]!)));
        }
        expect(same(dx, sum)).toBe(true);
        expect(dx.some((v) => v !== 0)).toBe(true);
        expect(enc.grids[1]!.logitGrad.download().some((v) => v !== 0)).toBe(true); // probing learns per member
      } finally {
        enc.close();
        for (const g of alone) g.close();
      }
    }, 300_000);
  });
}

test("a member with a variant (its gradients derived by the compiler) equals the variant's grid alone (JS backend)", async () => {
  const r = rng(freshSeed("encoding-variant"));
  const variant = resolve(ROOT, "examples/variants/triangle_blend.ts");
  const members: MemberOptions[] = [{ axes: [1], levels: 2, baseResolution: 8, seed: 4 }, { axes: [2, 0], levels: 3, baseResolution: 4, finestResolution: 32, variant, seed: 5 }];
  const load = { backend: "js" as const, cacheDir };
  const enc = await Encoding.create(3, members, load);
  const alone = await HashGrid.create({ dims: 2, levels: 3, baseResolution: 4, finestResolution: 32, variant, seed: 5 }, load);
  try {
    const n = 64;
    const x = Float32Array.from({ length: n * 3 }, () => r());
    const y = enc.forward(x).download() as Float32Array;
    const dy = Float32Array.from({ length: n * enc.outputDim }, () => r() * 2 - 1);
    const dx = enc.backward(dy, { inputs: true }).inputs!.download();
    const xi = Float32Array.from({ length: n * 2 }, (_, k) => x[Math.floor(k / 2) * 3 + [2, 0][k % 2]!]!);
    expect(same(alone.forward(xi).download() as Float32Array, columns(y, enc.outputDim, 4, 6))).toBe(true);
    const b = alone.backward(columns(dy, enc.outputDim, 4, 6), { inputs: true });
    expect(same(enc.grids[1]!.grad.download(), b.params.download())).toBe(true);
    // Axis 2 is the variant's only: its input gradient is the lone grid's axis 0.
    const di = b.inputs!.download();
    expect(same(Float32Array.from({ length: n }, (_, i) => dx[i * 3 + 2]!), Float32Array.from({ length: n }, (_, i) => di[i * 2]!))).toBe(true);
  } finally {
    enc.close();
    alone.close();
  }
}, 300_000);

test("an encoding built for training (the trainer's) builds no input gradient or collision kernels, equals the full one, and names the fix when asked for them (JS backend)", async () => {
  const r = rng(freshSeed("encoding-training-use"));
  const load = { backend: "js" as const, cacheDir };
  const full = await Encoding.create(4, MEMBERS, load);
  const lean = await Encoding.fromMembers(encodingMembers(4, MEMBERS), load, "training");
  try {
    const n = 32;
    const x = Float32Array.from({ length: n * 4 }, () => r());
    const dy = Float32Array.from({ length: n * full.outputDim }, () => r() * 2 - 1);
    expect(same(full.forward(x).download(), lean.forward(x).download())).toBe(true);
    full.backward(dy);
    lean.backward(dy);
    for (const [k, g] of lean.grids.entries()) expect(same(g.grad.download(), full.grids[k]!.grad.download())).toBe(true);
    expect(() => lean.backward(dy, { inputs: true })).toThrow(/was not built \(the grid was created for training only/);
    expect(() => lean.grids[0]!.collisionStats(x.subarray(0, 12))).toThrow(/gridSlots was not built/);
  } finally {
    full.close();
    lean.close();
  }
}, 300_000);

test("the encoding's input gradient matches central finite differences of its forward (JS backend)", async () => {
  const r = rng(freshSeed("encoding-fd"));
  // f32 members with linear interpolation (f16 and probing's argmax are piecewise: checked above against the lone grids).
  const members = MEMBERS.map(({ precision: _, probing: __, ...m }) => m);
  const enc = await Encoding.create(4, members, { backend: "js", cacheDir });
  try {
    for (const g of enc.grids) g.params.upload(Float32Array.from({ length: g.paramCount }, () => r() * 2 - 1));
    const n = 40;
    const x = Float32Array.from({ length: n * 4 }, () => 0.05 + 0.9 * r());
    const dy = Float32Array.from({ length: n * enc.outputDim }, () => r() * 2 - 1);
    enc.forward(x);
    const dx = enc.backward(dy, { inputs: true }).inputs!.download();
    const loss = (xs: Float32Array) => (enc.forward(xs).download() as Float32Array).reduce((a, v, k) => a + v * dy[k]!, 0);
    // Central differences at h and h / 2: where they agree the forward is smooth there (no cell
    // boundary of a fine level crossed, where the slope jumps), and there they must match dx.
    const fd = (k: number, h: number) => {
      const [p, m] = [x.slice(), x.slice()];
      p[k] = x[k]! + h;
      m[k] = x[k]! - h;
      return (loss(p) - loss(m)) / (p[k]! - m[k]!);
    };
    let smooth = 0;
    for (let k = 0; k < n * 4; k++) {
      const [a, b] = [fd(k, 2e-4), fd(k, 1e-4)];
      if (Math.abs(a - b) > 1e-3 * Math.max(1, Math.abs(b))) continue;
      smooth++;
      expect([k, Math.abs(b - dx[k]!) / Math.max(1, Math.abs(b))]).toEqual([k, expect.closeTo(0, 2)]);
    }
    expect(smooth).toBeGreaterThan(0.8 * n * 4);
  } finally {
    enc.close();
  }
}, 300_000);

describe("configuration", () => {
  const cfg = (grids: unknown, extra: object = {}) => parseTrainConfig({ encoding: { grids, ...extra } } as TrainConfigInput);
  test("axes outside the data's dimension, repeated or empty, and an unknown preset, each named", () => {
    expect(() => fieldMembers(cfg([{ axes: [0, 1, 4] }]), 4)).toThrow("encoding.grids.0.axes: [0,1,4] names axis 4, outside the data's 4 dimensions (allowed: 0 to 3)");
    expect(() => fieldMembers(cfg([{ axes: [0, 1] }, { axes: [1, 1] }]), 2)).toThrow("encoding.grids.1.axes: [1,1] repeats axis 1 (allowed: each axis once)");
    expect(() => fieldMembers(cfg([{ axes: [] }]), 2)).toThrow("encoding.grids.0.axes: [] is empty (allowed: one or more of the data's axes 0 to 1)");
    expect(() => fieldMembers(cfg([]), 2)).toThrow("encoding.grids: is empty (allowed: at least one grid)");
    expect(() => cfg(undefined, { preset: "earth5d" })).toThrow('encoding.preset: "earth5d" is not allowed (allowed: "earth4d")');
    expect(() => cfg([{ axes: [0], level: 3 }])).toThrow('encoding.grids.0: unknown field "level"');
    // A member's own fields override the section's; the others are the section's.
    const [a, b] = fieldMembers(cfg([{ axes: [1] }, { axes: [0, 1], levels: 3, probing: { range: 4 } }], { levels: 5 }), 2);
    expect([a!.settings.levels, b!.settings.levels, a!.settings.probing?.range ?? 1, b!.settings.probing!.range]).toEqual([5, 3, 1, 4]);
    expect(() => encodingMembers(2, [{ axes: [0], levels: 0 }, { axes: [1] }])).toThrow(/encoding\.grids\.0\.levels: 0 is out of range/);
  });

  test("training memory above the machine's is refused before allocating, with the figure and what would fit", () => {
    const { grids, ...shared } = structuredClone(ENCODING_PRESETS.earth4d) as unknown as { grids: { axes: number[] }[] } & MemberOptions;
    const members = encodingMembers(4, grids.map((g) => ({ ...shared, axes: g.axes })));
    const need = members.reduce((a, m) => a + memberTrainingBytes(m, { adam: true, ema: false }), 0);
    expect(() => checkTrainingMemory(members, { adam: true, ema: false }, "encoding", need)).not.toThrow();
    expect(() => checkTrainingMemory(members, { adam: true, ema: false }, "encoding", 8 * 2 ** 30)).toThrow(
      /^encoding: training needs 10\.6 GiB \(parameters, gradient, Adam moments and probing\), more than this machine's 8\.0 GiB of memory; log2HashmapSize 21 would fit$/,
    );
    expect(() => checkTrainingMemory(members, { adam: true, ema: true }, "encoding", need)).toThrow(/^encoding: training needs 13\.3 GiB \(parameters, gradient, Adam moments, EMA and probing\)/);
  });

  test("bun run train refuses an unknown preset and bad axes with exit status 2, one line, nothing written", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ngpk-enc-cli-"));
    try {
      const run = async (args: string[]) => {
        const { code, err } = await runBun("cli/train.ts", [...args, "--out", join(dir, "out")]);
        return { code, err: err.trim() };
      };
      expect(await run(["--encoding-preset", "earth5d"])).toEqual({ code: 2, err: 'error: --encoding-preset: "earth5d" is not allowed (allowed: "earth4d")' });
      const yaml = join(dir, "bad.yaml");
      await Bun.write(yaml, "encoding:\n  grids:\n    - axes: [0, 2]\n");
      expect(await run(["--config", yaml, "--steps", "1"])).toEqual({ code: 2, err: `error: ${yaml}: encoding.grids.0.axes: [0,2] names axis 2, outside the data's 2 dimensions (allowed: 0 to 1)` });
      // The image is 2D: earth4d's axes 2 and 3 are refused before anything is read or written.
      const e4 = await run(["--encoding-preset", "earth4d"]);
      expect(e4.code).toBe(2);
      expect(e4.err).toMatch(/^error: encoding\.grids\.0\.axes: \[0,1,2\] names axis 2, outside the data's 2 dimensions/);
      expect(await Bun.file(join(dir, "out")).exists()).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("the Earth4D preset", () => {
  test("bun run params counts it per grid and in total, as each member's gridParamCount", async () => {
    const j = JSON.parse((await runBun("cli/params.ts", ["--encoding-preset", "earth4d", "--json"])).out);
    // Each grid counted on its own: 3D, 24 levels, F = 2, 2^22 entries, resolutions 32 .. 2^23.
    const one = gridParamCount(parseHashGridOptions({ dims: 3, levels: 24, featuresPerLevel: 2, log2HashmapSize: 22, baseResolution: 32, finestResolution: 2 ** 23 }));
    // By hand: b = 2^(18/23); levels 0..2 are dense (32^3, 56^3 and 95^3 vertices, next multiple of
    // 8), the other 21 hashed at 2^22 entries; 2 features each.
    const dense = [32, 56, 95].map((r) => Math.ceil(r ** 3 / 8) * 8).reduce((a, b) => a + b, 0);
    expect(one).toBe(2 * (dense + 21 * 2 ** 22));
    expect(j.grids.map((g: { params: number }) => g.params)).toEqual([one, one, one, one]);
    expect(j.params).toBe(4 * one);
    expect(j.params).toBe(713_169_152); // DeepEarth reports about 724M: docs/encoding.md says why
    expect(j.grids.map((g: { axes: number[] }) => g.axes)).toEqual([[0, 1, 2], [0, 1, 3], [1, 2, 3], [0, 2, 3]]);
    // Training: f32 parameters, gradient, Adam m and v (16 bytes each); the logits (N_c 512 rows of
    // N_p 32 on the 21 hashed levels of each grid) with gradient and moments, and the probe table.
    const rows = 4 * 21 * 512;
    expect(j.logits).toBe(rows * 32);
    expect(j.trainingBytes).toBe(16 * j.params + 16 * rows * 32 + 4 * rows);
    expect(j.inferenceBytes.f16).toBe(2 * j.params + 4 * Math.ceil((21 * 512 * 5) / 8));
  });
});

describe("training on 4D points", () => {
  let dir: string;
  let bin: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "ngpk-enc-points-"));
    bin = join(dir, "field4d.bin");
    const r = rng(17);
    const n = 8000;
    const a = new Float32Array(n * 5);
    for (let i = 0; i < n; i++) {
      const [x, y, z, t] = [r(), r(), r(), r()];
      a.set([x, y, z, t, Math.sin(6 * x) * Math.cos(4 * y) + z * Math.sin(5 * t)], i * 5);
    }
    writePointsFile(bin, { dims: 4, channels: 1 }, a);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("a small Earth4D-shaped encoding (four 3D grids, probing on one, f16 on another): the loss falls; a resumed run equals an uninterrupted one", async () => {
    const backend = CPU ?? "js";
    const cfg = (over: Partial<TrainConfigInput>): TrainConfigInput => ({
      points: { file: bin },
      encoding: {
        levels: 4, log2HashmapSize: 10, baseResolution: 4, finestResolution: 64,
        grids: [{ axes: [0, 1, 2] }, { axes: [0, 1, 3], probing: { range: 4, codebookSize: 256 } }, { axes: [1, 2, 3], precision: "f16" }, { axes: [0, 2, 3] }],
      },
      network: { width: 16, hiddenLayers: 1 },
      batch: 1024, steps: 40, evalEvery: 10, schedule: { kind: "none" }, ema: { enabled: true }, backend, seed: 3,
      ...over,
    });
    const losses: number[] = [];
    const a = await train(cfg({ out: join(dir, "a") }), { onStep: (s) => losses.push(s.loss) });
    expect(a.paramsEncoding).toBe(fieldMembers(parseTrainConfig(cfg({})), 4).reduce((s, m) => s + gridParamCount(m.settings, m.levels), 0));
    expect(losses.at(-1)!).toBeLessThan(losses[0]! / 5);
    const arrays = (await readCheckpoint(a.files.checkpoint)).arrays;
    expect(Object.keys(arrays).filter((k) => !k.startsWith("optimizer."))).toEqual([
      "encoding.0.params", "network.params", "encoding.1.params", "probing.1.params", "encoding.2.params", "encoding.3.params",
      "ema.encoding.0", "ema.encoding.1", "ema.encoding.2", "ema.encoding.3", "ema.network",
    ]);
    const half = join(dir, "half");
    await train(cfg({ out: half, steps: 20 }));
    const resumed = await train(cfg({ out: join(dir, "resumed") }), { resume: join(half, "checkpoint.ngpk") });
    const b = (await readCheckpoint(resumed.files.checkpoint)).arrays;
    expect(Object.keys(b)).toEqual(Object.keys(arrays));
    for (const k of Object.keys(arrays)) expect([k, same(arrays[k]!, b[k]!)]).toEqual([k, true]);
  }, 600_000);
});

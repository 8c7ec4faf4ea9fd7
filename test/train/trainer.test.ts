// The trainer (train/trainer.ts) through its library API, on a 64 x 48 crop of the bundled
// photograph and one small model shared by every test (so the native builds are cached):
// determinism (same configuration, same parameters bit for bit; another seed differs), resume
// (half the steps then `resume`, or an interruption through hooks.signal, equals the uninterrupted
// run bit for bit, with and without accumulation; a changed model field or another image size is
// refused), accumulation (K micro-batches equal one K-times-larger batch at the module level; a
// time budget ending mid-group applies the partial group; Optimizer.update's gradScale), the
// learning-rate schedules as logged in metrics.csv, the out directory's files with a PSNR that
// rises well above the untrained field's, and a diverging run stopped with TrainError, its last
// checkpoint finite.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { HashGrid } from "../../modules/hashgrid.ts";
import { Mlp } from "../../modules/mlp.ts";
import { Optimizer } from "../../modules/optimizer.ts";
import { defaultLearningRate } from "../../train/schedule.ts";
import { allocBuffer } from "../../runtime/buffer.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { CheckpointError, readCheckpoint, type Checkpoint } from "../../train/checkpoint.ts";
import { MAX_STEPS, type TrainConfigInput } from "../../train/config.ts";
import { VolumeSource } from "../../train/data/volume.ts";
import { readMetrics } from "../../train/outputs.ts";
import { checkMemory, MemoryError } from "../../runtime/memory.ts";
import { checkpointUses } from "../../train/field.ts";
import { InterruptedError, TrainError, train, type TrainHooks, type TrainResult } from "../../train/trainer.ts";
import { ConfigError } from "../../modules/options.ts";
import { cacheDir, envForFile, freshSeed, rng, ROOT, uniformF32 } from "../util.ts";

const CPU = findCxx().tool !== undefined;
const BACKEND = CPU ? "cpu" : "js";
const ON = CPU ? "CPU" : "JS (no C++ compiler)";

let dir: string;
let image: string;
let tall: string;
let runs = 0;
const outDir = (name: string) => join(dir, `${name}-${runs++}`);

// The trainer loads its kernels through $NGPK_CACHE_DIR (it takes no cacheDir option).
envForFile({ NGPK_CACHE_DIR: cacheDir });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ngpk-train-"));
  image = join(dir, "astronaut-64x48.png");
  tall = join(dir, "astronaut-48x64.png");
  await sharp(join(ROOT, "data/astronaut.png")).resize(64, 48, { fit: "cover" }).png().toFile(image);
  await sharp(join(ROOT, "data/astronaut.png")).resize(48, 64, { fit: "cover" }).png().toFile(tall);
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/**
 * The small configuration every test starts from (20 steps of 1024 samples), at a constant learning
 * rate of 1e-2 so that a run can be continued to more steps (the default onecycle schedule, like cosine,
 * refuses a changed span: its resume is tested with an interruption below), and with the EMA (off
 * by default), so that its state is in every determinism and resume check.
 */
function base(over: Partial<TrainConfigInput> = {}): TrainConfigInput {
  return {
    image,
    schedule: { kind: "none" },
    optimizer: { lr: 1e-2 },
    ema: { enabled: true },
    encoding: { levels: 4, log2HashmapSize: 12, finestResolution: 256 },
    network: { width: 16 },
    batch: 1024,
    steps: 20,
    evalEvery: 0,
    backend: BACKEND,
    seed: 7,
    out: outDir("run"),
    ...over,
  };
}

interface Run {
  result: TrainResult;
  ck: Checkpoint;
}

async function run(cfg: TrainConfigInput, hooks: TrainHooks = {}): Promise<Run> {
  const result = await train(cfg, hooks);
  return { result, ck: await readCheckpoint(result.files.checkpoint) };
}

/** Runs shared between tests (the same configuration is trained once). */
const shared = new Map<string, Promise<Run>>();
function once(key: string, make: () => Promise<Run>): Promise<Run> {
  if (!shared.has(key)) shared.set(key, make());
  return shared.get(key)!;
}
const straight = () => once("straight", () => run(base()));

const u32 = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

/** Every array of two checkpoints, bit for bit (the first difference named). */
function expectSameArrays(a: Checkpoint, b: Checkpoint): void {
  expect(Object.keys(b.arrays).sort()).toEqual(Object.keys(a.arrays).sort());
  for (const [name, x] of Object.entries(a.arrays)) {
    const y = b.arrays[name]!;
    expect(y.length).toBe(x.length);
    const [bx, by] = [u32(x), u32(y)];
    let differ = 0;
    let first = -1;
    for (let i = 0; i < bx.length; i++) if (bx[i] !== by[i] && (differ++, first < 0)) first = i;
    if (differ) throw new Error(`${name}: ${differ} of ${x.length} values differ, first at [${first}]: ${x[first]} vs ${y[first]}`);
  }
}

function differing(a: Float32Array, b: Float32Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

describe("determinism", () => {
  test(`the same configuration twice (${ON}): every checkpoint array bit for bit, the same PSNR and step`, async () => {
    const [a, b] = [await straight(), await run(base())];
    expect(a.result.steps).toBe(20);
    expect(a.result.stoppedBy).toBe("steps");
    expect(a.result.backend).toBe(BACKEND);
    expect(Object.keys(a.ck.arrays).sort()).toEqual([
      "ema.encoding", "ema.network", "encoding.params", "network.params",
      "optimizer.encoding.m", "optimizer.encoding.v", "optimizer.network.m", "optimizer.network.v",
    ]);
    expectSameArrays(a.ck, b.ck);
    expect(b.result.psnr).toBe(a.result.psnr);
    expect(b.ck.step).toBe(a.ck.step);
    expect(b.ck.rng).toEqual(a.ck.rng);
  });

  test("the JS backend too (3 steps)", async () => {
    const cfg = () => base({ backend: "js", steps: 3, out: outDir("js") });
    const [a, b] = [await run(cfg()), await run(cfg())];
    expect(a.result.backend).toBe("js");
    expectSameArrays(a.ck, b.ck);
    expect(b.result.psnr).toBe(a.result.psnr);
  });

  test("another seed gives other parameters and another PSNR", async () => {
    const [a, b] = [await straight(), await run(base({ seed: 8 }))];
    for (const name of ["encoding.params", "network.params"]) {
      expect(differing(a.ck.arrays[name]!, b.ck.arrays[name]!)).toBeGreaterThan(a.ck.arrays[name]!.length / 2);
    }
    expect(b.result.psnr).not.toBe(a.result.psnr);
  });
});

describe("resume", () => {
  test(`10 steps, then resume to 20, equals 20 straight: params, Adam's m and v, EMA bit for bit, and the PSNR (${ON})`, async () => {
    const a = await straight();
    const half = await run(base({ steps: 10 }));
    expect(half.ck.step).toBe(10);
    const resumed = await run(base(), { resume: half.result.files.checkpoint });
    expect(resumed.result.steps).toBe(20);
    expect(resumed.ck.step).toBe(20);
    expect(resumed.ck.rng).toEqual(a.ck.rng);
    expectSameArrays(a.ck, resumed.ck);
    expect(resumed.result.psnr).toBe(a.result.psnr);
  });

  test("learned probing: 10 steps then resume to 20 equals 20 straight (logits and their moments too); the logits learn", async () => {
    // test/train/export.test.ts's probed encoding (the same native builds): the 2 hashed levels probed.
    const probing = (over: Partial<TrainConfigInput> = {}) => base({ encoding: { levels: 4, log2HashmapSize: 12, finestResolution: 256, probing: { range: 4, codebookSize: 256 } }, ...over });
    const a = await run(probing());
    const half = await run(probing({ steps: 10 }));
    const resumed = await run(probing(), { resume: half.result.files.checkpoint });
    expect(Object.keys(a.ck.arrays)).toContain("probing.params");
    expect(Object.keys(a.ck.arrays)).toContain("optimizer.probing.m");
    expectSameArrays(a.ck, resumed.ck);
    expect(resumed.result.psnr).toBe(a.result.psnr);
    // The logits moved away from their initial values (their gradient is not zero).
    const initial = await HashGrid.create({ dims: 2, levels: 4, log2HashmapSize: 12, finestResolution: 256, probing: { range: 4, codebookSize: 256 }, seed: 7 }, { backend: "js" });
    const logits0 = initial.logits.download();
    const moved = a.ck.arrays["probing.params"]!.filter((v, k) => Math.abs(v - logits0[k]!) > 1e-3).length;
    initial.close();
    console.log(`[train probing] ${moved} of ${logits0.length} logits moved`);
    expect(moved).toBeGreaterThan(10);
  });

  test("sparse updates (with learned probing, accumulate 2, the EMA): the same twice, 6 then resume to 12 equals 12 straight, and not the dense run", async () => {
    const sparse = (over: Partial<TrainConfigInput> = {}) =>
      base({ optimizer: { sparse: true }, accumulate: 2, steps: 12, encoding: { levels: 4, log2HashmapSize: 12, finestResolution: 256, probing: { range: 4, codebookSize: 256 } }, ...over });
    const [a, b] = [await run(sparse()), await run(sparse())];
    expectSameArrays(a.ck, b.ck);
    expect(b.result.psnr).toBe(a.result.psnr);
    const half = await run(sparse({ steps: 6 }));
    const resumed = await run(sparse(), { resume: half.result.files.checkpoint });
    expectSameArrays(a.ck, resumed.ck);
    expect(resumed.result.psnr).toBe(a.result.psnr);
    // Lazy Adam leaves untouched entries where they were: another run than the dense one.
    const dense = await run(sparse({ optimizer: { sparse: false } }));
    expect(differing(a.ck.arrays["encoding.params"]!, dense.ck.arrays["encoding.params"]!)).toBeGreaterThan(0);
    console.log(`[train sparse] PSNR after 12 steps: sparse ${a.result.psnr.toFixed(2)} dB, dense ${dense.result.psnr.toFixed(2)} dB`);
    expect(Math.abs(a.result.psnr - dense.result.psnr)).toBeLessThan(2);
  });

  test("with accumulate 2 and periodic evaluations: 6 then resume to 12 equals 12 straight; evaluating does not change the training", async () => {
    const acc = (over: Partial<TrainConfigInput>) => base({ accumulate: 2, steps: 12, evalEvery: 4, ...over });
    const a = await run(acc({}));
    expect((a.ck.rng as { micro: number }).micro).toBe(24);
    const half = await run(acc({ steps: 6 }));
    const resumed = await run(acc({}), { resume: half.result.files.checkpoint });
    expectSameArrays(a.ck, resumed.ck);
    expect(resumed.result.psnr).toBe(a.result.psnr);
    // The same run without the evaluations (each swaps the EMA in and out): the same arrays.
    const quiet = await run(acc({ evalEvery: 0 }));
    expectSameArrays(a.ck, quiet.ck);
    expect(quiet.result.psnr).toBe(a.result.psnr);
  });

  test("interrupted through hooks.signal at step 8 (cosine schedule), then resumed: equals the uninterrupted run", async () => {
    const cfg = () => base({ schedule: { kind: "cosine", warmupSteps: 5 } });
    const a = await once("cosine", () => run(cfg()));
    const controller = new AbortController();
    const stopped = await run(cfg(), { signal: controller.signal, onStep: (i) => i.step === 8 && controller.abort() });
    expect(stopped.result.stoppedBy).toBe("interrupted");
    expect(stopped.result.steps).toBe(8);
    expect(stopped.ck.step).toBe(8);
    const resumed = await run(cfg(), { resume: stopped.result.files.checkpoint });
    expect(resumed.result.stoppedBy).toBe("steps");
    expect(resumed.result.steps).toBe(20);
    expectSameArrays(a.ck, resumed.ck);
    expect(resumed.result.psnr).toBe(a.result.psnr);
    // The metrics of the resumed part: steps 9..20, with the schedule's learning rates.
    const rows = readMetrics(resumed.result.files.metrics);
    expect(rows.map((r) => r.step)).toEqual(Array.from({ length: 12 }, (_, k) => 9 + k));
    const full = readMetrics(a.result.files.metrics);
    expect(rows.map((r) => r.lr)).toEqual(full.slice(8).map((r) => r.lr));
  });

  test("a changed model field is refused naming the field and both values; so is a checkpoint of another image size or past the steps", async () => {
    const ck = (await straight()).result.files.checkpoint;
    const refused = async (cfg: TrainConfigInput) => {
      const e = await train(cfg, { resume: ck }).then(() => undefined, (x: unknown) => x);
      expect(e).toBeInstanceOf(CheckpointError);
      return (e as Error).message;
    };
    expect(await refused(base({ network: { width: 32 } }))).toContain("network.width is 16 in the checkpoint but 32 here");
    expect(await refused(base({ encoding: { levels: 5, log2HashmapSize: 12, finestResolution: 256 } }))).toContain("encoding.levels is 4 in the checkpoint but 5 here");
    expect(await refused(base({ optimizer: { kind: "sgd" } }))).toContain("optimizer.kind");
    expect(await refused(base({ ema: { enabled: false } }))).toContain("ema.enabled");
    const size = await refused(base({ image: tall }));
    expect(size).toContain(ck);
    expect(size).toContain("64x48");
    expect(size).toContain("48x64");
    expect(await refused(base({ steps: 10 }))).toMatch(/at step 20, past the 10 steps/);
    // A foreign file as the checkpoint.
    const foreign = await train(base(), { resume: image }).then(() => undefined, (x: unknown) => x);
    expect(foreign).toBeInstanceOf(CheckpointError);
    expect((foreign as Error).message).toContain("is not a checkpoint");
  });
});

describe("accumulation", () => {
  test(`modules: 4 micro-batches of 1024 points (loss scaled by 1/4, grid backward accumulating) give the gradients of one batch of 4096 (relative 1e-5; ${ON})`, async () => {
    const r = rng(freshSeed("train accumulation"));
    const [K, B] = [4, 1024];
    const x = uniformF32(r, 2 * K * B, 0, 1);
    const t = uniformF32(r, 3 * K * B, 0, 1);
    const load = { backend: BACKEND, cacheDir } as const;
    const grid = await HashGrid.create({ dims: 2, levels: 4, log2HashmapSize: 12, finestResolution: 256, seed: 3 }, load);
    const mlp = await Mlp.create({ inputs: grid.outputDim, outputs: 3, width: 16, hiddenLayers: 2, loss: "relative_l2", inputGrad: true, seed: 4 }, load);
    try {
      const step = (k: number) => {
        grid.grad.zero();
        mlp.grad.zero();
        const b = (K * B) / k;
        const enc = grid.alloc(b * grid.outputDim);
        const dEnc = grid.alloc(b * grid.outputDim);
        let loss = 0;
        for (let i = 0; i < k; i++) {
          grid.forward(x.subarray(2 * b * i, 2 * b * (i + 1)), enc);
          loss += mlp.trainStep(enc, t.subarray(3 * b * i, 3 * b * (i + 1)), { scale: 1 / k, inputGrad: dEnc });
          grid.backward(dEnc, { accumulate: k > 1 });
        }
        return { grid: grid.grad.download(), mlp: mlp.grad.download(), loss: loss / k };
      };
      const one = step(1);
      const acc = step(K);
      for (const name of ["grid", "mlp"] as const) {
        const [got, want] = [acc[name], one[name]];
        let max = 0;
        for (const v of want) max = Math.max(max, Math.abs(v));
        expect(max).toBeGreaterThan(0);
        for (let i = 0; i < want.length; i++) {
          const tol = 1e-5 * Math.abs(want[i]!) + 1e-7 * max;
          if (!(Math.abs(got[i]! - want[i]!) <= tol)) throw new Error(`${name} gradient [${i}]: ${got[i]} accumulated, ${want[i]} in one batch (largest ${max})`);
        }
      }
      expect(Math.abs(acc.loss - one.loss)).toBeLessThanOrEqual(1e-5 * one.loss);
    } finally {
      grid.close();
      mlp.close();
    }
  });

  test("Optimizer.update({ gradScale: s }) equals updating with the gradient times f32(s), bit for bit (Adam and SGD, with weight decay)", async () => {
    const r = rng(freshSeed("train gradScale"));
    const n = 1000;
    const p0 = uniformF32(r, n, -1, 1);
    for (const kind of ["adam", "sgd"] as const) {
      const group = () => {
        const params = allocBuffer(BACKEND, "f32", n);
        params.upload(p0);
        return { name: "g", params, grad: allocBuffer(BACKEND, "f32", n), weightDecay: 0.1 };
      };
      const [a, b] = [group(), group()];
      const optA = await Optimizer.create([a], { kind, lr: 1e-2 }, { backend: BACKEND, cacheDir });
      const optB = await Optimizer.create([b], { kind, lr: 1e-2 }, { backend: BACKEND, cacheDir });
      try {
        for (const s of [4 / 3, 1024 / 7, 0.5]) {
          const g = uniformF32(r, n, -1, 1);
          a.grad.upload(g);
          optA.update({ gradScale: s });
          // gradScale is an f32 argument: the kernel multiplies by f32(s), rounding once.
          b.grad.upload(g.map((v) => Math.fround(v * Math.fround(s))));
          optB.update();
          expect(u32(a.params.download())).toEqual(u32(b.params.download()));
        }
        const [sa, sb] = [optA.state(), optB.state()];
        if (kind === "adam") {
          expect(u32(sa.groups[0]!.m!)).toEqual(u32(sb.groups[0]!.m!));
          expect(u32(sa.groups[0]!.v!)).toEqual(u32(sb.groups[0]!.v!));
        }
      } finally {
        optA.close();
        optB.close();
      }
    }
  });

  test("a time budget ending mid-group: the partial group is applied as the mean of what it holds (equals a run accumulating that many)", async () => {
    // 1024 micro-batches of 4096 samples cannot all run in 0.05 s: the budget ends inside the first group.
    const budget = base({ accumulate: 1024, batch: 4096, seconds: 0.05, steps: 5 });
    const partial = await run(budget);
    const done = (partial.ck.rng as { micro: number }).micro;
    console.log(`[train partial group] ${done} of 1024 micro-batches ran in the 0.05 s budget`);
    expect(partial.result.stoppedBy).toBe("seconds");
    expect(partial.result.steps).toBe(1);
    expect(partial.ck.step).toBe(1);
    expect(done).toBeGreaterThanOrEqual(1);
    expect(done).toBeLessThan(1024);
    expect(Number.isFinite(partial.result.psnr)).toBe(true);
    // The same micro-batches as one full group of `done`: the same step, to rounding (the loss is
    // scaled by 1/1024 then the gradient by 1024/done, instead of 1/done). Adam's first step is
    // lr * g / (|g| + eps): where |g| is tiny it magnifies that rounding, up to about 1e-4 of lr
    // (0.01) here; a wrong scaling of the partial group would be off by a good part of lr.
    const full = await run(base({ accumulate: done, batch: 4096, steps: 1 }));
    for (const name of ["encoding.params", "network.params", "ema.encoding", "ema.network"]) {
      const [got, want] = [partial.ck.arrays[name]!, full.ck.arrays[name]!];
      for (let i = 0; i < want.length; i++) {
        if (!(Math.abs(got[i]! - want[i]!) <= 1e-5 + 1e-5 * Math.abs(want[i]!))) throw new Error(`${name}[${i}]: ${got[i]} after the partial group of ${done}, ${want[i]} after a full group of ${done}`);
      }
    }
    const rows = readMetrics(partial.result.files.metrics);
    expect(rows.length).toBe(1);
  });
});

describe("schedules in the trainer: metrics.csv's lr is the schedule's factor times lr", () => {
  const lr = 1e-2;
  const annealCos = (a: number, b: number, pct: number) => b + ((a - b) / 2) * (Math.cos(Math.PI * pct) + 1);
  const expectFactors = (rows: { step: number; lr: number }[], factor: (step: number) => number) => {
    expect(rows.map((r) => r.step)).toEqual(Array.from({ length: 20 }, (_, k) => k + 1));
    for (const row of rows) {
      // Row k is the k-th step, which ran at the factor of the 0-based step k - 1.
      const want = lr * factor(row.step - 1);
      if (!(Math.abs(row.lr - want) <= 1e-12 * want + 1e-18)) throw new Error(`step ${row.step}: lr ${row.lr}, expected ${want}`);
    }
  };

  test("cosine with a linear warmup of 5 steps down to min-factor 0.01", async () => {
    const a = await once("cosine", () => run(base({ schedule: { kind: "cosine", warmupSteps: 5 } })));
    expect(a.result.steps).toBe(20);
    const rows = readMetrics(a.result.files.metrics);
    expectFactors(rows, (s) => (s < 5 ? s / 5 : 0.01 + 0.99 * 0.5 * (1 + Math.cos((Math.PI * (s - 5)) / 15))));
    expect(rows[0]!.lr).toBe(0);
    expect(rows[5]!.lr).toBeCloseTo(lr, 15);
  });

  test("onecycle (PyTorch's OneCycleLR: pct_start 0.3, div 25, final div 1e4)", async () => {
    const a = await run(base({ schedule: { kind: "onecycle", pctStart: 0.3 } }));
    const rows = readMetrics(a.result.files.metrics);
    const initial = 1 / 25;
    const end1 = 0.3 * 20 - 1;
    expectFactors(rows, (s) => (s <= end1 ? annealCos(initial, 1, s / end1) : annealCos(1, initial / 1e4, (s - end1) / (19 - end1))));
    expect(Math.max(...rows.map((r) => r.lr))).toBeCloseTo(lr, 15);
  });
});

describe("a time budget and no steps: cosine and onecycle span the steps estimated after a warm-up", () => {
  // The measured steps per second replaced (hooks.stepsPerSecond): the 20 s budget, less a warm-up
  // of 0.4 to 2 s (2% to 10% of it), holds 9 steps at 0.5 steps/s.
  const timed = (over: Partial<TrainConfigInput> = {}) => base({ steps: undefined, seconds: 20, schedule: { kind: "cosine", warmupSteps: 2 }, ...over });
  const N = 9;
  const rate = { stepsPerSecond: 0.5 };
  const decided = () => once("timed cosine", () => run(timed(), rate));
  const given = () => once("cosine over N", () => run(timed({ seconds: undefined, steps: N })));

  test("the warm-up is undone: the run equals one given --steps N, bit for bit; the decision is in summary.json and the checkpoint", async () => {
    const [a, b] = [await decided(), await given()];
    expect(a.result.steps).toBe(N);
    expect(a.result.stoppedBy).toBe("steps");
    const span = a.result.scheduleSpan!;
    expect(span).toMatchObject({ steps: N, from: "seconds", budget: 20, stepsPerSecond: 0.5 });
    expect(span.from === "seconds" && span.warmupSteps).toBeGreaterThanOrEqual(4);
    expect(a.ck.meta.scheduleSpan).toEqual(span);
    expect(JSON.parse(readFileSync(a.result.files.summary, "utf8")).scheduleSpan).toEqual(span);
    expect(b.result.scheduleSpan).toEqual({ steps: N, from: "steps" });
    expectSameArrays(a.ck, b.ck);
    expect(a.ck.rng).toEqual(b.ck.rng);
    expect(a.result.psnr).toBe(b.result.psnr);
    // metrics.csv holds the N steps (none of the warm-up's), the last at the floor's neighbour.
    const rows = readMetrics(a.result.files.metrics);
    expect(rows.map((r) => r.step)).toEqual(Array.from({ length: N }, (_, k) => k + 1));
    expect(rows.map((r) => r.lr)).toEqual(readMetrics(b.result.files.metrics).map((r) => r.lr));
    expect(rows.at(-1)!.lr).toBeCloseTo(1e-2 * (0.01 + 0.99 * 0.5 * (1 + Math.cos((Math.PI * (N - 1 - 2)) / (N - 2)))), 15);
  });

  test("without --lr the base rate follows the span (defaultLearningRate): decided with it, recorded, the same as given the steps", async () => {
    const over: Partial<TrainConfigInput> = { schedule: { kind: "onecycle" }, optimizer: {} };
    const [a, b] = [await run(timed(over), rate), await run(timed({ ...over, seconds: undefined, steps: N }))];
    const im = a.result.image!;
    const exact = a.result.paramsEncoding >= im.width * im.height * im.channels;
    expect(exact).toBe(true);
    expect(a.result.lr).toBe(defaultLearningRate("onecycle", N, true));
    expect(b.result.lr).toBe(a.result.lr);
    expect(JSON.parse(readFileSync(a.result.files.summary, "utf8")).lr).toBe(a.result.lr);
    const lrs = readMetrics(a.result.files.metrics).map((r) => r.lr);
    expect(lrs).toEqual(readMetrics(b.result.files.metrics).map((r) => r.lr));
    expect(Math.max(...lrs)).toBeLessThanOrEqual(a.result.lr * (1 + 1e-6));
    expect(Math.max(...lrs)).toBeGreaterThan(a.result.lr * 0.7); // onecycle's peak falls between steps
    expectSameArrays(a.ck, b.ck);
    // A constant rate spans nothing: 1e-2.
    expect((await run(base({ optimizer: {} }))).result.lr).toBe(1e-2);
  });

  test("onecycle too, with an f16 encoding and learned probing (their master weights and logits undone too): the same parameters as given the steps", async () => {
    const over: Partial<TrainConfigInput> = { schedule: { kind: "onecycle" }, encoding: { levels: 4, log2HashmapSize: 12, finestResolution: 256, precision: "f16", probing: { range: 4, codebookSize: 256 } } };
    const [a, b] = [await run(timed(over), rate), await run(timed({ ...over, seconds: undefined, steps: N }))];
    expect(Object.keys(a.ck.arrays)).toContain("probing.params");
    expect(a.result.scheduleSpan?.steps).toBe(N);
    expectSameArrays(a.ck, b.ck);
  });

  test("interrupted after the decision, then resumed (with the budget, or --steps N): equals the straight run; another --steps is refused naming steps", async () => {
    const controller = new AbortController();
    const stopped = await run(timed(), { ...rate, signal: controller.signal, onStep: (i) => i.step === 5 && controller.abort() });
    expect(stopped.result.stoppedBy).toBe("interrupted");
    expect(stopped.ck.step).toBe(5);
    expect(stopped.ck.meta.scheduleSpan).toMatchObject({ steps: N, from: "seconds", budget: 20, stepsPerSecond: 0.5 });
    const resumed = await run(timed(), { resume: stopped.result.files.checkpoint });
    expect(resumed.result.steps).toBe(N);
    expect(resumed.result.scheduleSpan).toEqual(stopped.ck.meta.scheduleSpan as never);
    expectSameArrays((await given()).ck, resumed.ck);
    const withSteps = await run(timed({ steps: N }), { resume: stopped.result.files.checkpoint });
    expectSameArrays((await given()).ck, withSteps.ck);
    const e = await train(timed({ steps: 12 }), { resume: stopped.result.files.checkpoint }).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as Error).message).toBe(
      `steps: 12 is not the ${N} steps that ${stopped.result.files.checkpoint}'s cosine schedule spans (estimated for its 20 s budget): resume with --steps ${N} or with --seconds and no --steps, or start a new run`,
    );
    // A schedule given its steps is resumed over them too.
    const e2 = await train(timed({ seconds: undefined, steps: 12 }), { resume: (await given()).result.files.checkpoint }).then(() => undefined, (x: unknown) => x);
    expect((e2 as Error).message).toStartWith(`steps: 12 is not the ${N} steps that`);
  });

  test("steps as many as MAX_STEPS and no seconds: the schedule spans them (no warm-up)", async () => {
    const controller = new AbortController();
    const r = await run(timed({ seconds: undefined, steps: MAX_STEPS }), { signal: controller.signal, onStep: (i) => i.step === 2 && controller.abort() });
    expect(r.result.steps).toBe(2);
    expect(r.result.scheduleSpan).toEqual({ steps: MAX_STEPS, from: "steps" });
  });

  test("a budget with no room for a step after the warm-up is refused naming seconds; interrupted in the warm-up, nothing is written", async () => {
    const out = outDir("short");
    const e = await train(timed({ out }), { stepsPerSecond: 1e-3 }).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as Error).message).toMatch(/^seconds: 20 is too short for a cosine schedule: the warm-up measuring the steps per second took [\d.]+ s \(\d+ steps at 0\.00100 steps\/s\) and no step fits in what is left: give more --seconds, or --steps$/);
    expect(readdirSync(out)).toEqual([]);
    const controller = new AbortController();
    const i = await train(timed({ out }), { ...rate, signal: controller.signal, log: (m) => m.startsWith("backend") && controller.abort() }).then(() => undefined, (x: unknown) => x);
    expect(i).toBeInstanceOf(InterruptedError);
    expect(readdirSync(out)).toEqual([]);
  });
});

describe("outputs", () => {
  test("the out directory: reconstruction.png of the image's size and channels, metrics.csv (a row per step, the final PSNR last), plot.png, summary.json, checkpoint.ngpk; PSNR rises well above the untrained field's in 200 steps", async () => {
    const evals: { step: number; psnr: number }[] = [];
    const cfg = base({ steps: 200, evalEvery: 50 });
    const { result, ck } = await run(cfg, { onEval: (e) => evals.push({ step: e.step, psnr: e.psnr }) });
    const out = cfg.out!;
    expect(result.files).toEqual({
      reconstruction: join(out, "reconstruction.png"), metrics: join(out, "metrics.csv"), plot: join(out, "plot.png"),
      summary: join(out, "summary.json"), checkpoint: join(out, "checkpoint.ngpk"),
    });
    for (const f of Object.values(result.files)) expect(existsSync(f)).toBe(true);

    const rec = await sharp(result.files.reconstruction).metadata();
    expect([rec.format, rec.width, rec.height, rec.channels]).toEqual(["png", 64, 48, 3]);
    const plot = await sharp(result.files.plot).metadata();
    expect(plot.format).toBe("png");
    expect(plot.width!).toBeGreaterThan(100);

    const rows = readMetrics(result.files.metrics);
    expect(rows.map((r) => r.step)).toEqual(Array.from({ length: 200 }, (_, k) => k + 1));
    expect(rows.every((r) => Number.isFinite(r.loss) && r.lr === 1e-2)).toBe(true);
    expect(rows.at(-1)!.psnr).toBe(result.psnr);
    expect(rows.filter((r) => r.psnr !== undefined).map((r) => r.step)).toEqual([50, 100, 150, 200]);
    expect(evals.map((e) => e.step)).toEqual([50, 100, 150, 200]);
    expect(evals.at(-1)!.psnr).toBe(result.psnr);

    const summary = JSON.parse(readFileSync(result.files.summary, "utf8"));
    expect(summary.psnr).toBe(result.psnr);
    expect(summary.steps).toBe(200);
    expect(summary.config.steps).toBe(200);
    expect(summary.config.network.width).toBe(16);
    expect(summary.config.encoding.levels).toBe(4);
    expect(summary.paramsEncoding).toBe(result.paramsEncoding);
    expect(ck.step).toBe(200);

    // The untrained field predicts about 0 everywhere: its PSNR is that of a black image.
    const { data } = await sharp(image).raw().toBuffer({ resolveWithObject: true });
    let sum = 0;
    for (const v of data) sum += (v / 255) ** 2;
    const initial = 10 * Math.log10(1 / (sum / data.length));
    console.log(`[train outputs] PSNR ${initial.toFixed(2)} dB untrained, ${evals.map((e) => `${e.psnr.toFixed(2)} at ${e.step}`).join(", ")}`);
    expect(result.psnr).toBeGreaterThan(initial + 12);
    expect(result.psnr).toBeGreaterThan(evals[0]!.psnr);
  });
});

describe("sampling", () => {
  test("pixel: trains on pixel centres to a higher full-image PSNR than bilinear in the same steps; recorded in summary.json and the checkpoint; a resume may change it", async () => {
    const bilinear = await run(base({ steps: 100, loss: "l2", ema: { enabled: false }, sampling: "bilinear" }));
    const pixel = await run(base({ steps: 100, loss: "l2", ema: { enabled: false }, sampling: "pixel" }));
    console.log(`[train sampling] 100 steps, l2, no EMA, 64x48: bilinear ${bilinear.result.psnr.toFixed(2)} dB, pixel ${pixel.result.psnr.toFixed(2)} dB`);
    expect(Number.isFinite(pixel.result.psnr)).toBe(true);
    expect(pixel.result.psnr).toBeGreaterThan(bilinear.result.psnr + 1);
    const sampling = (r: Run) => (r.ck.config as { sampling: string }).sampling;
    expect(sampling(pixel)).toBe("pixel");
    expect(sampling(bilinear)).toBe("bilinear");
    expect(JSON.parse(readFileSync(pixel.result.files.summary, "utf8")).config.sampling).toBe("pixel");
    // Not part of the model: a bilinear checkpoint continues on pixel centres.
    const first = await run(base({ steps: 10, sampling: "bilinear" }));
    const resumed = await run(base({ steps: 20, sampling: "pixel", out: first.result.files.checkpoint.replace(/checkpoint\.ngpk$/, "") }), { resume: first.result.files.checkpoint });
    expect(resumed.ck.step).toBe(20);
    expect(sampling(resumed)).toBe("pixel");
  });
});

describe("EMA", () => {
  test("never worse than the raw weights: early, where the average lags, the raw weights are evaluated, written and rendered (chosen by the held-out MSE, recorded)", async () => {
    // Relative L2 on bilinear targets (the defaults before bench:defaults): there the average still
    // lags the climbing PSNR at 40 steps (with plain L2 on pixel centres it already wins).
    const lagging = { steps: 40, loss: "relative_l2", sampling: "bilinear" } as const;
    const raw = await run(base({ ...lagging, ema: { enabled: false } }));
    const ema = await run(base(lagging));
    console.log(`[train ema] 40 steps, 64x48: raw ${raw.result.psnr.toFixed(2)} dB, with the EMA ${ema.result.psnr.toFixed(2)} dB (${JSON.stringify(ema.result.weights)})`);
    expect(ema.result.psnr).toBeGreaterThanOrEqual(raw.result.psnr - 0.1);
    // The choice, by the held-out MSE, in the result, summary.json and the checkpoint.
    const w = ema.result.weights;
    expect(w.used).toBe("raw");
    expect(w.heldOutMse!.raw).toBeLessThan(w.heldOutMse!.ema);
    expect(JSON.parse(readFileSync(ema.result.files.summary, "utf8")).weights).toEqual(w);
    expect(ema.ck.meta.weights).toBe("raw");
    expect(checkpointUses(ema.ck)).toBe("raw");
    expect(checkpointUses(ema.ck, true)).toBe("raw");
    expect(raw.result.weights).toEqual({ used: "raw" });
    // The raw weights are those of the run without an average (which does not change training).
    expect(ema.ck.arrays["network.params"]).toEqual(raw.ck.arrays["network.params"]!);
  });
});

describe("a non-finite loss", () => {
  test("stops with TrainError naming the step; the last checkpoint on disk is the last good step, its arrays finite", async () => {
    // A linear network, the l2 loss and SGD at lr 10 diverge: the loss overflows after a few steps.
    const cfg = base({ loss: "l2", network: { width: 16, activation: "none" }, optimizer: { kind: "sgd", lr: 10 }, checkpointEvery: 1, steps: 50 });
    const losses: number[] = [];
    const e = await train(cfg, { onStep: (i) => losses.push(i.loss) }).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(TrainError);
    const message = (e as Error).message;
    const at = Number(/non-finite at step (\d+)/.exec(message)?.[1]);
    expect(at).toBeGreaterThan(1);
    expect(at).toBeLessThan(50);
    expect(losses.length).toBe(at - 1);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(message).toContain(join(cfg.out!, "checkpoint.ngpk"));
    const ck = await readCheckpoint(join(cfg.out!, "checkpoint.ngpk"));
    expect(ck.step).toBe(at - 1);
    for (const [name, a] of Object.entries(ck.arrays)) if (!a.every(Number.isFinite)) throw new Error(`checkpoint array ${name} is not finite`);
    expect(readMetrics(join(cfg.out!, "metrics.csv")).map((r) => r.step)).toEqual(Array.from({ length: at - 1 }, (_, k) => k + 1));
  });
});

describe("a source of the caller's", () => {
  test("a 3D volume (train/data/volume.ts, as bench:probing trains on): through hooks.source; its summary and checkpoint describe it, no image file is written; another volume's resume is refused", async () => {
    const [W, H, D, C] = [8, 6, 3, 3];
    const r = rng(11);
    const volume = { width: W, height: H, depth: D, channels: C, data: Uint8Array.from({ length: W * H * D * C }, () => Math.floor(256 * r())) };
    const source = (v: typeof volume) => async (c: { seed: number }) => new VolumeSource(v, c.seed);
    const cfg = base({ backend: "js", steps: 10, out: outDir("volume") });
    const a = await run(cfg, { source: source(volume) });
    const shape = { width: W, height: H, depth: D, channels: C };
    expect(a.result.steps).toBe(10);
    expect(Number.isFinite(a.result.psnr)).toBe(true);
    expect(a.result.volume).toEqual(shape);
    expect(a.ck.meta.volume).toEqual(shape);
    expect(JSON.parse(readFileSync(a.result.files.summary, "utf8")).volume).toEqual(shape);
    expect(Object.keys(a.result.files)).toEqual(["metrics", "plot", "summary", "checkpoint"]);
    expect(readdirSync(cfg.out!).sort()).toEqual(["checkpoint.ngpk", "metrics.csv", "plot.png", "summary.json"]);
    // The same seed draws the same batches: the same parameters, bit for bit.
    expectSameArrays(a.ck, (await run({ ...cfg, out: outDir("volume") }, { source: source(volume) })).ck);
    const other = { ...volume, depth: 2, data: volume.data.subarray(0, W * H * 2 * C) };
    await expect(train({ ...cfg, steps: 20, out: outDir("volume") }, { resume: a.result.files.checkpoint, source: source(other) })).rejects.toThrow(
      `the checkpoint was trained on a 8x6x3 volume with 3 channels, not on a 8x6x2 volume with 3 channels`,
    );
  });
});

describe("stopped before the first step", () => {
  test("an aborted signal: InterruptedError naming the out directory, nothing written in it", async () => {
    const cfg = base({ steps: 3 });
    const stop = new AbortController();
    stop.abort();
    const e = await train(cfg, { signal: stop.signal }).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(InterruptedError);
    expect((e as Error).message).toBe(`interrupted before the first step: nothing written (${cfg.out} holds what it held)`);
    expect(readdirSync(cfg.out!)).toEqual([]);
  });
});

test("checkMemory: a MemoryError naming what needs the memory, in GB, and what is available", () => {
  expect(() => checkMemory(1e18, "a test buffer")).toThrow(MemoryError);
  expect(() => checkMemory(1e18, "a test buffer")).toThrow(/^a test buffer needs 1000000000\.0 GB of memory, more than the [\d.]+ GB available/);
  expect(() => checkMemory(1, "one byte")).not.toThrow();
});

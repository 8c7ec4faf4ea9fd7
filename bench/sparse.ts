// `bun bench/sparse.ts [--json] [--log2t 16,19,22] [--steps N] [--batch N]`
//
// Sparse updates against dense ones: the time of one training step (grid forward, MLP forward and
// backward, grid backward, Adam over the encoding and the network) for the same batch at several
// table sizes T = 2^log2T, on the CPU backend, all in one process run: 2D image-like points (uniform
// in [0, 1]^2, a new batch each step from a fixed set), L = 16, F = 2, N_min 16, finest 2048, the
// default MLP (64 x 2, 3 outputs), batch 2^16. Dense Adam reads and writes every parameter each
// step (its cost follows T); sparse Adam the entries the batch touched (HashGrid.trackTouched; its
// cost follows the batch). The target: the sparse step at 2^22 within 1.2x of the sparse step at 2^16.
// measureStep() is the building block (bench:scale builds on it). With --json the last line
// printed is one JSON object with every figure.
import { defaultCodebookSize, HashGrid, PROBING_DEFAULTS } from "../modules/hashgrid.ts";
import { Mlp } from "../modules/mlp.ts";
import { Optimizer } from "../modules/optimizer.ts";
import { seededUniform } from "../modules/random.ts";
import type { DeviceBuffer } from "../runtime/buffer.ts";
import { findCxx } from "../runtime/toolchain.ts";
import { benchArgs } from "./args.ts";
import { cpuInfo, cpuSnapshot, median, othersShare } from "./machine.ts";

export interface StepTiming {
  log2T: number;
  sparse: boolean;
  batch: number;
  /** Median milliseconds of one step, and of its parts (the touched list is part of backward). */
  stepMs: number;
  forwardMs: number;
  mlpMs: number;
  backwardMs: number;
  updateMs: number;
  /** Mean touched table entries per step (sparse), over all levels. */
  touched?: number;
}

/** A step's configuration: the table, dense or sparse updates, and optionally the dimension and learned probing (bench:probing). */
export interface StepConfig {
  log2T: number;
  sparse: boolean;
  dims?: 2 | 3;
  /** Learned probing: N_p, N_c (default: the trainer's) and the logits' learning rate (their group as the trainer makes it). */
  probing?: { range: number; codebookSize?: number; lr?: number };
}

/** A model ready to step: step() runs one training step and returns the times of its parts (ms). */
export async function prepareStep(opts: StepConfig & { batch?: number; levels?: number; backend?: "cpu" | "js" }): Promise<{ step(): number[]; touched(): number; close(): void }> {
  const { log2T, sparse, batch = 1 << 16, levels = 16, dims = 2, probing, backend = "cpu" } = opts;
  const range = probing?.range ?? 1;
  const grid = await HashGrid.create(
    {
      dims, levels, featuresPerLevel: 2, log2HashmapSize: log2T, baseResolution: 16, finestResolution: 2048,
      ...(range > 1 ? { probing: { range, codebookSize: probing?.codebookSize ?? defaultCodebookSize(log2T) } } : {}),
    },
    { backend },
  );
  const mlp = await Mlp.create({ inputs: grid.outputDim, outputs: 3, width: 64, hiddenLayers: 2, inputGrad: true }, { backend });
  if (sparse) await grid.trackTouched();
  const opt = await Optimizer.create(
    [
      { name: "encoding", params: grid.params as DeviceBuffer<"f32">, grad: grid.grad, touched: grid.touchedEntries },
      { name: "network", params: mlp.params, grad: mlp.grad },
      ...(grid.logitCount ? [{ name: "probing", params: grid.logits, grad: grid.logitGrad, lr: probing?.lr ?? PROBING_DEFAULTS.lr, rows: grid.probeRows, touched: grid.touchedCodebookRows }] : []),
    ],
    { sparse },
    { backend },
  );
  const rand = seededUniform(1234);
  const batches = Array.from({ length: 4 }, () => {
    const [x, t] = [grid.alloc(batch * dims), grid.alloc(batch * 3)];
    x.upload(new Float32Array(batch * dims).map(() => rand()));
    t.upload(new Float32Array(batch * 3).map(() => rand()));
    return { x, t };
  });
  const enc = grid.alloc(batch * grid.outputDim);
  const dEnc = grid.alloc(batch * grid.outputDim);
  let s = 0;
  return {
    step() {
      const b = batches[s++ % batches.length]!;
      const t0 = performance.now();
      grid.forward(b.x, enc);
      const t1 = performance.now();
      mlp.trainStep(enc, b.t, { inputGrad: dEnc });
      const t2 = performance.now();
      grid.backward(dEnc, { accumulate: true });
      const t3 = performance.now();
      opt.update();
      const t4 = performance.now();
      return [t4 - t0, t1 - t0, t2 - t1, t3 - t2, t4 - t3];
    },
    touched: () => (sparse ? grid.touched().entries.ranges.reduce((a, r) => a + r.count, 0) : 0),
    close() {
      opt.close();
      mlp.close();
      grid.close();
    },
  };
}

/**
 * Step times (medians of `steps` after `warmup`) of several configurations, their steps taken in
 * turn (one step of each, then again), so that a load that comes and goes weighs on all alike.
 */
export async function measureSteps<C extends StepConfig>(configs: C[], opts: { batch?: number; steps?: number; warmup?: number; backend?: "cpu" | "js" } = {}): Promise<(StepTiming & C)[]> {
  const { batch = 1 << 16, steps = 10, warmup = 3, backend } = opts;
  const models = [];
  try {
    for (const c of configs) models.push(await prepareStep({ ...c, batch, backend }));
    const parts = configs.map(() => [[], [], [], [], []] as number[][]);
    const touched = configs.map(() => 0);
    for (let s = 0; s < warmup + steps; s++)
      models.forEach((m, k) => {
        const t = m.step();
        if (s < warmup) return;
        t.forEach((v, j) => parts[k]![j]!.push(v));
        touched[k]! += m.touched() / steps;
      });
    return configs.map((c, k) => {
      const [stepMs, forwardMs, mlpMs, backwardMs, updateMs] = parts[k]!.map(median) as [number, number, number, number, number];
      return { ...c, batch, stepMs, forwardMs, mlpMs, backwardMs, updateMs, ...(c.sparse ? { touched: Math.round(touched[k]!) } : {}) };
    });
  } finally {
    for (const m of models) m.close();
  }
}

/** One training step's time (median of `steps` after `warmup`) for a 2D grid of 2^log2T entries per level, dense or sparse. */
export async function measureStep(opts: { log2T: number; sparse: boolean; batch?: number; steps?: number; warmup?: number }): Promise<StepTiming> {
  return (await measureSteps([opts], opts))[0]!;
}

async function main(): Promise<number> {
  const usage = "usage: bun bench/sparse.ts [--json] [--log2t 16,19,22] [--steps N] [--batch N]";
  const a = benchArgs(usage, { json: { type: "boolean" }, log2t: { type: "string" }, steps: { type: "string" }, batch: { type: "string" } });
  if (typeof a === "number") return a;
  const sizes = (a.log2t ?? "16,19,22").split(",").map(Number);
  const steps = Number(a.steps ?? 10);
  const batch = Number(a.batch ?? 65536);
  if (sizes.some((t) => !Number.isInteger(t) || t < 10 || t > 24) || !(steps >= 1) || !(batch >= 1)) return console.error(usage), 2;
  const cpu = cpuInfo(findCxx().tool?.path);
  console.log(`CPU: ${cpu.model} (${cpu.cpus} CPUs); 2D, L=16, F=2, batch ${batch}, MLP 64x2; median of ${steps} steps after 3 of warm-up, the configurations' steps in turn`);
  const before = cpuSnapshot();
  const rows = await measureSteps(sizes.flatMap((log2T) => [{ log2T, sparse: false }, { log2T, sparse: true }]), { batch, steps });
  for (const r of rows)
    console.log(
      `T=2^${r.log2T} ${r.sparse ? "sparse" : "dense "}: step ${r.stepMs.toFixed(1)} ms (forward ${r.forwardMs.toFixed(1)}, mlp ${r.mlpMs.toFixed(1)}, backward ${r.backwardMs.toFixed(1)}, update ${r.updateMs.toFixed(1)})` +
        (r.touched !== undefined ? `, ${r.touched.toLocaleString("en")} entries touched` : ""),
    );
  const others = othersShare(before, cpuSnapshot());
  if (others !== undefined) console.log(`other processes used ${(100 * others).toFixed(0)}% of the machine's CPU time during the run${others > 0.1 ? " (figures measured under load: compare the ratios)" : ""}`);
  const step = (t: number, s: boolean) => rows.find((r) => r.log2T === t && r.sparse === s)?.stepMs;
  const [lo, hi] = [Math.min(...sizes), Math.max(...sizes)];
  const ratio = (s: boolean) => step(hi, s)! / step(lo, s)!;
  console.log(`step at 2^${hi} / step at 2^${lo}: sparse ${ratio(true).toFixed(2)}x (target <= 1.2), dense ${ratio(false).toFixed(2)}x`);
  // What the sparse step's cost follows: the entries touched, which grow with T for the same batch
  // (a small table merges the batch's corners into fewer entries). Per touched entry: the update,
  // and the list (the sparse backward's time over the dense one's).
  const perEntry = sizes.map((log2T) => {
    const [d, sp] = [false, true].map((sparse) => rows.find((r) => r.log2T === log2T && r.sparse === sparse)!);
    return { log2T, touched: sp!.touched!, updateNs: (1e6 * sp!.updateMs) / sp!.touched!, listNs: (1e6 * (sp!.backwardMs - d!.backwardMs)) / sp!.touched! };
  });
  for (const e of perEntry) console.log(`T=2^${e.log2T}: per touched entry, update ${e.updateNs.toFixed(0)} ns, list ${e.listNs.toFixed(0)} ns`);
  const touchedRatio = perEntry.at(-1)!.touched / perEntry[0]!.touched;
  console.log(`entries touched at 2^${hi} / at 2^${lo}: ${touchedRatio.toFixed(2)}x (the same batch; the smaller table merges its corners)`);
  if (a.json) console.log(JSON.stringify({ cpu: cpu.model, others_cpu_share: others, sparse_step_ratio: ratio(true), dense_step_ratio: ratio(false), touched_ratio: touchedRatio, per_entry: perEntry, rows }));
  return 0;
}

if (import.meta.main) process.exitCode = await main();

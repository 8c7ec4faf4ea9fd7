// `bun run bench:probing [--json] [--steps N] [--images a,b] [--log2t N] [--defaults] ...`
//
// Learned hash probing (Compact NGP) against the plain hash grid, at the same step budget and
// seed, on the CPU backend, all in one process run:
//   - 2D: Kodak photographs (../shared/data/kodak/, else data/astronaut.png) trained with train()
//     (evalEvery 0, the trainer's defaults otherwise: L=16, F=2, N_min 16, finest 2048, MLP 64x2,
//     batch 2^16, Adam, EMA), four rows per image: the baseline at T, the baseline at T/4, learned
//     probing at T/4 with N_p = 4, learned probing at T/16 with N_p = 16. T is chosen so that the
//     table limits quality: the baseline at T/4 must be at least 2 dB below the baseline at T
//     (measured and printed; a failure is reported loudly);
//   - 3D: a stack of Kodak frames as a volume (x, y, frame), fitted by a 3D HashGrid + Mlp +
//     Optimizer (+ the probing group) + Ema in a training loop written here (random continuous
//     points, trilinear interpolation of the 8-bit frames on the host), PSNR over every voxel
//     centre; the same four rows;
//   - collision statistics per hashed level (HashGrid.collisionStats on a fixed random sample):
//     the baseline at T/4 against learned probing at T/4 before training (random probe table) and
//     after (the trained one), with the share of codebook rows whose slot moved;
//   - the targets: probing at T/4 >= 1 dB above the baseline at T/4 and within 0.5 dB of the
//     baseline at T; its step at most 1.5x the baseline's time (against T/4 and against T).
// `--defaults` instead sweeps the codebook rows per table entry in {1, 2, 4} (N_c = T/4, T/2, T) x
// probing lr in {0.01, 0.1, 1} at N_p = 4, T/4, on one image with a shorter budget, and prints the
// best (the defaults live in modules/hashgrid.ts PROBING_DEFAULTS).
// With --json the last line printed is one JSON object with every figure.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { seededUniform } from "../modules/random.ts";
import { Ema } from "../modules/ema.ts";
import { HashGrid, PROBING_DEFAULTS, type LevelCollisions } from "../modules/hashgrid.ts";
import { Mlp } from "../modules/mlp.ts";
import { Optimizer, type ParamGroup } from "../modules/optimizer.ts";
import type { DeviceBuffer } from "../runtime/buffer.ts";
import { findCxx } from "../runtime/toolchain.ts";
import { readCheckpoint } from "../train/checkpoint.ts";
import { DEFAULT_IMAGE, parseTrainConfig, type TrainConfig } from "../train/config.ts";
import { loadImage, samplesView } from "../train/image.ts";
import { createField, loadCheckpointWeights } from "../train/field.ts";
import { train, type TrainResult } from "../train/trainer.ts";
import { benchArgs } from "./args.ts";
import { busyNote, cpuInfo, cpuSnapshot, loadMachine, loadReport, othersShare } from "./machine.ts";

const KODAK_DIR = resolve(import.meta.dir, "../../shared/data/kodak");
const DEFAULT_IMAGES = ["kodim05.png", "kodim08.png"];
const DEFAULT_STEPS = 600;
const DEFAULT_STEPS_3D = 300;
const DEFAULT_LOG2T = 16;
const DEFAULT_FRAMES = 8;
const DEFAULTS_STEPS = 300;
/**
 * Random points for the collision statistics, scaled to the table at T/4: about half as many
 * vertices at a fine level (4 or 8 per point) as the level has slots, so that the shares tell
 * tables apart (a denser sample makes every fine level collide everywhere).
 */
const collisionPoints = (log2T: number, dims: 2 | 3) => Math.max(64, 2 ** (log2T - 2 - 1 - dims));
/** --defaults: codebook rows per table entry (N_c = ratio * T/4) and probing learning rates. */
const SWEEP_PER_ENTRY = [1, 2, 4];
const SWEEP_LR = [1e-2, 1e-1, 1];

const USAGE = `usage: bun run bench:probing [--json] [--steps N] [--images a,b] [--log2t N] [--steps-3d N] [--frames N] [--volume a,b,...] [--no-3d] [--batch N] [--seed N] [--defaults]
  --steps N       optimizer steps of every 2D run (default ${DEFAULT_STEPS}; with --defaults ${DEFAULTS_STEPS})
  --images a,b    the 2D photographs: names in ../shared/data/kodak/ or paths (default ${DEFAULT_IMAGES.join(",")};
                  data/astronaut.png when the Kodak folder is missing)
  --log2t N       log2 of T, the baseline's table size (12 to 24, default ${DEFAULT_LOG2T}); the other rows use T/4 and T/16
  --steps-3d N    optimizer steps of every 3D run (default ${DEFAULT_STEPS_3D})
  --frames N      frames of the 3D volume: the first N Kodak images of the first one's size (default ${DEFAULT_FRAMES})
  --volume a,b    the 3D volume's frames as a list of images of one size (instead of the Kodak stack)
  --no-3d         skip the 3D case
  --batch N       samples per step (default: the trainer's, 65536)
  --seed N        seed of every run (default: the trainer's, 1337)
  --backend B     cpu (default) or js (the reference backend: for tests on tiny inputs)
  --defaults      sweep codebook rows per table entry {1, 2, 4} x probing lr {0.01, 0.1, 1} at N_p = 4, T/4 on the first image
  --json          print the results as one JSON line last
  -h, --help      this text`;

/** A learned-probing row's name and the table it uses. */
interface Variant {
  name: string;
  /** log2 of the table size relative to T: 0, -2, -4. */
  shift: number;
  range: number;
  /** Index codebook rows per table entry (N_c = perEntry * its table); default: PROBING_DEFAULTS. */
  perEntry?: number;
}
const VARIANTS: Variant[] = [
  { name: "baseline T", shift: 0, range: 1 },
  { name: "baseline T/4", shift: -2, range: 1 },
  { name: "probing T/4 N_p=4", shift: -2, range: 4 },
  // The cheaper codebook (one row per entry): where learned probing costs least, and gains least.
  { name: "probing T/4 N_p=4 N_c=T/4", shift: -2, range: 4, perEntry: 1 },
  { name: "probing T/16 N_p=16", shift: -4, range: 16 },
];
/** A variant's codebook size (undefined: the default). */
const codebookOf = (v: Variant, log2T: number) => (v.perEntry ? v.perEntry * 2 ** log2T : undefined);
/** A variant's output folder. */
const variantDir = (root: string, k: number, v: Variant) => join(root, `2d-${k}-${VARIANTS.indexOf(v)}`);

interface Row {
  dims: 2 | 3;
  case: string;
  name: string;
  log2T: number;
  probing_range: number;
  psnr: number;
  inference_bytes: number;
  steps_per_s: number;
  steps: number;
  seconds: number;
  /** Share of the machine's CPU time other processes used while the run trained (null: unknown). */
  others_cpu_share: number | null;
}

interface CollisionRow {
  level: number;
  vertices: number;
  baseline: number;
  probing_before: number;
  probing_after: number;
}

interface Collisions {
  case: string;
  dims: 2 | 3;
  points: number;
  levels: CollisionRow[];
  /** Share of the probed codebook rows whose argmax slot changed during training. */
  probes_moved: number;
}

interface Check {
  case: string;
  check: string;
  value: number;
  limit: number;
  met: boolean;
}

const fmtTime = (s: number) => (s >= 60 ? `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s` : `${Math.round(s)}s`);
const pct = (v: number) => `${(100 * v).toFixed(1)}%`;

function randomPoints(n: number, dims: number, seed: number): Float32Array {
  const r = seededUniform(seed);
  return Float32Array.from({ length: n * dims }, () => r());
}

/**
 * The optimizer group of learned probing's logits, as train/trainer.ts buildModel makes it: the
 * step refreshes the probe table. (The Optimizer's row interface is `rows: grid.probeRows`, argmax
 * and softmax, where the grid offers it, else the earlier `argmax: { width, out }`.)
 */
function probingGroup(grid: HashGrid, lr: number): ParamGroup {
  const rows = (grid as unknown as { probeRows?: unknown }).probeRows;
  const refresh = rows !== undefined ? { rows } : { argmax: { width: grid.probing.range, out: grid.probe } };
  return { name: "probing", params: grid.logits, grad: grid.logitGrad, lr, weightDecay: 0, ...refresh } as unknown as ParamGroup;
}

/** Progress with an ETA from the steps done so far (all runs' steps weighted alike). */
class Progress {
  #done = 0;
  #seconds = 0;
  #run = 0;
  constructor(private total: number, private runs: number, private log: (s: string) => void, private started = performance.now()) {}
  begin(what: string, steps: number): void {
    this.#run++;
    const eta = this.#done > 0 ? ` (ETA ${fmtTime(((this.total - this.#done) * this.#seconds) / this.#done)})` : "";
    this.log(`[${this.#run}/${this.runs}] ${what}, ${steps} steps ...${eta}`);
  }
  end(steps: number): void {
    this.#done += steps;
    this.#seconds = (performance.now() - this.started) / 1000;
  }
}

// ---------------------------------------------------------------------------------------------
// 2D: train() on photographs

interface Options {
  log2T: number;
  steps: number;
  batch: number | undefined;
  seed: number | undefined;
  backend: "cpu" | "js";
}

async function train2d(image: string, v: { log2T: number; range: number; codebookSize?: number; lr?: number }, o: Options, out: string, log: (s: string) => void): Promise<{ result: TrainResult; others: number | undefined; out: string }> {
  const probing = { range: v.range as 1, ...(v.codebookSize ? { codebookSize: v.codebookSize } : {}), ...(v.lr ? { lr: v.lr } : {}) };
  const c0 = cpuSnapshot();
  let last = performance.now();
  const result = await train(
    {
      image, backend: o.backend, steps: o.steps, evalEvery: 0, out,
      encoding: { log2HashmapSize: v.log2T, probing },
      ...(o.batch ? { batch: o.batch } : {}), ...(o.seed !== undefined ? { seed: o.seed } : {}),
    },
    {
      onStep: (s) => {
        if (performance.now() - last < 15_000) return;
        last = performance.now();
        log(`    step ${s.step}/${s.steps}, ${s.stepsPerSecond.toFixed(1)} steps/s, loss ${s.loss.toExponential(3)}`);
      },
    },
  );
  return { result, others: othersShare(c0, cpuSnapshot()), out };
}

/** The config of a 2D row (to rebuild its field for the collision statistics). */
function config2d(image: string, log2T: number, range: number, o: Options): TrainConfig {
  return parseTrainConfig({ image, backend: o.backend, encoding: { log2HashmapSize: log2T, probing: { range } }, ...(o.seed !== undefined ? { seed: o.seed } : {}) });
}

/** Collision statistics of the baseline at T/4 and of probing at T/4 before and after training (its checkpoint). */
async function collisions2d(caseName: string, image: string, log2T: number, checkpoint: string, o: Options): Promise<Collisions> {
  const points = collisionPoints(log2T + 2, 2);
  const x = randomPoints(points, 2, 0xc011);
  const load = { backend: o.backend };
  const base = await createField(config2d(image, log2T, 1, o), 3, load);
  let baseline: LevelCollisions[];
  try {
    baseline = base.grid.collisionStats(x);
  } finally {
    base.grid.close();
    base.mlp.close();
  }
  const f = await createField(config2d(image, log2T, 4, o), 3, load);
  try {
    const before = f.grid.collisionStats(x);
    const probesBefore = f.grid.probe.download().slice();
    loadCheckpointWeights(f, await readCheckpoint(checkpoint));
    const after = f.grid.collisionStats(x);
    return { case: caseName, dims: 2, points, levels: collisionRows(baseline, before, after), probes_moved: moved(probesBefore, f.grid.probe.download()) };
  } finally {
    f.grid.close();
    f.mlp.close();
  }
}

function collisionRows(baseline: LevelCollisions[], before: LevelCollisions[], after: LevelCollisions[]): CollisionRow[] {
  return baseline
    .filter((b) => b.hashed)
    .map((b) => ({ level: b.level, vertices: b.vertices, baseline: b.collidingFraction, probing_before: before[b.level]!.collidingFraction, probing_after: after[b.level]!.collidingFraction }));
}

function moved(a: Uint32Array, b: Uint32Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return a.length ? n / a.length : 0;
}

// ---------------------------------------------------------------------------------------------
// 3D: a stack of frames as a volume, trained with the modules directly

interface Volume {
  width: number;
  height: number;
  frames: number;
  /** [frame][y][x][rgb], 8-bit. */
  data: Uint8Array;
  names: string[];
}

async function loadVolume(paths: string[], frames: number, strict: boolean): Promise<Volume> {
  const imgs = [];
  for (const p of paths) {
    if (imgs.length >= frames) break;
    const img = await loadImage(p);
    if (img.bits !== 8 || img.channels !== 3) {
      if (strict) throw new Error(`${p}: the volume's frames must be 8-bit RGB (this one has ${img.channels} channels of ${img.bits} bits)`);
      continue;
    }
    if (imgs.length && (img.width !== imgs[0]!.width || img.height !== imgs[0]!.height)) {
      if (strict) throw new Error(`${p}: ${img.width}x${img.height}, but the first frame is ${imgs[0]!.width}x${imgs[0]!.height}`);
      continue;
    }
    imgs.push(img);
  }
  if (imgs.length < Math.min(frames, 2)) throw new Error(`the volume needs at least 2 frames of one size, found ${imgs.length}`);
  const { width, height } = imgs[0]!;
  const frame = width * height * 3;
  const data = new Uint8Array(frame * imgs.length);
  imgs.forEach((img, k) => data.set(samplesView(img) as Uint8Array, k * frame));
  return { width, height, frames: imgs.length, data, names: imgs.map((i) => basename(i.path)) };
}

/** n random continuous points in [0, 1]^3 and the trilinearly interpolated colours there (voxel centres at (i + 0.5) / size). */
function sampleVolume(v: Volume, n: number, seed: number, coords: Float32Array, targets: Float32Array): void {
  const r = seededUniform(seed);
  const { width: W, height: H, frames: F, data } = v;
  const sy = W * 3;
  const sf = W * H * 3;
  for (let i = 0; i < n; i++) {
    const u = r(), w = r(), t = r();
    coords[3 * i] = u;
    coords[3 * i + 1] = w;
    coords[3 * i + 2] = t;
    const px = Math.min(W - 1, Math.max(0, u * W - 0.5));
    const py = Math.min(H - 1, Math.max(0, w * H - 0.5));
    const pf = Math.min(F - 1, Math.max(0, t * F - 0.5));
    const x0 = Math.min(W - 2, Math.floor(px)), y0 = Math.min(H - 2, Math.floor(py)), f0 = Math.min(F - 2, Math.floor(pf));
    const ax = px - x0, ay = py - y0, af = pf - f0;
    const base = f0 * sf + y0 * sy + x0 * 3;
    for (let c = 0; c < 3; c++) {
      const b = base + c;
      const c00 = data[b]! + ax * (data[b + 3]! - data[b]!);
      const c10 = data[b + sy]! + ax * (data[b + sy + 3]! - data[b + sy]!);
      const c01 = data[b + sf]! + ax * (data[b + sf + 3]! - data[b + sf]!);
      const c11 = data[b + sf + sy]! + ax * (data[b + sf + sy + 3]! - data[b + sf + sy]!);
      const c0 = c00 + ay * (c10 - c00);
      const c1 = c01 + ay * (c11 - c01);
      targets[3 * i + c] = (c0 + af * (c1 - c0)) / 255;
    }
  }
}

interface Result3d {
  psnr: number;
  stepsPerSecond: number;
  inferenceBytes: number;
  others: number | undefined;
  collisions?: { before: LevelCollisions[]; after: LevelCollisions[]; moved: number };
}

async function train3d(vol: Volume, log2T: number, range: number, codebookSize: number | undefined, steps: number, o: Options, collisionX: Float32Array | undefined, log: (s: string) => void): Promise<Result3d> {
  const cfg = parseTrainConfig({ backend: o.backend, encoding: { log2HashmapSize: log2T, probing: { range, ...(codebookSize ? { codebookSize } : {}) } }, ...(o.batch ? { batch: o.batch } : {}), ...(o.seed !== undefined ? { seed: o.seed } : {}) });
  const load = { backend: o.backend };
  // As createField in train/trainer.ts, with dims 3.
  const { lr: encLr, probing: { lr: probingLr, ...probing }, ...encoding } = cfg.encoding;
  const { lr: netLr, weightDecay, ...network } = cfg.network;
  const grid = await HashGrid.create({ dims: 3, ...encoding, probing, seed: cfg.seed }, load);
  const mlp = await Mlp.create({ inputs: grid.outputDim, outputs: 3, ...network, loss: cfg.loss, huberDelta: cfg.huberDelta, inputGrad: true, seed: cfg.seed + 1 } as never, load);
  const opt = await Optimizer.create(
    [
      { name: "encoding", params: grid.params as DeviceBuffer<"f32">, grad: grid.grad, lr: encLr ?? cfg.optimizer.lr, weightDecay: 0 },
      { name: "network", params: mlp.params, grad: mlp.grad, lr: netLr ?? cfg.optimizer.lr, weightDecay },
      ...(grid.logitCount ? [probingGroup(grid, probingLr)] : []),
    ],
    cfg.optimizer,
    load,
  );
  const ema = cfg.ema.enabled ? await Ema.create([{ name: "encoding", params: opt.master("encoding") }, { name: "network", params: opt.master("network") }], { decay: cfg.ema.decay }, load) : undefined;
  try {
    const before = collisionX && range > 1 ? grid.collisionStats(collisionX) : undefined;
    const probesBefore = grid.probe.download().slice();
    const n = cfg.batch;
    const hostCoords = new Float32Array(3 * n);
    const hostTargets = new Float32Array(3 * n);
    const coords = grid.alloc(3 * n);
    const targets = grid.alloc(3 * n);
    const enc = grid.alloc(n * grid.outputDim);
    const dEnc = grid.alloc(n * grid.outputDim);
    // The step's time, without the host sampling (the 2D trainer samples with a kernel).
    let stepMs = 0;
    const c0 = cpuSnapshot();
    let last = performance.now();
    for (let step = 0; step < steps; step++) {
      sampleVolume(vol, n, (cfg.seed ^ Math.imul(step + 1, 0x9e3779b1)) >>> 0, hostCoords, hostTargets);
      coords.upload(hostCoords);
      targets.upload(hostTargets);
      const t0 = performance.now();
      grid.forward(coords, enc);
      const loss = mlp.trainStep(enc, targets, { scale: 1, inputGrad: dEnc });
      if (!Number.isFinite(loss)) throw new Error(`3D: non-finite loss at step ${step + 1} (log2T ${log2T}, N_p ${range})`);
      grid.backward(dEnc, { accumulate: true });
      opt.update();
      ema?.update();
      stepMs += performance.now() - t0;
      if (performance.now() - last > 15_000) {
        last = performance.now();
        log(`    step ${step + 1}/${steps}, ${((1000 * (step + 1)) / stepMs).toFixed(1)} steps/s, loss ${loss.toExponential(3)}`);
      }
    }
    const others = othersShare(c0, cpuSnapshot());
    const after = collisionX && range > 1 ? grid.collisionStats(collisionX) : undefined;
    const movedShare = moved(probesBefore, grid.probe.download());
    // PSNR over every voxel centre, on the averaged weights (as the trainer evaluates).
    ema?.swap();
    opt.sync();
    let psnr: number;
    try {
      psnr = volumePsnr(vol, grid, mlp);
    } finally {
      ema?.swap();
      opt.sync();
    }
    return {
      psnr,
      stepsPerSecond: (1000 * steps) / stepMs,
      inferenceBytes: grid.memory(2).inferenceBytes + 4 * mlp.paramCount,
      others,
      ...(before && after ? { collisions: { before, after, moved: movedShare } } : {}),
    };
  } finally {
    for (const m of [ema, opt, mlp, grid]) m?.close();
  }
}

function volumePsnr(v: Volume, grid: HashGrid, mlp: Mlp): number {
  const { width: W, height: H, frames: F, data } = v;
  const total = W * H * F;
  const chunk = 1 << 16;
  const x = new Float32Array(3 * chunk);
  const coords = grid.alloc(3 * chunk);
  const enc = grid.alloc(chunk * grid.outputDim);
  const out = grid.alloc(chunk * 3);
  let sum = 0;
  for (let first = 0; first < total; first += chunk) {
    const n = Math.min(chunk, total - first);
    for (let k = 0; k < chunk; k++) {
      const i = first + Math.min(k, n - 1); // a last partial chunk repeats its last voxel (not counted)
      const f = Math.floor(i / (W * H)), rest = i - f * W * H, y = Math.floor(rest / W), xx = rest - y * W;
      x[3 * k] = (xx + 0.5) / W;
      x[3 * k + 1] = (y + 0.5) / H;
      x[3 * k + 2] = (f + 0.5) / F;
    }
    coords.upload(x);
    const pred = mlp.forward(grid.forward(coords, enc), out).download();
    for (let k = 0; k < n * 3; k++) {
      const d = pred[k]! - data[3 * first + k]! / 255;
      sum += d * d;
    }
  }
  return 10 * Math.log10(1 / (sum / (total * 3)));
}

// ---------------------------------------------------------------------------------------------
// Report

function checks(caseName: string, rows: Row[]): Check[] {
  const get = (name: string) => rows.find((r) => r.name === name)!;
  const [T, T4, P4] = [get("baseline T"), get("baseline T/4"), get("probing T/4 N_p=4")];
  return [
    { case: caseName, check: "table limits quality: baseline T - baseline T/4 >= 2 dB", value: T.psnr - T4.psnr, limit: 2, met: T.psnr - T4.psnr >= 2 },
    { case: caseName, check: "probing T/4 - baseline T/4 >= 1 dB", value: P4.psnr - T4.psnr, limit: 1, met: P4.psnr - T4.psnr >= 1 },
    { case: caseName, check: "baseline T - probing T/4 <= 0.5 dB", value: T.psnr - P4.psnr, limit: 0.5, met: T.psnr - P4.psnr <= 0.5 },
    { case: caseName, check: "step time probing T/4 / baseline T/4 <= 1.5", value: T4.steps_per_s / P4.steps_per_s, limit: 1.5, met: T4.steps_per_s / P4.steps_per_s <= 1.5 },
    { case: caseName, check: "step time probing T/4 / baseline T <= 1.5", value: T.steps_per_s / P4.steps_per_s, limit: 1.5, met: T.steps_per_s / P4.steps_per_s <= 1.5 },
  ];
}

function printRows(rows: Row[], log: (s: string) => void): void {
  log("case              | row                        | log2T | N_p |  PSNR dB | inference bytes | steps/s");
  for (const r of rows) {
    log(
      `${r.case.padEnd(17)} | ${r.name.padEnd(26)} | ${String(r.log2T).padStart(5)} | ${String(r.probing_range).padStart(3)} | ${r.psnr.toFixed(2).padStart(8)} | ` +
        `${String(r.inference_bytes).padStart(15)} | ${r.steps_per_s.toFixed(2).padStart(7)}${busyNote(r.others_cpu_share)}`,
    );
  }
}

function printChecks(cs: Check[], log: (s: string) => void): void {
  for (const c of cs) {
    const unit = c.check.startsWith("step") ? "x" : " dB";
    const loud = !c.met && c.check.startsWith("table") ? "  <-- the table does NOT limit quality at this T: raise --steps or lower --log2t" : "";
    log(`  ${c.case.padEnd(17)} ${c.check.padEnd(52)} ${(c.value >= 0 && unit === " dB" ? "+" : "") + c.value.toFixed(2)}${unit}: ${c.met ? "met" : "NOT MET"}${loud}`);
  }
}

function printCollisions(c: Collisions, log: (s: string) => void): void {
  log(`collisions, ${c.case} (${c.dims}D, ${c.points} random points; share of the distinct vertices touched that share a table slot, per hashed level):`);
  log("  level | vertices | baseline T/4 | probing T/4 before | after");
  for (const l of c.levels)
    log(`  ${String(l.level).padStart(5)} | ${String(l.vertices).padStart(8)} | ${pct(l.baseline).padStart(12)} | ${pct(l.probing_before).padStart(18)} | ${pct(l.probing_after).padStart(6)}`);
  const mean = (k: "baseline" | "probing_before" | "probing_after") => c.levels.reduce((s, l) => s + l[k], 0) / Math.max(1, c.levels.length);
  log(`  mean  |          | ${pct(mean("baseline")).padStart(12)} | ${pct(mean("probing_before")).padStart(18)} | ${pct(mean("probing_after")).padStart(6)}   (probe slots moved by training: ${pct(c.probes_moved)} of the codebook rows)`);
}

function parsePositiveInt(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
}

function resolveImage(p: string): string {
  const inKodak = join(KODAK_DIR, p);
  if (!p.includes("/") && existsSync(inKodak)) return inKodak;
  if (existsSync(p)) return resolve(p);
  throw new Error(`image ${JSON.stringify(p)} not found (neither in ${KODAK_DIR} nor as a path)`);
}

async function main(): Promise<number> {
  const values = benchArgs(
    USAGE,
    {
      json: { type: "boolean" }, steps: { type: "string" }, images: { type: "string" }, log2t: { type: "string" },
      "steps-3d": { type: "string" }, frames: { type: "string" }, volume: { type: "string" }, "no-3d": { type: "boolean" },
      batch: { type: "string" }, seed: { type: "string" }, backend: { type: "string" }, defaults: { type: "boolean" },
    },
    { prefix: "bench:probing: " },
  );
  if (typeof values === "number") return values;
  let o: Options;
  let steps3d: number, frames: number;
  let images: string[];
  let volumePaths: string[] | undefined;
  const notes: string[] = [];
  try {
    const log2T = parsePositiveInt("log2t", values.log2t, DEFAULT_LOG2T, 12, 24);
    const steps = parsePositiveInt("steps", values.steps, values.defaults ? DEFAULTS_STEPS : DEFAULT_STEPS, 1, 1e7);
    steps3d = parsePositiveInt("steps-3d", values["steps-3d"], DEFAULT_STEPS_3D, 1, 1e7);
    frames = parsePositiveInt("frames", values.frames, DEFAULT_FRAMES, 2, 64);
    const batch = values.batch === undefined ? undefined : parsePositiveInt("batch", values.batch, 0, 1, 1 << 24);
    const seed = values.seed === undefined ? undefined : parsePositiveInt("seed", values.seed, 0, 0, 2 ** 32 - 1);
    const backend = values.backend ?? "cpu";
    if (backend !== "cpu" && backend !== "js") throw new Error(`--backend must be cpu or js, got ${JSON.stringify(backend)}`);
    if (backend === "cpu" && !findCxx().tool) throw new Error("the CPU backend needs a C++ compiler (g++ 12 or newer), and none was found");
    o = { log2T, steps, batch, seed, backend };
    if (values.images !== undefined) {
      images = values.images.split(",").filter(Boolean).map(resolveImage);
      if (!images.length) throw new Error("--images lists no image");
    } else if (existsSync(join(KODAK_DIR, DEFAULT_IMAGES[0]!))) images = DEFAULT_IMAGES.map((n) => join(KODAK_DIR, n));
    else {
      images = [DEFAULT_IMAGE];
      notes.push(`the Kodak folder ${KODAK_DIR} is missing: 2D uses ${DEFAULT_IMAGE} instead`);
    }
    if (values.volume !== undefined) {
      volumePaths = values.volume.split(",").filter(Boolean).map(resolveImage);
      if (volumePaths.length < 2) throw new Error("--volume needs at least 2 images");
    }
  } catch (e) {
    console.error(`bench:probing: ${(e as Error).message}\n(see --help)`);
    return 2;
  }
  const log = (s: string) => console.log(s);
  const started = performance.now();
  const c0 = cpuSnapshot();

  const cxx = findCxx().tool;
  const cpu = cpuInfo(cxx?.path);
  const machine = cxx ? await loadMachine() : undefined;
  log(`CPU: ${cpu.model} (${cpu.family}), ${cpu.cpus} logical CPUs, ${machine?.threads ?? "?"} OpenMP threads; -march=native = ${cpu.march}; backend ${o.backend}`);
  const e = parseTrainConfig({}).encoding;
  log(
    `configuration: the trainer's defaults (L=${e.levels}, F=${e.featuresPerLevel}, N_min=${e.baseResolution}, finest ${e.finestResolution}, MLP 64x2, ` +
      `batch ${o.batch ?? parseTrainConfig({}).batch}, Adam, EMA), seed ${o.seed ?? parseTrainConfig({}).seed}; T = 2^${o.log2T}; ` +
      `probing codebook ${PROBING_DEFAULTS.codebookPerEntry} rows per table entry, lr ${PROBING_DEFAULTS.lr} (PROBING_DEFAULTS)`,
  );
  for (const n of notes) log(`NOTE: ${n}`);
  const outRoot = mkdtempSync(join(tmpdir(), "bench-probing-"));
  try {
    if (values.defaults) return await sweepDefaults(images[0]!, o, outRoot, log, values.json === true, started, c0);

    // 2D
    const rows: Row[] = [];
    const allChecks: Check[] = [];
    const collisions: Collisions[] = [];
    const with3d = !values["no-3d"];
    const runs = images.length * VARIANTS.length + (with3d ? VARIANTS.length : 0);
    const progress = new Progress(images.length * VARIANTS.length * o.steps + (with3d ? VARIANTS.length * steps3d : 0), runs, log);
    for (const [k, image] of images.entries()) {
      const caseName = basename(image);
      const caseRows: Row[] = [];
      let probingCheckpoint = "";
      for (const v of VARIANTS) {
        const log2T = o.log2T + v.shift;
        progress.begin(`2D ${caseName}: ${v.name} (log2T ${log2T}${v.range > 1 ? `, N_p ${v.range}` : ""})`, o.steps);
        const out = variantDir(outRoot, k, v);
        const { result: r, others } = await train2d(image, { log2T, range: v.range, codebookSize: codebookOf(v, log2T) }, o, out, log);
        progress.end(o.steps);
        log(`    ${r.psnr.toFixed(2)} dB, ${r.stepsPerSecond.toFixed(2)} steps/s, ${r.bytesInference} inference bytes${busyNote(others)}`);
        caseRows.push({
          dims: 2, case: caseName, name: v.name, log2T, probing_range: v.range, psnr: r.psnr, inference_bytes: r.bytesInference,
          steps_per_s: r.stepsPerSecond, steps: r.steps, seconds: r.seconds, others_cpu_share: others ?? null,
        });
        if (v.range === 4 && !v.perEntry) probingCheckpoint = r.files.checkpoint;
      }
      rows.push(...caseRows);
      allChecks.push(...checks(caseName, caseRows));
      if (k === 0) {
        log(`    collision statistics (${collisionPoints(o.log2T, 2)} random points) ...`);
        collisions.push(await collisions2d(caseName, image, o.log2T - 2, probingCheckpoint, o));
      }
      for (const v of VARIANTS) rmSync(variantDir(outRoot, k, v), { recursive: true, force: true });
    }
    if (images.length > 1) {
      // The mean over the images, as one more case.
      const mean: Row[] = VARIANTS.map((v) => {
        const rs = rows.filter((r) => r.name === v.name && r.dims === 2);
        const avg = (f: (r: Row) => number) => rs.reduce((s, r) => s + f(r), 0) / rs.length;
        return { ...rs[0]!, case: "2D mean", psnr: avg((r) => r.psnr), steps_per_s: avg((r) => r.steps_per_s), steps: avg((r) => r.steps), seconds: avg((r) => r.seconds), others_cpu_share: null };
      });
      allChecks.push(...checks("2D mean", mean));
    }

    // 3D
    let volumeInfo: { frames: string[]; width: number; height: number } | undefined;
    if (with3d) {
      let vol: Volume | undefined;
      try {
        if (volumePaths) vol = await loadVolume(volumePaths, volumePaths.length, true);
        else if (existsSync(KODAK_DIR)) {
          const all = Array.from({ length: 24 }, (_, i) => join(KODAK_DIR, `kodim${String(i + 1).padStart(2, "0")}.png`)).filter((p) => existsSync(p));
          vol = await loadVolume(all, frames, false);
          if (vol.frames < frames) log(`NOTE: only ${vol.frames} Kodak frames of ${vol.width}x${vol.height} found (asked for ${frames})`);
        } else log(`NOTE: no 3D case: the Kodak folder ${KODAK_DIR} is missing (give the frames with --volume)`);
      } catch (err) {
        console.error(`bench:probing: 3D volume: ${(err as Error).message}`);
        return 1;
      }
      if (vol) {
        const caseName = `3D ${vol.frames} frames`;
        volumeInfo = { frames: vol.names, width: vol.width, height: vol.height };
        log(`3D volume: ${vol.frames} frames of ${vol.width}x${vol.height} (${vol.names.join(", ")}), ${vol.width * vol.height * vol.frames} voxels`);
        const points3 = collisionPoints(o.log2T, 3);
        const x3 = randomPoints(points3, 3, 0xc013);
        const caseRows: Row[] = [];
        let baselineStats: LevelCollisions[] | undefined;
        for (const v of VARIANTS) {
          const log2T = o.log2T + v.shift;
          progress.begin(`3D: ${v.name} (log2T ${log2T}${v.range > 1 ? `, N_p ${v.range}` : ""})`, steps3d);
          const r = await train3d(vol, log2T, v.range, codebookOf(v, log2T), steps3d, o, v.shift === -2 && !v.perEntry ? x3 : undefined, log);
          progress.end(steps3d);
          log(`    ${r.psnr.toFixed(2)} dB, ${r.stepsPerSecond.toFixed(2)} steps/s (sampling on the host not counted), ${r.inferenceBytes} inference bytes${busyNote(r.others)}`);
          caseRows.push({
            dims: 3, case: caseName, name: v.name, log2T, probing_range: v.range, psnr: r.psnr, inference_bytes: r.inferenceBytes,
            steps_per_s: r.stepsPerSecond, steps: steps3d, seconds: steps3d / r.stepsPerSecond, others_cpu_share: r.others ?? null,
          });
          if (v.shift === -2 && v.range === 1) {
            const g = await HashGrid.create({ dims: 3, ...gridSettings(log2T, o) }, { backend: o.backend });
            try {
              baselineStats = g.collisionStats(x3);
            } finally {
              g.close();
            }
          }
          if (r.collisions && baselineStats)
            collisions.push({ case: caseName, dims: 3, points: points3, levels: collisionRows(baselineStats, r.collisions.before, r.collisions.after), probes_moved: r.collisions.moved });
        }
        rows.push(...caseRows);
        allChecks.push(...checks(caseName, caseRows));
      }
    }

    // Report
    const others = othersShare(c0, cpuSnapshot());
    log("");
    log(`results: ${o.steps} steps per 2D run${with3d ? `, ${steps3d} per 3D run` : ""}, same seed; PSNR on the EMA weights; inference bytes = features f16 + packed probe indices + network f32`);
    printRows(rows, log);
    log("");
    for (const c of collisions) printCollisions(c, log);
    log("");
    log("targets:");
    printChecks(allChecks, log);
    const tableOk = allChecks.filter((c) => c.check.startsWith("table")).every((c) => c.met);
    if (!tableOk) log(`WARNING: at T = 2^${o.log2T} the baseline at T/4 is not 2 dB below the baseline at T in every case: the comparison does not test what it should there`);
    const figures = "Steps/s (and their ratios, if the load changed between runs) understate the machine";
    for (const line of loadReport(others, (performance.now() - started) / 1000, { figures })) log(line);
    if (values.json) {
      console.log(JSON.stringify({
        mode: "compare", cpu: cpu.model, threads: machine?.threads ?? null, backend: o.backend, log2T: o.log2T, steps: o.steps, steps_3d: with3d ? steps3d : null,
        batch: o.batch ?? parseTrainConfig({}).batch, images: images.map((i) => basename(i)), volume: volumeInfo ?? null,
        probing_defaults: PROBING_DEFAULTS, rows, collisions, checks: allChecks,
        targets_met: allChecks.filter((c) => !c.check.startsWith("table")).every((c) => c.met), table_limits_quality: tableOk,
        others_cpu_share: others ?? null, seconds: (performance.now() - started) / 1000, notes,
      }));
    }
    return 0;
  } catch (err) {
    console.error(`bench:probing: ${(err as Error).message}`);
    return 1;
  } finally {
    rmSync(outRoot, { recursive: true, force: true });
  }
}

/** HashGrid settings of the trainer's defaults at table size 2^log2T (without probing). */
function gridSettings(log2T: number, o: Options) {
  const cfg = parseTrainConfig({ encoding: { log2HashmapSize: log2T }, ...(o.seed !== undefined ? { seed: o.seed } : {}) });
  const { lr: _lr, probing: _p, ...encoding } = cfg.encoding;
  return { ...encoding, seed: cfg.seed };
}

// ---------------------------------------------------------------------------------------------
// --defaults: the codebook size and the probing learning rate

async function sweepDefaults(image: string, o: Options, outRoot: string, log: (s: string) => void, json: boolean, started: number, c0: ReturnType<typeof cpuSnapshot>): Promise<number> {
  const log2T = o.log2T - 2;
  const caseName = basename(image);
  const combos = SWEEP_PER_ENTRY.flatMap((perEntry) => SWEEP_LR.map((lr) => ({ perEntry, codebookSize: perEntry * 2 ** log2T, lr })));
  const progress = new Progress((combos.length + 1) * o.steps, combos.length + 1, log);
  log(`--defaults: N_p = 4 at T/4 = 2^${log2T} on ${caseName}, ${o.steps} steps each; codebook rows per table entry x probing lr`);
  progress.begin(`baseline T/4 (log2T ${log2T})`, o.steps);
  const b = await train2d(image, { log2T, range: 1 }, o, join(outRoot, "base"), log);
  progress.end(o.steps);
  log(`    ${b.result.psnr.toFixed(2)} dB, ${b.result.stepsPerSecond.toFixed(2)} steps/s${busyNote(b.others)}`);
  const rows: (Row & { codebook_size: number | null; per_entry: number | null; probing_lr: number | null })[] = [
    {
      dims: 2, case: caseName, name: "baseline T/4", log2T, probing_range: 1, psnr: b.result.psnr, inference_bytes: b.result.bytesInference,
      steps_per_s: b.result.stepsPerSecond, steps: b.result.steps, seconds: b.result.seconds, others_cpu_share: b.others ?? null, codebook_size: null, per_entry: null, probing_lr: null,
    },
  ];
  for (const [i, c] of combos.entries()) {
    progress.begin(`probing T/4 N_p=4, codebookSize 2^${Math.log2(c.codebookSize)}, lr ${c.lr}`, o.steps);
    const r = await train2d(image, { log2T, range: 4, codebookSize: c.codebookSize, lr: c.lr }, o, join(outRoot, `p${i}`), log);
    progress.end(o.steps);
    log(`    ${r.result.psnr.toFixed(2)} dB, ${r.result.stepsPerSecond.toFixed(2)} steps/s${busyNote(r.others)}`);
    rows.push({
      dims: 2, case: caseName, name: `probing T/4 N_p=4 Nc=2^${Math.log2(c.codebookSize)} lr=${c.lr}`, log2T, probing_range: 4, psnr: r.result.psnr,
      inference_bytes: r.result.bytesInference, steps_per_s: r.result.stepsPerSecond, steps: r.result.steps, seconds: r.result.seconds,
      others_cpu_share: r.others ?? null, codebook_size: c.codebookSize, per_entry: c.perEntry, probing_lr: c.lr,
    });
    rmSync(join(outRoot, `p${i}`), { recursive: true, force: true });
  }
  const probed = rows.slice(1);
  const best = probed.reduce((a, r) => (r.psnr > a.psnr ? r : a));
  const current = probed.find((r) => r.per_entry === PROBING_DEFAULTS.codebookPerEntry && r.probing_lr === PROBING_DEFAULTS.lr);
  const others = othersShare(c0, cpuSnapshot());
  log("");
  log(`PSNR (dB) after ${o.steps} steps, N_p = 4, T/4 = 2^${log2T}, ${caseName}; baseline T/4 ${rows[0]!.psnr.toFixed(2)} dB`);
  log(`rows per entry (N_c) | ${SWEEP_LR.map((lr) => `lr ${lr}`.padStart(10)).join(" | ")} | inference bytes | steps/s (lr ${SWEEP_LR[0]})`);
  for (const k of SWEEP_PER_ENTRY) {
    const rs = SWEEP_LR.map((lr) => probed.find((r) => r.per_entry === k && r.probing_lr === lr)!);
    log(`${`${k} (2^${Math.log2(k * 2 ** log2T)})`.padStart(19)} | ${rs.map((r) => r.psnr.toFixed(2).padStart(10)).join(" | ")} | ${String(rs[0]!.inference_bytes).padStart(15)} | ${rs[0]!.steps_per_s.toFixed(1)}`);
  }
  log(`steps/s: ${probed.map((r) => r.steps_per_s.toFixed(1)).join(", ")} (baseline T/4 ${rows[0]!.steps_per_s.toFixed(1)})`);
  log(
    `best: N_c ${best.per_entry} per table entry (2^${Math.log2(best.codebook_size!)}), lr ${best.probing_lr}: ${best.psnr.toFixed(2)} dB ` +
      `(${(best.psnr - rows[0]!.psnr >= 0 ? "+" : "") + (best.psnr - rows[0]!.psnr).toFixed(2)} dB over the baseline at T/4); ` +
      (current ? `the current defaults (${PROBING_DEFAULTS.codebookPerEntry} per entry, lr ${PROBING_DEFAULTS.lr}) reach ${current.psnr.toFixed(2)} dB` : "the current defaults are not in the sweep"),
  );
  for (const line of loadReport(others, (performance.now() - started) / 1000, { figures: "Steps/s understate the machine" })) log(line);
  if (json) {
    console.log(JSON.stringify({
      mode: "defaults", backend: o.backend, log2T: o.log2T, steps: o.steps, image: caseName, probing_defaults: PROBING_DEFAULTS,
      rows, best: { codebook_size: best.codebook_size, per_entry: best.per_entry, probing_lr: best.probing_lr, psnr: best.psnr }, current_defaults_psnr: current?.psnr ?? null,
      others_cpu_share: others ?? null, seconds: (performance.now() - started) / 1000,
    }));
  }
  return 0;
}

if (import.meta.main) process.exit(await main());

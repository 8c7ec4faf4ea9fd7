// `bun run bench:probing [--json] [--steps N] [--images a,b] [--log2t N] [--defaults] ...`
//
// Learned hash probing (Compact NGP) against the plain hash grid, at the same step budget and
// seed, on the CPU backend, all in one process run:
//   - 2D: Kodak photographs (../shared/data/kodak/, else data/astronaut.png) trained with train()
//     (evalEvery 0, the trainer's defaults otherwise: L=16, F=2, N_min 16, finest 2048, MLP 64x2,
//     batch 2^16, Adam, onecycle), five rows per image: the baseline at T, the baseline at T/4, learned
//     probing at T/4 with N_p = 4 (the default codebook, and N_c = T/4), learned probing at T/16 with
//     N_p = 16 and N_c = 1.5 T (the paper's split of the bytes). T is chosen so that the
//     table limits quality: the baseline at T/4 must be at least 2 dB below the baseline at T
//     (measured and printed; a failure is reported loudly);
//   - 3D: a stack of Kodak frames as a volume (x, y, frame), trained with train() on a volume
//     source (train/data/volume.ts: random continuous points, trilinear interpolation of the 8-bit
//     frames on the host), PSNR over every voxel centre; the same rows;
//   - collision statistics per hashed level (HashGrid.collisionStats on a fixed random sample):
//     the baseline at T/4 against learned probing at T/4 before training (random probe table) and
//     after (the trained one), with the share of codebook rows whose slot moved;
//   - the step times: one training step of every row's model (grid forward, MLP, grid backward,
//     the optimizer; bench/sparse.ts measureSteps) on the same random batch size, the rows' steps
//     taken in turn in one pass so that a load that comes and goes weighs on all alike; the step
//     ratios come from these (the training runs' steps/s, which also hold the sampling, are printed too);
//   - per row, against the baseline at T (issue 21's targets): inference bytes as a fraction of its
//     (<= 0.36), the PSNR gap to it (within 0.5 dB) and the step ratio (<= 1.5x), met or not each;
//   - the checks of learned probing at T/4 (the defaults): >= 1 dB above the baseline at T/4, the
//     three targets against the baseline at T, its step against the baseline at T/4.
// `--defaults` instead sweeps the codebook rows per table entry in {1, 2, 4} (N_c = T/4, T/2, T) x
// probing lr in {0.01, 0.1, 1} at N_p = 4, T/4, on one image with a shorter budget, and prints the
// best (the defaults live in modules/hashgrid.ts PROBING_DEFAULTS).
// With --json the last line printed is one JSON object with every figure.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { seededUniform } from "../modules/random.ts";
import { PROBING_DEFAULTS, type LevelCollisions } from "../modules/hashgrid.ts";
import { findCxx } from "../runtime/toolchain.ts";
import { readCheckpoint } from "../train/checkpoint.ts";
import { DEFAULT_IMAGE, parseTrainConfig, type TrainConfig } from "../train/config.ts";
import { VolumeSource, type Volume } from "../train/data/volume.ts";
import { loadImage, samplesView } from "../train/image.ts";
import { createField, loadCheckpointWeights } from "../train/field.ts";
import { train, type TrainResult } from "../train/trainer.ts";
import { benchArgs } from "./args.ts";
import { measureSteps } from "./sparse.ts";
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
  // The Compact NGP paper's split of a budget (about 1/3 features, 2/3 codebook at N_p = 16): 24
  // rows per entry (N_c = 1.5 T) holds the inference bytes near 0.35x the baseline at T's.
  { name: "probing T/16 N_p=16 N_c=1.5T", shift: -4, range: 16, perEntry: 24 },
];
/** A variant's codebook size (undefined: the default). */
const codebookOf = (v: Variant, log2T: number) => (v.perEntry ? v.perEntry * 2 ** log2T : undefined);

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
  /** Median ms of one training step of the row's model, the case's rows timed in turn (measureSteps). */
  step_ms: number;
  /** Against the baseline at T of the same case: bytes / its bytes, PSNR - its PSNR, step_ms / its step_ms. */
  bytes_vs_t: number;
  db_vs_t: number;
  step_vs_t: number;
  /** Issue 21's targets against the baseline at T, met or not. */
  targets: { bytes: boolean; quality: boolean; step: boolean; all: boolean };
}

/** Issue 21's targets for learned probing against the plain grid at T. */
const TARGETS = { bytes: 0.36, db: 0.5, step: 1.5 } as const;
/** Steps timed per row (after 3 of warm-up), the rows in turn. */
const TIMED_STEPS = 10;

/** A row as trained and timed, before the comparison with the baseline at T. */
type Trained = Omit<Row, "step_ms" | "bytes_vs_t" | "db_vs_t" | "step_vs_t" | "targets">;

/** The rows of one case against its baseline at T: the fractions, the gap and the targets met. */
function againstT(rows: (Trained & { step_ms: number })[]): Row[] {
  const T = rows.find((r) => r.name === "baseline T")!;
  return rows.map((r) => {
    const [bytes, db, step] = [r.inference_bytes / T.inference_bytes, r.psnr - T.psnr, r.step_ms / T.step_ms];
    const targets = { bytes: bytes <= TARGETS.bytes, quality: db >= -TARGETS.db, step: step <= TARGETS.step };
    return { ...r, bytes_vs_t: bytes, db_vs_t: db, step_vs_t: step, targets: { ...targets, all: targets.bytes && targets.quality && targets.step } };
  });
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
// train() on a photograph (2D) or on a volume (3D)

interface Options {
  log2T: number;
  steps: number;
  batch: number | undefined;
  seed: number | undefined;
  backend: "cpu" | "js";
}

/** A row's run: on the image (a path), or on the volume. */
async function trainRow(data: string | Volume, steps: number, v: { log2T: number; range: number; codebookSize?: number; lr?: number }, o: Options, out: string, log: (s: string) => void): Promise<{ result: TrainResult; others: number | undefined; out: string }> {
  const probing = { range: v.range as 1, ...(v.codebookSize ? { codebookSize: v.codebookSize } : {}), ...(v.lr ? { lr: v.lr } : {}) };
  const c0 = cpuSnapshot();
  let last = performance.now();
  const result = await train(
    {
      ...(typeof data === "string" ? { image: data } : {}), backend: o.backend, steps, evalEvery: 0, out,
      encoding: { log2HashmapSize: v.log2T, probing },
      ...(o.batch ? { batch: o.batch } : {}), ...(o.seed !== undefined ? { seed: o.seed } : {}),
    },
    {
      ...(typeof data === "string" ? {} : { source: async (cfg: TrainConfig) => new VolumeSource(data, cfg.seed) }),
      onStep: (s) => {
        if (performance.now() - last < 15_000) return;
        last = performance.now();
        log(`    step ${s.step}/${s.steps}, ${s.stepsPerSecond.toFixed(1)} steps/s, loss ${s.loss.toExponential(3)}`);
      },
    },
  );
  return { result, others: othersShare(c0, cpuSnapshot()), out };
}

/**
 * One case: a row per variant trained on `data` (the image, or the volume), and with `collide` the
 * collision statistics of probing at T/4 (its checkpoint); the runs' folders (under `dir`) removed after.
 */
async function runCase(
  c: { caseName: string; label: string; dims: 2 | 3; dir: string; collide: boolean },
  data: string | Volume,
  steps: number,
  o: Options,
  progress: Progress,
  log: (s: string) => void,
): Promise<{ rows: Row[]; collisions?: Collisions }> {
  const trained: Trained[] = [];
  let probingCheckpoint = "";
  try {
    for (const [i, v] of VARIANTS.entries()) {
      const log2T = o.log2T + v.shift;
      progress.begin(`${c.label}: ${v.name} (log2T ${log2T}${v.range > 1 ? `, N_p ${v.range}` : ""})`, steps);
      const { result: r, others } = await trainRow(data, steps, { log2T, range: v.range, codebookSize: codebookOf(v, log2T) }, o, join(c.dir, String(i)), log);
      progress.end(steps);
      log(`    ${r.psnr.toFixed(2)} dB, ${r.stepsPerSecond.toFixed(2)} steps/s, ${r.bytesInference} inference bytes${busyNote(others)}`);
      trained.push({
        dims: c.dims, case: c.caseName, name: v.name, log2T, probing_range: v.range, psnr: r.psnr, inference_bytes: r.bytesInference,
        steps_per_s: r.stepsPerSecond, steps: r.steps, seconds: r.seconds, others_cpu_share: others ?? null,
      });
      if (v.range === 4 && !v.perEntry) probingCheckpoint = r.files.checkpoint;
    }
    // The step times: every row's model, their steps in turn (one pass), for the ratios.
    log(`    step times: ${VARIANTS.length} models, ${TIMED_STEPS} steps each in turn after 3 of warm-up ...`);
    const timed = await measureSteps(
      VARIANTS.map((v) => ({ log2T: o.log2T + v.shift, sparse: false, dims: c.dims, probing: { range: v.range, codebookSize: codebookOf(v, o.log2T + v.shift) } })),
      { batch: o.batch ?? parseTrainConfig({}).batch, steps: TIMED_STEPS, backend: o.backend },
    );
    const rows = againstT(trained.map((r, k) => ({ ...r, step_ms: timed[k]!.stepMs })));
    if (!c.collide) return { rows };
    log(`    collision statistics (${collisionPoints(o.log2T, c.dims)} random points) ...`);
    return { rows, collisions: await collisionsOf(c.caseName, c.dims, o.log2T - 2, probingCheckpoint, o) };
  } finally {
    rmSync(c.dir, { recursive: true, force: true });
  }
}

/** The config of a row (to rebuild its field for the collision statistics). */
function fieldConfig(log2T: number, range: number, o: Options): TrainConfig {
  return parseTrainConfig({ backend: o.backend, encoding: { log2HashmapSize: log2T, probing: { range } }, ...(o.seed !== undefined ? { seed: o.seed } : {}) });
}

/** Collision statistics of the baseline at T/4 and of probing at T/4 before and after training (its checkpoint). */
async function collisionsOf(caseName: string, dims: 2 | 3, log2T: number, checkpoint: string, o: Options): Promise<Collisions> {
  const points = collisionPoints(log2T + 2, dims);
  const x = randomPoints(points, dims, dims === 2 ? 0xc011 : 0xc013);
  const load = { backend: o.backend };
  const base = await createField(fieldConfig(log2T, 1, o), 3, load, dims, "all");
  let baseline: LevelCollisions[];
  try {
    baseline = base.encoding.grids[0]!.collisionStats(x);
  } finally {
    base.encoding.close();
    base.mlp.close();
  }
  const f = await createField(fieldConfig(log2T, 4, o), 3, load, dims, "all");
  try {
    const before = f.encoding.grids[0]!.collisionStats(x);
    const probesBefore = f.encoding.grids[0]!.probe.download().slice();
    loadCheckpointWeights(f, await readCheckpoint(checkpoint));
    const after = f.encoding.grids[0]!.collisionStats(x);
    return { case: caseName, dims, points, levels: collisionRows(baseline, before, after), probes_moved: moved(probesBefore, f.encoding.grids[0]!.probe.download()) };
  } finally {
    f.encoding.close();
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
// 3D: a stack of frames as a volume (train/data/volume.ts)

/** The volume's frames, 8-bit RGB, and their file names. */
type Frames = Volume & { names: string[] };

async function loadVolume(paths: string[], frames: number, strict: boolean): Promise<Frames> {
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
  return { width, height, depth: imgs.length, channels: 3, data, names: imgs.map((i) => basename(i.path)) };
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
    { case: caseName, check: `inference bytes probing T/4 / baseline T <= ${TARGETS.bytes}`, value: P4.bytes_vs_t, limit: TARGETS.bytes, met: P4.targets.bytes },
    { case: caseName, check: "step time probing T/4 / baseline T/4 <= 1.5", value: P4.step_ms / T4.step_ms, limit: 1.5, met: P4.step_ms / T4.step_ms <= 1.5 },
    { case: caseName, check: `step time probing T/4 / baseline T <= ${TARGETS.step}`, value: P4.step_vs_t, limit: TARGETS.step, met: P4.targets.step },
  ];
}

function printRows(rows: Row[], log: (s: string) => void): void {
  const met = (ok: boolean) => (ok ? "met" : "NOT");
  log(
    `case              | row                          | log2T | N_p |  PSNR dB | inference bytes | steps/s | step ms || ` +
      `bytes/T (<= ${TARGETS.bytes}) | dB vs T (>= -${TARGETS.db}) | step/T (<= ${TARGETS.step}) | all`,
  );
  for (const r of rows) {
    log(
      `${r.case.padEnd(17)} | ${r.name.padEnd(28)} | ${String(r.log2T).padStart(5)} | ${String(r.probing_range).padStart(3)} | ${r.psnr.toFixed(2).padStart(8)} | ` +
        `${String(r.inference_bytes).padStart(15)} | ${r.steps_per_s.toFixed(2).padStart(7)} | ${r.step_ms.toFixed(1).padStart(7)} || ` +
        `${`${r.bytes_vs_t.toFixed(3)} ${met(r.targets.bytes)}`.padStart(17)} | ${`${(r.db_vs_t >= 0 ? "+" : "") + r.db_vs_t.toFixed(2)} ${met(r.targets.quality)}`.padStart(18)} | ` +
        `${`${r.step_vs_t.toFixed(2)}x ${met(r.targets.step)}`.padStart(16)} | ${met(r.targets.all)}${busyNote(r.others_cpu_share)}`,
    );
  }
}

function printChecks(cs: Check[], log: (s: string) => void): void {
  for (const c of cs) {
    const unit = c.check.startsWith("step") || c.check.startsWith("inference") ? "x" : " dB";
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
      `batch ${o.batch ?? parseTrainConfig({}).batch}, Adam, onecycle, no EMA), seed ${o.seed ?? parseTrainConfig({}).seed}; T = 2^${o.log2T}; ` +
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
      const c = await runCase({ caseName, label: `2D ${caseName}`, dims: 2, dir: join(outRoot, `2d-${k}`), collide: k === 0 }, image, o.steps, o, progress, log);
      rows.push(...c.rows);
      allChecks.push(...checks(caseName, c.rows));
      if (c.collisions) collisions.push(c.collisions);
    }
    if (images.length > 1) {
      // The mean over the images, as one more case.
      const mean = againstT(VARIANTS.map((v) => {
        const rs = rows.filter((r) => r.name === v.name && r.dims === 2);
        const avg = (f: (r: Row) => number) => rs.reduce((s, r) => s + f(r), 0) / rs.length;
        return {
          ...rs[0]!, case: "2D mean", psnr: avg((r) => r.psnr), steps_per_s: avg((r) => r.steps_per_s), steps: avg((r) => r.steps), seconds: avg((r) => r.seconds),
          step_ms: avg((r) => r.step_ms), others_cpu_share: null,
        };
      }));
      allChecks.push(...checks("2D mean", mean));
    }

    // 3D
    let volumeInfo: { frames: string[]; width: number; height: number } | undefined;
    if (with3d) {
      let vol: Frames | undefined;
      try {
        if (volumePaths) vol = await loadVolume(volumePaths, volumePaths.length, true);
        else if (existsSync(KODAK_DIR)) {
          const all = Array.from({ length: 24 }, (_, i) => join(KODAK_DIR, `kodim${String(i + 1).padStart(2, "0")}.png`)).filter((p) => existsSync(p));
          vol = await loadVolume(all, frames, false);
          if (vol.depth < frames) log(`NOTE: only ${vol.depth} Kodak frames of ${vol.width}x${vol.height} found (asked for ${frames})`);
        } else log(`NOTE: no 3D case: the Kodak folder ${KODAK_DIR} is missing (give the frames with --volume)`);
      } catch (err) {
        console.error(`bench:probing: 3D volume: ${(err as Error).message}`);
        return 1;
      }
      if (vol) {
        const caseName = `3D ${vol.depth} frames`;
        volumeInfo = { frames: vol.names, width: vol.width, height: vol.height };
        log(`3D volume: ${vol.depth} frames of ${vol.width}x${vol.height} (${vol.names.join(", ")}), ${vol.width * vol.height * vol.depth} voxels`);
        const c = await runCase({ caseName, label: "3D", dims: 3, dir: join(outRoot, "3d"), collide: true }, vol, steps3d, o, progress, log);
        rows.push(...c.rows);
        allChecks.push(...checks(caseName, c.rows));
        if (c.collisions) collisions.push(c.collisions);
      }
    }

    // Report
    const others = othersShare(c0, cpuSnapshot());
    log("");
    log(`results: ${o.steps} steps per 2D run${with3d ? `, ${steps3d} per 3D run` : ""}, same seed; PSNR on the raw weights (the defaults keep no EMA); inference bytes = features f16 + packed probe indices + network f32`);
    log(`steps/s: of the training run (sampling included); step ms: the median of ${TIMED_STEPS} steps of the row's model (grid, MLP, optimizer), a case's rows timed in turn; the ratios against the baseline at T of the same case come from step ms`);
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
        probing_defaults: PROBING_DEFAULTS, targets: TARGETS, rows, collisions, checks: allChecks,
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

// ---------------------------------------------------------------------------------------------
// --defaults: the codebook size and the probing learning rate

async function sweepDefaults(image: string, o: Options, outRoot: string, log: (s: string) => void, json: boolean, started: number, c0: ReturnType<typeof cpuSnapshot>): Promise<number> {
  const log2T = o.log2T - 2;
  const caseName = basename(image);
  const combos = SWEEP_PER_ENTRY.flatMap((perEntry) => SWEEP_LR.map((lr) => ({ perEntry, codebookSize: perEntry * 2 ** log2T, lr })));
  const progress = new Progress((combos.length + 1) * o.steps, combos.length + 1, log);
  log(`--defaults: N_p = 4 at T/4 = 2^${log2T} on ${caseName}, ${o.steps} steps each; codebook rows per table entry x probing lr`);
  progress.begin(`baseline T/4 (log2T ${log2T})`, o.steps);
  const b = await trainRow(image, o.steps, { log2T, range: 1 }, o, join(outRoot, "base"), log);
  progress.end(o.steps);
  log(`    ${b.result.psnr.toFixed(2)} dB, ${b.result.stepsPerSecond.toFixed(2)} steps/s${busyNote(b.others)}`);
  const rows: (Trained & { codebook_size: number | null; per_entry: number | null; probing_lr: number | null })[] = [
    {
      dims: 2, case: caseName, name: "baseline T/4", log2T, probing_range: 1, psnr: b.result.psnr, inference_bytes: b.result.bytesInference,
      steps_per_s: b.result.stepsPerSecond, steps: b.result.steps, seconds: b.result.seconds, others_cpu_share: b.others ?? null, codebook_size: null, per_entry: null, probing_lr: null,
    },
  ];
  for (const [i, c] of combos.entries()) {
    progress.begin(`probing T/4 N_p=4, codebookSize 2^${Math.log2(c.codebookSize)}, lr ${c.lr}`, o.steps);
    const r = await trainRow(image, o.steps, { log2T, range: 4, codebookSize: c.codebookSize, lr: c.lr }, o, join(outRoot, `p${i}`), log);
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

// The trainer: fits a neural field (train/field.ts: hash grid -> MLP -> the data's channels) to a
// photograph, as tiny-cuda-nn's image sample does, or to scattered N-D points, with schedules, an
// EMA of the parameters, gradient accumulation, periodic evaluation, checkpoints and resume. A
// library function first; the command (cli/train.ts) is a thin layer over it. It never knows which
// backend runs the kernels, nor which data it trains on: a DataSource (train/data/: image.ts,
// points.ts, volume.ts) hands out the micro-batches, evaluates the field, and owns the summary's
// fields and the files about its data.
//
// Determinism: every micro-batch's samples come from a counter-based hash of (seed, micro-batch
// number), the CPU kernels sum in fixed orders (owner schedule, slot reduction), and a checkpoint
// holds every piece of state, so the same configuration gives the same parameters, bit for bit,
// run straight through or interrupted and resumed (CPU and JS backends).
import { createHash, randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chooseBackend, type Backend, type BackendRequest } from "../runtime/backend.ts";
import type { DeviceBuffer } from "../runtime/buffer.ts";
import { RanksDisagreeError, type Ranks } from "../runtime/mpi.ts";
import { openAllReduce, type AllReduce } from "../runtime/nccl.ts";
import { removeStaleTemporaries } from "../runtime/cache.ts";
import { checkOutputFile } from "../runtime/files.ts";
import { Ema } from "../modules/ema.ts";
import { type Encoding, checkTrainingMemory, memberTrainingBytes } from "../modules/encoding.ts";
import { defaultCodebookSize, type HashGrid } from "../modules/hashgrid.ts";
import { Loss } from "../modules/loss.ts";
import { Mlp } from "../modules/mlp.ts";
import { Optimizer, type OptimizerState } from "../modules/optimizer.ts";
import { CheckpointError, checkCompatible, readCheckpoint, writeCheckpoint, type Checkpoint, type LazyArray } from "./checkpoint.ts";
import { MAX_STEPS, MODEL_FIELDS, parseTrainConfig, type TrainConfig, type TrainConfigInput } from "./config.ts";
import type { DataSource, SourceEvaluation } from "./data/source.ts";
import { interruptible } from "./eval.ts";
import { createField, fieldMembers, fieldOf, type Weights } from "./field.ts";
import { MetricsLog, writeJsonAtomic, writePlot } from "./outputs.ts";
import { dataInput, openSource, SOURCE_OUTPUT_DIRS, SOURCE_OUTPUTS } from "./data/open.ts";
import type { PointsSummary } from "./data/points.ts";
import { defaultLearningRate, describeSpan, makeSchedule, spansSteps, Warmup, type Schedule, type ScheduleKind, type ScheduleSpan } from "./schedule.ts";
import { lockOutDir } from "./lock.ts";
import { ExpectedError } from "../dsl/errors.ts";
import { ConfigError } from "../modules/options.ts";

/** Progress after each optimizer step. */
export interface StepInfo {
  step: number;
  steps: number;
  /** Mean training loss of the step's micro-batches. */
  loss: number;
  lr: number;
  /** The last full-image PSNR (undefined before the first evaluation). */
  psnr: number | undefined;
  seconds: number;
  stepsPerSecond: number;
}

export interface EvalInfo {
  step: number;
  /** The image: full-image PSNR; points: PSNR of the held-out split relative to the value range. */
  psnr: number;
  /**
   * The image: loss of a fixed held-out batch (what the plateau schedule watches; NaN at the final
   * evaluation); points: the validation loss, over the whole held-out split.
   */
  heldOutLoss: number;
  /** The weights evaluated: the EMA's or the raw ones (chooseWeights). */
  weights: Weights;
}

/** The weights used (chooseWeights) and, when both were measured, their held-out errors. */
export interface WeightsChoice {
  used: Weights;
  heldOutMse?: { ema: number; raw: number };
}

export interface TrainHooks {
  onStep?(info: StepInfo): void;
  onEval?(info: EvalInfo): void;
  /** Messages (backend choice, first-use builds, checkpoints). */
  log?(message: string): void;
  /**
   * When aborted, the run stops before the next micro-batch (or the next tile of an evaluation),
   * writes a checkpoint and returns; before its first step (while the kernels build), it throws an
   * InterruptedError having written nothing.
   */
  signal?: AbortSignal;
  /** A time budget's measured steps per second replaced by this (tests: a known step count). */
  stepsPerSecond?: number;
  /** Continue from this checkpoint (same model; steps and schedule continue). */
  resume?: string;
  /**
   * The data to train on, instead of the configuration's image or points (train/data/open.ts):
   * a source of the caller's (bench:probing's 3D volume, train/data/volume.ts). The trainer closes it.
   */
  source?: (cfg: TrainConfig, log: (message: string) => void, share?: { rank: number; size: number }) => Promise<DataSource>;
  /**
   * Data-parallel training over the ranks of an MPI job (runtime/mpi.ts openRanks; absent or one
   * rank: one process, as always): every rank holds the model and draws its own samples, the
   * gradients are summed over the ranks and divided by their count each step, and rank 0 alone
   * evaluates and writes (docs/distributed.md "Training across ranks").
   */
  ranks?: Ranks;
}

export type StopReason = "steps" | "seconds" | "interrupted" | "non-finite loss";

export interface TrainResult {
  /**
   * Full-image PSNR at the end (points: the held-out split's PSNR; an interrupted run: the last
   * evaluation's, NaN if none).
   */
  psnr: number;
  steps: number;
  seconds: number;
  stepsPerSecond: number;
  stoppedBy: StopReason;
  /** The base learning rate: optimizer.lr, or the default the run decided (train/schedule.ts defaultLearningRate). */
  lr: number;
  /** The weights the final evaluation, reconstruction.png and the checkpoint's render and export use. */
  weights: WeightsChoice;
  /**
   * The steps a cosine or onecycle schedule spans and how they were decided (a time budget alone:
   * estimated after a warm-up; also in the checkpoint, for --resume and a rerun with --steps).
   */
  scheduleSpan?: ScheduleSpan;
  backend: Backend;
  backendReason: string;
  paramsEncoding: number;
  paramsNetwork: number;
  /** Bytes of parameters, and of everything training holds per parameter (gradient, Adam, EMA). */
  bytesParams: number;
  bytesTraining: number;
  /**
   * Bytes of the model for inference (what `bun run export` writes, without its header): the
   * encoding's features in f16, learned probing's argmax indices packed at log2(N_p) bits, the
   * network in f32.
   */
  bytesInference: number;
  /** Data-parallel over MPI ranks (absent: one process): the ranks, each rank's --batch, and the samples of one optimizer step over all of them. */
  ranks?: { count: number; batch: number; globalBatch: number };
  /** The photograph (an image run). */
  image?: { path: string; width: number; height: number; channels: number; bits: number; evaluation: { mode: string; pixels: number; final: string; tiles?: number; tileSize?: number }; seconds?: Record<string, number> };
  /** The points, their bounding box and the validation figures (a points run). */
  points?: PointsSummary;
  /** The volume's shape (a run on train/data/volume.ts's source: bench:probing's 3D case). */
  volume?: { width: number; height: number; depth: number; channels: number };
  /** reconstruction: image runs (not an interrupted one, nor one too large for memory); validation: points runs. */
  files: { reconstruction?: string; viewer?: string; metrics: string; plot: string; summary: string; checkpoint: string; validation?: string };
}

/** A run stopped (TrainHooks.signal) before its first step: it wrote nothing. */
export class InterruptedError extends ExpectedError {
  override readonly status = 130;
  constructor(out: string) {
    super(`interrupted before the first step: nothing written (${out} holds what it held)`);
  }
  override report(): string {
    return this.message;
  }
}

/** A run that cannot start or continue, with a message for people (no stack trace needed): exit status 1. */
export class TrainError extends ExpectedError {
  override readonly status = 1;
}

export async function train(input: TrainConfigInput, hooks: TrainHooks = {}): Promise<TrainResult> {
  const cfg = parseTrainConfig(input);
  // Learned probing's default codebook resolved for this run's table, so that the configuration
  // saved with its checkpoints, summary and exports keeps the size it trained with.
  const probing = cfg.encoding.probing;
  // The encoding checked (axes, levels, memory) before the data is read, where its dimension is known.
  const dims = cfg.points ? cfg.points.dims : 2;
  if (dims !== undefined) checkTrainingMemory(fieldMembers(cfg, dims), trainingState(cfg));
  if (probing.range > 1 && probing.codebookSize === undefined) probing.codebookSize = defaultCodebookSize(cfg.encoding.log2HashmapSize);
  const log = hooks.log ?? (() => {});
  // Ranks: every one starts from the same configuration (checked before anything is read or
  // written), and only rank 0 writes in the out directory.
  const ranks = hooks.ranks && hooks.ranks.size > 1 ? hooks.ranks : undefined;
  ranks?.agree(JSON.stringify({ cfg, resume: hooks.resume ?? null, source: hooks.source !== undefined }), "configuration (flags, --config, --resume)");
  const out = ranks && ranks.rank !== 0 ? cfg.out : prepareOutDir(cfg.out);
  // An output that is the input would replace it (o/reconstruction.png trained into o). The --resume
  // checkpoint may be the run's own: it is read whole first and then replaced atomically.
  const inputs = hooks.source ? [] : [dataInput(cfg)];
  for (const f of OUTPUTS) checkOutputFile({ flag: "--out", path: join(out, f) }, inputs);
  const open = async () => {
    // With ranks each reads its share of the data's first pass (points), gathered below.
    const source = await (hooks.source ?? openSource)(cfg, log, ranks && { rank: ranks.rank, size: ranks.size });
    try {
      if (ranks) source.split?.(ranks.rank, ranks.size);
    } catch (e) {
      throw (source.close(), e);
    }
    return source;
  };
  const source = await together(ranks, "open the data", open, (s) => s.close());
  try {
    // Every rank opened its share: the ranks' first passes combined (an error there, every rank's alike).
    if (ranks && source.gather) {
      try {
        source.gather(ranks);
      } catch (e) {
        throw typeof e === "object" && e !== null ? share(e) : e;
      }
    }
    ranks?.agree(JSON.stringify([source.meta(), source.fingerprint?.() ?? null]), "data");
    const ck = await together(ranks, "read the checkpoint", async () => {
      const ck = hooks.resume ? await readCheckpoint(hooks.resume) : undefined;
      if (ck) checkResume(ck, cfg, source, hooks.resume!);
      return ck;
    });
    // After the inputs are checked, before anything is built or written.
    using _lock = await together(ranks, "lock the out directory", async () => (ranks && ranks.rank !== 0 ? undefined : lockOutDir(out, { log })), (l) => l?.[Symbol.dispose]());
    // With ranks, the gradients' all-reduce, chosen before the model's buffers are made (it sets
    // this rank's GPU, its local rank's): NCCL on the device buffers where every rank's backend is
    // CUDA and loads NCCL, else MPI through host memory; rank 0 says which, or why not NCCL.
    const reduce = ranks && (await openGradientReduce(cfg, ranks));
    try {
      if (reduce) log(`gradient all-reduce: ${reduce.reason}`);
      // Ctrl-C in a terminal also stops the compiler of a kernel being built: then the build fails.
      const build = () => buildModel(cfg, source, log, hooks.signal).catch((e) => {
        throw hooks.signal?.aborted ? new InterruptedError(out) : e;
      });
      const m = await together(ranks, "build the model", build, (m) => m.close());
      try {
        return await run(cfg, source, m, out, ck, hooks, ranks && { ranks, reduce: reduce! });
      } finally {
        m.close();
      }
    } finally {
      reduce?.close();
    }
  } finally {
    source.close();
  }
}

/** The all-reduce of the gradients over `ranks` (runtime/nccl.ts openAllReduce): CUDA buffers where the backend chosen is CUDA. */
async function openGradientReduce(cfg: TrainConfig, ranks: Ranks): Promise<AllReduce> {
  const cuda = await together(ranks, "choose the backend", async () => chooseBackend({ backend: cfg.backend as BackendRequest }).backend === "cuda");
  return await openAllReduce(ranks, { cuda });
}

/**
 * `f` run on every rank (without ranks: `f`). When it fails on any rank, every rank throws: the
 * failed one its own error, the others the first failed rank's message prefixed by its rank, with
 * its exit status (rank 0 reports what went wrong where); what `f` made on the others is undone
 * with `undo`. No collective may run inside `f`.
 */
async function together<T>(ranks: Ranks | undefined, what: string, f: () => Promise<T>, undo?: (made: T) => void): Promise<T> {
  if (!ranks) return await f();
  let made: { value: T } | undefined;
  let error: unknown;
  try {
    made = { value: await f() };
  } catch (e) {
    error = e;
  }
  const status = error instanceof ExpectedError ? error.status : 1;
  const first = ranks.firstProblem(made ? undefined : `${status}\t${error instanceof Error ? error.message : String(error)}`);
  if (!first) return made!.value;
  if (made) undo?.(made.value);
  if (!made) throw typeof error === "object" && error !== null ? share(error) : error;
  const [code, message] = first.problem.split(/\t(.*)/s) as [string, string];
  throw new RankFailedError(`rank ${first.rank} of ${ranks.size} could not ${what}: ${message}${first.others.length ? ` (also ranks ${first.others.join(", ")})` : ""}`, Number(code) || 1);
}

/** Errors every rank met alike, or a rank's own that rank 0 repeats (together): rank 0 reports them. */
const shared = new WeakSet<object>();

const share = <E extends object>(e: E): E => (shared.add(e), e);

/** `to` (an error rewritten from `from`, e.g. named by its flag) is reported by rank 0 where `from` is. */
export function likeRankZero(from: unknown, to: unknown): unknown {
  return reportedByRankZero(from) && typeof to === "object" && to !== null ? share(to) : to;
}

/** Whether rank 0 reports this error (another rank, failing with it, need not print it). */
export function reportedByRankZero(e: unknown): boolean {
  return e instanceof RanksDisagreeError || e instanceof RankFailedError || (typeof e === "object" && e !== null && shared.has(e));
}

/** Another rank failed (together): its message, with its exit status. */
export class RankFailedError extends ExpectedError {
  constructor(
    message: string,
    override readonly status: number,
  ) {
    super(message);
  }
}

interface Model {
  encoding: Encoding;
  mlp: Mlp;
  opt: Optimizer;
  ema: Ema | undefined;
  heldOutLoss: Loss;
  /** The base learning rates (each group's before the schedule's factor), decided with the schedule's span. */
  rates: Rates;
  close(): void;
}

async function buildModel(cfg: TrainConfig, source: DataSource, log: (m: string) => void, signal?: AbortSignal): Promise<Model> {
  const load = { backend: cfg.backend as BackendRequest, log };
  // The groups' rates until the schedule's span is known (run() sets them before the first step).
  const rates = baseRates(cfg, undefined, false);
  const { encoding: encLr, network: netLr } = rates;
  const weightDecay = cfg.network.weightDecay;
  // Aborted (Ctrl-C) while the kernels build, seconds each on first use: stop after this one.
  const made: { close(): void }[] = [];
  const built = <T extends { close(): void } | undefined>(x: T): T => {
    if (x) made.push(x);
    if (signal?.aborted) throw (made.forEach((y) => y.close()), new InterruptedError(cfg.out));
    return x;
  };
  checkTrainingMemory(fieldMembers(cfg, source.dims), trainingState(cfg));
  const { encoding, mlp } = await createField(cfg, source.channels, load, source.dims);
  made.push(encoding);
  built(mlp);
  const grids = encoding.grids.map((g, i) => ({ g, name: encoding.name("encoding", i), probing: encoding.name("probing", i) }));
  // Sparse updates: each grid's step (and its average) runs over the entries the batch touched.
  const sparse = cfg.optimizer.sparse;
  if (sparse) for (const { g } of grids) await g.trackTouched();
  const opt = built(await Optimizer.create(
    [
      // One group per member grid (a lone grid's: "encoding", "probing"), the network's between them.
      ...grids.map(({ g, name }) => ({ name, params: g.params as DeviceBuffer<"f32"> | DeviceBuffer<"f16">, grad: g.grad, lr: encLr, weightDecay: 0, touched: g.touchedEntries })),
      { name: "network", params: mlp.params, grad: mlp.grad, lr: netLr, weightDecay },
      // Learned probing's index logits; the step refreshes the probe table from them.
      ...grids.flatMap(({ g, probing }) => (g.logitCount ? [{ name: probing, params: g.logits, grad: g.logitGrad, lr: cfg.encoding.probing.lr, weightDecay: 0, rows: g.probeRows, touched: g.touchedCodebookRows }] : [])),
    ],
    cfg.optimizer,
    load,
  ));
  // The average is of the f32 weights (an f16 encoding's master copy); see withAverage. The probing
  // logits are not averaged: the features were trained under the current argmax slots, and an
  // average of the logits could pick other ones.
  const groups = [...grids.map(({ g, name }) => ({ name, params: opt.master(name), ...(sparse ? { touched: g.touchedEntries } : {}) })), { name: "network", params: opt.master("network") }];
  const ema = built(cfg.ema.enabled ? await Ema.create(groups, { decay: cfg.ema.decay }, load) : undefined);
  const heldOutLoss = built(await Loss.create({ kind: cfg.loss as never, width: source.channels, huberDelta: cfg.huberDelta }, load));
  const close = () => made.forEach((x) => x.close());
  try {
    await source.attach({ backend: load.backend, log, alloc: (n) => encoding.alloc(n), field: fieldOf({ encoding, mlp }), loss: heldOutLoss });
  } catch (e) {
    close();
    throw e;
  }
  log(`backend ${encoding.backendReason}`);
  for (const { g, name } of grids) {
    if (!g.logitCount) continue;
    // The codebook's cost up front: by default it grows with the table (4 rows per entry).
    const p = g.probing;
    const levels = p.probed.filter(Boolean).length;
    const { indexBytes, inferenceBytes } = g.memory(2);
    log(
      `learned probing${grids.length > 1 ? ` (${name})` : ""}: N_p ${p.range}, N_c ${p.codebookSize} codebook rows on each of ${levels} hashed levels ` +
        `(${(p.codebookSize / 2 ** g.settings.log2HashmapSize).toPrecision(2)} per table entry): ${g.logitCount.toLocaleString("en")} index logits, ` +
        `${(indexBytes / 2 ** 20).toFixed(2)} MiB of packed indices at inference ` +
        `(${((100 * indexBytes) / inferenceBytes).toFixed(0)}% of the grid's bytes with f16 features)`,
    );
  }
  return { encoding, mlp, opt, ema, heldOutLoss, rates, close };
}

/** The out directory cannot be used: bad input (the CLI's exit status 2), found before training. */
export class OutDirError extends ExpectedError {}

/** What a run writes in its out directory: the trainer's files, and its source's (image runs: reconstruction.png; points runs: validation.csv). */
const OUTPUTS = ["checkpoint.ngpk", "metrics.csv", "summary.json", "plot.png", ...SOURCE_OUTPUTS];
/** The result's files in the order summary.json lists them: a source's reconstruction first, its validation last. */
const FILES_ORDER: (keyof TrainResult["files"])[] = ["reconstruction", "viewer", "metrics", "plot", "summary", "checkpoint", "validation"];
/** The temporaries of those files (writeFileAtomic's, writeCheckpoint's, a run's metrics before its first checkpoint): `.<name>.<pid>.<random>.tmp`. */
const OUTPUT_TEMPORARY = new RegExp(`^\\.(?:${OUTPUTS.map((n) => n.replace(".", "\\.")).join("|")})\\.(\\d+)\\.[0-9a-z]+\\.tmp$`);

const WHY: Record<string, string> = {
  EEXIST: "a file of that name exists", ENOTDIR: "a part of the path is a file", EACCES: "permission denied",
  EPERM: "permission denied", EROFS: "the file system is read-only", ENOSPC: "no space left on the device",
};

function prepareOutDir(dir: string): string {
  try {
    mkdirSync(dir, { recursive: true });
    if (!statSync(dir).isDirectory()) throw Object.assign(new Error("not a directory"), { code: "EEXIST" });
    // Probe: a run that cannot write its outputs should fail now, not after an hour of training.
    const probe = join(dir, `.write-test-${process.pid}`);
    writeFileSync(probe, "");
    rmSync(probe, { force: true });
    // Those left by runs that were killed (their pid is no longer running), as the kernel cache does.
    removeStaleTemporaries(dir, OUTPUT_TEMPORARY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new OutDirError(`the out directory ${dir} cannot be written: ${(code && WHY[code]) ?? code ?? (e as Error).message}`);
  }
  return dir;
}

function checkResume(ck: Checkpoint, cfg: TrainConfig, source: DataSource, path: string): void {
  checkCompatible(ck, cfg, MODEL_FIELDS);
  source.checkResume(ck, path);
  const span = recordedSpan(ck);
  if (span && cfg.schedule.kind === (ck.meta.schedule as { kind: string }).kind && !timeAlone(cfg) && cfg.steps !== span.steps)
    throw new ConfigError(
      `steps: ${cfg.steps} is not the ${span.steps} steps that ${path}'s ${cfg.schedule.kind} schedule spans` +
        `${span.from === "seconds" ? ` (estimated for its ${span.budget} s budget)` : ""}: resume with --steps ${span.steps}${span.from === "seconds" ? ` or with --seconds and no --steps` : ""}, or start a new run`,
    );
  if (ck.step > cfg.steps) throw new CheckpointError(`${path}: the checkpoint is at step ${ck.step}, past the ${cfg.steps} steps asked for`);
}

/** A time budget and no steps (time alone stops the run). */
const timeAlone = (cfg: TrainConfig) => cfg.seconds !== undefined && cfg.steps >= MAX_STEPS;

/** The steps a checkpoint's cosine or onecycle schedule spans (one written before they were recorded: its steps). */
function recordedSpan(ck: Checkpoint): ScheduleSpan | undefined {
  const kind = (ck.meta.schedule as { kind?: string } | undefined)?.kind;
  if (kind === undefined || !spansSteps(kind as ScheduleKind)) return undefined;
  const steps = (ck.config as { steps?: unknown }).steps;
  return (ck.meta.scheduleSpan as ScheduleSpan | undefined) ?? (typeof steps === "number" && steps < MAX_STEPS ? { steps, from: "steps" } : undefined);
}

async function run(cfg: TrainConfig, source: DataSource, m: Model, out: string, resume: Checkpoint | undefined, hooks: TrainHooks, dp: { ranks: Ranks; reduce: AllReduce } | undefined): Promise<TrainResult> {
  const ranks = dp?.ranks;
  const { encoding, mlp, opt, ema } = m;
  // With ranks, rank 0 alone evaluates and writes; N: the ranks whose gradients each step averages.
  const lead = !ranks || ranks.rank === 0;
  const N = ranks?.size ?? 1;
  const log = (message: string) => lead && hooks.log?.(message);
  const files: TrainResult["files"] = {
    metrics: join(out, "metrics.csv"),
    plot: join(out, "plot.png"),
    summary: join(out, "summary.json"),
    checkpoint: join(out, "checkpoint.ngpk"),
  };
  let step = 0;
  let micro = 0;
  let elapsedBefore = 0;
  if (resume) {
    restore(m, resume);
    // The model holds them now: drop the checkpoint's copies (an Earth4D checkpoint is 8 GiB).
    resume.arrays = {};
    step = resume.step;
    // The checkpoint holds the position in the whole stream (each rank's micro-batches times the
    // ranks): with another rank count each rank continues from the next multiple of the new count.
    micro = Math.ceil((resume.rng as { micro: number }).micro / N);
    elapsedBefore = (resume.meta.seconds as number | undefined) ?? 0;
  }
  // A cosine or onecycle schedule spans the run's steps, or the checkpoint's; given a time budget
  // and no steps, a warm-up measures the steps per second, then is undone (the state it started
  // from put back) and the run starts over with the schedule over the steps the budget has left
  // (train/schedule.ts ScheduleSpan): as if given those steps.
  let span = spansSteps(cfg.schedule.kind) ? ((resume && recordedSpan(resume)) ?? (timeAlone(cfg) ? undefined : { steps: cfg.steps, from: "steps" })) : undefined;
  const warmup = spansSteps(cfg.schedule.kind) && !span ? { measure: new Warmup(cfg.seconds!, elapsedBefore), from: { state: snapshot(m), step, micro } } : undefined;
  let limit = span?.steps ?? cfg.steps;
  let schedule: Schedule = makeSchedule(cfg.schedule, limit, resume?.meta.schedule as never);
  if (span) log(`${describeSpan(cfg.schedule.kind, span)}${span.from === "seconds" ? " (the checkpoint's)" : resume ? "" : " (--steps; --seconds alone spans the steps that fit)"}`);
  // Without --lr the base rate follows the span (train/schedule.ts defaultLearningRate): decided
  // with it, so that a resumed run and a rerun with the span's --steps get the same one.
  const exact = source.values !== undefined && encoding.paramCount >= source.values;
  const decideRates = () => {
    m.rates = baseRates(cfg, span?.steps, exact);
    if (cfg.optimizer.lr === undefined)
      log(`learning rate ${m.rates.base.toExponential(2)} (the default${exact && span ? ` for ${cfg.schedule.kind} over ${span.steps} steps on data the encoding can fit exactly` : ""}; --lr sets one)`);
  };
  if (span || !warmup) decideRates();
  // The out directory's earlier outputs stay as they are until this run saves its first checkpoint:
  // until then its metrics go to a temporary beside them. That first checkpoint is the switch: it
  // replaces the earlier one (atomically), then the metrics move into place and the earlier run's
  // other outputs are removed, so that the directory holds one run's outputs, but for the instant
  // of those few renames. A run that fails before (or is interrupted before its first step) leaves
  // the directory as it was and removes its temporary; a killed run's is removed by the next run.
  // Every step's row is kept by the log (a resumed run reads the earlier ones back from the CSV).
  const staged = join(out, `.metrics.csv.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  if (lead && resume && existsSync(files.metrics)) copyFileSync(files.metrics, staged);
  const metrics = lead ? new MetricsLog(staged, resume ? { append: true, resumeStep: resume.step } : {}) : undefined;
  let switched = false;
  using _ = { [Symbol.dispose]: () => (metrics?.close(), switched || !lead || rmSync(staged, { force: true })) };
  // Every gradient the optimizer reads, summed over the ranks each step (in place).
  const gradients = ranks ? [...encoding.grids.flatMap((g) => (g.logitCount ? [g.grad, g.logitGrad] : [g.grad])), mlp.grad] : [];
  if (ranks)
    log(`data parallel over ${N} ranks (${ranks.description.split(",")[0]}): batch ${cfg.batch} per rank${cfg.accumulate > 1 ? ` x ${cfg.accumulate} accumulated` : ""}, ${cfg.batch * cfg.accumulate * N} samples per step`);

  const K = cfg.accumulate;
  const enc = encoding.alloc(cfg.batch * encoding.outputDim);
  const dEnc = encoding.alloc(cfg.batch * encoding.outputDim);
  let lastPsnr: number | undefined = resume?.meta.psnr as number | undefined;
  let stoppedBy: StopReason = "steps";
  let pending: Parameters<MetricsLog["log"]>[0] | undefined;
  const started = performance.now();
  const clock = () => elapsedBefore + (performance.now() - started) / 1000;
  // With ranks the time is rank 0's, agreed each step, so that every rank decides alike.
  let agreedSeconds = elapsedBefore;
  const seconds = () => (ranks ? agreedSeconds : clock());
  const stepsAtStart = step;
  let rateFrom = { step, seconds: elapsedBefore }; // the steps per second are counted from here
  // The EMA or the raw weights, chosen once per step (two passes over the held-out batch) for the
  // evaluation, the checkpoint and the result alike.
  let chosen: { step: number; weights: WeightsChoice } | undefined;
  const weightsNow = async (): Promise<WeightsChoice> => (chosen?.step === step ? chosen : (chosen = { step, weights: await chooseWeights(m, source) })).weights;

  const save = async () => {
    const state = stateOf(m);
    // Every rank's state the same, bit for bit (else the ranks have diverged: a bug).
    ranks?.agree(stateHash(state.arrays), "training state (parameters, optimizer, EMA) at step " + step);
    if (!lead) return;
    await writeCheckpoint(files.checkpoint, {
      config: cfg,
      step,
      rng: { micro: micro * N },
      meta: {
        // JSON holds no Infinity or NaN: a non-finite figure is stored as absent.
        schedule: schedule.state(), scheduleSpan: span, seconds: seconds(), psnr: finite(lastPsnr), weights: (await weightsNow()).used,
        ...(ranks ? { ranks: N } : {}),
        ...source.meta(),
        ...state.meta,
      },
      arrays: state.arrays,
    });
    if (!switched) {
      metrics!.moveTo(files.metrics);
      for (const name of [...OUTPUTS, ...SOURCE_OUTPUT_DIRS]) if (name !== "checkpoint.ngpk" && name !== "metrics.csv") rmSync(join(out, name), { force: true, recursive: true });
      switched = true;
    }
    log(`checkpoint: ${files.checkpoint} (step ${step})`);
  };

  // The held-out loss is what the plateau schedule watches; the image computes it only when
  // something reads it.
  const wantHeldOut = cfg.schedule.kind === "plateau" || hooks.onEval !== undefined;
  const evaluation = async (final: boolean): Promise<SourceEvaluation | undefined> => {
    const run = () => source.evaluate(step, { final, wantHeldOut, signal: hooks.signal });
    const e = lead ? await ((await weightsNow()).used === "ema" ? withAverage(m, run) : run()) : undefined;
    if (!ranks) return e;
    // The others wait asleep (MPI's own wait spins, taking cores from rank 0 on a shared machine),
    // then get rank 0's figures (the plateau schedule watches them); undefined: interrupted.
    await ranks.quietBarrier();
    const v = new Float64Array([e ? 1 : 0, e?.psnr ?? NaN, e?.heldOutLoss ?? NaN]);
    ranks.broadcast(v, 0);
    return lead ? e : v[0] ? { psnr: v[1]!, heldOutLoss: v[2]! } : undefined;
  };

  // Let the event loop run now and then: signal handlers (Ctrl-C) and timers are JS callbacks.
  // The warm-up is over, or stopped: its steps are undone; the schedule spans what the budget has left at the measured rate.
  const endWarmup = (w: NonNullable<typeof warmup>) => {
    restore(m, w.from.state);
    ({ step, micro } = w.from);
    if (stoppedBy === "interrupted") return;
    const s = (span = w.measure.span(cfg.seconds! - seconds(), hooks.stepsPerSecond));
    if (s.steps < 1)
      throw new ConfigError(
        `seconds: ${cfg.seconds} is too short for a ${cfg.schedule.kind} schedule: the warm-up measuring the steps per second took ${s.warmupSeconds.toFixed(2)} s ` +
          `(${s.warmupSteps} step${s.warmupSteps === 1 ? "" : "s"} at ${s.stepsPerSecond.toPrecision(3)} steps/s) and no step fits in what is left: give more --seconds, or --steps`,
      );
    limit = s.steps;
    schedule = makeSchedule(cfg.schedule, limit);
    decideRates();
    stoppedBy = "steps";
    rateFrom = { step, seconds: seconds() };
    log(`${describeSpan(cfg.schedule.kind, s)} (redone from the start): stops at ${limit} steps or after ${cfg.seconds} s, whichever comes first`);
  };

  const pause = interruptible(hooks.signal);
  while (step < limit) {
    await pause();
    const factor = schedule.factor(step);
    for (const [i, g] of encoding.grids.entries()) {
      opt.setLearningRate(encoding.name("encoding", i), m.rates.encoding * factor);
      if (g.logitCount) opt.setLearningRate(encoding.name("probing", i), cfg.encoding.probing.lr * factor);
    }
    opt.setLearningRate("network", m.rates.network * factor);
    let done = 0;
    let lossSum = 0;
    for (; done < K; done++) {
      // (With ranks, a stop is agreed after the step, below.)
      if (!ranks && hooks.signal?.aborted) stoppedBy = "interrupted";
      else if (!ranks && cfg.seconds !== undefined && seconds() >= cfg.seconds) stoppedBy = "seconds";
      if (stoppedBy !== "steps") break;
      // Rank r's micro-batch k is micro-batch k N + r of the one stream (a source that splits its
      // data between the ranks, points: its own stream's k).
      const { coords, targets } = source.sample(cfg.batch, ranks && !source.split ? micro * N + ranks.rank : micro);
      encoding.forward(coords, enc);
      const loss = mlp.trainStep(enc, targets, { scale: 1 / K, inputGrad: dEnc });
      if (!Number.isFinite(loss)) {
        stoppedBy = "non-finite loss";
        break;
      }
      encoding.backward(dEnc, { accumulate: true });
      micro++;
      lossSum += loss;
    }
    // With ranks, one small reduction a step: a non-finite loss on any rank, the losses, a stop
    // asked of any (a signal), and rank 0's clock (the time budget); every rank then does the same.
    let stopAfter: StopReason | undefined;
    let count = done;
    if (ranks) {
      const v: Float64Array = new Float64Array([stoppedBy === "non-finite loss" ? 1 : 0, lossSum, hooks.signal?.aborted ? 1 : 0, ranks.rank === 0 ? clock() : 0]);
      ranks.allReduce(v, "sum");
      if (v[0]) stoppedBy = "non-finite loss";
      [lossSum, count, agreedSeconds] = [v[1]!, done * N, v[3]!];
      stopAfter = v[2] ? "interrupted" : cfg.seconds !== undefined && agreedSeconds >= cfg.seconds ? "seconds" : undefined;
    }
    if (stoppedBy === "non-finite loss") break; // no update: the parameters stay the last good ones
    if (stoppedBy === "interrupted") {
      // The group is redone on resume (its gradient is not kept), so that a resumed run equals
      // an uninterrupted one.
      micro -= done;
      break;
    }
    if (done === 0) break;
    // The ranks' gradients summed (each a mean over its batch: the step's mean is the sum over N).
    dp?.reduce.allReduceSum(gradients);
    if (ranks && cfg.optimizer.sparse) unionTouched(encoding.grids, ranks);
    // A last partial group (the time budget ran out) counts as the mean of what it holds.
    opt.update({ gradScale: K / count });
    ema?.update();
    step++;
    if (stopAfter) stoppedBy = stopAfter;
    const partial = done < K || stopAfter !== undefined;
    const loss = lossSum / count;
    const t = seconds();
    if (warmup && !span) {
      // A warm-up step: no evaluation, metrics row, progress or checkpoint (it is undone).
      if (!warmup.measure.step(t) && !partial) continue;
      endWarmup(warmup);
      continue;
    }
    const rate = (step - rateFrom.step) / Math.max(1e-9, t - rateFrom.seconds);
    let psnr: number | undefined;
    if (cfg.evalEvery > 0 && step % cfg.evalEvery === 0 && step < limit) {
      const e = await evaluation(false);
      if (!e) stoppedBy = "interrupted"; // the step stands, without its evaluation
      else {
        psnr = lastPsnr = e.psnr;
        schedule.observe(e.heldOutLoss);
        if (lead) hooks.onEval?.({ step, psnr: e.psnr, heldOutLoss: e.heldOutLoss, weights: (await weightsNow()).used });
      }
    }
    // A step's row is written when the next one ends, so that the last one gets the final PSNR.
    if (pending) metrics?.log(pending);
    pending = { step, loss, lr: m.rates.network * factor, psnr, seconds: t };
    hooks.onStep?.({ step, steps: limit, loss, lr: m.rates.network * factor, psnr: lastPsnr, seconds: t, stepsPerSecond: rate });
    if (cfg.checkpointEvery > 0 && step % cfg.checkpointEvery === 0) await save();
    if (partial || stoppedBy === "interrupted") break;
  }

  const trainedSeconds = seconds();
  if (stoppedBy === "non-finite loss") {
    if (pending) metrics?.log(pending);
    throw share(new TrainError(
      `the training loss became non-finite at step ${step + 1}; stopped without applying it` +
        (switched ? ` (the last good checkpoint, ${files.checkpoint}, is kept)` : ` (${out} is left as it was)`) +
        `: lower the learning rate, or check the ${source.kind} and the loss`,
    ));
  }
  if (warmup && !span) endWarmup(warmup); // stopped during the warm-up
  // Interrupted before its first step: nothing to keep, and nothing written over the earlier outputs.
  if (stoppedBy === "interrupted" && step === stepsAtStart) throw new InterruptedError(out);
  // The checkpoint first, then the final evaluation and outputs (on the chosen weights, chooseWeights):
  // the full-image evaluation can take long, and stopping it (Ctrl-C) keeps the checkpoint. An
  // interrupted run writes the cheap outputs only.
  await save();
  let psnr = lastPsnr ?? NaN;
  let final: SourceEvaluation | undefined;
  if (stoppedBy !== "interrupted") {
    final = await evaluation(true);
    if (!final) stoppedBy = "interrupted";
    else {
      psnr = lastPsnr = final.psnr;
      if (lead) hooks.onEval?.({ step, psnr, heldOutLoss: final.heldOutLoss, weights: (await weightsNow()).used });
      if (m.ema) log(`evaluated on the ${describeWeights(await weightsNow())}`);
    }
  }
  if (pending) metrics?.log({ ...pending, psnr: final ? psnr : pending.psnr });
  metrics?.close();
  const written: Record<string, string> = { ...files, ...(lead ? await source.writeOutputs(out, final) : {}) };
  if (metrics) await (source.writePlot ? source.writePlot(files.plot, metrics.rows) : writePlot(files.plot, metrics.rows));
  const outputs = Object.fromEntries(FILES_ORDER.filter((k) => written[k] !== undefined).map((k) => [k, written[k]])) as TrainResult["files"];
  const paramsEncoding = encoding.paramCount;
  const paramsNetwork = mlp.paramCount;
  const state = trainingState(cfg);
  const result: TrainResult = {
    psnr,
    steps: step,
    seconds: trainedSeconds,
    stepsPerSecond: (step - rateFrom.step) / Math.max(1e-9, trainedSeconds - rateFrom.seconds),
    stoppedBy,
    lr: m.rates.base,
    weights: await weightsNow(),
    ...(span ? { scheduleSpan: span } : {}),
    backend: encoding.backend,
    backendReason: encoding.backendReason,
    paramsEncoding,
    paramsNetwork,
    bytesParams: encoding.grids.reduce((a, g) => a + (g.settings.precision === "f16" ? 2 : 4) * g.paramCount, 0) + 4 * paramsNetwork + 4 * encoding.logitCount,
    // params, and per parameter in f32: gradient, Adam's m and v (SGD: none), EMA (not of the
    // probing logits), an f16 encoding's master; the probe table; sparse updates' bitmap and row lists (memberTrainingBytes)
    bytesTraining:
      encoding.grids.reduce((a, g) => a + memberTrainingBytes(g, state), 0) + 4 * paramsNetwork * (2 + (state.adam ? 2 : 0) + (state.ema ? 1 : 0)),
    bytesInference: encoding.memory(2).inferenceBytes + 4 * paramsNetwork,
    ...(ranks ? { ranks: { count: N, batch: cfg.batch, globalBatch: cfg.batch * K * N } } : {}),
    ...(source.summaryFields() as Pick<TrainResult, "image" | "points" | "volume">),
    files: outputs,
  };
  if (lead) writeJsonAtomic(files.summary, { ...result, config: cfg });
  // The others wait asleep while rank 0 writes the outputs (MPI_Finalize would spin).
  await ranks?.quietBarrier();
  return result;
}

/**
 * Sparse updates over ranks: each grid's touched set (entries, and codebook rows with learned
 * probing) becomes the union of every rank's, so that every rank steps the same rows with the same
 * summed gradient (a row touched on any rank is updated on every rank), as one process with
 * --accumulate N steps the union of its micro-batches': the entries' bitmaps or'ed over the ranks
 * (one bit per entry), the codebook rows all-gathered (their order, rank after rank, matters).
 */
function unionTouched(grids: readonly HashGrid[], ranks: Ranks): void {
  for (const g of grids) {
    const own = g.touchedSet();
    ranks.allReduceOr(own.bitmap);
    g.unionTouched({ bitmap: own.bitmap, rows: g.logitCount ? ranks.allGather(own.rows) : [] });
  }
}

const finite = (v: number | undefined): number | undefined => (v !== undefined && Number.isFinite(v) ? v : undefined);

/** The base learning rate (optimizer.lr, or the default decided) and the groups' (their own, else it). */
export interface Rates {
  base: number;
  encoding: number;
  network: number;
}

/**
 * The base learning rates: each group's own, else optimizer.lr, else the default for a schedule
 * spanning `steps` on data the field can fit exactly or not (train/schedule.ts defaultLearningRate).
 */
function baseRates(cfg: TrainConfig, steps: number | undefined, exact: boolean): Rates {
  const base = cfg.optimizer.lr ?? defaultLearningRate(cfg.schedule.kind, steps, exact);
  return { base, encoding: cfg.encoding.lr ?? base, network: cfg.network.lr ?? base };
}

/** What training holds besides the parameters (the encoding's memory check, bytesTraining). */
const trainingState = (cfg: TrainConfig) => ({ adam: cfg.optimizer.kind === "adam", ema: cfg.ema.enabled, sparse: cfg.optimizer.sparse });

/** Exchanges the weights and their average; f16 parameters follow their master. */
function swapAverage(m: Model): void {
  m.ema!.swap();
  m.opt.sync();
}

/** `f` run with the EMA's weights swapped in. */
async function withAverage<T>(m: Model, f: () => T | Promise<T>): Promise<T> {
  swapAverage(m);
  try {
    return await f();
  } finally {
    swapAverage(m);
  }
}

/**
 * The EMA or the raw weights, by their mean squared errors on the source's held-out batch (a tie:
 * the EMA): the error the PSNR measures, not the training loss (relative L2 weighs dark values up
 * to 100 times more, and picked weights 0.3 dB worse). A source with no held-out batch (points)
 * keeps the EMA.
 */
async function chooseWeights(m: Model, source: DataSource): Promise<WeightsChoice> {
  if (!m.ema) return { used: "raw" };
  if (!source.heldOutMse) return { used: "ema" };
  const raw = source.heldOutMse();
  const ema = await withAverage(m, () => source.heldOutMse!());
  return { used: raw < ema ? "raw" : "ema", heldOutMse: { ema, raw } };
}

function describeWeights(w: WeightsChoice): string {
  const name = w.used === "ema" ? "EMA weights" : "raw weights";
  return w.heldOutMse ? `${name} (held-out MSE: EMA ${w.heldOutMse.ema.toExponential(3)}, raw ${w.heldOutMse.raw.toExponential(3)})` : name;
}

/** A digest of a state's arrays (the ranks compare theirs), read one at a time. */
function stateHash(arrays: Record<string, LazyArray>): string {
  const h = createHash("sha256");
  for (const [name, source] of Object.entries(arrays)) {
    const a = source.read();
    h.update(name).update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  }
  return h.digest("hex");
}

/** The model's state, as a checkpoint holds it (restore puts it back): a copy of every array. */
function snapshot(m: Model): Pick<Checkpoint, "arrays" | "meta"> {
  const { arrays, meta } = stateOf(m);
  return { arrays: Object.fromEntries(Object.entries(arrays).map(([name, a]) => [name, a.read() as Float32Array])), meta };
}

/**
 * The model's state with each array read when asked (a download of its buffer): a checkpoint
 * writes them one at a time, so at most one array is copied at once, never the whole state.
 */
function stateOf(m: Model): { arrays: Record<string, LazyArray>; meta: Record<string, unknown> } {
  const opt = m.opt.stateBuffers();
  const lazy = (b: DeviceBuffer<"f32">): LazyArray => ({ type: "f32", length: b.length, read: () => b.download() });
  // The f32 weights (an f16 encoding's master copy, not its rounded parameters), per member grid.
  const e = m.encoding;
  const arrays: Record<string, LazyArray> = {};
  for (const [i, g] of e.grids.entries()) {
    arrays[`${e.name("encoding", i)}.params`] = lazy(m.opt.master(e.name("encoding", i)));
    if (i === 0) arrays["network.params"] = lazy(m.mlp.params); // (the order a lone grid's checkpoints have)
    if (g.logitCount) arrays[`${e.name("probing", i)}.params`] = lazy(g.logits);
  }
  for (const g of opt.groups) {
    if (g.m) arrays[`optimizer.${g.name}.m`] = lazy(g.m);
    if (g.v) arrays[`optimizer.${g.name}.v`] = lazy(g.v);
  }
  for (const g of m.ema?.averages() ?? []) arrays[`ema.${g.name}`] = lazy(g.ema);
  return {
    arrays,
    meta: {
      optimizer: { step: opt.step, groups: opt.groups.map((g) => ({ name: g.name, lr: g.lr })) },
      ema: m.ema ? { decay: m.ema.decay, steps: m.ema.steps } : undefined,
    },
  };
}

function restore(m: Model, ck: Pick<Checkpoint, "arrays" | "meta">): void {
  const a = ck.arrays;
  const need = (name: string, length: number): Float32Array => {
    const v = a[name];
    if (!v || v.length !== length) throw new CheckpointError(`the checkpoint's ${name} has ${v?.length ?? 0} values, the model needs ${length}`);
    return v;
  };
  const enc = m.encoding;
  for (const [i, g] of enc.grids.entries()) {
    const name = enc.name("encoding", i);
    // (An f16 encoding's master is restored with the optimizer's state, below.)
    if (m.opt.master(name) === g.params) g.params.upload(need(`${name}.params`, g.paramCount));
    else need(`${name}.params`, g.paramCount);
  }
  m.mlp.params.upload(need("network.params", m.mlp.paramCount));
  for (const [i, g] of enc.grids.entries()) {
    if (!g.logitCount) continue;
    g.logits.upload(need(`${enc.name("probing", i)}.params`, g.logitCount));
    g.refreshProbes();
  }
  const saved = ck.meta.optimizer as { step: number; groups: { name: string; lr: number }[] };
  const state: OptimizerState = {
    step: saved.step,
    groups: saved.groups.map((g) => ({ ...g, m: a[`optimizer.${g.name}.m`], v: a[`optimizer.${g.name}.v`], master: a[`${g.name}.params`] })),
  };
  m.opt.restore(state);
  if (m.ema) {
    const e = ck.meta.ema as { decay: number; steps: number } | undefined;
    if (!e) throw new CheckpointError("the checkpoint holds no EMA state (trained with ema.enabled: false)");
    // The decay is this run's (a changed --ema applies from here on); the averages are the checkpoint's.
    const names = [...m.encoding.grids.map((_, i) => m.encoding.name("encoding", i)), "network"];
    m.ema.restore({ ...e, decay: m.ema.decay, groups: names.map((name) => ({ name, ema: a[`ema.${name}`]! })) });
  }
}

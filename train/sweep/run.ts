// Parameter-allocation sweeps (`bun run sweep`, cli/sweep.ts): train every allocation of each
// parameter budget over levels, features, table size, base resolution and growth, at a fixed step
// budget and seed, with `train()`, and record one CSV row per run plus two plots. The folder:
// plan.ts (the axes and every run of a sweep), results.ts (the CSV), plots.ts, run.ts (this: the
// runs trained, sweep.json, each run's directory), merge.ts (the shards' CSVs in one).
//
// Resumable: the CSV is rewritten atomically (temporary file + rename) after every run, so an
// interrupted or killed sweep leaves it whole; a rerun skips every configuration already in it
// and continues an interrupted run from the checkpoint train() wrote. Runs are independent, so
// `shard` splits a sweep across processes (run index % count == index) and mergeSweeps unites the
// shards' CSVs.
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { ConfigError, checkVariant } from "../../modules/hashgrid.ts";
import { UsageError } from "../../dsl/errors.ts";
import { CheckpointError } from "../checkpoint.ts";
import { mergeConfig, parseTrainConfig, type TrainConfig } from "../config.ts";
import { loadImage } from "../image.ts";
import { writeJsonAtomic } from "../outputs.ts";
import { InterruptedError, TrainError, train, type StepInfo, type TrainResult } from "../trainer.ts";
import { lockOutDir } from "../lock.ts";
import { checkAxis, describeRun, describeT, fmt, planSweep, runKey, type PlannedRun, type SweepGrid } from "./plan.ts";
import { writeSweepPlots, type SweepPlots } from "./plots.ts";
import { readSweepCsv, sweepCsvPath, writeSweepCsv, type RunStatus, type SweepRow } from "./results.ts";

/** The same configuration trained for another budget (a budget that rounds to the same T). */
const configKey = (r: Parameters<typeof runKey>[0]) => runKey({ ...r, budget: 0 });

export interface SweepOptions {
  /** The photograph (default: the bundled one). */
  image?: string;
  budgets: number[];
  grid: SweepGrid;
  steps: number;
  seed: number;
  /**
   * The trainer's settings shared by every run (network, optimizer, batch, backend, ...; the same
   * fields as `bun run train --config`), without the swept encoding fields, `seconds` or `out`.
   */
  train?: Record<string, unknown>;
  /** Output directory (the CSV, the plots, sweep.json, runs/<run>/ with each run's outputs). */
  out: string;
  /** Only the runs whose index % count == index. */
  shard?: { index: number; count: number };
  /**
   * Other CSVs of this sweep (the merged one, shards of another count): their rows of this plan's
   * runs count as done and are copied into this CSV (a rerun over another number of ranks).
   */
  resumeFrom?: string[];
  /** Keep each finished run's checkpoint (by default deleted once its row is written). */
  keepCheckpoints?: boolean;
}

export interface RunProgress {
  run: PlannedRun;
  /** 1-based position among the runs this process does. */
  position: number;
  /** Runs this process does (excluding those already in the CSV). */
  total: number;
  /** Runs still to do after this one. */
  left: number;
  /** Estimated seconds to the end of the sweep (mean time of the runs trained so far). */
  etaSeconds?: number;
}

export interface SweepHooks {
  /** When aborted, the current run stops (its checkpoint is kept for the rerun) and the sweep returns. */
  signal?: AbortSignal;
  log?(message: string): void;
  onRunStart?(p: RunProgress): void;
  onStep?(p: RunProgress, step: StepInfo): void;
  /** After each run's row is written (refused runs included). */
  onRunEnd?(p: RunProgress, row: SweepRow): void;
}

export interface SweepResult {
  /** Every row of this sweep's CSV (earlier sessions' included). */
  rows: SweepRow[];
  /** The rows of this plan's runs (the CSV may hold others: another grid in the same --out). */
  planRows: SweepRow[];
  /** The runs of this sweep (this shard's). */
  plan: PlannedRun[];
  /** How many were already in the CSV when it started. */
  alreadyDone: number;
  trained: number;
  refused: number;
  failed: number;
  interrupted: boolean;
  csv: string;
  plots?: SweepPlots;
  /** Seconds this process spent. */
  seconds: number;
}

const SWEPT = ["levels", "featuresPerLevel", "log2HashmapSize", "baseResolution", "finestResolution"] as const;
const SWEPT_FLAG: Record<string, string> = { levels: "--levels", featuresPerLevel: "--features", log2HashmapSize: "--budgets", baseResolution: "--base", finestResolution: "--finest or --per-level-scale" };

/** The trainer's configuration shared by every run (validated; swept fields at their defaults). */
export function sweepBaseConfig(opts: Pick<SweepOptions, "image" | "steps" | "seed" | "train">): TrainConfig {
  const given = { ...(opts.train ?? {}) };
  const enc = (given.encoding ?? {}) as Record<string, unknown>;
  for (const f of [...SWEPT, "perLevelScale"])
    if (enc[f] !== undefined) throw new UsageError(`encoding.${f}: swept by the sweep, not a fixed setting (give it with ${SWEPT_FLAG[f] ?? "--per-level-scale"} or in --grid)`);
  if (given.points !== undefined) throw new UsageError(`points: a sweep fits a photograph (--image); scattered points are not supported yet`);
  if (given.seconds !== undefined) throw new UsageError(`seconds: a sweep trains every run for the same number of steps (--steps); a time budget is not allowed`);
  if (given.out !== undefined) throw new UsageError(`out: a sweep puts each run in its own directory under --out; give --out instead`);
  const input = mergeConfig(given, { image: opts.image, steps: opts.steps, seed: opts.seed, evalEvery: given.evalEvery ?? 0 });
  const cfg = parseTrainConfig(input);
  if (cfg.encoding.gridType !== "hash") throw new UsageError(`encoding.gridType: ${JSON.stringify(cfg.encoding.gridType)} is not allowed in a sweep (allowed: hash; a sweep allocates hash tables)`);
  return { ...cfg, image: resolve(cfg.image) };
}

/** What sweep.json records: every fixed setting of the runs (a rerun must match it to continue). */
function manifestOf(cfg: TrainConfig): Record<string, unknown> {
  const { out: _out, encoding, ...rest } = cfg;
  const e: Record<string, unknown> = { ...encoding };
  for (const f of [...SWEPT, "perLevelScale"]) delete e[f];
  return { sweep: 1, train: JSON.parse(JSON.stringify({ ...rest, encoding: e })) };
}

function flatten(v: unknown, at = "", out: Record<string, string> = {}): Record<string, string> {
  if (v !== null && typeof v === "object" && !Array.isArray(v)) for (const [k, x] of Object.entries(v)) flatten(x, at ? `${at}.${k}` : k, out);
  else out[at] = JSON.stringify(v);
  return out;
}

/** Writes sweep.json, or checks that the one there has the same settings. */
function checkManifest(out: string, cfg: TrainConfig): void {
  const path = join(out, "sweep.json");
  const now = manifestOf(cfg);
  if (existsSync(path)) {
    let was: unknown;
    try {
      was = JSON.parse(readFileSync(path, "utf8"));
    } catch (e) {
      throw new UsageError(`${path}: not a sweep's settings (${(e as Error).message}); use another --out or delete it`);
    }
    const a = flatten((was as { train?: unknown }).train);
    const b = flatten(now.train);
    const diff = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => a[k] !== b[k]);
    if (diff.length)
      throw new UsageError(
        `${out} holds a sweep with other settings (${diff.slice(0, 6).map((k) => `${k}: ${a[k] ?? "absent"} there, ${b[k] ?? "absent"} here`).join("; ")}${diff.length > 6 ? "; ..." : ""}): continue it with the same settings, or give another --out`,
      );
    return;
  }
  writeJsonAtomic(path, now);
}

const rowOf = (r: PlannedRun, cfg: TrainConfig, status: RunStatus, reason: string, result?: TrainResult): SweepRow => ({
  // base and scale as the CSV writes them, so that a row read back equals the row written
  budget: r.budget, levels: r.levels, features: r.features, log2T: r.log2T, base: Number(fmt(r.base)), scale: Number(fmt(r.scale)),
  ...(result ? { params: result.paramsEncoding } : r.params !== undefined ? { params: r.params } : {}),
  ...(result ? { psnr: result.psnr, seconds: Number(result.seconds.toFixed(3)), stepsPerSecond: Number(result.stepsPerSecond.toFixed(2)) } : {}),
  steps: cfg.steps, seed: cfg.seed, status, reason,
});

/** The directory of a run's own outputs (train()'s reconstruction, metrics, plot, summary, checkpoint). */
export function runDir(out: string, r: PlannedRun): string {
  return join(out, "runs", `B${r.budget}-L${r.levels}-F${r.features}-T${r.log2T}-N${fmt(r.base)}-b${fmt(r.scale)}`);
}

/** Runs a sweep (or its shard), continuing the CSV in `out` when there is one. */
export async function runSweep(opts: SweepOptions, hooks: SweepHooks = {}): Promise<SweepResult> {
  const started = performance.now();
  const log = hooks.log ?? (() => {});
  const cfg = sweepBaseConfig(opts);
  const budgets = checkAxis("budgets", opts.budgets, "budgets");
  const grid: SweepGrid = {
    levels: checkAxis("levels", opts.grid.levels, "levels"),
    features: checkAxis("features", opts.grid.features, "features"),
    base: checkAxis("base", opts.grid.base, "base"),
    ...(opts.grid.scale ? { scale: checkAxis("scale", opts.grid.scale, "scale") } : {}),
    ...(opts.grid.finest ? { finest: checkAxis("finest", opts.grid.finest, "finest") } : {}),
  };
  if (opts.shard && !(Number.isInteger(opts.shard.count) && opts.shard.count >= 1 && Number.isInteger(opts.shard.index) && opts.shard.index >= 0 && opts.shard.index < opts.shard.count))
    throw new UsageError(`shard: ${opts.shard.index}/${opts.shard.count} is not allowed (allowed: i/n with 0 <= i < n)`);
  // A bad image is reported now, as the trainer reports it, not at the first run.
  await loadImage(cfg.image);
  for (const levels of grid.levels) await checkVariant({ variant: cfg.encoding.variant, dims: 2, levels }, { dims: "dims", levels: "--levels" });
  const all = planSweep(budgets, grid, cfg.encoding);
  const plan = opts.shard ? all.filter((r) => r.index % opts.shard!.count === opts.shard!.index) : all;

  try {
    mkdirSync(opts.out, { recursive: true });
    if (!statSync(opts.out).isDirectory()) throw new Error("not a directory");
  } catch (e) {
    throw new UsageError(`the out directory ${opts.out} cannot be used: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  using _lock = lockOutDir(opts.out, { shard: opts.shard, log });
  checkManifest(opts.out, cfg);
  const csv = sweepCsvPath(opts.out, opts.shard);
  const rows = existsSync(csv) ? readSweepCsv(csv) : [];
  const done = new Set(rows.map(runKey));
  const key = (r: PlannedRun) => runKey({ ...r, steps: cfg.steps, seed: cfg.seed });
  const keys = new Set(plan.map(key));
  const before = rows.length;
  for (const other of (opts.resumeFrom ?? []).filter((p) => p !== csv && existsSync(p)))
    for (const row of readSweepCsv(other))
      if (keys.has(runKey(row)) && !done.has(runKey(row))) {
        rows.push(row);
        done.add(runKey(row));
      }
  if (rows.length > before) writeSweepCsv(csv, rows);
  const todo = plan.filter((r) => !done.has(key(r)));
  const alreadyDone = plan.length - todo.length;
  log(
    `sweep: ${plan.length} runs${opts.shard ? ` (shard ${opts.shard.index}/${opts.shard.count} of ${all.length})` : ""}, ${opts.steps} steps each, seed ${cfg.seed}` +
      (alreadyDone ? `; ${alreadyDone} already in ${csv}, ${todo.length} to do` : ""),
  );

  let trained = 0;
  let refused = 0;
  let failed = 0;
  let interrupted = false;
  let trainSeconds = 0;
  let trainableLeft = todo.filter((r) => !r.refused).length;
  const append = (row: SweepRow) => {
    rows.push(row);
    writeSweepCsv(csv, rows);
  };
  for (const [k, run] of todo.entries()) {
    if (hooks.signal?.aborted) {
      interrupted = true;
      break;
    }
    const p: RunProgress = { run, position: k + 1, total: todo.length, left: todo.length - k - 1, etaSeconds: trained ? (trainSeconds / trained) * trainableLeft : undefined };
    if (run.refused) {
      const row = rowOf(run, cfg, "refused", run.refused);
      append(row);
      refused++;
      log(`refused ${describeRun(run)} (${describeT(run)}): ${run.refused}`);
      hooks.onRunEnd?.(p, row);
      continue;
    }
    hooks.onRunStart?.(p);
    const t0 = performance.now();
    const twin = rows.find((r) => r.status !== "refused" && configKey(r) === configKey({ ...run, steps: cfg.steps, seed: cfg.seed }));
    let row: SweepRow;
    if (twin) {
      row = { ...twin, budget: run.budget };
      log(`${describeRun(run)}: the same configuration as budget ${twin.budget}'s run; its result reused`);
    } else {
      const dir = runDir(opts.out, run);
      const checkpoint = join(dir, "checkpoint.ngpk");
      const runCfg = mergeConfig(cfg as unknown as Record<string, unknown>, {
        encoding: { levels: run.levels, featuresPerLevel: run.features, log2HashmapSize: run.log2T, baseResolution: run.base, finestResolution: run.finest },
        out: dir,
      });
      const trainHooks = { signal: hooks.signal, log, onStep: (s: StepInfo) => hooks.onStep?.(p, s) };
      let result: TrainResult | undefined;
      try {
        try {
          if (existsSync(checkpoint)) log(`${describeRun(run)}: continuing from ${checkpoint}`);
          result = await train(runCfg, { ...trainHooks, resume: existsSync(checkpoint) ? checkpoint : undefined });
        } catch (e) {
          if (!(e instanceof CheckpointError && existsSync(checkpoint))) throw e;
          log(`${describeRun(run)}: cannot continue from its checkpoint (${e.message}); training it from the start`);
          rmSync(checkpoint, { force: true });
          result = await train(runCfg, trainHooks);
        }
      } catch (e) {
        if (e instanceof ConfigError) row = rowOf(run, cfg, "refused", e.message.split("\n").join("; "));
        else if (e instanceof TrainError) row = rowOf(run, cfg, "failed", e.message);
        else if (e instanceof InterruptedError) {
          interrupted = true;
          log(`${describeRun(run)}: ${e.message}`);
        } else throw e;
      }
      if (interrupted) break;
      if (result?.stoppedBy === "interrupted") {
        interrupted = true;
        log(`${describeRun(run)}: interrupted at step ${result.steps}; its checkpoint ${checkpoint} is kept, and a rerun continues it`);
        break;
      }
      if (result) {
        row = rowOf(run, cfg, "ok", "", result);
        if (run.params !== undefined && run.params !== result.paramsEncoding) log(`${describeRun(run)}: the encoder counted ${run.params} parameters, the trained grid has ${result.paramsEncoding}`);
        if (!opts.keepCheckpoints) rmSync(checkpoint, { force: true });
      }
    }
    row = row!;
    append(row);
    if (row.status === "ok") trained++;
    else if (row.status === "failed") (failed++, log(`failed ${describeRun(run)}: ${row.reason}`));
    else (refused++, log(`refused ${describeRun(run)}: ${row.reason}`));
    trainSeconds += (performance.now() - t0) / 1000;
    trainableLeft--;
    hooks.onRunEnd?.(p, row);
  }
  const plots = opts.shard ? undefined : await writeSweepPlots(opts.out, rows);
  const planRows = rows.filter((r) => keys.has(runKey(r)));
  return { rows, planRows, plan, alreadyDone, trained, refused, failed, interrupted, csv, plots, seconds: (performance.now() - started) / 1000 };
}

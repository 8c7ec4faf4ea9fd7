// Parameter-allocation sweeps (`bun run sweep`, cli/sweep.ts): train every allocation of each
// parameter budget over levels, features, table size, base resolution and growth, at a fixed step
// budget and seed, with `train()`, and record one CSV row per run plus two plots.
//
// An allocation, as in the instant-ngp study (budgets 4,096 to 1,048,576 parameters on a Kodak
// photograph): for each budget B and each (levels L, features per level F) of the grid, the table
// size T = B / (L * F) rounded to the nearest power of two (log2T = round(log2(B / (L * F)))),
// crossed with the grid's base resolutions N_min and growth factors b (given directly, or derived
// from a finest resolution: b = (N_max / N_min)^(1 / (L - 1))). log2T must lie in the encoder's
// 8..24, and the encoder must accept the whole configuration; otherwise the run is recorded as
// refused with the encoder's ConfigError message. The recorded parameter count is the encoder's
// own (hashGridParamCount: coarse levels with fewer vertices than T are dense, their tables
// rounded up to a multiple of 8, so the count is usually below L * F * T).
//
// Resumable: the CSV is rewritten atomically (temporary file + rename) after every run, so an
// interrupted or killed sweep leaves it whole; a rerun skips every configuration already in it
// and continues an interrupted run from the checkpoint train() wrote. Runs are independent, so
// `shard` splits a sweep across processes (run index % count == index) and mergeSweeps unites the
// shards' CSVs.
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import type * as vl from "vega-lite";
import { parse as parseYaml } from "yaml";
import { ConfigError, checkVariant, hashGridParamCount } from "../../modules/hashgrid.ts";
import { UsageError } from "../../dsl/errors.ts";
import { readInputFile } from "../../runtime/files.ts";
import { CheckpointError } from "../checkpoint.ts";
import { DEFAULT_IMAGE, mergeConfig, parseTrainConfig, type TrainConfig } from "../config.ts";
import { loadImage, writeFileAtomic } from "../image.ts";
import { writeJsonAtomic, writeVegaLitePng } from "../outputs.ts";
import { InterruptedError, TrainError, train, type StepInfo, type TrainResult } from "../trainer.ts";
import { lockOutDir } from "../lock.ts";

// ---------------------------------------------------------------------------------------------
// The grid

/** The axes an allocation is drawn from (every list non-empty; give scale or finest, not both). */
export interface SweepGrid {
  levels: number[];
  features: number[];
  base: number[];
  /** Growth factors b between levels. */
  scale?: number[];
  /** Finest resolutions N_max (b = (N_max / N_min)^(1 / (L - 1))), when scale is not given. */
  finest?: number[];
}

/** The study's range: 2^12 to 2^20 parameters, every factor of 4. */
export const DEFAULT_BUDGETS = [4096, 16384, 65536, 262144, 1048576];

/**
 * The default grid: L in {4, 8, 16} (few coarse levels to the trainer's default 16), F in {2, 4}
 * (the trainer's 2 and the wider alternative; 1 and 8 are rarely better), N_min = 16 and the growth
 * derived from N_max = 2048 (the trainer's defaults), so every allocation spans the same range of
 * resolutions and the sweep compares only how the parameters are spent on it.
 */
export const DEFAULT_GRID: SweepGrid = { levels: [4, 8, 16], features: [2, 4], base: [16], finest: [2048] };

interface AxisRule {
  check(v: number): boolean;
  allowed: string;
}

/** What each axis (and the budgets) accepts, as the error messages say. */
export const AXES: Record<"budgets" | "levels" | "features" | "base" | "scale" | "finest", AxisRule> = {
  budgets: { check: (v) => Number.isSafeInteger(v) && v >= 1, allowed: "positive integers of parameters, e.g. 65536 or 2^16" },
  levels: { check: (v) => Number.isInteger(v) && v >= 1 && v <= 64, allowed: "integers from 1 to 64" },
  features: { check: (v) => [1, 2, 4, 8].includes(v), allowed: "1, 2, 4, 8" },
  base: { check: (v) => Number.isFinite(v) && v > 0, allowed: "numbers > 0 (the coarsest resolution N_min)" },
  scale: { check: (v) => Number.isFinite(v) && v >= 1, allowed: "numbers >= 1 (the growth factor b between levels)" },
  finest: { check: (v) => Number.isFinite(v) && v > 0, allowed: "numbers > 0 (the finest resolution N_max)" },
};
export type AxisName = keyof typeof AXES;
const GRID_FIELDS = Object.keys(AXES) as AxisName[];

const show = (v: unknown) => (typeof v === "string" ? JSON.stringify(v) : (JSON.stringify(v) ?? String(v)));

/** A number, or "2^k" (budgets); undefined when it is neither. */
function toNumber(v: unknown): number | undefined {
  if (typeof v === "number") return v;
  if (typeof v !== "string" || v.trim() === "") return undefined;
  const pow = /^\s*2\s*\^\s*(\d+)\s*$/.exec(v);
  if (pow) return 2 ** Number(pow[1]);
  const n = Number(v);
  return Number.isNaN(n) ? undefined : n;
}

/**
 * The values of one axis, checked (`where` names the flag or the file's field in errors); order
 * kept, duplicates dropped. Budgets also take "A,B,...,C": the geometric series from A with ratio
 * B / A up to C.
 */
export function checkAxis(name: AxisName, values: unknown[], where: string): number[] {
  const rule = AXES[name];
  if (values.length === 0) throw new UsageError(`${where}: needs at least one value (allowed: ${rule.allowed})`);
  const dots = values.findIndex((v) => v === "..." || v === "…");
  if (dots >= 0) {
    if (name !== "budgets") throw new UsageError(`${where}: "..." is only for budgets (a geometric series, e.g. 4096,16384,...,1048576)`);
    if (dots < 2 || dots !== values.length - 2)
      throw new UsageError(`${where}: a series is written A,B,...,C (the first two terms give the ratio), e.g. 4096,16384,...,1048576`);
    const head = checkAxis(name, values.slice(0, dots), where);
    const last = checkAxis(name, values.slice(dots + 1), where)[0]!;
    const a = head[head.length - 2]!;
    const b = head[head.length - 1]!;
    const ratio = b / a;
    if (!(ratio > 1)) throw new UsageError(`${where}: a series A,B,...,C needs B > A (got ${a}, ${b})`);
    const out = [...head];
    for (let x = b * ratio; x <= last * (1 + 1e-12); x *= ratio) out.push(Math.round(x));
    if (out[out.length - 1] !== last) throw new UsageError(`${where}: ${last} is not in the series ${a}, ${b}, ... (x${ratio} each term)`);
    return out;
  }
  const out: number[] = [];
  for (const v of values) {
    const n = toNumber(v);
    if (n === undefined || !rule.check(n)) throw new UsageError(`${where}: ${show(v)} is not allowed (allowed: ${rule.allowed})`);
    if (!out.includes(n)) out.push(n);
  }
  return out;
}

/** A comma-separated flag value as the axis's values. */
export function parseAxisFlag(name: AxisName, text: string, flag = `--${name}`): number[] {
  return checkAxis(name, text.split(",").map((s) => s.trim()), flag);
}

/** A YAML grid file: { budgets?, levels?, features?, base?, scale?, finest? }, each a list or one value. */
export function readGridFile(path: string): Partial<SweepGrid> & { budgets?: number[] } {
  const text = readInputFile(path, "grid file");
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (e) {
    throw new UsageError(`grid file ${path} is not valid YAML: ${(e as Error).message.split("\n")[0]}`);
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== "object" || Array.isArray(value))
    throw new UsageError(`grid file ${path} must hold a mapping of ${GRID_FIELDS.join(", ")}; got ${show(value)}`);
  const out: Partial<SweepGrid> & { budgets?: number[] } = {};
  for (const [k, v] of Object.entries(value)) {
    if (!(GRID_FIELDS as string[]).includes(k)) throw new UsageError(`grid file ${path}: unknown field ${show(k)} (fields: ${GRID_FIELDS.join(", ")})`);
    out[k as AxisName] = checkAxis(k as AxisName, Array.isArray(v) ? v : [v], `grid file ${path}: ${k}`);
  }
  if (out.scale && out.finest) throw new UsageError(`grid file ${path}: give scale or finest, not both`);
  return out;
}

/** A `--shard i/n` value. */
export function parseShard(text: string): { index: number; count: number } {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || !(count >= 1) || !(index < count))
    throw new UsageError(`--shard: ${show(text)} is not allowed (allowed: i/n with 0 <= i < n, e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)`);
  return { index, count };
}

// ---------------------------------------------------------------------------------------------
// The plan

/** One run of a sweep: its allocation, and the encoder's parameter count or its refusal. */
export interface PlannedRun {
  /** Position in the whole sweep (what --shard divides). */
  index: number;
  budget: number;
  levels: number;
  features: number;
  log2T: number;
  base: number;
  /** Growth factor b. */
  scale: number;
  /** The finest resolution given to the trainer (which derives b from it). */
  finest: number;
  /** The encoder's parameter count (absent when refused). */
  params?: number;
  /** The encoder's ConfigError message when it refuses the configuration. */
  refused?: string;
}

/** A number as the CSV writes it: integers exactly, others to 6 significant digits. */
export function fmt(x: number): string {
  return Number.isInteger(x) ? String(x) : String(Number(x.toPrecision(6)));
}

/** The encoding settings besides the allocation that the parameter count depends on. */
type EncodingExtras = Pick<TrainConfig["encoding"], "gridType" | "interpolation" | "precision" | "probing" | "variant">;

/** Every run of a sweep, in order: budgets, then levels, features, base resolutions, growth. */
export function planSweep(budgets: number[], grid: SweepGrid, extras?: EncodingExtras): PlannedRun[] {
  if (grid.scale && grid.finest) throw new UsageError("give scale or finest, not both");
  const growth = grid.scale ?? grid.finest ?? DEFAULT_GRID.finest!;
  const byScale = grid.scale !== undefined;
  if (!byScale)
    for (const n of growth) for (const b of grid.base) if (n < b) throw new UsageError(`finest ${n} is below base ${b}: the finest resolution must be at least the coarsest`);
  const runs: PlannedRun[] = [];
  for (const budget of [...budgets].sort((a, b) => a - b))
    for (const levels of grid.levels)
      for (const features of grid.features)
        for (const base of grid.base)
          for (const g of growth) {
            const log2T = Math.round(Math.log2(budget / (levels * features)));
            const scale = byScale ? g : levels > 1 ? Math.exp(Math.log(g / base) / (levels - 1)) : 1;
            const finest = byScale ? base * g ** (levels - 1) : g;
            const run: PlannedRun = { index: runs.length, budget, levels, features, log2T, base, scale, finest };
            try {
              run.params = hashGridParamCount({
                dims: 2, levels, featuresPerLevel: features as 1, log2HashmapSize: log2T, baseResolution: base, finestResolution: finest,
                ...(extras ? { gridType: extras.gridType as "hash", interpolation: extras.interpolation as "linear", precision: extras.precision as "f32", probing: { range: extras.probing.range, codebookSize: extras.probing.codebookSize }, variant: extras.variant } : {}),
              });
            } catch (e) {
              if (!(e instanceof ConfigError)) throw e;
              run.refused = e.message.split("\n").join("; ");
            }
            runs.push(run);
          }
  return runs;
}

/** "B=4096 L=4 F=2 T=2^9 N_min=16 b=5.04". */
export function describeRun(r: { budget: number; levels: number; features: number; log2T: number; base: number; scale: number }): string {
  return `B=${r.budget} L=${r.levels} F=${r.features} T=2^${r.log2T} N_min=${fmt(r.base)} b=${Number(r.scale.toPrecision(3))}`;
}

/** How T was chosen: "T = 4096 / (16 x 2) = 128 -> 2^7". */
export function describeT(r: { budget: number; levels: number; features: number; log2T: number }): string {
  return `T = ${r.budget} / (${r.levels} x ${r.features}) = ${fmt(r.budget / (r.levels * r.features))} -> 2^${r.log2T}`;
}

// ---------------------------------------------------------------------------------------------
// The CSV

export type RunStatus = "ok" | "refused" | "failed";

/** One CSV row: a finished run (ok), one the encoder refused, or one whose training failed. */
export interface SweepRow {
  budget: number;
  levels: number;
  features: number;
  log2T: number;
  base: number;
  scale: number;
  params?: number;
  psnr?: number;
  seconds?: number;
  stepsPerSecond?: number;
  steps: number;
  seed: number;
  status: RunStatus;
  /** Why it was refused or failed ("" when ok). */
  reason: string;
}

export const SWEEP_HEADER = "budget,levels,features,log2T,base,scale,params,psnr,seconds,steps_per_s,steps,seed,status,reason";
const COLUMNS = SWEEP_HEADER.split(",");

const cell = (x: number | undefined, f: (x: number) => string = fmt) =>
  x === undefined ? "" : Number.isFinite(x) ? f(x) : Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
const quote = (s: string) => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""').replace(/\r?\n/g, "; ")}"` : s);

export function sweepLine(r: SweepRow): string {
  return [
    fmt(r.budget), fmt(r.levels), fmt(r.features), fmt(r.log2T), fmt(r.base), fmt(r.scale), cell(r.params),
    cell(r.psnr, String), cell(r.seconds, (x) => x.toFixed(3)), cell(r.stepsPerSecond, (x) => x.toFixed(2)),
    fmt(r.steps), fmt(r.seed), r.status, quote(r.reason),
  ].join(",");
}

/** The identity of a run: everything that decides its result (the rest is fixed by sweep.json). */
export function runKey(r: { budget: number; levels: number; features: number; log2T: number; base: number; scale: number; steps: number; seed: number }): string {
  return [r.budget, r.levels, r.features, r.log2T, r.base, r.scale, r.steps, r.seed].map(fmt).join("|");
}

/** The same configuration trained for another budget (a budget that rounds to the same T). */
const configKey = (r: Parameters<typeof runKey>[0]) => runKey({ ...r, budget: 0 });

function splitCsv(line: string): string[] | undefined {
  const cells: string[] = [];
  let i = 0;
  for (;;) {
    if (line[i] === '"') {
      let s = "";
      i++;
      for (;;) {
        if (i >= line.length) return undefined;
        if (line[i] === '"') {
          if (line[i + 1] === '"') (s += '"'), (i += 2);
          else break;
        } else s += line[i++];
      }
      i++;
      cells.push(s);
      if (i === line.length) return cells;
      if (line[i] !== ",") return undefined;
      i++;
    } else {
      const j = line.indexOf(",", i);
      if (j < 0) return cells.push(line.slice(i)), cells;
      cells.push(line.slice(i, j));
      i = j + 1;
    }
  }
}

/** A sweep CSV's rows (header checked; a bad line names the file and the line). */
export function readSweepCsv(path: string): SweepRow[] {
  const text = readInputFile(path, "sweep CSV");
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  if (lines.length === 0) return [];
  if (lines[0]!.replace(/\r$/, "") !== SWEEP_HEADER) throw new UsageError(`${path}: not a sweep CSV (its first line is not "${SWEEP_HEADER}")`);
  return lines.slice(1).map((raw, k) => {
    const line = raw.replace(/\r$/, "");
    const bad = (why: string) => new UsageError(`${path}:${k + 2}: ${why}: ${JSON.stringify(line)}`);
    const cells = splitCsv(line);
    if (!cells || cells.length !== COLUMNS.length) throw bad(`not a sweep row (${COLUMNS.length} columns: ${SWEEP_HEADER})`);
    const get = (name: string) => cells[COLUMNS.indexOf(name)]!;
    const need = (name: string): number => {
      const n = get(name) === "" ? NaN : Number(get(name));
      if (!Number.isFinite(n)) throw bad(`${name} is not a number`);
      return n;
    };
    const opt = (name: string): number | undefined => {
      const s = get(name);
      if (s === "") return undefined;
      const n = s === "nan" ? NaN : s === "inf" ? Infinity : s === "-inf" ? -Infinity : Number(s);
      if (Number.isNaN(n) && s !== "nan") throw bad(`${name} is not a number`);
      return n;
    };
    const status = get("status");
    if (status !== "ok" && status !== "refused" && status !== "failed") throw bad(`status ${JSON.stringify(status)} is not ok, refused or failed`);
    const row: SweepRow = {
      budget: need("budget"), levels: need("levels"), features: need("features"), log2T: need("log2T"), base: need("base"), scale: need("scale"),
      steps: need("steps"), seed: need("seed"), status, reason: get("reason"),
    };
    const [params, psnr, seconds, rate] = [opt("params"), opt("psnr"), opt("seconds"), opt("steps_per_s")];
    if (params !== undefined) row.params = params;
    if (psnr !== undefined) row.psnr = psnr;
    if (seconds !== undefined) row.seconds = seconds;
    if (rate !== undefined) row.stepsPerSecond = rate;
    return row;
  });
}

/** The CSV written whole into a temporary file and renamed over the old one: never half written. */
export function writeSweepCsv(path: string, rows: SweepRow[]): void {
  writeFileAtomic(path, [SWEEP_HEADER, ...rows.map(sweepLine)].join("\n") + "\n");
}

// ---------------------------------------------------------------------------------------------
// Plots

const allocLabel = (r: SweepRow) => `L=${r.levels} F=${r.features} N=${fmt(r.base)} b=${Number(r.scale.toPrecision(3))}`;
const plotted = (rows: SweepRow[]) => rows.filter((r) => r.status === "ok" && r.psnr !== undefined && Number.isFinite(r.psnr));

/** The best finished run of each budget (highest PSNR), by budget. */
export function bestPerBudget(rows: SweepRow[]): SweepRow[] {
  const best = new Map<number, SweepRow>();
  for (const r of plotted(rows)) if (!best.has(r.budget) || r.psnr! > best.get(r.budget)!.psnr!) best.set(r.budget, r);
  return [...best.values()].sort((a, b) => a.budget - b.budget);
}

const byAllocation = (a: SweepRow, b: SweepRow) => a.levels - b.levels || a.features - b.features || a.base - b.base || a.scale - b.scale;

/** PSNR against allocation (levels, features, base, growth), one line per budget. */
export function allocationPlotSpec(rows: SweepRow[]): vl.TopLevelSpec {
  const ok = plotted(rows);
  const order = [...new Map([...ok].sort(byAllocation).map((r) => [allocLabel(r), true])).keys()];
  const steps = [...new Set(ok.map((r) => r.steps))];
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    background: "white",
    width: Math.max(320, 48 * order.length),
    height: 320,
    title: { text: "PSNR by allocation, one line per budget", subtitle: `${steps.join(", ")} steps; T = budget / (L x F) rounded to a power of two` },
    data: { values: ok.map((r) => ({ allocation: allocLabel(r), budget: r.budget, psnr: r.psnr, log2T: r.log2T, params: r.params })) },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "allocation", type: "ordinal", sort: order, title: "allocation (levels L, features F, base N, growth b)", axis: { labelAngle: -40 } },
      y: { field: "psnr", type: "quantitative", title: "PSNR (dB)", scale: { zero: false } },
      color: { field: "budget", type: "ordinal", title: "budget (parameters)", scale: { scheme: "viridis" } },
    },
  };
}

/** Best PSNR against the encoder's parameter count (one point per budget), over every run in grey. */
export function bestPlotSpec(rows: SweepRow[]): vl.TopLevelSpec {
  const ok = plotted(rows);
  const best = bestPerBudget(rows);
  const x = { field: "params", type: "quantitative" as const, title: "encoding parameters (log scale)", scale: { type: "log" as const } };
  const y = { field: "psnr", type: "quantitative" as const, title: "PSNR (dB)", scale: { zero: false } };
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    background: "white",
    width: 560,
    height: 320,
    title: { text: "Best PSNR against parameter count", subtitle: "line: the best allocation of each budget (labelled); grey: every run" },
    layer: [
      { data: { values: ok.map((r) => ({ params: r.params, psnr: r.psnr })) }, mark: { type: "point", color: "#bbbbbb" }, encoding: { x, y } },
      { data: { values: best.map((r) => ({ params: r.params, psnr: r.psnr, label: allocLabel(r) })) }, mark: { type: "line", point: { color: "#e45756" }, color: "#e45756" }, encoding: { x, y } },
      {
        data: { values: best.map((r) => ({ params: r.params, psnr: r.psnr, label: allocLabel(r) })) },
        mark: { type: "text", dy: -10, fontSize: 9, color: "#333333" },
        encoding: { x, y, text: { field: "label" } },
      },
    ],
  };
}

export interface SweepPlots {
  allocation: string;
  best: string;
}

/** Both plots as PNGs in `out` (undefined when no run finished). */
export async function writeSweepPlots(out: string, rows: SweepRow[]): Promise<SweepPlots | undefined> {
  if (plotted(rows).length === 0) return undefined;
  const plots = { allocation: join(out, "psnr-by-allocation.png"), best: join(out, "best-psnr-by-params.png") };
  await writeVegaLitePng(plots.allocation, allocationPlotSpec(rows));
  await writeVegaLitePng(plots.best, bestPlotSpec(rows));
  return plots;
}

// ---------------------------------------------------------------------------------------------
// Running

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
  if (cfg.encoding.gridType !== "hash") throw new UsageError(`encoding.gridType: ${show(cfg.encoding.gridType)} is not allowed in a sweep (allowed: hash; a sweep allocates hash tables)`);
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

/** The CSV of a sweep (or of one shard) in `out`. */
export function sweepCsvPath(out: string, shard?: { index: number; count: number }): string {
  return join(out, shard ? `sweep-shard-${shard.index}-of-${shard.count}.csv` : "sweep.csv");
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

// ---------------------------------------------------------------------------------------------
// Merging shards

export interface MergeResult {
  rows: SweepRow[];
  csv: string;
  plots?: SweepPlots;
  /** Rows found in more than one input (the first kept). */
  duplicates: number;
  /** Warnings: conflicting duplicates, mixed step counts or seeds. */
  warnings: string[];
}

/** The rows of several sweep CSVs (shards) in one CSV in `out`, sorted, with both plots. */
export async function mergeSweeps(csvs: string[], out: string): Promise<MergeResult> {
  if (csvs.length === 0) throw new UsageError("--merge needs at least one sweep CSV");
  const inputs = csvs.map((p) => ({ path: p, rows: readSweepCsv(p) }));
  const seen = new Map<string, { row: SweepRow; from: string }>();
  const warnings: string[] = [];
  let duplicates = 0;
  for (const { path, rows } of inputs)
    for (const row of rows) {
      const k = runKey(row);
      const had = seen.get(k);
      if (!had) {
        seen.set(k, { row, from: path });
        continue;
      }
      duplicates++;
      if (had.row.status !== row.status || had.row.psnr !== row.psnr)
        warnings.push(`${describeRun(row)} is in ${had.from} (${had.row.status}${had.row.psnr !== undefined ? ` ${had.row.psnr}` : ""}) and ${path} (${row.status}${row.psnr !== undefined ? ` ${row.psnr}` : ""}): the first kept`);
    }
  const rows = [...seen.values()].map((v) => v.row).sort((a, b) => a.budget - b.budget || byAllocation(a, b) || a.steps - b.steps || a.seed - b.seed);
  const steps = [...new Set(rows.map((r) => r.steps))];
  const seeds = [...new Set(rows.map((r) => r.seed))];
  if (steps.length > 1) warnings.push(`the rows were trained for different numbers of steps (${steps.join(", ")}): the plots mix them`);
  if (seeds.length > 1) warnings.push(`the rows were trained with different seeds (${seeds.join(", ")})`);
  try {
    mkdirSync(out, { recursive: true });
  } catch (e) {
    throw new UsageError(`the out directory ${out} cannot be used: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  using _lock = lockOutDir(out);
  const csv = sweepCsvPath(out);
  writeSweepCsv(csv, rows);
  return { rows, csv, plots: await writeSweepPlots(out, rows), duplicates, warnings };
}

/** The default image, for the command's help. */
export { DEFAULT_IMAGE };

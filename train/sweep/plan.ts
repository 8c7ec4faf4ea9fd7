// The plan of a parameter-allocation sweep (`bun run sweep`, cli/sweep.ts; run.ts runs it): the
// axes an allocation is drawn from and their checks (flags, the YAML grid file, --shard), and every
// run of a sweep, in order, with the encoder's parameter count or its refusal.
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
import { parse as parseYaml } from "yaml";
import { ConfigError, hashGridParamCount } from "../../modules/hashgrid.ts";
import { UsageError } from "../../dsl/errors.ts";
import { readInputFile } from "../../runtime/files.ts";
import type { TrainConfig } from "../config.ts";

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

/** An allocation: a budget and how it is spent (what a run's description, key and directory name). */
export interface Allocation {
  budget: number;
  levels: number;
  features: number;
  log2T: number;
  base: number;
  /** Growth factor b. */
  scale: number;
}

/** One run of a sweep: its allocation, and the encoder's parameter count or its refusal. */
export interface PlannedRun extends Allocation {
  /** Position in the whole sweep (what --shard divides). */
  index: number;
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
export function describeRun(r: Allocation): string {
  return `B=${r.budget} L=${r.levels} F=${r.features} T=2^${r.log2T} N_min=${fmt(r.base)} b=${Number(r.scale.toPrecision(3))}`;
}

/** How T was chosen: "T = 4096 / (16 x 2) = 128 -> 2^7". */
export function describeT(r: Pick<Allocation, "budget" | "levels" | "features" | "log2T">): string {
  return `T = ${r.budget} / (${r.levels} x ${r.features}) = ${fmt(r.budget / (r.levels * r.features))} -> 2^${r.log2T}`;
}

/** The identity of a run: everything that decides its result (the rest is fixed by sweep.json). */
export function runKey(r: Allocation & { steps: number; seed: number }): string {
  return [r.budget, r.levels, r.features, r.log2T, r.base, r.scale, r.steps, r.seed].map(fmt).join("|");
}

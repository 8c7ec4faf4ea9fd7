// A sweep's results: one CSV row per run (sweep.csv, or sweep-shard-i-of-n.csv for a shard),
// rewritten whole after every run (temporary file + rename, never half written) and read back with
// the file and line named in every error; the best run of each budget.
//
// The reader is written here, not taken from a CSV library: it reads what sweepLine writes (one row
// a line, reasons quoted with their line breaks folded into "; ") and names the bad line itself. The
// one CSV parser already installed (d3-dsv, through vega) accepts an unterminated quote without a
// word; a strict one (csv-parse) would be a new dependency whose errors still need mapping to the
// file and line, and which would read quoted line breaks no sweep writes.
import { join } from "node:path";
import { UsageError } from "../../dsl/errors.ts";
import { readInputFile } from "../../runtime/files.ts";
import { writeFileAtomic } from "../image.ts";
import { fmt, type Allocation } from "./plan.ts";

export type RunStatus = "ok" | "refused" | "failed";

/** One CSV row: a finished run (ok), one the encoder refused, or one whose training failed. */
export interface SweepRow extends Allocation {
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

/** One line's cells ("" in a quoted cell is a quote); undefined when its quotes are not well formed. */
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

/** The CSV of a sweep (or of one shard) in `out`. */
export function sweepCsvPath(out: string, shard?: { index: number; count: number }): string {
  return join(out, shard ? `sweep-shard-${shard.index}-of-${shard.count}.csv` : "sweep.csv");
}

/** The finished runs with a PSNR (what the plots show). */
export const plotted = (rows: SweepRow[]) => rows.filter((r) => r.status === "ok" && r.psnr !== undefined && Number.isFinite(r.psnr));

/** The best finished run of each budget (highest PSNR), by budget. */
export function bestPerBudget(rows: SweepRow[]): SweepRow[] {
  const best = new Map<number, SweepRow>();
  for (const r of plotted(rows)) if (!best.has(r.budget) || r.psnr! > best.get(r.budget)!.psnr!) best.set(r.budget, r);
  return [...best.values()].sort((a, b) => a.budget - b.budget);
}

/** Rows in the order of their allocation: levels, features, base, growth. */
export const byAllocation = (a: SweepRow, b: SweepRow) => a.levels - b.levels || a.features - b.features || a.base - b.base || a.scale - b.scale;

// Merging a sweep's shards (`bun run sweep --merge`, and rank 0 of a sweep over MPI ranks): their
// CSVs in one, sorted, duplicates dropped, with both plots.
import { mkdirSync } from "node:fs";
import { UsageError } from "../../dsl/errors.ts";
import { lockOutDir } from "../lock.ts";
import { describeRun, runKey } from "./plan.ts";
import { writeSweepPlots, type SweepPlots } from "./plots.ts";
import { byAllocation, readSweepCsv, sweepCsvPath, writeSweepCsv, type SweepRow } from "./results.ts";

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

// `bun run sweep`: parameter-allocation sweeps (train/sweep/ does the work). Trains every
// allocation of each parameter budget over the grid's levels, features, base resolutions and growth
// factors at a fixed step count and seed, and writes a CSV and two plots; an interrupted sweep
// continues where it stopped; `--shard i/n` splits it across processes (a Slurm job array) and
// `--merge` unites the shards' CSVs. Ctrl-C (or SIGTERM) stops the current run at its next
// micro-batch and keeps its checkpoint for the rerun; a second one exits at once.
import cliProgress from "cli-progress";
import { backendRequest, type BackendRequest } from "../runtime/backend.ts";
import { UsageError } from "../dsl/errors.ts";
import { ConfigError } from "../modules/options.ts";
import { DEFAULT_IMAGE, mergeConfig, namingFile, readConfigFile } from "../train/config.ts";
import { mergeSweeps, type MergeResult } from "../train/sweep/merge.ts";
import { DEFAULT_BUDGETS, DEFAULT_GRID, describeRun, describeT, fmt, parseAxisFlag, parseShard, readGridFile, type AxisName, type SweepGrid } from "../train/sweep/plan.ts";
import { bestPerBudget, sweepCsvPath, type SweepRow } from "../train/sweep/results.ts";
import { runSweep, type RunProgress, type SweepResult } from "../train/sweep/run.ts";
import { FLAGS as TRAIN_FLAGS, GROWTH_TWICE, byFlag, flagConfig, flagsNamed, optionsOf, parseFlags, type Options } from "./flags.ts";
import { runCommand } from "./run.ts";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { detachFromLauncher, openRanks, type Ranks } from "../runtime/mpi.ts";

const USAGE = `usage: bun run sweep [--image FILE] [--budgets LIST] [--grid sweep.yaml] [grid flags] [--steps N] [--seed S]
                     [--config train.yaml] [trainer flags] [--out DIR] [--shard i/n] [--keep-checkpoints] [--json]
       bun run sweep --merge a.csv b.csv ... [--out DIR] [--json]`;

/**
 * The trainer's flags a sweep passes through: not the swept encoding fields, the step and time
 * budgets, the seed or the out directory (the sweep's own), nor scattered points (it fits an image).
 */
const OWN = new Set(["steps", "seconds", "seed", "out", ...["levels", "featuresPerLevel", "log2HashmapSize", "baseResolution", "finestResolution", "perLevelScale"].map((f) => `encoding.${f}`)]);
const PASS = TRAIN_FLAGS.filter((f) => !OWN.has(f.path) && !f.path.startsWith("points."));

/** The swept axes: the trainer's flags of the same options (cli/flags.ts), each taking a list; the grid file's field. */
const GRID_FLAGS: { flag: string; axis: AxisName; help: string }[] = [
  { flag: "budgets", axis: "budgets", help: `parameter budgets B; A,B,...,C is the geometric series (ratio B/A) up to C [${DEFAULT_BUDGETS.join(",")}]` },
  { flag: "levels", axis: "levels", help: `levels L [${DEFAULT_GRID.levels.join(",")}]` },
  { flag: "features", axis: "features", help: `features per level F (1, 2, 4, 8) [${DEFAULT_GRID.features.join(",")}]` },
  { flag: "base", axis: "base", help: `coarsest resolutions N_min [${DEFAULT_GRID.base.join(",")}]` },
  { flag: "per-level-scale", axis: "scale", help: "growth factors b between levels (instead of --finest; the grid file's scale)" },
  { flag: "finest", axis: "finest", help: `finest resolutions N_max: b = (N_max / N_min)^(1 / (L - 1)) [${DEFAULT_GRID.finest!.join(",")}]` },
];

function help(): string {
  const lines = [
    USAGE,
    "",
    "Trains every allocation of each parameter budget, at a fixed number of steps and seed, on one",
    `photograph (default: the bundled ${DEFAULT_IMAGE.split("/").slice(-2).join("/")}), and writes a CSV and two plots.`,
    "",
    "An allocation (as in the instant-ngp study): for each budget B and each (L, F) of the grid, the",
    "table size T = B / (L x F) rounded to the nearest power of two (log2T = round(log2(B / (L F)))),",
    "crossed with every base resolution N_min and growth factor b of the grid. log2T must lie in the",
    "encoder's 8..24 and the encoder must accept the configuration, else the run is listed as refused",
    "with the encoder's message. The params column is the encoder's real count (coarse levels with",
    "fewer vertices than T are dense, rounded up to a multiple of 8), usually below L x F x T.",
    "The default grid spans the trainer's resolutions (N_min 16 to N_max 2048) with few to many levels",
    "and two feature widths, so that only the way the parameters are spent varies.",
    "",
    "Grid (comma-separated lists; flags override --grid, a YAML mapping of the same names, e.g.",
    "  budgets: [4096, 16384]  levels: [4, 8]  features: [2]  base: [16]  scale: [1.5, 2]):",
  ];
  const pad = 26;
  const row = (name: string, text: string) => lines.push(`  ${name.padEnd(pad)} ${text}`);
  row("--grid FILE", "YAML grid: budgets, levels, features, base, scale or finest");
  for (const g of GRID_FLAGS) row(`--${g.flag} LIST`, g.help);
  lines.push("", "Runs:");
  row("--image FILE", "the photograph [bundled]");
  row("--steps N", "optimizer steps of every run [--config's steps, else 1000]");
  row("--seed S", "seed of every run [--config's seed, else 1337]");
  row("--config FILE", "the trainer's YAML settings shared by every run (network, optimizer, batch, ...)");
  row("--out DIR", "output directory [out/sweep]");
  row("--shard i/n", "only the runs whose index % n == i (e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT);");
  row("", "its CSV is sweep-shard-i-of-n.csv, to merge with --merge; under mpirun -np N (or srun)");
  row("", "rank r runs shard r/N and rank 0 merges (kill -USR1 mpirun's pid stops every rank's run)");
  row("--keep-checkpoints", "keep each finished run's checkpoint (deleted by default once recorded)");
  row("--merge CSV...", "merge shards' CSVs into DIR/sweep.csv and draw the plots (no training)");
  row("--json", "print one JSON object as the last line");
  row("--help", "this text");
  lines.push("", "Trainer flags (as bun run train; the same for every run; full-image PSNR only at the end unless --eval-every):");
  for (const f of PASS) row(`--${f.flag}${f.kind === "bool" ? "" : f.kind === "string" ? " NAME" : " N"}`, f.help);
  lines.push(
    "",
    "Outputs in --out: sweep.csv (one row per run: budget, levels, features, log2T, base, scale, params, psnr,",
    "seconds, steps_per_s, steps, seed, status ok|refused|failed, reason), psnr-by-allocation.png (PSNR against",
    "allocation, one line per budget), best-psnr-by-params.png (best PSNR against parameter count), sweep.json",
    "(the fixed settings: a rerun must match them), runs/<run>/ (each run's train outputs).",
    "Interrupted (Ctrl-C, SIGTERM, a crash): rerun the same command; finished runs are not redone and an",
    "interrupted run continues from its checkpoint. Exit status: 0 done, 2 bad input, 130 interrupted.",
  );
  return lines.join("\n");
}

const duration = (s: number | undefined) => {
  if (s === undefined || !Number.isFinite(s)) return "-";
  const t = Math.round(s);
  return t >= 3600 ? `${Math.floor(t / 3600)}h${String(Math.floor((t % 3600) / 60)).padStart(2, "0")}m` : t >= 60 ? `${Math.floor(t / 60)}m${String(t % 60).padStart(2, "0")}s` : `${t}s`;
};

const resultLine = (r: SweepRow) =>
  r.status === "ok"
    ? `PSNR ${r.psnr!.toFixed(2)} dB, ${r.params!.toLocaleString("en")} params, ${r.seconds!.toFixed(1)} s (${r.stepsPerSecond!.toFixed(1)} steps/s)`
    : `${r.status}: ${r.reason}`;

/** Progress: a bar on a terminal, else a line per run (and one every 10 s within a long run). */
function progress(json: boolean, prefix = "") {
  const stream = { isTTY: process.stderr.isTTY && !prefix, write: (s: string) => process.stderr.write(prefix + s) };
  const quiet = (m: string) => m.startsWith("checkpoint: ") || m.startsWith("backend ");
  let backendShown = false;
  const filter = (m: string) => {
    if (m.startsWith("backend ")) {
      if (backendShown) return false;
      backendShown = true;
      return true;
    }
    return !quiet(m);
  };
  if (stream.isTTY && !json) {
    const multi = new cliProgress.MultiBar(
      { format: "{bar} {value}/{total} runs done | run {position}: {label} | step {step} | ETA {remaining}", hideCursor: true, stream: process.stderr, clearOnComplete: false },
      cliProgress.Presets.shades_classic,
    );
    let bar: cliProgress.SingleBar | undefined;
    // (not "eta": cli-progress fills that one itself, from the bar's rate)
    const payload = (p: RunProgress, step = "-") => ({ position: p.position, label: describeRun(p.run), step, remaining: duration(p.etaSeconds) });
    return {
      log: (m: string) => filter(m) && (bar ? multi.log(`${m}\n`) : stream.write(`${m}\n`)),
      start(p: RunProgress) {
        if (!bar) bar = multi.create(p.total, p.position - 1, payload(p));
        else bar.update(p.position - 1, payload(p));
      },
      step(p: RunProgress, s: { step: number; steps: number }) {
        bar?.update(p.position - 1, payload(p, `${s.step}/${s.steps}`));
      },
      end(p: RunProgress, row: SweepRow) {
        if (!bar) bar = multi.create(p.total, 0, payload(p));
        if (row.status === "ok") multi.log(`${describeRun(p.run)}: ${resultLine(row)}\n`);
        bar.update(p.position, payload(p, "done"));
      },
      stop: () => multi.stop(),
    };
  }
  let last = 0;
  return {
    log: (m: string) => !json && filter(m) && stream.write(`${m}\n`),
    start(p: RunProgress) {
      last = performance.now();
      if (!json) stream.write(`run ${p.position}/${p.total} (${p.left} left after it, ETA ${duration(p.etaSeconds)}): ${describeRun(p.run)}\n`);
    },
    step(_p: RunProgress, s: { step: number; steps: number; stepsPerSecond: number }) {
      if (json || performance.now() - last < 10000) return;
      last = performance.now();
      stream.write(`  step ${s.step}/${s.steps} (${s.stepsPerSecond.toFixed(1)} steps/s)\n`);
    },
    end(_p: RunProgress, row: SweepRow) {
      if (!json && row.status !== "refused") stream.write(`  ${resultLine(row)}\n`);
    },
    stop: () => {},
  };
}

function summary(rows: SweepRow[]): string[] {
  const lines: string[] = [];
  const best = bestPerBudget(rows);
  if (best.length) {
    lines.push("best allocation per budget:", `  ${"budget".padStart(9)} ${"params".padStart(10)} ${"PSNR".padStart(7)}  allocation`);
    for (const r of best) lines.push(`  ${String(r.budget).padStart(9)} ${r.params!.toLocaleString("en").padStart(10)} ${r.psnr!.toFixed(2).padStart(7)}  L=${r.levels} F=${r.features} T=2^${r.log2T} N_min=${fmt(r.base)} b=${Number(r.scale.toPrecision(3))}`);
  }
  const refused = rows.filter((r) => r.status !== "ok");
  if (refused.length) {
    lines.push(`not trained (${refused.length}):`);
    for (const r of refused) lines.push(`  ${r.status} ${describeRun(r)}${r.status === "refused" ? ` (${describeT(r)})` : ""}: ${r.reason}`);
  }
  return lines;
}

const rowJson = (r: SweepRow) => ({
  budget: r.budget, levels: r.levels, features: r.features, log2T: r.log2T, base: r.base, scale: r.scale,
  params: r.params ?? null, psnr: r.psnr ?? null, seconds: r.seconds ?? null, steps_per_s: r.stepsPerSecond ?? null, steps: r.steps, seed: r.seed, status: r.status, reason: r.reason,
});

function showMerged(m: MergeResult, json: boolean, headline: string, extra: Record<string, unknown> = {}): void {
  for (const w of m.warnings) console.error(`warning: ${w}`);
  if (json) console.log(JSON.stringify({ ...extra, csv: m.csv, plots: m.plots ?? null, rows: m.rows.length, duplicates: m.duplicates, best: bestPerBudget(m.rows).map(rowJson), warnings: m.warnings }));
  else {
    console.log(headline);
    for (const l of summary(m.rows)) console.log(l);
    console.log(`outputs: ${m.csv}${m.plots ? `, ${m.plots.allocation}, ${m.plots.best}` : " (no finished run to plot)"}`);
  }
}

/** The shard CSVs in `out` (any count's). */
function shardCsvs(out: string): string[] {
  return existsSync(out) ? readdirSync(out).filter((name) => /^sweep-shard-\d+-of-\d+\.csv$/.test(name)).map((name) => join(out, name)) : [];
}

/**
 * The end of a sweep over MPI ranks, on every rank: a barrier (asleep: a rank done early does not
 * take a core from the others), the counts summed; rank 0 merges the ranks' CSVs into sweep.csv
 * and the plots, as --merge, unless a rank was interrupted (a rerun continues every shard).
 */
async function gatherRanks(ranks: Ranks, result: SweepResult, out: string, json: boolean): Promise<number> {
  await ranks.quietBarrier();
  const rows = result.planRows;
  const counts = new Int32Array([result.plan.length, result.alreadyDone, result.trained, rows.filter((r) => r.status === "refused").length, rows.filter((r) => r.status === "failed").length, result.plan.length - rows.length, result.interrupted ? 1 : 0]);
  ranks.allReduce(counts, "sum");
  const [runs, already, trained, refused, failed, left, interrupted] = counts as unknown as number[];
  if (ranks.rank === 0) {
    const line = `sweep over ${ranks.size} ranks: ${runs} runs; ${already} already done, ${trained} trained now, ${refused} refused, ${failed} failed${left ? `, ${left} left` : ""} (${duration(result.seconds)} on rank 0)`;
    if (interrupted) {
      if (json) console.log(JSON.stringify({ ranks: ranks.size, runs, already_done: already, trained, refused, failed, left, interrupted: true }));
      else console.log(`${line}\ninterrupted on ${interrupted} rank${interrupted === 1 ? "" : "s"}: rerun the same command to continue (${left} runs left)`);
    } else {
      // (a rank with no run of its own, more ranks than runs, has no CSV)
      const shards = Array.from({ length: ranks.size }, (_, r) => sweepCsvPath(out, { index: r, count: ranks.size })).filter((csv) => existsSync(csv));
      showMerged(await mergeSweeps(shards, out), json, line, { ranks: ranks.size, runs, already_done: already, trained, refused, failed, left, interrupted: false });
    }
  }
  // (MPI_Finalize waits for rank 0's merge; if that fails, rank 0 exits without it and the launcher ends the job.)
  ranks.close();
  return interrupted ? 130 : 0;
}

export async function main(argv: string[]): Promise<number> {
  const options: Options = {
    image: { type: "string" }, grid: { type: "string" }, steps: { type: "string" }, seed: { type: "string" }, config: { type: "string" },
    out: { type: "string" }, shard: { type: "string" }, merge: { type: "boolean" }, "keep-checkpoints": { type: "boolean" }, json: { type: "boolean" }, help: { type: "boolean" },
  };
  for (const g of GRID_FLAGS) options[g.flag] = { type: "string" };
  Object.assign(options, optionsOf(PASS));
  const { values, positionals } = parseFlags(argv, options, { positionals: true, usage: `${USAGE}\n(--help lists the options)` });
  if (values.help) return console.log(help()), 0;
  const json = values.json === true;
  const set = new Set(Object.keys(values).filter((k) => values[k] !== undefined));
  const out = typeof values.out === "string" ? values.out : "out/sweep";
  let bar = progress(json);
  try {
    if (values.merge) {
      const training = [...set].filter((k) => !["merge", "out", "json"].includes(k));
      if (training.length) throw new UsageError(`--merge takes only CSV files, --out and --json (not ${training.map((k) => `--${k}`).join(", ")})`);
      const m = await mergeSweeps(positionals, out);
      showMerged(m, json, `merged ${positionals.length} CSVs: ${m.rows.length} runs${m.duplicates ? ` (${m.duplicates} duplicates dropped)` : ""}`);
      return 0;
    }
    if (positionals.length) throw new UsageError(`unexpected argument${positionals.length > 1 ? "s" : ""} ${positionals.join(" ")} (the image is --image FILE; CSV files go with --merge)`);

    const file = typeof values.grid === "string" ? readGridFile(values.grid) : {};
    const axis = (g: (typeof GRID_FLAGS)[number]) => (typeof values[g.flag] === "string" ? parseAxisFlag(g.axis, values[g.flag] as string, `--${g.flag}`) : undefined);
    const fromFlags = Object.fromEntries(GRID_FLAGS.map((g) => [g.axis, axis(g)]).filter(([, v]) => v !== undefined)) as Partial<Record<AxisName, number[]>>;
    if (fromFlags.scale && fromFlags.finest) throw new UsageError(GROWTH_TWICE);
    // A growth axis from the flags replaces the file's (scale and finest are one axis).
    const growthFile = fromFlags.scale || fromFlags.finest ? {} : { scale: file.scale, finest: file.finest };
    const grid: SweepGrid = {
      levels: fromFlags.levels ?? file.levels ?? DEFAULT_GRID.levels,
      features: fromFlags.features ?? file.features ?? DEFAULT_GRID.features,
      base: fromFlags.base ?? file.base ?? DEFAULT_GRID.base,
      ...(fromFlags.scale ? { scale: fromFlags.scale } : fromFlags.finest ? { finest: fromFlags.finest } : growthFile.scale ? { scale: growthFile.scale } : { finest: growthFile.finest ?? DEFAULT_GRID.finest }),
    };
    const budgets = fromFlags.budgets ?? file.budgets ?? DEFAULT_BUDGETS;
    const trainFile = typeof values.config === "string" ? readConfigFile(values.config) : {};
    const trainer = mergeConfig(trainFile, flagConfig(values, PASS));
    trainer.backend = backendRequest(values.backend as string | undefined, trainer.backend as BackendRequest | undefined);
    const own = flagConfig(values, flagsNamed(["steps", "seed"])); // integers, as the trainer's flags
    const int = (flag: "steps" | "seed", fallback: number, min: number, max: number): number => {
      const where = own[flag] !== undefined ? `--${flag}` : `${flag} (in --config)`;
      const n = own[flag] ?? trainer[flag];
      if (n === undefined) return fallback;
      if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) throw new UsageError(`${where}: ${JSON.stringify(n)} is not allowed (allowed: an integer from ${min} to ${max})`);
      return n;
    };
    const steps = int("steps", 1000, 1, 1e9);
    const seed = int("seed", 1337, 0, 2 ** 32 - 1);
    delete trainer.steps;
    delete trainer.seed;
    let shard = typeof values.shard === "string" ? parseShard(values.shard) : undefined;
    const image = typeof values.image === "string" ? values.image : undefined;
    // Under mpirun or srun, rank r of N is shard r/N; rank 0 merges once every rank is done.
    const ranks = await openRanks();
    let resumeFrom: string[] | undefined;
    if (ranks.size > 1) {
      if (shard) throw new UsageError(`--shard ${values.shard}: not with ${ranks.size} MPI ranks, which split the sweep themselves (rank r runs shard r/${ranks.size})`);
      shard = { index: ranks.rank, count: ranks.size };
      // Each run trains in one rank: its compilers and its own openRanks() see one process.
      detachFromLauncher();
      ranks.agree(JSON.stringify([image, budgets, grid, steps, seed, trainer, out]), "sweep (flags, --config or --grid)");
      resumeFrom = [sweepCsvPath(out), ...shardCsvs(out)];
      bar = progress(json, `rank ${ranks.rank}/${ranks.size}: `);
    }

    const controller = new AbortController();
    let interrupts = 0;
    const onSignal = (sig: string) => {
      if (++interrupts > 1) process.exit(130);
      process.stderr.write(`\n${ranks.size > 1 ? `rank ${ranks.rank}/${ranks.size}: ` : ""}${sig}: stopping the current run after this micro-batch and keeping its checkpoint (again to quit at once)\n`);
      controller.abort();
    };
    process.on("SIGINT", () => onSignal("SIGINT"));
    process.on("SIGTERM", () => onSignal("SIGTERM"));
    // Open MPI's mpirun passes SIGUSR1 on to every rank at once; on SIGINT or SIGTERM it sends
    // SIGTERM to every rank odls_base_sigkill_timeout seconds later and SIGKILL as long after (docs/distributed.md).
    if (ranks.size > 1) process.on("SIGUSR1", () => onSignal("SIGUSR1"));

    let result;
    try {
      result = await runSweep(
        { image, budgets, grid, steps, seed, train: trainer, out, shard, resumeFrom, keepCheckpoints: values["keep-checkpoints"] === true },
        { signal: controller.signal, log: bar.log, onRunStart: bar.start, onStep: bar.step, onRunEnd: bar.end },
      );
    } catch (e) {
      // (a fixed setting the sweep refuses, from --config, is a UsageError naming the field)
      if (e instanceof ConfigError || e instanceof UsageError) e.message = namingFile(byFlag(e.message, set, PASS), values.config as string | undefined, trainFile);
      throw e;
    }
    bar.stop();
    if (ranks.size > 1) return await gatherRanks(ranks, result, out, json);
    const rows = result.planRows;
    if (json) {
      console.log(JSON.stringify({
        csv: result.csv, plots: result.plots ?? null, runs: result.plan.length, already_done: result.alreadyDone, trained: result.trained, refused: rows.filter((r) => r.status === "refused").length,
        failed: rows.filter((r) => r.status === "failed").length, left: result.plan.length - rows.length, interrupted: result.interrupted, seconds: result.seconds,
        best: bestPerBudget(rows).map(rowJson), not_trained: rows.filter((r) => r.status !== "ok").map(rowJson),
      }));
    } else {
      const left = result.plan.length - rows.length;
      console.log(
        `sweep${shard ? ` shard ${shard.index}/${shard.count}` : ""}: ${result.plan.length} runs; ${result.alreadyDone} already done, ${result.trained} trained now, ` +
          `${rows.filter((r) => r.status === "refused").length} refused, ${rows.filter((r) => r.status === "failed").length} failed${left ? `, ${left} left` : ""} (${duration(result.seconds)})`,
      );
      for (const l of summary(rows)) console.log(l);
      console.log(`outputs: ${result.csv}${result.plots ? `, ${result.plots.allocation}, ${result.plots.best}` : shard ? ` (merge the shards with: bun run sweep --merge ${out}/sweep-shard-*.csv --out ${out})` : " (no finished run to plot)"}`);
      if (result.interrupted) console.log(`interrupted: rerun the same command to continue (${left} runs left)`);
    }
    return result.interrupted ? 130 : 0;
  } catch (e) {
    bar.stop();
    throw e;
  }
}

if (import.meta.main) await runCommand(main);

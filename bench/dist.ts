// `bun run bench:dist [--json] [--image path] [--steps N] [--batch B] [--rounds R] [--log2-table T] [--sparse-updates] [--earth4d-step-s S]`
//
// Data-parallel training on MPI (docs/distributed.md), measured on this machine and modelled on many.
//
// Measured, in one run: the same training (train()'s defaults on a photograph, CPU backend) as
// 1 rank x 2 threads (one process, --accumulate 2, OMP_NUM_THREADS=2) and as 2 ranks x 1 thread
// (mpirun -np 2 --bind-to none, OMP_NUM_THREADS=1, batch B each): both take 2 B samples a step.
// Each run is a child process (this script with --worker) that times its steps and, with ranks,
// the gradients' all-reduce (Ranks.allReduceSum) and the step's small reduction (which waits for
// the slower rank). Printed: samples per second of each, the all-reduce's share of the 2-rank
// step, and whether the results are equal (the loss at every step within 1e-5 relative, and how
// far apart the final checkpoints are; the ranks' states are compared bit for bit by the trainer
// itself at each checkpoint). The runs alternate (--rounds), so that a load that comes and goes weighs on both.
//
// Modelled: N nodes, each running the 1-rank step (t_c, measured here), joined by a ring
// all-reduce of the gradient, t_ar = 2 (N - 1) / N x bytes / link (10, 25, 100, 400 Gb/s; the
// latency of its 2 (N - 1) messages left out): the scaling efficiency t_c / (t_c + t_ar) for
// N = 2 .. 64, at the measured configuration and at the Earth4D preset (its parameter count from
// `bun run params --encoding-preset earth4d --json`; its step time bench/earth4d.ts's measured one,
// or --earth4d-step-s: training it takes 20 GiB and minutes of builds, so it is not run here).
// Without MPI or mpirun the 2-rank run is skipped (saying why) and the model still printed.
// With --json the last line is one object with every figure.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { detachFromLauncher, findMpi, openRanks, type Ranks } from "../runtime/mpi.ts";
import { findCxx } from "../runtime/toolchain.ts";
import { largestRelative, readCheckpoint } from "../train/checkpoint.ts";
import type { TrainConfigInput } from "../train/config.ts";
import { train } from "../train/trainer.ts";
import { benchArgs } from "./args.ts";
import { BusyMeter, cpuInfo, loadReport, median } from "./machine.ts";

const ROOT = resolve(import.meta.dir, "..");
const USAGE = `usage: bun run bench:dist [--json] [--image path] [--steps N] [--batch B] [--rounds R] [--log2-table T] [--sparse-updates] [--earth4d-step-s S]
  --image path        the photograph trained (default data/astronaut.png)
  --steps N           measured steps per run, after 2 of warm-up (default 10)
  --batch B           samples per micro-batch and rank (default: the trainer's, 65536)
  --rounds R          runs of each layout, alternating (default 2)
  --log2-table T      the grid's table size (default: the trainer's, 19)
  --sparse-updates    train with sparse updates (the ranks or their touched bitmaps each step: timed)
  --earth4d-step-s S  Earth4D's step time on one node for the model (default: bench/earth4d.ts's measurement, below)
  --json              print every figure as one JSON object, the last line`;

const WARMUP = 2;
/** Link speeds of the model, Gb/s. */
export const LINKS_GBPS = [10, 25, 100, 400];
export const NODES = [2, 4, 8, 16, 32, 64];
/**
 * Earth4D's step on this machine: bench/earth4d.ts, 7 December 2026, idle, batch 16384, sparse
 * updates, 20 steps with 4 evaluations: 0.306 steps/s (docs/encoding.md, "Earth4D on one machine").
 */
export const EARTH4D_STEP = { seconds: 1 / 0.306, batch: 16384, source: "bench/earth4d.ts on this machine (7 Dec 2026, idle: 0.306 steps/s at batch 16384, sparse updates, evaluations included; docs/encoding.md)" };

// ---------------------------------------------------------------------------------------------
// The model

/** Seconds of a ring all-reduce of `bytes` over N nodes on a link of `gbps` Gb/s (bandwidth term only). */
export const ringSeconds = (bytes: number, nodes: number, gbps: number): number => (nodes === Infinity ? 2 : (2 * (nodes - 1)) / nodes) * bytes * 8 / (gbps * 1e9);

export interface ModelRow {
  gbps: number;
  /** Scaling efficiency t_c / (t_c + t_ar) per node count (NODES). */
  efficiency: number[];
  /** The all-reduce's seconds per node count. */
  allReduceSeconds: number[];
  /** The fewest nodes (of NODES) at which the all-reduce takes longer than the step's compute; null: none. */
  dominatesFrom: number | null;
}

/** Efficiency of N nodes of step `stepSeconds` exchanging `bytes` per step, per link speed. */
export function scalingModel(stepSeconds: number, bytes: number): ModelRow[] {
  return LINKS_GBPS.map((gbps) => {
    const allReduceSeconds = NODES.map((n) => ringSeconds(bytes, n, gbps));
    return {
      gbps,
      allReduceSeconds,
      efficiency: allReduceSeconds.map((t) => stepSeconds / (stepSeconds + t)),
      dominatesFrom: NODES.find((_, i) => allReduceSeconds[i]! > stepSeconds) ?? null,
    };
  });
}

/**
 * Sparse gradients instead: each rank sends the entries its batch touched (an index and F values,
 * at most `touched` entries) to every other (an all-gather: (N - 1) x that per node), against the
 * dense ring's 2 (N - 1) / N x bytes: smaller below N = 2 x dense / sparse nodes.
 */
export function sparseCrossing(denseBytes: number, touched: number, features: number): { bytes: number; nodes: number } {
  const bytes = touched * 4 * (1 + features);
  return { bytes, nodes: (2 * denseBytes) / bytes };
}

function printModel(name: string, stepSeconds: number, bytes: number, rows: ModelRow[], log: (s: string) => void): void {
  log(`${name}: step ${(1000 * stepSeconds).toFixed(0)} ms on one node, all-reduce of ${(bytes / 1e6).toFixed(1)} MB per step; scaling efficiency t_c / (t_c + t_ar):`);
  log(`  link       ${NODES.map((n) => `${n} nodes`.padStart(9)).join("")}   all-reduce at 64   dominates (t_ar > t_c)`);
  for (const r of rows)
    log(
      `  ${`${r.gbps} Gb/s`.padEnd(9)}  ${r.efficiency.map((e) => `${(100 * e).toFixed(0)}%`.padStart(9)).join("")}   ${`${(1000 * r.allReduceSeconds.at(-1)!).toFixed(0)} ms`.padStart(16)}   ` +
        (r.dominatesFrom === null ? `never (at most ${(1000 * ringSeconds(bytes, Infinity, r.gbps)).toFixed(0)} ms)` : `from ${r.dominatesFrom} nodes`),
    );
  // The step below which the all-reduce dominates, per link (N large: 2 x bytes / link).
  log(`  the all-reduce takes longer than the step once a node's step is under ${LINKS_GBPS.map((g) => `${(1000 * ringSeconds(bytes, Infinity, g)).toFixed(1)} ms (${g} Gb/s)`).join(", ")}`);
}

// ---------------------------------------------------------------------------------------------
// The measured runs

interface WorkerResult {
  ranks: number;
  /** Per measured step (warm-up left out): its milliseconds, the gradients' all-reduce, the wait in the step's small reduction. */
  stepMs: number[];
  reduceMs: number[];
  waitMs: number[];
  /** Sparse updates: the touched sets' exchange per step (bitmaps or'ed, rows all-gathered), and the bytes this rank sent. */
  gatherMs: number[];
  gatherBytes: number[];
  /** Bytes all-reduced per step (0: one process). */
  reduceBytes: number;
  params: number;
  checkpoint: string;
  metrics: string;
  encoding: { levels: number; featuresPerLevel: number };
}

/** The child: train() with `config`, timing each step and (with ranks) the all-reduces; rank 0 prints one JSON line. */
async function worker(spec: string): Promise<number> {
  const { config } = JSON.parse(spec) as { config: TrainConfigInput & { out: string } };
  const ranks = await openRanks();
  const t = { reduce: 0, wait: 0, gather: 0, bytes: 0, gatherBytes: 0 };
  const timedCall = <A extends unknown[], R>(f: (...a: A) => R, into: "reduce" | "wait" | "gather", bytes?: (...a: A) => number) => (...a: A) => {
    const s = performance.now();
    const r = f(...a);
    t[into] += performance.now() - s;
    if (bytes) t[into === "gather" ? "gatherBytes" : "bytes"] += bytes(...a);
    return r;
  };
  // The trainer's all-reduce calls timed; every other member the Ranks' own (bound: its fields are private).
  const timed = new Proxy(ranks, {
    get(target, p) {
      if (p === "allReduceSum") return timedCall(target.allReduceSum.bind(target), "reduce", (d) => 4 * d.length);
      if (p === "allReduce") return timedCall(target.allReduce.bind(target), "wait");
      // Sparse updates: the touched sets' exchange, the bitmaps' or and the codebook rows' all-gather (the bytes this rank sends).
      if (p === "allReduceOr") return timedCall(target.allReduceOr.bind(target), "gather", (d) => 4 * d.length);
      if (p === "allGather") return timedCall(target.allGather.bind(target), "gather", (d) => 4 * d.length);
      const v = Reflect.get(target, p, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  }) as Ranks;
  const out: Omit<WorkerResult, "params" | "checkpoint" | "metrics" | "encoding"> = { ranks: ranks.size, stepMs: [], reduceMs: [], waitMs: [], gatherMs: [], reduceBytes: 0, gatherBytes: [] };
  let last: number | undefined;
  let steps = 0;
  const result = await train(config, {
    ranks: timed,
    onStep() {
      const now = performance.now();
      if (last !== undefined && ++steps > WARMUP - 1) {
        out.stepMs.push(now - last);
        out.reduceMs.push(t.reduce);
        out.waitMs.push(t.wait);
        out.gatherMs.push(t.gather);
        out.gatherBytes.push(t.gatherBytes);
        out.reduceBytes = t.bytes;
      }
      last = now;
      [t.reduce, t.wait, t.gather, t.bytes, t.gatherBytes] = [0, 0, 0, 0, 0];
    },
  });
  ranks.close();
  if (ranks.rank !== 0) return 0;
  const ck = await readCheckpoint(result.files.checkpoint);
  const enc = (ck.config as { encoding: { levels: number; featuresPerLevel: number } }).encoding;
  const r: WorkerResult = { ...out, params: result.paramsEncoding + result.paramsNetwork, checkpoint: result.files.checkpoint, metrics: result.files.metrics, encoding: { levels: enc.levels, featuresPerLevel: enc.featuresPerLevel } };
  console.log(JSON.stringify(r));
  return 0;
}

/** mpirun's arguments for `ranks` local ranks: root needs --allow-run-as-root; each rank its cores (--bind-to none). */
function mpirunArgs(mpirun: string, ranks: number): string[] {
  return [mpirun, ...(process.getuid?.() === 0 ? ["--allow-run-as-root"] : []), "--oversubscribe", "--bind-to", "none", "-np", String(ranks)];
}

async function runWorker(config: TrainConfigInput, layout: { ranks: number; threads: number; mpirun?: string }): Promise<WorkerResult> {
  const command = [process.execPath, join(import.meta.dir, "dist.ts"), "--worker", JSON.stringify({ config })];
  // Without a launcher's variables (the bench itself started under mpirun): the child is its own job.
  const env: Record<string, string | undefined> = { ...process.env, OMP_NUM_THREADS: String(layout.threads) };
  detachFromLauncher(env);
  const proc = Bun.spawn(layout.ranks > 1 ? [...mpirunArgs(layout.mpirun!, layout.ranks), ...command] : command, {
    env,
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const line = stdout.trim().split("\n").findLast((l) => l.startsWith("{"));
  if (code !== 0 || !line) throw new Error(`the ${layout.ranks} rank x ${layout.threads} thread run exited with status ${code}: ${stderr.trim().split("\n").slice(-5).join(" | ")}`);
  return JSON.parse(line) as WorkerResult;
}

const losses = (metrics: string) => readFileSync(metrics, "utf8").trim().split("\n").slice(1).map((l) => Number(l.split(",")[1]));
/** Two layouts train the same when every step's loss agrees within this (relative). */
const LOSS_TOLERANCE = 1e-5;

interface Layout {
  name: string;
  stepMs: number;
  samplesPerSecond: number;
  reduceMs?: number;
  waitMs?: number;
  reduceShare?: number;
  gatherMs?: number;
  gatherBytes?: number;
}

function summarize(name: string, runs: WorkerResult[], samplesPerStep: number): Layout {
  const stepMs = median(runs.flatMap((r) => r.stepMs));
  const base = { name, stepMs, samplesPerSecond: (1000 * samplesPerStep) / stepMs };
  if (runs[0]!.ranks === 1) return base;
  const reduceMs = median(runs.flatMap((r) => r.reduceMs));
  const gather = runs[0]!.gatherBytes.some((b) => b > 0) ? { gatherMs: median(runs.flatMap((r) => r.gatherMs)), gatherBytes: median(runs.flatMap((r) => r.gatherBytes)) } : {};
  return { ...base, reduceMs, waitMs: median(runs.flatMap((r) => r.waitMs)), reduceShare: median(runs.flatMap((r) => r.reduceMs.map((m, i) => m / r.stepMs[i]!))), ...gather };
}

/** The flags' values, checked: an error names the flag. */
function parse(a: { steps?: string; batch?: string; rounds?: string; "log2-table"?: string; "earth4d-step-s"?: string }) {
  const number = (flag: string, v: string | undefined, ok: (x: number) => boolean, allowed: string): number | undefined => {
    if (v === undefined) return undefined;
    const x = Number(v);
    if (!ok(x)) throw new Error(`--${flag}: ${JSON.stringify(v)} is not ${allowed}`);
    return x;
  };
  const int = (flag: keyof typeof a, lo: number, hi: number) => number(flag, a[flag], (x) => Number.isInteger(x) && x >= lo && x <= hi, `an integer in [${lo}, ${hi}]`);
  return {
    steps: int("steps", 1, 10_000) ?? 10,
    batch: int("batch", 1, 1 << 24),
    rounds: int("rounds", 1, 100) ?? 2,
    log2Table: int("log2-table", 8, 24),
    earth4dStep: number("earth4d-step-s", a["earth4d-step-s"], (x) => x > 0 && x < 1e6, "a number of seconds > 0") ?? EARTH4D_STEP.seconds,
  };
}

async function main(): Promise<number> {
  const options = {
    json: { type: "boolean" }, image: { type: "string" }, steps: { type: "string" }, batch: { type: "string" }, rounds: { type: "string" },
    "log2-table": { type: "string" }, "earth4d-step-s": { type: "string" }, "sparse-updates": { type: "boolean" }, worker: { type: "string" },
  } as const;
  const a = benchArgs(USAGE, options, { prefix: "bench:dist: " });
  if (typeof a === "number") return a;
  if (a.worker !== undefined) return await worker(a.worker);
  let o: ReturnType<typeof parse>;
  try {
    o = parse(a);
  } catch (e) {
    return console.error(`bench:dist: ${(e as Error).message}\n${USAGE}`), 2;
  }
  const { steps, batch, rounds, log2Table, earth4dStep } = o;
  const image = resolve(a.image ?? join(ROOT, "data/astronaut.png"));
  const cxx = findCxx();
  if (!cxx.tool) return console.error(`bench:dist: needs a C++ compiler for the CPU backend: ${cxx.reason}`), 2;

  const log = (s: string) => console.log(s);
  const cpu = cpuInfo(cxx.tool.path);
  log(`CPU: ${cpu.model} (${cpu.family}), ${cpu.cpus} logical CPUs; -march=native = ${cpu.march}`);
  const mpirun = Bun.which("mpirun");
  const mpi = findMpi();
  const noRanks = !mpi.mpi ? mpi.reason : !mpirun ? "mpirun is not on PATH" : undefined;
  log(`MPI: ${noRanks ? `none (${noRanks}): the 2-rank run is skipped` : `${mpi.reason}; ${mpirun}`}`);

  const dir = mkdtempSync(join(tmpdir(), "bench-dist-"));
  const started = performance.now();
  const busy = new BusyMeter();
  try {
    const config = (accumulate: number, out: string): TrainConfigInput => ({
      image, backend: "cpu", steps: steps + WARMUP, evalEvery: 0, seed: 1, accumulate, out,
      ...(batch ? { batch } : {}), ...(log2Table ? { encoding: { log2HashmapSize: log2Table } } : {}), ...(a["sparse-updates"] ? { optimizer: { sparse: true } } : {}),
    });
    log(`training ${image} (train()'s defaults${batch ? `, batch ${batch}` : ""}${log2Table ? `, 2^${log2Table} table` : ""}${a["sparse-updates"] ? ", sparse updates" : ""}), ${steps} steps after ${WARMUP} of warm-up, ${rounds} round${rounds === 1 ? "" : "s"}:`);
    const one: WorkerResult[] = [];
    const two: WorkerResult[] = [];
    for (let r = 0; r < rounds; r++) {
      busy.start();
      one.push(await runWorker(config(2, join(dir, `one-${r}`)), { ranks: 1, threads: 2 }));
      if (!noRanks) two.push(await runWorker(config(1, join(dir, `two-${r}`)), { ranks: 2, threads: 1, mpirun: mpirun! }));
      busy.stop();
    }
    const perStep = 2 * (batch ?? 65536);
    const a1 = summarize("1 rank x 2 threads (--accumulate 2)", one, perStep);
    const a2 = two.length ? summarize("2 ranks x 1 thread", two, perStep) : undefined;
    for (const l of [a1, ...(a2 ? [a2] : [])])
      log(
        `  ${`${l.name}:`.padEnd(38)} step ${l.stepMs.toFixed(0)} ms, ${Math.round(l.samplesPerSecond).toLocaleString("en")} samples/s` +
          (l.reduceMs !== undefined ? `; gradient all-reduce ${l.reduceMs.toFixed(1)} ms (${(100 * l.reduceShare!).toFixed(0)}% of the step), waiting for the other rank ${l.waitMs!.toFixed(1)} ms` : "") +
          (l.gatherMs !== undefined ? `; touched sets exchanged ${l.gatherMs.toFixed(1)} ms (bitmaps or'ed, rows all-gathered: ${(l.gatherBytes! / 1e6).toFixed(2)} MB per rank)` : ""),
      );
    const bytes = two[0]?.reduceBytes ?? 4 * one[0]!.params;
    let equal: { lossRelative: number; stateRelative: number; array: string } | undefined;
    if (a2) {
      log(`  2 ranks / 1 rank: ${(a2.samplesPerSecond / a1.samplesPerSecond).toFixed(2)}x the samples per second; ${(bytes / 1e6).toFixed(1)} MB all-reduced per step, the all-reduce ran at ${(ringSeconds(bytes, 2, 8) / (a2.reduceMs! / 1000)).toFixed(2)} GB/s as a ring's link`);
      const worst = await largestRelative(one[0]!.checkpoint, two[0]!.checkpoint);
      const [l1, l2] = [losses(one[0]!.metrics), losses(two[0]!.metrics)];
      const lossRelative = l1.length === l2.length ? Math.max(...l1.map((x, i) => Math.abs(x - l2[i]!) / Math.abs(x))) : Infinity;
      equal = { lossRelative, stateRelative: worst.relative, array: worst.name };
      log(
        `  results: the loss at every step within ${lossRelative.toExponential(1)} relative ${lossRelative <= LOSS_TOLERANCE ? `(<= ${LOSS_TOLERANCE.toExponential(0)}: equal up to f32 summation order)` : `(MORE than ${LOSS_TOLERANCE.toExponential(0)}: not the same training)`}; ` +
          `the final state within ${worst.relative.toExponential(1)} relative (largest: ${worst.name}; the grid's gradient sums cancel, so their rounding, which the summation order changes, ` +
          `grows step by step: docs/distributed.md); the 2 ranks' states equal bit for bit (the trainer compares their digests at the checkpoint)`,
      );
    }

    // The model: each node runs the 1-rank step (this machine's), the gradient crosses the links.
    const tc = a1.stepMs / 1000;
    log("");
    log(`model: N nodes, each this machine running the 1 rank x 2 threads step, a ring all-reduce of the gradient per step (2 (N-1)/N x bytes over the link; latency left out):`);
    const measuredRows = scalingModel(tc, bytes);
    printModel(`the configuration measured (${(bytes / 4).toLocaleString("en")} parameters)`, tc, bytes, measuredRows, log);
    const p = Bun.spawnSync([process.execPath, join(ROOT, "cli/params.ts"), "--encoding-preset", "earth4d", "--json"], { cwd: ROOT, env: process.env, stdout: "pipe", stderr: "pipe" });
    if (p.exitCode !== 0) throw new Error(`bun run params --encoding-preset earth4d failed: ${p.stderr.toString().trim()}`);
    const e4 = JSON.parse(p.stdout.toString()) as { params: number; logits: number; network: number; grids: { levels: number; featuresPerLevel: number }[] };
    const e4Bytes = 4 * (e4.params + e4.logits + e4.network);
    const e4Rows = scalingModel(earth4dStep, e4Bytes);
    log(`Earth4D's step: ${a["earth4d-step-s"] !== undefined ? "--earth4d-step-s" : EARTH4D_STEP.source}`);
    printModel(`Earth4D (${e4.params.toLocaleString("en")} parameters + ${e4.logits.toLocaleString("en")} probing logits + ${e4.network.toLocaleString("en")} network)`, earth4dStep, e4Bytes, e4Rows, log);

    // What would move it: sparse gradients (the touched entries only) and overlap with the backward.
    const corners = (dims: number) => 2 ** dims;
    const touchedMeasured = Math.min(perStep * corners(2) * one[0]!.encoding.levels, one[0]!.params / one[0]!.encoding.featuresPerLevel);
    const touchedE4 = Math.min(EARTH4D_STEP.batch * corners(3) * e4.grids.reduce((s, g) => s + g.levels, 0), e4.params / 2);
    const sm = sparseCrossing(bytes, touchedMeasured, one[0]!.encoding.featuresPerLevel);
    const se = sparseCrossing(e4Bytes, touchedE4, 2);
    log("");
    const sparseText = (x: { bytes: number; nodes: number }, dense: number, batch: number) =>
      x.bytes >= dense
        ? `at most ${(x.bytes / 1e6).toFixed(0)} MB, no less than the dense ${(dense / 1e6).toFixed(0)} MB (a batch of ${batch} can touch every entry)`
        : `at most ${(x.bytes / 1e6).toFixed(0)} MB, ${((100 * x.bytes) / dense).toFixed(1)}% of the dense ${(dense / 1e6).toFixed(0)} MB (batch ${batch}): fewer bytes than the dense ring below ${x.nodes.toFixed(0)} nodes`;
    log("");
    log(`what moves it: sparse gradients (each rank's touched entries, an index and F values each, all-gathered: (N - 1) x that per node): the configuration measured ${sparseText(sm, bytes, perStep)}; Earth4D ${sparseText(se, e4Bytes, EARTH4D_STEP.batch)}.`);
    log(`  compressed gradients (f16): half the bytes, the same efficiency on a link of half the speed; overlapping the all-reduce with the backward (grid by grid, level by level) hides it up to the step's length: efficiency t_c / max(t_c, t_ar) instead of t_c / (t_c + t_ar).`);
    for (const l of loadReport(busy.share, (performance.now() - started) / 1000, { figures: "The step times and the all-reduce's share understate an idle machine (the ratios between the two layouts, taken in turn, less so)" })) log(l);
    if (a.json)
      console.log(JSON.stringify({
        cpu: cpu.model, cpus: cpu.cpus, others_cpu_share: busy.share ?? null, mpi: noRanks ? null : mpi.reason, skipped: noRanks ?? null,
        steps, rounds, image, measured: { one: a1, two: a2 ?? null, equal: equal ?? null, params: one[0]!.params, all_reduce_bytes: bytes },
        model: {
          links_gbps: LINKS_GBPS, nodes: NODES,
          measured: { step_seconds: tc, bytes, rows: measuredRows, sparse: sm },
          earth4d: { step_seconds: earth4dStep, step_source: a["earth4d-step-s"] !== undefined ? "--earth4d-step-s" : EARTH4D_STEP.source, bytes: e4Bytes, params: e4.params, logits: e4.logits, network: e4.network, rows: e4Rows, sparse: se },
        },
      }));
    return equal && !(equal.lossRelative <= LOSS_TOLERANCE) ? 1 : 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) process.exitCode = await main();

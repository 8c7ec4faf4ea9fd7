// The shared hand-vectorized reference (/work/shared/reference/hashgrid_ref.cpp): built once per
// source/compiler/CPU into a cache directory, run with --quick (N = 65536, about 10-30 s on 2
// cores), and its final `JSON {...}` line turned into M points/s figures.
//
// It never throws: when the machine lacks AVX-512, the source or compiler is missing, the build
// fails or the run misbehaves, the result has `figures: undefined` and says why.

import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { cpuIdentity, findCxx } from "../runtime/toolchain.ts";
import { cpuSnapshot, loadReport, othersShare } from "./machine.ts";

/** Where the reference lives relative to this repository (/work/main -> /work/shared). */
export const REFERENCE_SOURCE = join(import.meta.dir, "..", "..", "shared", "reference", "hashgrid_ref.cpp");
/** The README's build line, plus -fopenmp (the README's line already has it). */
export const REFERENCE_FLAGS: readonly string[] = Object.freeze(["-O3", "-march=native", "-fopenmp", "-std=c++20"]);

/** One encoding measurement of the reference, in millions of points per second. */
export interface ReferenceFigure {
  dims: number;
  n: number;
  threads: number;
  /** Forward (median). */
  fwd: number;
  /** Backward including zeroing the gradient (median), as the reference reports it. */
  bwd: number;
  /** Backward without zeroing (median). */
  bwdNoZero: number;
  /** Forward then backward (with zeroing) timed as one loop (median). */
  fwdBwd: number;
  /** Fastest repetitions. */
  best: { fwd: number; bwd: number; fwdBwd: number };
  fwdLayout: string;
  bwdStrategy: string;
}

export interface ReferenceFigures {
  /** The program's own checks all passed (its exit status was 0 and JSON says verified). */
  verified: boolean;
  figures: ReferenceFigure[];
  /** D=2 training step (batch 65536), if reported. */
  train?: { stepMs: number; stepsPerS: number; encFwdMs: number; encBwdMs: number; mlpMs: number; adamMs: number };
  /** Stream bandwidth with 1 and 2 threads, GB/s. */
  memBandwidthGBs?: number[];
  /** The parsed JSON line as printed. */
  raw: Record<string, unknown>;
  binary: string;
  args: string[];
  /** Wall time of the run (not counting the build). */
  runMs: number;
  buildMs: number;
}

export interface ReferenceRun {
  figures: ReferenceFigures | undefined;
  /** Why figures is undefined. */
  reason?: string;
  /** Everything the program printed (for people to read), when it ran. */
  output?: string;
}

export interface ReferenceOptions {
  source?: string;
  /** Extra arguments; default ["--quick"]. */
  args?: string[];
  /** Kill the run after this long; default 180 s. */
  timeoutMs?: number;
  cacheDir?: string;
}

/** $NGPK_CACHE_DIR/bench, else ~/.cache/ngp-kernels/bench. */
export function referenceCacheDir(): string {
  const env = process.env;
  return env.NGPK_CACHE_DIR ? join(env.NGPK_CACHE_DIR, "bench") : join(homedir(), ".cache", "ngp-kernels", "bench");
}

/** The AVX-512 subsets the reference needs, or the ones this CPU lacks. */
export function missingAvx512(): string[] {
  let flags: Set<string>;
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    flags = new Set((info.match(/^flags\s*:\s*(.*)$/m)?.[1] ?? "").split(/\s+/));
  } catch {
    flags = new Set();
  }
  return ["avx512f", "avx512dq", "avx512bw", "avx512vl"].filter((f) => !flags.has(f));
}

/** Builds (if needed) and runs the reference; never throws. */
export async function runReference(options: ReferenceOptions = {}): Promise<ReferenceRun> {
  try {
    return await runUnchecked(options);
  } catch (error) {
    return { figures: undefined, reason: `unexpected error: ${(error as Error).message}` };
  }
}

async function runUnchecked(options: ReferenceOptions): Promise<ReferenceRun> {
  const missing = missingAvx512();
  if (missing.length > 0) return { figures: undefined, reason: `this CPU lacks ${missing.join(", ")} (the reference needs AVX-512)` };
  const source = options.source ?? REFERENCE_SOURCE;
  if (!existsSync(source)) return { figures: undefined, reason: `reference source not found at ${source}` };

  const built = await buildReference(source, options.cacheDir ?? referenceCacheDir());
  if ("reason" in built) return { figures: undefined, reason: built.reason, output: built.output };

  const args = options.args ?? ["--quick"];
  const started = performance.now();
  const proc = Bun.spawn([built.binary, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: options.timeoutMs ?? 180_000 });
  const [stdout, stderr, status] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const runMs = performance.now() - started;
  const output = stdout + stderr;
  if (proc.signalCode) return { figures: undefined, reason: `the reference was killed by ${proc.signalCode} after ${Math.round(runMs)} ms`, output };

  const line = stdout.split("\n").reverse().find((l) => l.startsWith("JSON "));
  if (!line) return { figures: undefined, reason: `the reference printed no JSON line (exit status ${status})`, output };
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(line.slice(5)) as Record<string, unknown>;
  } catch (error) {
    return { figures: undefined, reason: `cannot parse the reference's JSON line: ${(error as Error).message}`, output };
  }
  return { figures: parseFigures(raw, status === 0, built.binary, args, runMs, built.ms), output };
}

type Json = Record<string, unknown>;

function parseFigures(raw: Json, exitOk: boolean, binary: string, args: string[], runMs: number, buildMs: number): ReferenceFigures {
  const mps = (v: unknown) => (typeof v === "number" ? v / 1e6 : NaN);
  const figures: ReferenceFigure[] = [];
  for (const [key, value] of Object.entries(raw)) {
    const m = /^D(\d+)_N(\d+)_t(\d+)$/.exec(key);
    if (!m || typeof value !== "object" || value === null) continue;
    const v = value as Json;
    figures.push({
      dims: Number(m[1]),
      n: Number(m[2]),
      threads: Number(m[3]),
      fwd: mps(v.fwd_pts_s),
      bwd: mps(v.bwd_pts_s),
      bwdNoZero: mps(v.bwd_nozero_pts_s),
      fwdBwd: mps(v.fwdbwd_pts_s),
      best: { fwd: mps(v.fwd_best), bwd: mps(v.bwd_best), fwdBwd: mps(v.fwdbwd_best) },
      fwdLayout: String(v.fwd_layout),
      bwdStrategy: String(v.bwd),
    });
  }
  const t = raw.train_D2_B65536 as Json | undefined;
  return {
    verified: exitOk && raw.verified === true,
    figures,
    train: t && {
      stepMs: Number(t.step_ms),
      stepsPerS: Number(t.steps_per_s),
      encFwdMs: Number(t.enc_fwd_ms),
      encBwdMs: Number(t.enc_bwd_ms),
      mlpMs: Number(t.mlp_fwdbwd_ms),
      adamMs: Number(t.adam_ms),
    },
    memBandwidthGBs: Array.isArray(raw.membw_gbs) ? (raw.membw_gbs as number[]) : undefined,
    raw,
    binary,
    args,
    runMs,
    buildMs,
  };
}

type Built = { binary: string; ms: number } | { reason: string; output?: string };

/** Compiles the reference into <cacheDir>/hashgrid_ref-<key> (atomic rename), unless present. */
async function buildReference(source: string, cacheDir: string): Promise<Built> {
  const { tool, reason } = findCxx();
  if (!tool) return { reason: `no C++ compiler: ${reason}` };
  const text = readFileSync(source, "utf8");
  const key = createHash("sha256")
    .update(JSON.stringify({ text, tool: [tool.path, tool.version], flags: REFERENCE_FLAGS, cpu: cpuIdentity() }))
    .digest("hex")
    .slice(0, 24);
  const binary = join(cacheDir, `hashgrid_ref-${key}`);
  if (existsSync(binary)) return { binary, ms: 0 };
  mkdirSync(cacheDir, { recursive: true });
  const tmp = `${binary}.${process.pid}-${randomBytes(6).toString("hex")}.tmp`;
  const started = performance.now();
  try {
    const proc = Bun.spawn([tool.path, ...REFERENCE_FLAGS, source, "-o", tmp], { stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 300_000 });
    const [stdout, stderr, status] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (status !== 0 || !existsSync(tmp)) {
      return { reason: `building the reference failed (${tool.path} exit status ${status}${proc.signalCode ? `, ${proc.signalCode}` : ""})`, output: stdout + stderr };
    }
    renameSync(tmp, binary);
    return { binary, ms: performance.now() - started };
  } catch (error) {
    return { reason: `building the reference failed: ${(error as Error).message}` };
  } finally {
    rmSync(tmp, { force: true });
  }
}

// `bun bench/reference.ts [args...]` runs it and prints the figures.
if (import.meta.main) {
  const args = process.argv.slice(2);
  const started = performance.now();
  const cpuAtStart = cpuSnapshot(); // the reference runs as our child: its CPU time counts as ours once it ends
  const run = await runReference(args.length > 0 ? { args } : {});
  if (!run.figures) {
    console.log(`reference unavailable: ${run.reason}`);
    if (run.output) console.log(run.output.slice(-2000));
  } else {
    const f = run.figures;
    console.log(`reference ${f.verified ? "verified" : "NOT verified"}, ${f.args.join(" ")}, run ${(f.runMs / 1e3).toFixed(1)} s`);
    for (const r of f.figures) {
      console.log(
        `  D=${r.dims} N=${r.n} threads=${r.threads}: fwd ${r.fwd.toFixed(1)}  bwd ${r.bwd.toFixed(1)} (no zeroing ${r.bwdNoZero.toFixed(1)})  fwd+bwd ${r.fwdBwd.toFixed(1)} M points/s`,
      );
    }
    if (f.train) console.log(`  training step D=2 batch 65536: ${f.train.stepMs.toFixed(2)} ms (${f.train.stepsPerS.toFixed(1)} steps/s)`);
  }
  for (const line of loadReport(othersShare(cpuAtStart, cpuSnapshot()), (performance.now() - started) / 1000)) console.log(line);
}

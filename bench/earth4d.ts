// `bun bench/earth4d.ts [--json] [--steps N] [--seconds S] [--batch N] [--records N] [--finest N] [--cache DIR]`
//
// Earth4D on this machine: the `earth4d` encoding preset (four 3D grids of 24 levels, 2^22
// entries, learned probing N_p = 32, N_c = 512: 713,169,152 parameters) trained with train() on a
// synthetic space-time points file (scripts/earth4d_points.ts, written on first use into the cache
// directory, not committed), on the CPU backend, with sparse updates (--dense: dense Adam), without an EMA (its copy of the parameters would
// add 4 bytes each). Prints the parameters, the process's peak resident memory (VmHWM: the model,
// the optimizer state, the data and the kernels' loading), steps/s, the validation loss at every
// evaluation, the seconds until the model was ready (kernels built on first use, or loaded from
// the kernel cache, and the parameters allocated) and the CPU (model, vector width). With --json
// the last line is one object with these figures (earth4d_params, earth4d_peak_rss_bytes,
// earth4d_steps_per_s, ...: bench/scale.ts's names). benchEarth4d() gives the same figures to a caller.
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { findCxx } from "../runtime/toolchain.ts";
import { peakRss } from "../train/data/points.ts";
import { train } from "../train/trainer.ts";
import { benchArgs } from "./args.ts";
import { busyNote, cpuInfo, cpuSnapshot, othersShare, type CpuInfo } from "./machine.ts";

export const EARTH4D_CACHE = resolve(import.meta.dir, "../.cache/earth4d");

export interface Earth4dOptions {
  /** Optimizer steps (default 30), or a wall-clock budget in seconds (whichever ends first). */
  steps?: number;
  seconds?: number;
  /** Points per step (default 2^14: a step of seconds on 2 cores). */
  batch?: number;
  /** Records of the generated points file (default 2^22; 10% held out for validation). */
  records?: number;
  /** The finest resolution (default: the preset's, 2^23). */
  finest?: number;
  /** Sparse updates (default: true; false: dense Adam over all 713M parameters each step). */
  sparse?: boolean;
  /** Evaluations over the run (default 3, the last at the end). */
  evaluations?: number;
  /** Where the points file is kept (default .cache/earth4d). */
  cacheDir?: string;
  log?: (message: string) => void;
}

export interface Earth4dResult {
  params: number;
  peakRssBytes: number;
  stepsPerSecond: number;
  validationLosses: number[];
  /** Seconds from the start of training until the model was ready (kernels built or loaded, parameters allocated). */
  buildSeconds: number;
  /** Kernel libraries compiled on this run (0: all from the cache). */
  builds: number;
  steps: number;
  batch: number;
  sparse: boolean;
  /** The share of the CPU time other processes used meanwhile. */
  othersShare: number | undefined;
  cpu: CpuInfo;
}

const GENERATOR = resolve(import.meta.dir, "../scripts/earth4d_points.ts");

/** The generated points file of `records` records (seed 4) in `dir`, written on first use (by the generator script). */
export function earth4dPoints(records: number, dir = EARTH4D_CACHE): string {
  const path = join(dir, `points-${records}-s4.bin`);
  if (existsSync(path)) return path;
  mkdirSync(dir, { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    const r = Bun.spawnSync([process.execPath, GENERATOR, tmp, "--records", String(records), "--seed", "4"], { stdout: "inherit", stderr: "inherit" });
    if (r.exitCode !== 0) throw new Error(`${GENERATOR} failed (exit status ${r.exitCode})`);
    renameSync(tmp, path);
  } finally {
    rmSync(tmp, { force: true });
  }
  return path;
}

export async function benchEarth4d(o: Earth4dOptions = {}): Promise<Earth4dResult> {
  const log = o.log ?? (() => {});
  const [steps, batch, records, evaluations] = [o.steps ?? 30, o.batch ?? 2 ** 14, o.records ?? 2 ** 22, o.evaluations ?? 3];
  const file = earth4dPoints(records, o.cacheDir);
  const out = mkdtempSync(join(tmpdir(), "ngpk-earth4d-"));
  const validationLosses: number[] = [];
  let builds = 0;
  let ready: number | undefined;
  const start = performance.now();
  const before = cpuSnapshot();
  try {
    const r = await train(
      {
        points: { file },
        encoding: { preset: "earth4d", ...(o.finest ? { finestResolution: o.finest } : {}) },
        batch, steps, ...(o.seconds ? { seconds: o.seconds } : {}),
        evalEvery: Math.max(1, Math.floor(steps / evaluations)),
        schedule: { kind: "none" }, ema: { enabled: false }, optimizer: { sparse: o.sparse ?? true }, backend: "cpu", out,
      },
      {
        onEval: (e) => validationLosses.push(e.heldOutLoss),
        log: (m) => {
          if (m.includes("compiling")) builds++;
          if (m.startsWith("backend ")) ready ??= performance.now();
          log(m);
        },
      },
    );
    return {
      params: r.paramsEncoding, peakRssBytes: peakRss(), stepsPerSecond: r.stepsPerSecond, validationLosses,
      buildSeconds: ((ready ?? start) - start) / 1000, builds, steps: r.steps, batch, sparse: o.sparse ?? true, othersShare: othersShare(before, cpuSnapshot()), cpu: cpuInfo(findCxx().tool?.path),
    };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

const USAGE = `usage: bun bench/earth4d.ts [--json] [--steps N] [--seconds S] [--batch N] [--records N] [--finest N] [--cache DIR]
  --steps N     optimizer steps (default 30; 3 evaluations of the held-out loss over them)
  --seconds S   or a wall-clock budget, whichever ends first
  --batch N     points per step (default 16384)
  --records N   records of the generated points file (default 4194304, 28 bytes each)
  --finest N    the finest resolution (default the preset's, 8388608)
  --dense       dense Adam over every parameter (default: sparse updates, the touched rows only)
  --cache DIR   where the points file is kept (default .cache/earth4d)
  --json        the last line: one JSON object of the figures`;

async function main(): Promise<number> {
  const a = benchArgs(USAGE, {
    json: { type: "boolean" }, steps: { type: "string" }, seconds: { type: "string" }, batch: { type: "string" },
    records: { type: "string" }, finest: { type: "string" }, cache: { type: "string" }, dense: { type: "boolean" },
  });
  if (typeof a === "number") return a;
  const num = (flag: string, v: string | undefined, min: number): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${flag}: ${v} is not an integer of at least ${min}`);
    return n;
  };
  let o: Earth4dOptions;
  try {
    o = { steps: num("steps", a.steps, 1), seconds: num("seconds", a.seconds, 1), batch: num("batch", a.batch, 1), records: num("records", a.records, 1024), finest: num("finest", a.finest, 2), cacheDir: a.cache, sparse: !a.dense };
  } catch (e) {
    return console.error(`${(e as Error).message}\n${USAGE}`), 2;
  }
  const r = await benchEarth4d({ ...o, log: (m) => console.error(m) });
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  console.log(`CPU: ${r.cpu.model} (${r.cpu.cpus} CPUs, ${r.cpu.march}, vector width ${r.cpu.preferVectorWidth}; ${r.cpu.flags.join(" ")})`);
  console.log(`earth4d: ${r.params.toLocaleString("en")} parameters, batch ${r.batch}, ${r.steps} steps, ${r.sparse ? "sparse updates" : "dense Adam"}`);
  console.log(`  peak memory ${gib(r.peakRssBytes)}; ${r.stepsPerSecond.toFixed(3)} steps/s${busyNote(r.othersShare)}`);
  console.log(`  validation loss: ${r.validationLosses.map((l) => l.toPrecision(4)).join(", ")}`);
  console.log(`  model ready after ${r.buildSeconds.toFixed(1)} s (${r.builds} kernel librar${r.builds === 1 ? "y" : "ies"} built)`);
  // bench:scale's fields (bench/scale.ts merges the last line's object), then the rest.
  if (a.json) console.log(JSON.stringify({ earth4d_params: r.params, earth4d_peak_rss_bytes: r.peakRssBytes, earth4d_steps_per_s: r.stepsPerSecond, earth4d_validation_losses: r.validationLosses, earth4d_build_seconds: r.buildSeconds, earth4d_builds: r.builds, earth4d_steps: r.steps, earth4d_batch: r.batch, earth4d_sparse: r.sparse, earth4d_others_share: r.othersShare, cpu: r.cpu }));
  return 0;
}

if (import.meta.main) process.exit(await main());

// `bun run bench [--quick] [--reps R] [--reference] [--json]`
//
// Hash-grid encoding throughput, measured in one process: the generated CPU kernels (compiled
// from dsl/kernels/grid.ts), the hand-written C++ of the same kernels (bench/hashgrid_hand.cpp,
// AVX-512, same flags), and the generated JS backend; with the ratios. D = 2 (finest 2048) and
// D = 3 (finest 512), L = 16, F = 2, T = 2^19, N_min = 16, batches of 2^16 and 2^20 points.
// Figures are M points/s, medians of R rounds after warm-up; each round runs the variants one
// after the other, so the machine's noise (large here) hits them alike. "bwd" excludes zeroing
// the gradient (all variants add into it). --reference also runs the shared hand-vectorized
// reference program (about a minute) and prints its own figures.
import { parseArgs } from "node:util";
import { DEFAULT_GRID_2D, DEFAULT_GRID_3D } from "../codegen/shipped.ts";
import { HostBuffer } from "../runtime/buffer.ts";
import { HashGrid } from "../runtime/hashgrid.ts";
import type { Kernel } from "../runtime/module.ts";
import { gridTables, handBackward, handForward, loadHand } from "./hand.ts";
import { runReference } from "./reference.ts";

const USAGE = `usage: bun run bench [--quick] [--reps R] [--reference] [--json]
  --quick      2^16 points only, fewer rounds
  --reps R     timed rounds per native figure (default 7; JS: 3 rounds at 2^16, 1 at 2^20)
  --reference  also run the shared hand-vectorized reference program (../shared/reference)
  --json       print the results as one JSON line last`;

interface Timing {
  fwd: number;
  bwd: number;
  fwdBwd: number;
}
interface Row {
  dims: number;
  n: number;
  generated: Timing;
  hand: Timing;
  js: Timing;
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function timeMs(f: () => void): number {
  const t0 = performance.now();
  f();
  return performance.now() - t0;
}

/** Uniform [0, 1) values from a fixed seed (the same inputs for every variant). */
function uniform(n: number, seed: number, lo = 0, hi = 1): Float32Array {
  let a = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  });
}

async function benchConfig(dims: 2 | 3, sizes: number[], reps: number, log: (s: string) => void): Promise<Row[]> {
  const opts = dims === 2 ? DEFAULT_GRID_2D : DEFAULT_GRID_3D;
  const [cpu, js] = await Promise.all([HashGrid.create(opts, { backend: "cpu" }), HashGrid.create(opts, { backend: "js" })]);
  const tables = gridTables(dims, opts.levels, opts.featuresPerLevel, opts.log2HashmapSize, opts.baseResolution, Math.exp(Math.log(opts.finestResolution / opts.baseResolution) / (opts.levels - 1)));
  if (tables.paramCount !== cpu.paramCount) throw new Error(`hand-written tables have ${tables.paramCount} parameters, generated ${cpu.paramCount}`);
  if (!(cpu.params instanceof HostBuffer) || !(cpu.grad instanceof HostBuffer)) throw new Error("the CPU grid's buffers are host memory");
  const params = cpu.params.data as Float32Array;
  const grad = cpu.grad.data as Float32Array;
  const kernels = (cpu as unknown as { mod: { kernels: Record<string, Kernel> } }).mod.kernels;
  const jsKernels = (js as unknown as { mod: { kernels: Record<string, Kernel> } }).mod.kernels;
  const rows: Row[] = [];
  for (const n of sizes) {
    const x = uniform(n * dims, 1);
    const dy = uniform(n * cpu.outputDim, 2, -1, 1);
    const out = new Float32Array(n * cpu.outputDim);
    const handOut = new Float32Array(n * cpu.outputDim);
    const variants = {
      generated: { fwd: () => kernels.gridForward!(n, x, params, out), bwd: () => kernels.gridBackward!(n, x, dy, grad) },
      hand: { fwd: () => handForward(tables, n, x, params, handOut), bwd: () => handBackward(tables, n, x, dy, grad) },
      js: { fwd: () => jsKernels.gridForward!(n, x, params, out), bwd: () => jsKernels.gridBackward!(n, x, dy, grad) },
    };
    // Same inputs, same outputs: the comparison is of the same work.
    variants.generated.fwd();
    variants.hand.fwd();
    const same = out.every((v, k) => v === handOut[k]);
    log(`D=${dims} n=${n}: generated and hand-written forward outputs ${same ? "are bit-identical" : "DIFFER"}`);
    if (!same) throw new Error("generated and hand-written forward disagree: the benchmark would compare different work");
    const samples: Record<string, Record<keyof Timing, number[]>> = {};
    const measure = (v: keyof typeof variants, record: boolean) => {
      const f = variants[v];
      const t = { fwd: timeMs(f.fwd), bwd: timeMs(f.bwd), fwdBwd: timeMs(() => (f.fwd(), f.bwd())) };
      if (!record) return;
      samples[v] ??= { fwd: [], bwd: [], fwdBwd: [] };
      for (const k of ["fwd", "bwd", "fwdBwd"] as const) samples[v]![k].push(t[k]);
    };
    // Native variants alternate round by round; the first two rounds warm up.
    for (let r = 0; r < 2 + reps; r++) for (const v of ["generated", "hand"] as const) measure(v, r >= 2);
    // JS is ~100x slower: three rounds at 2^16, one (no warm-up) beyond.
    const jsRounds = n > 1 << 16 ? 1 : 3;
    for (let r = 0; r < jsRounds; r++) measure("js", true);
    const rate = (ms: number[]) => n / median(ms) / 1e3; // M points/s
    const fig = (v: string): Timing => ({ fwd: rate(samples[v]!.fwd), bwd: rate(samples[v]!.bwd), fwdBwd: rate(samples[v]!.fwdBwd) });
    rows.push({ dims, n, generated: fig("generated"), hand: fig("hand"), js: fig("js") });
  }
  return rows;
}

function table(rows: Row[]): string {
  const f = (v: number) => (v >= 10 ? v.toFixed(1) : v.toPrecision(2));
  const lines = [
    "M points/s (2 threads where the variant uses them)      generated      hand-written C++        JS       gen/hand     gen/JS",
    "D  n        | fwd    bwd    f+b  | fwd    bwd    f+b  | fwd    bwd    f+b | fwd  bwd  f+b | fwd",
  ];
  for (const r of rows) {
    const t = (x: Timing) => [x.fwd, x.bwd, x.fwdBwd].map((v) => f(v).padStart(6)).join(" ");
    const ratio = (k: keyof Timing) => (r.generated[k] / r.hand[k]).toFixed(2);
    lines.push(`${r.dims}  ${String(r.n).padEnd(8)} | ${t(r.generated)} | ${t(r.hand)} | ${t(r.js)} | ${ratio("fwd")} ${ratio("bwd")} ${ratio("fwdBwd")} | ${(r.generated.fwd / r.js.fwd).toFixed(0)}x`);
  }
  return lines.join("\n");
}

async function main(): Promise<number> {
  let values;
  try {
    values = parseArgs({ options: { quick: { type: "boolean" }, reps: { type: "string" }, reference: { type: "boolean" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } }).values;
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) return console.log(USAGE), 0;
  const reps = values.reps === undefined ? (values.quick ? 3 : 7) : Number(values.reps);
  if (!Number.isInteger(reps) || reps < 1 || reps > 100) return console.error(`--reps must be an integer in [1, 100], got ${values.reps}`), 2;
  const sizes = values.quick ? [1 << 16] : [1 << 16, 1 << 20];
  const log = (s: string) => console.log(s);
  const hand = await loadHand();
  log(`hand-written kernels: ${hand.vectorized ? "AVX-512" : "scalar (no AVX-512 on this CPU)"}; ${reps} timed rounds per native figure`);
  const rows: Row[] = [];
  for (const dims of [2, 3] as const) rows.push(...(await benchConfig(dims, sizes, reps, log)));
  log("");
  log(table(rows));
  let reference;
  if (values.reference) {
    log("\nrunning the shared reference (../shared/reference/hashgrid_ref.cpp --quick) ...");
    const run = await runReference();
    reference = run.figures;
    if (!run.figures) log(`reference not run: ${run.reason}`);
    else for (const fgr of run.figures.figures) log(`reference D=${fgr.dims} n=${fgr.n} threads=${fgr.threads}: fwd ${fgr.fwd.toFixed(1)} bwd ${fgr.bwdNoZero.toFixed(1)} (no zeroing) fwd+bwd ${fgr.fwdBwd.toFixed(1)} M points/s`);
  }
  if (values.json) console.log(JSON.stringify({ unit: "M points/s", reps, rows, reference: reference?.figures }));
  return 0;
}

process.exit(await main());

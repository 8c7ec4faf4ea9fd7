// `bun run bench [--quick] [--reps R] [--reference] [--hand-isa native|avx2|scalar] [--json]`
// `bun run bench --backend cuda [--quick] [--reps R] [--n N,N...] [--json]`
//
// Hash-grid encoding throughput, measured in one process: the generated CPU kernels (compiled
// from dsl/kernels/grid.ts), the hand-written C++ of the same kernels (bench/hashgrid_hand.cpp,
// AVX-512 or AVX2 as the CPU allows, same flags; the path it was built with is printed), and the
// generated JS backend; with the ratios. With --backend the generated kernels run on that backend
// (cuda: a GPU) with inputs and outputs resident there, timed to completion (synchronized), next
// to the generated CPU kernels on the same inputs. D = 2 (finest 2048) and
// D = 3 (finest 512), L = 16, F = 2, T = 2^19, N_min = 16, batches of 2^16 and 2^20 points.
// Figures are M points/s, medians of R rounds after warm-up; each round runs the variants one
// after the other, so the machine's noise (large here) hits them alike. "bwd" excludes zeroing
// the gradient (all variants add into it). --reference also runs the shared hand-vectorized
// reference program (about a minute) and prints its own figures.
import { uniformValues } from "../modules/random.ts";
import { DEFAULT_GRID_2D, DEFAULT_GRID_3D } from "../modules/shipped.ts";
import { HostBuffer } from "../runtime/buffer.ts";
import { GRID_KERNELS, HashGrid, gridConfig, hashGridParamCount, parseHashGridOptions } from "../modules/hashgrid.ts";
import type { Backend } from "../runtime/backend.ts";
import { loadKernels, type KernelModule } from "../modules/load.ts";
import type { Kernel } from "../runtime/module.ts";
import { benchArgs } from "./args.ts";
import { gridTables, HAND_ISAS, handBackward, handForward, loadHand, type HandIsa, type HandLib } from "./hand.ts";
import { runReference } from "./reference.ts";
import { cpuSnapshot, loadReport, othersShare } from "./machine.ts";

const USAGE = `usage: bun run bench [--quick] [--reps R] [--reference] [--hand-isa ISA] [--json]
       bun run bench --backend cuda|cpu|js [--quick] [--reps R] [--n N,N...] [--json]
  --quick      2^16 points only, fewer rounds (--backend: 2^16 and 2^20)
  --reps R     timed rounds per native figure (default 7; JS: 3 rounds at 2^16, 1 at 2^20)
  --reference  also run the shared hand-vectorized reference program (../shared/reference)
  --hand-isa   which build of the hand-written C++: native (default: AVX-512 where the CPU has
               it, else AVX2), avx2 (-mno-avx512f: the hand side an AVX2-only machine runs;
               the generated kernels keep -march=native), scalar
  --backend    time the generated kernels on this backend (cuda: the GPU) against the generated
               CPU kernels, inputs resident on the device (2^16, 2^20, 2^22 points, or --n)
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


type Arg = Parameters<Kernel>[1];

/** A grid's forward and parameter gradient as HashGrid runs them (gridKernels: derived or hand-written). */
function gridCalls(g: HashGrid, k: Record<string, Kernel>) {
  const names = g.kernels;
  return {
    fwd: (n: number, x: Arg, params: Arg, out: Arg) => k[names.forward]!(n, x, params, g.probe, g.softmax, out),
    bwd: (n: number, x: Arg, params: Arg, dy: Arg, grad: Arg) => k[names.paramGrad]!(n, x, params, g.probe, g.softmax, dy, grad, g.logitGrad),
  };
}

/**
 * The gradients the compiler derives (gridForwardParamGrad, gridForwardInputGrad) against the
 * hand-written ones (gridBackward, gridInputGrad), generated CPU code both, on the same inputs:
 * medians in ms, alternating round by round.
 */
async function benchDerived(dims: 2 | 3, n: number, reps: number): Promise<DerivedRow> {
  const opts = dims === 2 ? DEFAULT_GRID_2D : DEFAULT_GRID_3D;
  const s = parseHashGridOptions(opts);
  const mod = await loadKernels(GRID_KERNELS, { config: gridConfig(s), kernels: ["gridBackward", "gridInputGrad", "gridForwardParamGrad", "gridForwardInputGrad"], backend: "cpu", boundsChecks: false });
  try {
    const P = hashGridParamCount(opts);
    const x = mod.upload("f32", uniformValues(n * dims, 1));
    const params = mod.upload("f32", uniformValues(P, 3, -1, 1));
    const dy = mod.upload("f32", uniformValues(n * s.levels * s.featuresPerLevel, 2, -1, 1));
    const [probe, one, grad, dx] = [mod.alloc("u32", 1), mod.alloc("f32", 1), mod.alloc("f32", P), mod.alloc("f32", n * dims)];
    const k = mod.kernels;
    const runs = {
      handParam: () => k.gridBackward!(n, x, params, probe, one, dy, grad, one),
      derivedParam: () => k.gridForwardParamGrad!(n, x, params, probe, one, dy, grad, one),
      handInput: () => k.gridInputGrad!(n, x, params, probe, dy, dx),
      derivedInput: () => k.gridForwardInputGrad!(n, x, params, probe, one, dy, dx),
    };
    const t: Record<keyof typeof runs, number[]> = { handParam: [], derivedParam: [], handInput: [], derivedInput: [] };
    for (let r = 0; r < 2 + reps; r++) for (const [name, f] of Object.entries(runs)) {
      const ms = timeMs(f);
      if (r >= 2) t[name as keyof typeof runs].push(ms);
    }
    return { dims, n, handParam: median(t.handParam), derivedParam: median(t.derivedParam), handInput: median(t.handInput), derivedInput: median(t.derivedInput) };
  } finally {
    mod.close();
  }
}

interface DerivedRow {
  dims: number;
  n: number;
  handParam: number;
  derivedParam: number;
  handInput: number;
  derivedInput: number;
}

async function benchConfig(dims: 2 | 3, sizes: number[], reps: number, log: (s: string) => void, hand: HandLib): Promise<Row[]> {
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
    const x = uniformValues(n * dims, 1);
    const dy = uniformValues(n * cpu.outputDim, 2, -1, 1);
    const out = new Float32Array(n * cpu.outputDim);
    const handOut = new Float32Array(n * cpu.outputDim);
    const [gen, jsGen] = [gridCalls(cpu, kernels), gridCalls(js, jsKernels)];
    const variants = {
      generated: { fwd: () => gen.fwd(n, x, params, out), bwd: () => gen.bwd(n, x, params, dy, grad) },
      hand: { fwd: () => handForward(tables, n, x, params, handOut, hand), bwd: () => handBackward(tables, n, x, dy, grad, hand) },
      js: { fwd: () => jsGen.fwd(n, x, params, out), bwd: () => jsGen.bwd(n, x, params, dy, grad) },
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

interface DeviceRow {
  dims: number;
  n: number;
  backend: Backend;
  /** The generated kernels on `backend`, inputs resident there, synchronized. */
  device: Timing;
  /** The generated CPU kernels, same inputs. */
  cpu: Timing;
  /** Forward outputs of the two: largest |difference|, and whether every value is bit-identical. */
  fwdMaxAbsDiff: number;
  fwdBitIdentical: boolean;
}

/** The generated kernels on `backend` (buffers on the device) vs the generated CPU kernels. */
async function benchDevice(backend: Backend, dims: 2 | 3, sizes: number[], reps: number, log: (s: string) => void): Promise<DeviceRow[]> {
  const opts = dims === 2 ? DEFAULT_GRID_2D : DEFAULT_GRID_3D;
  const [dev, cpu] = await Promise.all([HashGrid.create(opts, { backend }), HashGrid.create(opts, { backend: "cpu" })]);
  if (dev.backend !== backend) throw new Error(`asked for backend ${backend}, got ${dev.backend} (${dev.backendReason})`);
  const mod = (dev as unknown as { mod: KernelModule }).mod;
  const cmod = (cpu as unknown as { mod: KernelModule }).mod;
  // The same parameters on both (random, so that the outputs are not all tiny).
  const params = uniformValues(dev.paramCount, 3, -1, 1);
  dev.params.upload(params);
  cpu.params.upload(params);
  const rows: DeviceRow[] = [];
  for (const n of sizes) {
    const x = uniformValues(n * dims, 1);
    const dy = uniformValues(n * dev.outputDim, 2, -1, 1);
    const xd = mod.upload("f32", x);
    const dyd = mod.upload("f32", dy);
    const outd = mod.alloc("f32", n * dev.outputDim);
    const xc = cmod.upload("f32", x);
    const dyc = cmod.upload("f32", dy);
    const outc = cmod.alloc("f32", n * dev.outputDim);
    const [k, kc] = [gridCalls(dev, mod.kernels), gridCalls(cpu, cmod.kernels)];
    const variants = {
      device: {
        fwd: () => (k.fwd(n, xd, dev.params, outd), mod.synchronize()),
        bwd: () => (k.bwd(n, xd, dev.params, dyd, dev.grad), mod.synchronize()),
      },
      cpu: { fwd: () => kc.fwd(n, xc, cpu.params, outc), bwd: () => kc.bwd(n, xc, cpu.params, dyc, cpu.grad) },
    };
    variants.device.fwd();
    variants.cpu.fwd();
    const a = outd.download();
    const b = outc.download();
    let maxDiff = 0;
    let same = true;
    for (let i = 0; i < a.length; i++) {
      const d = Math.abs(a[i]! - b[i]!);
      if (!(d <= maxDiff)) maxDiff = Number.isNaN(d) ? Infinity : d;
      if (!Object.is(a[i], b[i])) same = false;
    }
    log(`D=${dims} n=${n}: ${backend} and cpu forward outputs ${same ? "are bit-identical" : `differ by at most ${maxDiff.toExponential(2)}`}`);
    const samples: Record<string, Record<keyof Timing, number[]>> = {};
    for (let r = 0; r < 2 + reps; r++) {
      for (const v of ["device", "cpu"] as const) {
        const f = variants[v];
        const t = { fwd: timeMs(f.fwd), bwd: timeMs(f.bwd), fwdBwd: timeMs(() => (f.fwd(), f.bwd())) };
        if (r < 2) continue;
        samples[v] ??= { fwd: [], bwd: [], fwdBwd: [] };
        for (const key of ["fwd", "bwd", "fwdBwd"] as const) samples[v]![key].push(t[key]);
      }
    }
    const rate = (ms: number[]) => n / median(ms) / 1e3;
    const fig = (v: string): Timing => ({ fwd: rate(samples[v]!.fwd), bwd: rate(samples[v]!.bwd), fwdBwd: rate(samples[v]!.fwdBwd) });
    rows.push({ dims, n, backend, device: fig("device"), cpu: fig("cpu"), fwdMaxAbsDiff: maxDiff, fwdBitIdentical: same });
    for (const buf of [xd, dyd, outd, xc, dyc, outc]) buf.dispose();
  }
  return rows;
}

function deviceTable(rows: DeviceRow[]): string {
  const f = (v: number) => (v >= 10 ? v.toFixed(1) : v.toPrecision(2));
  const backend = rows[0]?.backend ?? "device";
  const lines = [
    `M points/s (generated kernels; ${backend}: inputs on the device, synchronized)`,
    `D  n        | ${backend.padEnd(4)} fwd    bwd    f+b  | cpu  fwd    bwd    f+b  | ${backend}/cpu fwd  bwd  f+b`,
  ];
  for (const r of rows) {
    const t = (x: Timing) => [x.fwd, x.bwd, x.fwdBwd].map((v) => f(v).padStart(6)).join(" ");
    const ratio = (k: keyof Timing) => (r.device[k] / r.cpu[k]).toFixed(1).padStart(5);
    lines.push(`${r.dims}  ${String(r.n).padEnd(8)} | ${t(r.device)}    | ${t(r.cpu)}    | ${ratio("fwd")} ${ratio("bwd")} ${ratio("fwdBwd")}`);
  }
  return lines.join("\n");
}

async function main(): Promise<number> {
  const values = benchArgs(USAGE, {
    quick: { type: "boolean" }, reps: { type: "string" }, reference: { type: "boolean" }, json: { type: "boolean" },
    "hand-isa": { type: "string" }, backend: { type: "string" }, n: { type: "string" },
  });
  if (typeof values === "number") return values;
  const reps = values.reps === undefined ? (values.quick ? 3 : 7) : Number(values.reps);
  if (!Number.isInteger(reps) || reps < 1 || reps > 100) return console.error(`--reps must be an integer in [1, 100], got ${values.reps}`), 2;
  const log = (s: string) => console.log(s);
  // The machine's load meanwhile: other processes' CPU time slows every figure here.
  const started = performance.now();
  const cpuAtStart = cpuSnapshot();
  const loadLines = (): number | null => {
    const others = othersShare(cpuAtStart, cpuSnapshot());
    for (const line of loadReport(others, (performance.now() - started) / 1000)) log(line);
    return others ?? null;
  };
  if (values.backend !== undefined) {
    const backend = values.backend as Backend;
    if (!["cuda", "cpu", "js"].includes(backend)) return console.error(`--backend must be cuda, cpu or js, got ${values.backend}\n${USAGE}`), 2;
    if (values.reference || values["hand-isa"] !== undefined) return console.error(`--backend times the generated kernels only: drop --reference and --hand-isa\n${USAGE}`), 2;
    const sizes = values.n !== undefined ? values.n.split(",").map(Number) : values.quick ? [1 << 16, 1 << 20] : [1 << 16, 1 << 20, 1 << 22];
    if (!sizes.every((n) => Number.isInteger(n) && n >= 1 && n <= 1 << 26)) return console.error(`--n takes batch sizes from 1 to 2^26, got ${values.n}`), 2;
    log(`generated kernels on ${backend} vs cpu; ${reps} timed rounds per figure`);
    const rows: DeviceRow[] = [];
    for (const dims of [2, 3] as const) rows.push(...(await benchDevice(backend, dims, sizes, reps, log)));
    log("");
    log(deviceTable(rows));
    const others = loadLines();
    if (values.json) console.log(JSON.stringify({ unit: "M points/s", backend, reps, rows, others_cpu_share: others }));
    return 0;
  }
  const isa = (values["hand-isa"] ?? "native") as HandIsa;
  if (!HAND_ISAS.includes(isa)) return console.error(`--hand-isa must be one of ${HAND_ISAS.join(", ")}, got ${values["hand-isa"]}\n${USAGE}`), 2;
  if (values.n !== undefined) return console.error(`--n applies with --backend only\n${USAGE}`), 2;
  const sizes = values.quick ? [1 << 16] : [1 << 16, 1 << 20];
  const hand = await loadHand({ isa });
  const why = hand.vectorBits === 0 ? " (no AVX2/AVX-512 in this build: the ratio compares against scalar code)" : "";
  log(`hand-written kernels: ${isa} build, vector path ${hand.vectorPath}${why}; ${reps} timed rounds per native figure`);
  const rows: Row[] = [];
  for (const dims of [2, 3] as const) rows.push(...(await benchConfig(dims, sizes, reps, log, hand)));
  log("");
  log(table(rows));
  const derived: DerivedRow[] = [];
  for (const dims of [2, 3] as const) derived.push(await benchDerived(dims, 1 << 16, reps));
  log("\ngradients derived by the compiler vs hand-written (generated CPU code both; ms, medians; n = 65536)");
  log("D  | param: hand-written  derived  ratio | input: hand-written  derived  ratio");
  for (const d of derived)
    log(`${d.dims}  |        ${d.handParam.toFixed(2).padStart(8)} ${d.derivedParam.toFixed(2).padStart(8)}  ${(d.derivedParam / d.handParam).toFixed(2)}x |        ${d.handInput.toFixed(2).padStart(8)} ${d.derivedInput.toFixed(2).padStart(8)}  ${(d.derivedInput / d.handInput).toFixed(2)}x`);
  let reference;
  if (values.reference) {
    log("\nrunning the shared reference (../shared/reference/hashgrid_ref.cpp --quick) ...");
    const run = await runReference();
    reference = run.figures;
    if (!run.figures) log(`reference not run: ${run.reason}`);
    else for (const fgr of run.figures.figures) log(`reference D=${fgr.dims} n=${fgr.n} threads=${fgr.threads}: fwd ${fgr.fwd.toFixed(1)} bwd ${fgr.bwdNoZero.toFixed(1)} (no zeroing) fwd+bwd ${fgr.fwdBwd.toFixed(1)} M points/s`);
  }
  const others = loadLines();
  if (values.json) console.log(JSON.stringify({ unit: "M points/s", reps, hand: { isa, vectorPath: hand.vectorPath, vectorBits: hand.vectorBits }, rows, derived, reference: reference?.figures, others_cpu_share: others }));
  return 0;
}

process.exit(await main());

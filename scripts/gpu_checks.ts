// The in-process checks of `bun run check:gpu` (scripts/check_gpu.ts runs each in its own process,
// with a timeout, so that a crash or a hang in one cannot take the others down):
//
//   bun scripts/gpu_checks.ts grid-parity [--backend cuda]   HashGrid forward, backward, dL/dx vs cpu
//   bun scripts/gpu_checks.ts mlp-parity  [--backend cuda]   Mlp forward, trainStep, backward vs cpu
//   bun scripts/gpu_checks.ts adam-parity [--backend cuda]   Optimizer (Adam) steps vs cpu
//   bun scripts/gpu_checks.ts mlp-bench   [--backend cuda] [--quick]
//                                                            Mlp.trainStep / forward and Adam timed
//   [mpirun -np GPUS] bun scripts/gpu_checks.ts nccl         NCCL's bootstrap and all-reduce on the
//                                                            real libnccl ($NGPK_NCCL), each rank on
//                                                            its GPU; one rank alone: the identity
//
// The backend under test defaults to cuda; --backend js or cpu runs the same checks with that
// backend in its place (how this script is exercised on machines without a GPU). Inputs are the
// same on both sides; CUDA accumulates weight and table gradients with atomics (in no fixed
// order), so those are compared within a float tolerance scaled by the magnitude of the terms
// summed, not bit for bit. Each check prints its findings, then one JSON line:
//   {"check": ..., "ok": true|false, "backend": ..., "failures": [...], "figures": {...}}
// and exits 0 when ok, 1 otherwise. Modules are left open (the process ends right after): closing
// a native module unloads code that live buffers and OpenMP threads may still refer to.
import { parseArgs } from "node:util";
import { uniformValues } from "../modules/random.ts";
import { DEFAULT_GRID_2D, DEFAULT_GRID_3D, DEFAULT_MLP } from "../modules/shipped.ts";
import type { Backend } from "../runtime/backend.ts";
import type { CudaBuffer, DeviceBuffer } from "../runtime/buffer.ts";
import { HashGrid, type HashGridOptionsInput } from "../modules/hashgrid.ts";
import type { KernelModule } from "../runtime/module.ts";

type Figures = Record<string, unknown>;
interface Outcome {
  failures: string[];
  figures: Figures;
}

const log = (s: string) => console.log(s);


interface Comparison {
  /** Largest |got - want| / allowed (<= 1 passes). */
  worst: number;
  worstIndex: number;
  maxAbs: number;
  bitIdentical: boolean;
  /** Elements where exactly one side is NaN. */
  nanMismatches: number;
}

/** Compares got with want element by element; allowed(i) is the tolerance of element i. */
function compare(got: ArrayLike<number>, want: ArrayLike<number>, allowed: (i: number) => number): Comparison {
  const r: Comparison = { worst: 0, worstIndex: -1, maxAbs: 0, bitIdentical: got.length === want.length, nanMismatches: 0 };
  if (got.length !== want.length) return { ...r, worst: Infinity };
  for (let i = 0; i < got.length; i++) {
    const a = got[i]!;
    const b = want[i]!;
    if (!Object.is(a, b)) r.bitIdentical = false;
    if (Number.isNaN(a) || Number.isNaN(b)) {
      if (Number.isNaN(a) !== Number.isNaN(b)) r.nanMismatches++;
      continue;
    }
    const d = Math.abs(a - b);
    if (d > r.maxAbs) r.maxAbs = d;
    const ratio = d === 0 ? 0 : d / allowed(i);
    if (ratio > r.worst) {
      r.worst = ratio;
      r.worstIndex = i;
    }
  }
  return r;
}

function judge(label: string, c: Comparison, got: ArrayLike<number>, want: ArrayLike<number>, failures: string[]): string {
  const ok = c.worst <= 1 && c.nanMismatches === 0;
  const text = c.bitIdentical ? "bit-identical" : `max |diff| ${c.maxAbs.toExponential(2)}, ${(c.worst * 100).toFixed(1)}% of tolerance`;
  if (!ok) {
    const at = c.worstIndex >= 0 ? ` (worst at ${c.worstIndex}: ${got[c.worstIndex]} vs ${want[c.worstIndex]})` : "";
    failures.push(`${label}: ${c.nanMismatches ? `${c.nanMismatches} NaN mismatches; ` : ""}${text}${at}`);
  }
  log(`  ${ok ? "ok  " : "FAIL"} ${label}: ${text}${c.nanMismatches ? `, ${c.nanMismatches} NaN mismatches` : ""}`);
  return text;
}

const modOf = (o: object) => (o as unknown as { mod: KernelModule }).mod;

// ---------------------------------------------------------------------------------------------
// Hash grid
// ---------------------------------------------------------------------------------------------

const GRID_CASES: { name: string; opts: HashGridOptionsInput }[] = [
  { name: "2D default", opts: DEFAULT_GRID_2D },
  { name: "3D default", opts: DEFAULT_GRID_3D },
  { name: "2D f16 params", opts: { ...DEFAULT_GRID_2D, precision: "f16" } },
  { name: "3D F=4 smoothstep", opts: { dims: 3, levels: 8, featuresPerLevel: 4, log2HashmapSize: 16, baseResolution: 4, finestResolution: 256, interpolation: "smoothstep" } },
  { name: "1D F=8 dense", opts: { dims: 1, levels: 6, featuresPerLevel: 8, log2HashmapSize: 12, baseResolution: 8, finestResolution: 4096, gridType: "dense" } },
];

/** Points: uniform in [0, 1), with edge values (0, 1, just below 1, outside, NaN) first. */
function gridPoints(n: number, dims: number, seed: number): Float32Array {
  const x = uniformValues(n * dims, seed);
  const special = [0, 1, 0.99999994, 0.5, -0.25, 1.5, 1e-30, NaN, 0.25, 0.75];
  for (let i = 0; i < special.length && i < n; i++) for (let d = 0; d < dims; d++) x[i * dims + d] = special[(i + d * 3) % special.length]!;
  return x;
}

async function gridParity(backend: Backend, quick: boolean): Promise<Outcome> {
  const failures: string[] = [];
  const figures: Figures = {};
  const n = (quick ? 1 << 12 : 1 << 16) + 37; // not a multiple of any block size
  // All modules at once: the compilers run in parallel.
  const grids = await Promise.all(
    GRID_CASES.map(async (c) => {
      try {
        return await Promise.all([HashGrid.create(c.opts, { backend }), HashGrid.create(c.opts, { backend: "cpu" })]);
      } catch (error) {
        return error as Error;
      }
    }),
  );
  for (const [k, c] of GRID_CASES.entries()) {
    const label = `grid ${c.name}`;
    log(`${label}: n = ${n}`);
    try {
      const pair = grids[k]!;
      if (pair instanceof Error) throw pair;
      const [dev, cpu] = pair;
      if (dev.backend !== backend) throw new Error(`asked for ${backend}, got ${dev.backend} (${dev.backendReason})`);
      const dims = dev.settings.dims;
      // Random parameters in [-1, 1] on both sides (the initial ones are tiny); f16 rounds them alike.
      const params = uniformValues(dev.paramCount, 10 + k, -1, 1);
      dev.params.upload(params);
      cpu.params.upload(params);
      const x = gridPoints(n, dims, 20 + k);
      const dy = uniformValues(n * dev.outputDim, 30 + k, -1, 1);
      // Forward: each output is a convex combination of table values in [-1, 1].
      const t0 = performance.now();
      const yd = dev.forward(x).download();
      const tDev = performance.now() - t0;
      const yc = cpu.forward(x).download();
      const fwd = judge(`${label} forward`, compare(yd, yc, () => 1e-5), yd, yc, failures);
      // Backward: table gradient (atomics on CUDA) within 1e-4 of the sum of |w * dy| per entry,
      // which the cpu backward of |dy| computes (the weights are >= 0).
      const rd = dev.backward(dy, { inputs: true });
      const gd = rd.params.download();
      const dxd = rd.inputs!.download();
      const rc = cpu.backward(dy, { inputs: true });
      const gc = rc.params.download();
      const dxc = rc.inputs!.download();
      cpu.forward(x);
      const mag = cpu.backward(dy.map(Math.abs)).params.download();
      const bwd = judge(`${label} table gradient`, compare(gd, gc, (i) => 1e-4 * mag[i]! + 1e-30), gd, gc, failures);
      // dL/dx: per point, no atomics; scaled by the largest value (the finest levels' scale).
      let dxMax = 0;
      for (const v of dxc) if (Math.abs(v) > dxMax) dxMax = Math.abs(v);
      const dx = judge(`${label} dL/dx`, compare(dxd, dxc, (i) => 1e-4 * Math.abs(dxc[i]!) + 1e-6 * dxMax + 1e-30), dxd, dxc, failures);
      figures[c.name] = { forward: fwd, tableGrad: bwd, inputGrad: dx, firstForwardMs: +tDev.toFixed(2) };
    } catch (error) {
      failures.push(`${label}: ${(error as Error).message}`);
      log(`  FAIL ${label}: ${(error as Error).stack ?? error}`);
    }
  }
  return { failures, figures };
}

// ---------------------------------------------------------------------------------------------
// MLP
// ---------------------------------------------------------------------------------------------

const MLP_CASES: { name: string; opts: Record<string, unknown> }[] = [
  { name: "32-64-64-3 relu l2", opts: { ...DEFAULT_MLP } },
  {
    name: "32-128x3-16 tanh/sigmoid rel-l2 biases dL/dx",
    opts: { inputs: 32, outputs: 16, width: 128, hiddenLayers: 3, activation: "tanh", outputActivation: "sigmoid", biases: true, loss: "relative_l2", inputGrad: true },
  },
  { name: "19-16-1 leaky-relu huber", opts: { inputs: 19, outputs: 1, width: 16, hiddenLayers: 1, activation: "leaky_relu", loss: "huber" } },
  { name: "8-32x7-4 softplus/exp l1", opts: { inputs: 8, outputs: 4, width: 32, hiddenLayers: 7, activation: "softplus", outputActivation: "exponential", loss: "l1" } },
];

type MlpModule = typeof import("../modules/mlp.ts");

async function importMlp(): Promise<MlpModule> {
  return await import("../modules/mlp.ts");
}

function maxAbsOf(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) if (Math.abs(a[i]!) > m) m = Math.abs(a[i]!);
  return m;
}

async function mlpParity(backend: Backend, quick: boolean): Promise<Outcome> {
  const failures: string[] = [];
  const figures: Figures = {};
  const { Mlp } = await importMlp();
  const n = (quick ? 1 << 10 : 1 << 14) + 5; // a partial tile at the end
  const nets = await Promise.all(
    MLP_CASES.map(async (c) => {
      try {
        return await Promise.all([Mlp.create(c.opts as never, { backend }), Mlp.create(c.opts as never, { backend: "cpu" })]);
      } catch (error) {
        return error as Error;
      }
    }),
  );
  for (const [k, c] of MLP_CASES.entries()) {
    const label = `mlp ${c.name}`;
    log(`${label}: n = ${n}`);
    try {
      const pair = nets[k]!;
      if (pair instanceof Error) throw pair;
      const [dev, cpu] = pair;
      if (dev.backend !== backend) throw new Error(`asked for ${backend}, got ${dev.backend} (${dev.backendReason})`);
      const { inputs, outputs } = dev.settings;
      const p = compare(dev.params.download(), cpu.params.download(), () => 0);
      if (!p.bitIdentical) throw new Error("the initial parameters differ between the backends (same seed)");
      const x = uniformValues(n * inputs, 40 + k, -1, 1);
      const target = uniformValues(n * outputs, 50 + k, 0, 1);
      const dy = uniformValues(n * outputs, 60 + k, -1, 1);
      // Forward: summation order differs (tile shapes), so within 1e-4 relative plus a floor.
      const yd = dev.forward(x).download();
      const yc = cpu.forward(x).download();
      const yMax = maxAbsOf(yc);
      const fwd = judge(`${label} forward`, compare(yd, yc, (i) => 1e-4 * Math.abs(yc[i]!) + 1e-5 * yMax + 1e-30), yd, yc, failures);
      // Training step: the loss, the weight gradient (a sum over the batch: atomics on CUDA) and dL/dx.
      const dxd = dev.settings.inputGrad ? modOf(dev).alloc("f32", n * inputs) : undefined;
      const dxc = cpu.settings.inputGrad ? modOf(cpu).alloc("f32", n * inputs) : undefined;
      dev.grad.zero();
      cpu.grad.zero();
      const ld = dev.trainStep(x, target, { inputGrad: dxd });
      const lc = cpu.trainStep(x, target, { inputGrad: dxc });
      const lossOk = Math.abs(ld - lc) <= 1e-4 * Math.abs(lc) + 1e-12;
      log(`  ${lossOk ? "ok  " : "FAIL"} ${label} loss: ${backend} ${ld} cpu ${lc}`);
      if (!lossOk) failures.push(`${label} loss: ${backend} ${ld} vs cpu ${lc}`);
      const gd = dev.grad.download();
      const gc = cpu.grad.download();
      const gMax = maxAbsOf(gc);
      const grad = judge(`${label} trainStep weight gradient`, compare(gd, gc, (i) => 1e-3 * Math.abs(gc[i]!) + 1e-4 * gMax + 1e-30), gd, gc, failures);
      let inGrad: string | undefined;
      if (dxd && dxc) {
        const a = dxd.download();
        const b = dxc.download();
        inGrad = judge(`${label} trainStep dL/dx`, compare(a, b, (i) => 1e-3 * Math.abs(b[i]!) + 1e-4 * maxAbsOf(b) + 1e-30), a, b, failures);
      }
      // Backward from a given dL/dy.
      dev.grad.zero();
      cpu.grad.zero();
      dev.backward(x, dy, { inputGrad: dxd });
      cpu.backward(x, dy, { inputGrad: dxc });
      const bd = dev.grad.download();
      const bc = cpu.grad.download();
      const bMax = maxAbsOf(bc);
      const bwd = judge(`${label} backward weight gradient`, compare(bd, bc, (i) => 1e-3 * Math.abs(bc[i]!) + 1e-4 * bMax + 1e-30), bd, bc, failures);
      figures[c.name] = { forward: fwd, loss: [ld, lc], trainGrad: grad, ...(inGrad ? { inputGrad: inGrad } : {}), backwardGrad: bwd };
    } catch (error) {
      failures.push(`${label}: ${(error as Error).message}`);
      log(`  FAIL ${label}: ${(error as Error).stack ?? error}`);
    }
  }
  return { failures, figures };
}

// ---------------------------------------------------------------------------------------------
// Adam
// ---------------------------------------------------------------------------------------------

async function adamParity(backend: Backend, quick: boolean): Promise<Outcome> {
  const failures: string[] = [];
  const figures: Figures = {};
  const { Optimizer } = await import("../modules/optimizer.ts");
  const { loadKernels } = await import("../modules/load.ts");
  const { resolve } = await import("node:path");
  // Buffers on each backend come from a small module of that backend (the saxpy example).
  const saxpy = resolve(import.meta.dir, "../dsl/examples/saxpy.ts");
  const [mdev, mcpu] = await Promise.all([loadKernels(saxpy, { backend }), loadKernels(saxpy, { backend: "cpu" })]);
  const sizes = { encoding: quick ? 10_007 : 1_000_003, network: 6_339 };
  const make = (mod: KernelModule) =>
    Object.entries(sizes).map(([name, len], k) => ({
      name,
      params: mod.upload("f32", uniformValues(len, 70 + k, -1, 1)) as DeviceBuffer<"f32">,
      grad: mod.alloc("f32", len) as DeviceBuffer<"f32">,
      ...(name === "network" ? { weightDecay: 1e-6, lr: 3e-3 } : {}),
    }));
  const gdev = make(mdev);
  const gcpu = make(mcpu);
  const [odev, ocpu] = await Promise.all([Optimizer.create(gdev, {}, { backend }), Optimizer.create(gcpu, {}, { backend: "cpu" })]);
  for (let step = 1; step <= 3; step++) {
    for (const [k, [name, len]] of Object.entries(sizes).entries()) {
      // Gradients of mixed scale, some exactly 0 (untouched table entries).
      const g = uniformValues(len, 80 + 10 * step + k, -1, 1).map((v, i) => (i % 7 === 0 ? 0 : v * 10 ** ((i % 5) - 2)));
      gdev[k]!.grad.upload(g);
      gcpu[k]!.grad.upload(g);
      void name;
    }
    odev.update();
    ocpu.update();
    for (const [k, name] of Object.keys(sizes).entries()) {
      const a = gdev[k]!.params.download();
      const b = gcpu[k]!.params.download();
      const r = judge(`adam step ${step} ${name} params`, compare(a, b, (i) => 1e-5 * Math.abs(b[i]!) + 1e-7), a, b, failures);
      figures[`step${step}.${name}`] = r;
      if (maxAbsOf(gdev[k]!.grad.download()) !== 0) failures.push(`adam step ${step} ${name}: the ${backend} gradient was not zeroed`);
    }
  }
  return { failures, figures };
}

// ---------------------------------------------------------------------------------------------
// MLP benchmark (used when bench/mlp.ts is missing or takes no backend flag)
// ---------------------------------------------------------------------------------------------

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

async function mlpBench(backend: Backend, quick: boolean): Promise<Outcome> {
  const failures: string[] = [];
  const figures: Figures = {};
  const { Mlp, mlpLayout, parseMlpOptions } = await importMlp();
  const { Optimizer } = await import("../modules/optimizer.ts");
  const reps = quick ? 3 : 10;
  // Off the GPU (a stand-in run of this script) the batches shrink 16x: the figures mean nothing there.
  const scale = backend === "cuda" ? 1 : 1 / 16;
  const cases = [
    { width: 64, batch: 1 << 16 },
    { width: 64, batch: quick ? 1 << 18 : 1 << 20 },
    { width: 16, batch: 1 << 16 },
    { width: 32, batch: 1 << 16 },
    { width: 128, batch: 1 << 16 },
  ].map((c) => ({ ...c, batch: c.batch * scale }));
  const widths = [...new Set(cases.map((c) => c.width))];
  const nets = new Map(await Promise.all(widths.map(async (w) => [w, await Mlp.create({ ...DEFAULT_MLP, width: w as 64 }, { backend })] as const)));
  log(`MLP ${DEFAULT_MLP.inputs}-W-W-${DEFAULT_MLP.outputs} (ReLU, L2) on ${backend}; medians of ${reps} after 2 warm-up runs`);
  log("  width  batch    | forward ms  GFLOP/s | trainStep ms  GFLOP/s  M items/s");
  for (const { width, batch } of cases) {
    const label = `width ${width} batch ${batch}`;
    try {
      const net = nets.get(width)!;
      const mod = modOf(net);
      const s = parseMlpOptions({ ...DEFAULT_MLP, width });
      const lay = mlpLayout(s);
      let macs = 0;
      for (let l = 0; l < lay.fanIn.length; l++) macs += lay.fanIn[l]! * lay.fanOut[l]!;
      // Forward 2*macs per item; the step adds the backward through all layers but the first
      // (no input gradient) and the weight gradient: 2*macs*3 - 2*inputs*width.
      const fwdFlops = 2 * macs * batch;
      const stepFlops = (6 * macs - 2 * s.inputs * width) * batch;
      const x = mod.upload("f32", uniformValues(batch * s.inputs, 90, -1, 1)) as DeviceBuffer<"f32">;
      const t = mod.upload("f32", uniformValues(batch * s.outputs, 91, 0, 1)) as DeviceBuffer<"f32">;
      const out = mod.alloc("f32", batch * s.outputs) as DeviceBuffer<"f32">;
      const time = (f: () => void) => {
        const ms: number[] = [];
        for (let r = 0; r < reps + 2; r++) {
          const t0 = performance.now();
          f();
          mod.synchronize();
          if (r >= 2) ms.push(performance.now() - t0);
        }
        return median(ms);
      };
      const fwdMs = time(() => net.forward(x, out));
      const stepMs = time(() => net.trainStep(x, t));
      const row = {
        forwardMs: +fwdMs.toFixed(3),
        forwardGflops: +(fwdFlops / fwdMs / 1e6).toFixed(1),
        trainStepMs: +stepMs.toFixed(3),
        trainStepGflops: +(stepFlops / stepMs / 1e6).toFixed(1),
        itemsPerSecM: +(batch / stepMs / 1e3).toFixed(1),
      };
      figures[label] = row;
      log(`  ${String(width).padStart(5)}  ${String(batch).padEnd(8)} | ${row.forwardMs.toFixed(3).padStart(10)} ${row.forwardGflops.toFixed(0).padStart(8)} | ${row.trainStepMs.toFixed(3).padStart(12)} ${row.trainStepGflops.toFixed(0).padStart(8)} ${row.itemsPerSecM.toFixed(0).padStart(10)}`);
      for (const b of [x, t, out]) b.dispose();
    } catch (error) {
      failures.push(`${label}: ${(error as Error).message}`);
      log(`  FAIL ${label}: ${(error as Error).stack ?? error}`);
    }
  }
  // Adam over the default 2D grid's parameters plus the network (one step: read params, grad, m,
  // v; write params, grad (zeroed), m, v: 32 bytes per parameter).
  try {
    const net = nets.get(64)!;
    const mod = modOf(net);
    const len = 5_522_000;
    const enc = { name: "encoding", params: mod.upload("f32", uniformValues(len, 92, -1, 1)) as DeviceBuffer<"f32">, grad: mod.alloc("f32", len) as DeviceBuffer<"f32"> };
    const opt = await Optimizer.create([enc, { name: "network", params: net.params, grad: net.grad }], {}, { backend });
    const ms: number[] = [];
    for (let r = 0; r < reps + 2; r++) {
      const t0 = performance.now();
      opt.update();
      mod.synchronize();
      if (r >= 2) ms.push(performance.now() - t0);
    }
    const m = median(ms);
    const total = len + net.paramCount;
    figures.adam = { params: total, stepMs: +m.toFixed(3), gbs: +((32 * total) / m / 1e6).toFixed(1) };
    log(`  Adam over ${total} parameters: ${m.toFixed(3)} ms per step, ${((32 * total) / m / 1e6).toFixed(1)} GB/s`);
  } catch (error) {
    failures.push(`adam: ${(error as Error).message}`);
    log(`  FAIL adam: ${(error as Error).stack ?? error}`);
  }
  return { failures, figures };
}

// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// NCCL (runtime/nccl.ts): run alone (one GPU) or under mpirun with one rank per GPU
// ---------------------------------------------------------------------------------------------

async function ncclCheck(backend: Backend): Promise<Outcome> {
  if (backend !== "cuda") return { failures: [], figures: { skipped: `NCCL needs the cuda backend, not ${backend}` } };
  const { openRanks } = await import("../runtime/mpi.ts");
  const { NcclComm } = await import("../runtime/nccl.ts");
  const { loadKernels } = await import("../modules/load.ts");
  const { resolve } = await import("node:path");
  const ranks = await openRanks();
  const failures: string[] = [];
  // The bootstrap sets this rank's device: before any CUDA buffer is made.
  const comm = await NcclComm.open(ranks);
  const mod = await loadKernels(resolve(import.meta.dir, "../dsl/examples/saxpy.ts"), { backend: "cuda" });
  // Rank r's value at i: small halves, so every sum over the ranks is exact in f32.
  const value = (r: number, i: number) => ((i * 7 + 3) % 1000) * (r + 1) + 0.5;
  const filled = (n: number) => Float32Array.from({ length: n }, (_, i) => value(ranks.rank, i));
  const sizes = [1, 1000, 3_000_017];
  const buffers = sizes.map((n) => mod.upload("f32", filled(n)) as DeviceBuffer<"f32">);
  comm.allReduceSum(buffers as CudaBuffer<"f32">[]); // one group of three
  for (const [k, b] of buffers.entries()) {
    const got = b.download();
    const want = Float32Array.from({ length: got.length }, (_, i) => Array.from({ length: ranks.size }, (_, r) => value(r, i)).reduce((x, y) => x + y, 0));
    judge(`all-reduce of ${sizes[k]} floats over ${ranks.size} rank${ranks.size === 1 ? "" : "s"} (rank ${ranks.rank})`, compare(got, want, () => 0), got, want, failures);
  }
  // 64 MB, the size of a large model's gradients: median of 5 after one warm-up.
  const big = mod.alloc("f32", 16 << 20) as DeviceBuffer<"f32">;
  const times: number[] = [];
  for (let i = 0; i < 6; i++) {
    ranks.barrier();
    const t = performance.now();
    comm.allReduceSum([big as CudaBuffer<"f32">]);
    if (i > 0) times.push(performance.now() - t);
  }
  const ms = median(times);
  comm.close();
  const anyFailed = ranks.any(failures.length > 0);
  if (anyFailed && failures.length === 0) failures.push("another rank's sums were wrong (its log says which)");
  ranks.close();
  if (ranks.rank !== 0) process.exit(failures.length ? 1 : 0); // rank 0 alone prints the result line
  return { failures, figures: { nccl: comm.description, ranks: ranks.size, allReduce64MBms: +ms.toFixed(3), busGBs: +(((2 * (ranks.size - 1)) / Math.max(ranks.size, 1)) * (64 * 2 ** 20) / (ms / 1000) / 1e9).toFixed(1) } };
}

const CHECKS: Record<string, (backend: Backend, quick: boolean) => Promise<Outcome>> = {
  nccl: ncclCheck,
  "grid-parity": gridParity,
  "mlp-parity": mlpParity,
  "adam-parity": adamParity,
  "mlp-bench": mlpBench,
};

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { backend: { type: "string" }, quick: { type: "boolean" } } });
  const check = positionals[0] ?? "";
  const backend = (values.backend ?? "cuda") as Backend;
  const run = CHECKS[check];
  if (!run || positionals.length !== 1 || !["cuda", "cpu", "js"].includes(backend)) {
    console.error(`usage: bun scripts/gpu_checks.ts ${Object.keys(CHECKS).join("|")} [--backend cuda|cpu|js] [--quick]`);
    return 2;
  }
  const t0 = performance.now();
  let outcome: Outcome;
  try {
    outcome = await run(backend, values.quick ?? false);
  } catch (error) {
    log(`FAIL ${check}: ${(error as Error).stack ?? error}`);
    outcome = { failures: [`${check}: ${(error as Error).message}`], figures: {} };
  }
  const ok = outcome.failures.length === 0;
  const seconds = +((performance.now() - t0) / 1000).toFixed(1);
  console.log(JSON.stringify({ check, ok, backend, seconds, failures: outcome.failures, figures: outcome.figures }));
  return ok ? 0 : 1;
}

process.exit(await main());

// Times the hand-written hash grid (bench/hashgrid_hand.cpp) on the DESIGN's configurations: its
// vector kernels in each requested build (default: the native one, AVX-512 here, and the AVX2 one
// built with -mno-avx512f) against its scalar code, and optionally the shared reference, all in
// the same process.
//
//   bun bench/hand_bench.ts [--quick] [--reps R] [--isa native,avx2,scalar] [--reference]
//                           [--pipeline K] [--prefetch-min BYTES] [--json]
//
// D=2: L=16, F=2, log2T=19, Nmin=16, finest 2048. D=3: the same with finest 512.
// Figures are M points/s, medians of R runs after 2 warm-up runs, each variant timed in its own
// group of consecutive runs (as the shared reference does).
// "bwd" excludes zeroing the gradient (the kernel adds into it); "fwd+bwd" is one forward then
// one backward, timed together.

import { benchArgs } from "./args.ts";
import { gridTables, HAND_ISAS, handBackward, handBackwardScalar, handForward, handForwardScalar, loadHand, type GridTables, type HandIsa, type HandLib } from "./hand.ts";
import { runReference } from "./reference.ts";
import { cpuSnapshot, loadReport, othersShare } from "./machine.ts";

export interface HandFigures {
  dims: number;
  n: number;
  fast: { fwd: number; bwd: number; fwdBwd: number };
  scalar: { fwd: number; bwd: number; fwdBwd: number };
}

export const HAND_CONFIGS = [
  { dims: 2, finest: 2048 },
  { dims: 3, finest: 512 },
] as const;

export function benchTables(dims: number, finest: number): GridTables {
  return gridTables(dims, 16, 2, 19, 16, Math.exp(Math.log(finest / 16) / 15));
}

/** Uniform f32 values in [lo, hi) from a small LCG (deterministic inputs). */
function uniform(n: number, lo: number, hi: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let k = 0; k < n; k++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[k] = lo + ((hi - lo) * s) / 4294967296;
  }
  return a;
}

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Times one build (`lib`, default the native one) on one configuration. */
export async function benchHand(dims: number, finest: number, n: number, reps: number, withScalar = true, lib?: HandLib): Promise<HandFigures> {
  lib ??= await loadHand();
  const t = benchTables(dims, finest);
  const x = uniform(n * dims, 0, 1, 1 + dims);
  const params = uniform(t.paramCount, -1e-4, 1e-4, 7 + dims);
  const dy = uniform(n * 16 * 2, -1, 1, 11 + dims);
  const out = new Float32Array(n * 16 * 2);
  const grad = new Float32Array(t.paramCount);
  const variants: [string, () => void][] = [
    ["fast.fwd", () => handForward(t, n, x, params, out, lib)],
    ["fast.bwd", () => handBackward(t, n, x, dy, grad, lib)],
    ["fast.fwdBwd", () => (handForward(t, n, x, params, out, lib), handBackward(t, n, x, dy, grad, lib))],
  ];
  if (withScalar) {
    variants.push(
      ["scalar.fwd", () => handForwardScalar(t, n, x, params, out, lib)],
      ["scalar.bwd", () => handBackwardScalar(t, n, x, dy, grad, lib)],
      ["scalar.fwdBwd", () => (handForwardScalar(t, n, x, params, out, lib), handBackwardScalar(t, n, x, dy, grad, lib))],
    );
  }
  // Each variant in its own group of consecutive runs, as the shared reference times them: a
  // forward right after a backward would find the tables evicted by the gradient.
  const times = new Map<string, number[]>();
  for (const [name, run] of variants) {
    const t: number[] = [];
    grad.fill(0);
    for (let round = 0; round < reps + 2; round++) {
      const start = performance.now();
      run();
      if (round >= 2) t.push(performance.now() - start);
    }
    times.set(name, t);
  }
  const mps = (name: string) => {
    const t = times.get(name);
    return t && t.length > 0 ? n / median(t) / 1e3 : NaN;
  };
  return {
    dims,
    n,
    fast: { fwd: mps("fast.fwd"), bwd: mps("fast.bwd"), fwdBwd: mps("fast.fwdBwd") },
    scalar: { fwd: mps("scalar.fwd"), bwd: mps("scalar.bwd"), fwdBwd: mps("scalar.fwdBwd") },
  };
}

const USAGE = `usage: bun bench/hand_bench.ts [--quick] [--reps R] [--isa native,avx2,scalar] [--reference]
                             [--pipeline K] [--prefetch-min BYTES] [--json]`;

if (import.meta.main) {
  const values = benchArgs(USAGE, {
    quick: { type: "boolean" }, reps: { type: "string" }, isa: { type: "string" }, reference: { type: "boolean" },
    pipeline: { type: "string" }, "prefetch-min": { type: "string" }, json: { type: "boolean" },
  });
  if (typeof values === "number") process.exit(values);
  const quick = values.quick === true;
  const reps = Number(values.reps ?? 9);
  const started = performance.now();
  const cpuAtStart = cpuSnapshot();
  const isas = (values.isa ?? "native,avx2").split(",") as HandIsa[];
  for (const isa of isas) {
    if (!HAND_ISAS.includes(isa)) {
      console.error(`--isa: ${JSON.stringify(isa)} is not one of ${HAND_ISAS.join(", ")}`);
      process.exit(2);
    }
  }
  const libs: HandLib[] = [];
  for (const isa of isas) {
    const lib = await loadHand({ isa });
    if (values.pipeline !== undefined || values["prefetch-min"] !== undefined) {
      lib.setTuning(Number(values.pipeline ?? -1), Number(values["prefetch-min"] ?? -1));
    }
    console.log(`hand-written hash grid, ${isa} build: vector path ${lib.vectorPath} (${lib.path})`);
    libs.push(lib);
  }
  const f = (v: number) => v.toFixed(2).padStart(7);
  const json: (HandFigures & { isa: HandIsa; vectorPath: string })[] = [];
  console.log("M points/s; scalar = the same build's scalar code, timed with the first build");
  console.log("   D        N  build              |  fast: fwd     bwd  fwd+bwd | speed-up vs scalar fwd  bwd | vs first build fwd  bwd");
  for (const { dims, finest } of HAND_CONFIGS) {
    for (const n of quick ? [65536] : [65536, 1 << 20]) {
      const r = n > 65536 ? Math.max(3, Math.ceil(reps / 2)) : reps;
      let first: HandFigures | undefined;
      let scalar: HandFigures["scalar"] | undefined;
      for (const lib of libs) {
        const fig = await benchHand(dims, finest, n, r, first === undefined, lib);
        first ??= fig;
        scalar ??= fig.scalar;
        json.push({ ...fig, scalar, isa: lib.isa, vectorPath: lib.vectorPath });
        console.log(
          `   ${dims} ${String(n).padStart(8)}  ${lib.vectorPath.padEnd(18)} | ${f(fig.fast.fwd)} ${f(fig.fast.bwd)} ${f(fig.fast.fwdBwd)} |` +
            ` ${(fig.fast.fwd / scalar.fwd).toFixed(1).padStart(19)}x ${(fig.fast.bwd / scalar.bwd).toFixed(1).padStart(4)}x |` +
            ` ${(fig.fast.fwd / first.fast.fwd).toFixed(2).padStart(17)} ${(fig.fast.bwd / first.fast.bwd).toFixed(2).padStart(4)}`,
        );
      }
      if (scalar) console.log(`   ${dims} ${String(n).padStart(8)}  ${"scalar code".padEnd(18)} | ${f(scalar.fwd)} ${f(scalar.bwd)} ${f(scalar.fwdBwd)} |`);
    }
  }
  if (values.reference) {
    const run = await runReference();
    if (!run.figures) {
      console.log(`reference: unavailable (${run.reason})`);
    } else {
      console.log(`reference (${run.figures.args.join(" ")}, ${run.figures.verified ? "verified" : "NOT verified"}; D=3 there uses finest 2048, 48.8 MB of tables):`);
      for (const r of run.figures.figures) {
        console.log(
          `   D=${r.dims} N=${r.n} threads=${r.threads}: fwd ${r.fwd.toFixed(2)}  bwd ${r.bwd.toFixed(2)} (without zeroing ${r.bwdNoZero.toFixed(2)})  fwd+bwd ${r.fwdBwd.toFixed(2)} M points/s`,
        );
      }
    }
  }
  const others = othersShare(cpuAtStart, cpuSnapshot());
  for (const line of loadReport(others, (performance.now() - started) / 1000)) console.log(line);
  if (values.json) console.log(JSON.stringify({ unit: "M points/s", reps, figures: json, others_cpu_share: others ?? null }));
}

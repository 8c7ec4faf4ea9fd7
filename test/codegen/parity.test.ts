// Parity: every example kernel runs on the JS reference backend and the CPU-native backend on
// fresh random inputs, and the results agree bit for bit, except where the arithmetic allows the
// backends to differ (fma: JS rounds twice in rare cases; float atomics: summation order), where
// the bound is stated.
import { describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import type { ElemType } from "../../dsl/abi.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { loadKernels, type KernelModule } from "../../modules/load.ts";
import { ROOT } from "../../modules/shipped.ts";
import { freshSeed, maxUlp, rng, uniformF32 } from "../util.ts";

const NO_CXX = findCxx().tool ? undefined : findCxx().reason;
const N = 20_000; // above the OpenMP threshold, so the CPU side runs multi-threaded

type Arrays = Record<string, Float32Array | Int32Array | Uint32Array>;
interface Case {
  file: string;
  kernel: string;
  config?: Record<string, unknown>;
  /** Fresh inputs: buffers (outputs zeroed) and scalar arguments, in kernel parameter order. */
  inputs(r: () => number): { n: number; args: (string | number | boolean)[]; buffers: Arrays };
  outputs: string[];
  /** Allowed ulp distance per output (0 = bit-exact). */
  ulp?: number;
}

const CASES: Record<string, Case> = {
  "elementwise saxpy": {
    file: "dsl/examples/saxpy.ts", kernel: "saxpy", outputs: ["out"],
    inputs: (r) => ({ n: N, args: [Math.fround(r() * 4 - 2), "x", "y", "out"], buffers: { x: uniformF32(r, N, -10, 10), y: uniformF32(r, N, -10, 10), out: new Float32Array(N) } }),
  },
  "unrolled loop (polynomial, Horner with fma)": {
    file: "dsl/examples/polynomial.ts", kernel: "polynomial", outputs: ["out"], ulp: 1,
    config: { degree: 4, coefficients: [0.3, -1.25, 2.5, 0.75, -0.125], clampInput: true },
    inputs: (r) => ({ n: N, args: ["x", "out"], buffers: { x: uniformF32(r, N, -0.5, 1.5), out: new Float32Array(N) } }),
  },
  "u32 hash": {
    file: "dsl/examples/hash.ts", kernel: "spatialHash", outputs: ["out"],
    inputs: (r) => ({
      n: N,
      args: ["coords", 1 + Math.floor(r() * 4), 1 + Math.floor(r() * 2 ** 24), "out"],
      buffers: { coords: Uint32Array.from({ length: 4 * N }, () => Math.floor(r() * 2 ** 32)), out: new Uint32Array(N) },
    }),
  },
  "atomic scatter-add (integer weights: exact in any order)": {
    file: "dsl/examples/scatter.ts", kernel: "histogram", outputs: ["hist", "counts"],
    inputs: (r) => ({
      n: N,
      args: ["x", "w", 37, "hist", "counts"],
      buffers: { x: uniformF32(r, N, -0.1, 1.1), w: Float32Array.from({ length: N }, () => Math.floor(r() * 8)), hist: new Float32Array(37), counts: new Uint32Array(37) },
    }),
  },
  "helper functions (inlined, smooth)": {
    file: "dsl/examples/smoothstep.ts", kernel: "blend", outputs: ["out"], config: { smooth: true },
    inputs: (r) => ({ n: N, args: ["t", "a", "b", "out"], buffers: { t: uniformF32(r, N, -0.5, 1.5), a: uniformF32(r, N, -3, 3), b: uniformF32(r, N, -3, 3), out: new Float32Array(N) } }),
  },
  "helper functions (inlined, linear)": {
    file: "dsl/examples/smoothstep.ts", kernel: "blend", outputs: ["out"], config: { smooth: false },
    inputs: (r) => ({ n: N, args: ["t", "a", "b", "out"], buffers: { t: uniformF32(r, N, -0.5, 1.5), a: uniformF32(r, N, -3, 3), b: uniformF32(r, N, -3, 3), out: new Float32Array(N) } }),
  },
  "constant tables indexed at run time": {
    file: "test/fixtures/tables.ts", kernel: "lookup", outputs: ["out", "sq"],
    config: { values: [0.5, -1.25, 3, 4.75, -8, 16.5, 1e-3], offsets: [1, -2, 3, -4, 5, -6, 7] },
    inputs: (r) => ({ n: N, args: ["k", "out", "sq"], buffers: { k: Uint32Array.from({ length: N }, () => Math.floor(r() * 1000)), out: new Float32Array(N), sq: new Uint32Array(N) } }),
  },
  "local arrays": {
    file: "dsl/examples/local_arrays.ts", kernel: "window", outputs: ["sum", "peak"],
    config: { width: 7, weights: [0.05, 0.1, 0.2, 0.3, 0.2, 0.1, 0.05] },
    inputs: (r) => ({ n: N, args: [N, "x", "sum", "peak"], buffers: { x: uniformF32(r, N, -5, 5), sum: new Float32Array(N), peak: new Float32Array(N) } }),
  },
};

const ELEM: Record<string, ElemType> = { Float32Array: "f32", Int32Array: "i32", Uint32Array: "u32" };

async function run(mod: KernelModule, c: Case, inputs: ReturnType<Case["inputs"]>): Promise<Arrays> {
  const bufs = Object.fromEntries(Object.entries(inputs.buffers).map(([k, v]) => [k, mod.upload(ELEM[v.constructor.name]!, v)]));
  const args = inputs.args.map((a) => (typeof a === "string" ? bufs[a]! : a));
  mod.kernels[c.kernel]!(inputs.n, ...args);
  return Object.fromEntries(c.outputs.map((o) => [o, bufs[o]!.download()])) as Arrays;
}

describe.skipIf(NO_CXX !== undefined)(`parity: JS reference vs CPU native${NO_CXX ? ` (skipped: ${NO_CXX})` : ""}`, () => {
  for (const [label, c] of Object.entries(CASES)) {
    test(label, async () => {
      const file = resolve(ROOT, c.file);
      const opts = { config: c.config as never, kernels: [c.kernel] };
      const [js, cpu] = await Promise.all([loadKernels(file, { ...opts, backend: "js" }), loadKernels(file, { ...opts, backend: "cpu" })]);
      const seed = freshSeed(label);
      for (let round = 0; round < 3; round++) {
        const inputs = c.inputs(rng(seed + round));
        const [a, b] = [await run(js, c, inputs), await run(cpu, c, inputs)];
        for (const o of c.outputs) {
          const { ulp, at } = maxUlp(a[o]!, b[o]!);
          if (ulp > (c.ulp ?? 0)) throw new Error(`${o}[${at}]: js ${a[o]![at]} vs cpu ${b[o]![at]} (${ulp} ulp, seed ${seed + round})`);
          // The outputs are not trivially equal (e.g. all zeros): the kernel did write them.
          expect(a[o]!.some((v) => v !== 0)).toBe(true);
        }
      }
    });
  }
});

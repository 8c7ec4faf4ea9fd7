// Reverse-mode automatic differentiation (codegen/adjoint.ts). The hand-written kernels are the
// oracles: the compiler's adjoints of gridForward (`@adjoint` tags in dsl/kernels/grid.ts), its
// parameter gradient and its input gradient, against gridBackward and gridInputGrad, for every grid
// type and interpolation and D = 1 to 8, and learned probing's logit gradient (a declared
// derivative, `@grad`), on fresh random points and parameters. A declared derivative replaces the
// derived one. Every derivative
// rule of the intrinsic table against central finite differences. The refusals, with their codes.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { compileFile } from "../../codegen/compile.ts";
import { DiagnosticError } from "../../codegen/diagnostics.ts";
import { INTRINSICS } from "../../dsl/intrinsics.ts";
import { argmaxRows, gridConfig, gridLevels, parseHashGridOptions, probingLayout, type HashGridOptionsInput } from "../../modules/hashgrid.ts";
import { mlpConfig, mlpLayout, parseMlpOptions, type MlpOptionsInput } from "../../modules/mlp.ts";
import { loadKernels } from "../../modules/load.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { cacheDir, freshSeed, rng, uniformF32, TEST_TIMEOUT } from "../util.ts";

const CPU = findCxx().tool ? "cpu" : undefined;
const GRID = resolve(import.meta.dir, "../../dsl/kernels/grid.ts");
const KERNELS = ["gridBackward", "gridInputGrad", "gridForwardParamGrad", "gridForwardInputGrad"];

/** max |a - b| over the arrays, relative to the largest |a|. */
function relErr(a: Float32Array, b: Float32Array): { err: number; scale: number } {
  let err = 0;
  let scale = 0;
  for (let k = 0; k < a.length; k++) {
    err = Math.max(err, Math.abs(a[k]! - b[k]!));
    scale = Math.max(scale, Math.abs(a[k]!));
  }
  return { err: scale ? err / scale : err, scale };
}

/** Learned probing's tables for random logits: the argmax of each row, and its softmax. */
function probeTables(rows: number, width: number, r: () => number): { probe: Uint32Array; softmax: Float32Array } {
  const logits = uniformF32(r, rows * width, -2, 2);
  const softmax = new Float32Array(rows * width);
  for (let row = 0; row < rows; row++) {
    const z = Array.from(logits.subarray(row * width, row * width + width));
    const e = z.map((v) => Math.exp(v - Math.max(...z)));
    const sum = e.reduce((a, b) => a + b, 0);
    e.forEach((v, p) => (softmax[row * width + p] = v / sum));
  }
  return { probe: argmaxRows(logits, width), softmax };
}

async function compare(options: HashGridOptionsInput, backend: "js" | "cpu", seed: number) {
  const s = parseHashGridOptions(options);
  const levels = gridLevels(s);
  const config = gridConfig(s, levels);
  const mod = await loadKernels(GRID, { config, kernels: KERNELS, backend, cacheDir, boundsChecks: false });
  const r = rng(seed);
  const n = 97;
  const last = levels[levels.length - 1]!;
  const P = (last.offset + last.size) * s.featuresPerLevel;
  const width = s.levels * s.featuresPerLevel;
  const x = mod.upload("f32", uniformF32(r, n * s.dims, 0, 1));
  const params = mod.upload("f32", uniformF32(r, P, -1, 1));
  const dy = mod.upload("f32", uniformF32(r, n * width, -1, 1));
  const layout = probingLayout(s, levels);
  const tables = probeTables(Math.max(1, layout.rows), layout.range, r);
  const probe = mod.upload("u32", tables.probe);
  const softmax = mod.upload("f32", tables.softmax);
  const [logitHand, logitDerived] = [mod.alloc("f32", tables.softmax.length), mod.alloc("f32", tables.softmax.length)];
  const [hand, derived] = [mod.alloc("f32", P), mod.alloc("f32", P)];
  mod.kernels.gridBackward!(n, x, params, probe, softmax, dy, hand, logitHand);
  mod.kernels.gridForwardParamGrad!(n, x, params, probe, softmax, dy, derived, logitDerived);
  const [dxHand, dxDerived] = [mod.alloc("f32", n * s.dims), mod.alloc("f32", n * s.dims)];
  mod.kernels.gridInputGrad!(n, x, params, probe, dy, dxHand);
  mod.kernels.gridForwardInputGrad!(n, x, params, probe, softmax, dy, dxDerived);
  const out = { param: relErr(hand.download(), derived.download()), input: relErr(dxHand.download(), dxDerived.download()), logits: relErr(logitHand.download(), logitDerived.download()) };
  mod.close();
  return out;
}

// Small grids (few levels, small tables) so that D = 8 (256 corners per cell) builds quickly.
const CASES: [string, HashGridOptionsInput][] = [
  ["1D linear hash", { dims: 1, levels: 3, log2HashmapSize: 8, baseResolution: 64, perLevelScale: 4 }],
  ["2D linear hash", { dims: 2, levels: 4, log2HashmapSize: 10, baseResolution: 8, perLevelScale: 2 }],
  ["2D smoothstep hash", { dims: 2, levels: 4, log2HashmapSize: 10, baseResolution: 8, perLevelScale: 2, interpolation: "smoothstep" }],
  ["2D nearest hash", { dims: 2, levels: 3, log2HashmapSize: 10, baseResolution: 8, perLevelScale: 2, interpolation: "nearest" }],
  ["2D dense", { dims: 2, levels: 3, baseResolution: 4, perLevelScale: 2, gridType: "dense" }],
  ["3D tiled", { dims: 3, levels: 3, log2HashmapSize: 12, baseResolution: 4, perLevelScale: 2, gridType: "tiled" }],
  ["3D smoothstep hash", { dims: 3, levels: 3, log2HashmapSize: 10, baseResolution: 4, perLevelScale: 2, interpolation: "smoothstep" }],
  ["4D linear hash", { dims: 4, levels: 2, log2HashmapSize: 10, baseResolution: 4, perLevelScale: 2 }],
  ["5D linear hash", { dims: 5, levels: 2, log2HashmapSize: 10, baseResolution: 3, perLevelScale: 2 }],
  ["6D linear hash", { dims: 6, levels: 1, log2HashmapSize: 10, baseResolution: 3 }],
  ["7D linear hash", { dims: 7, levels: 1, log2HashmapSize: 10, baseResolution: 3 }],
  ["8D linear hash", { dims: 8, levels: 1, log2HashmapSize: 10, baseResolution: 3 }],
  // Learned probing: the straight-through logit gradient is the derivative feature() declares.
  ["2D probing N_p = 4", { dims: 2, levels: 4, log2HashmapSize: 10, baseResolution: 8, perLevelScale: 2, probing: { range: 4, codebookSize: 64 } }],
  ["3D probing N_p = 16", { dims: 3, levels: 3, log2HashmapSize: 10, baseResolution: 4, perLevelScale: 2, probing: { range: 16, codebookSize: 32 } }],
];

describe("derived grid gradients against the hand-written kernels", () => {
  for (const [name, options] of CASES) {
    test(`${name} (JS)`, async () => {
      const seed = freshSeed(`adjoint ${name}`);
      const { param, input, logits } = await compare(options, "js", seed);
      if (options.probing) {
        expect(logits.scale).toBeGreaterThan(0);
        expect(logits.err).toBeLessThan(1e-5); // the hand-written kernel sums over features first
      }
      // The parameter gradient adds the same products (corners in the opposite order): equal to
      // f32 rounding of a sum. The input gradient is the same derivative computed another way.
      expect(param.scale).toBeGreaterThan(0);
      expect(param.err).toBeLessThan(1e-6);
      if (options.interpolation === "nearest") expect(input.scale).toBe(0);
      else expect(input.err).toBeLessThan(1e-4);
    }, TEST_TIMEOUT);
  }
  test.skipIf(!CPU)("2D linear hash and 3D smoothstep (CPU): the same", async () => {
    for (const [, options] of [CASES[1]!, CASES[6]!]) {
      const { param, input } = await compare(options, "cpu", freshSeed("adjoint cpu"));
      expect(param.err).toBeLessThan(1e-6);
      expect(input.err).toBeLessThan(1e-4);
    }
  }, 240_000);
});

// ---- the network: the derived backward passes against the hand-written ones ----------------------

const MLP = resolve(import.meta.dir, "../../dsl/kernels/mlp.ts");
const MLP_ORACLE = resolve(import.meta.dir, "../oracles/mlp_hand.ts");
/** [name, options, exact]: exact where the derived rules compute the same products as the hand-written ones. */
const MLP_CASES: [string, MlpOptionsInput, boolean][] = [
  ["relu, biases, 2 hidden layers, l2", { inputs: 5, outputs: 3, width: 16, hiddenLayers: 2, biases: true }, true],
  ["leaky_relu, exponential output, 3 hidden layers, huber", { inputs: 3, outputs: 4, width: 16, hiddenLayers: 3, activation: "leaky_relu", outputActivation: "exponential", leak: 0.1, loss: "huber", huberDelta: 0.5 }, true],
  ["tanh, no biases, width 32, l1", { inputs: 8, outputs: 1, width: 32, hiddenLayers: 1, activation: "tanh", loss: "l1" }, true],
  // The hand-written derivatives of these are written from the output y (y (1 - y), 1 - e^-y), and
  // relative L2's from its own formula (the derived one divides in another order).
  ["sigmoid, softplus output, biases, relative_l2", { inputs: 4, outputs: 3, width: 16, hiddenLayers: 2, activation: "sigmoid", outputActivation: "softplus", biases: true, loss: "relative_l2" }, false],
  ["softplus, sigmoid output", { inputs: 2, outputs: 2, width: 16, hiddenLayers: 1, activation: "softplus", outputActivation: "sigmoid" }, false],
];

async function compareMlp(options: MlpOptionsInput, backend: "js" | "cpu", seed: number) {
  const s = parseMlpOptions({ ...options, inputGrad: true });
  const layout = mlpLayout(s);
  const rows = 16;
  const load = { backend, cacheDir, config: mlpConfig(s, layout, rows) };
  const mod = await loadKernels(MLP, { ...load, kernels: ["mlpForwardGrad", "mlpForwardParamGrad", "mlpTrainStep", "mlpTrainStepInputGrad"] });
  const oracle = await loadKernels(MLP_ORACLE, load);
  const r = rng(seed);
  const n = 3 * rows + 5; // a partial block at the end
  const P = layout.paramCount;
  const up = (m: typeof mod, a: Float32Array) => m.upload("f32", a);
  const [x, params, dy, target] = [uniformF32(r, n * s.inputs, -1, 1), uniformF32(r, P, -0.5, 0.5), uniformF32(r, n * s.outputs, -1, 1), uniformF32(r, n * s.outputs, 0, 1)];
  const before = uniformF32(r, n * s.inputs, -1, 1); // the derived input gradients add to what is there
  const scale = 1 / (n * s.outputs);
  // The backward from dy.
  const [hand, derived, paramOnly] = [oracle.alloc("f32", P), mod.alloc("f32", P), mod.alloc("f32", P)];
  const [dxHand, dxDerived] = [oracle.alloc("f32", n * s.inputs), up(mod, before)];
  oracle.kernels.mlpBackward!(n, up(oracle, x), up(oracle, dy), up(oracle, params), hand, dxHand);
  mod.kernels.mlpForwardGrad!(n, up(mod, x), up(mod, params), up(mod, dy), derived, dxDerived);
  mod.kernels.mlpForwardParamGrad!(n, up(mod, x), up(mod, params), up(mod, dy), paramOnly);
  // The training step: forward, loss, backward.
  const [stepHand, stepDerived, stepParamOnly] = [oracle.alloc("f32", P), mod.alloc("f32", P), mod.alloc("f32", P)];
  const [lossHand, lossDerived, lossParamOnly] = [oracle.alloc("f32", 1), mod.alloc("f32", 1), mod.alloc("f32", 1)];
  const [stepDxHand, stepDxDerived] = [oracle.alloc("f32", n * s.inputs), up(mod, before)];
  oracle.kernels.mlpTrain!(n, up(oracle, x), up(oracle, target), up(oracle, params), stepHand, stepDxHand, lossHand, scale);
  mod.kernels.mlpTrainStepInputGrad!(n, up(mod, x), up(mod, target), up(mod, params), lossDerived, scale, up(mod, Float32Array.of(1)), stepDerived, stepDxDerived);
  mod.kernels.mlpTrainStep!(n, up(mod, x), up(mod, target), up(mod, params), lossParamOnly, scale, up(mod, Float32Array.of(1)), stepParamOnly);
  const plus = (d: Float32Array) => d.map((v, i) => Math.fround(before[i]! + v));
  const out = {
    backward: { hand: hand.download(), derived: derived.download(), paramOnly: paramOnly.download(), dx: plus(dxHand.download()), dxDerived: dxDerived.download() },
    step: { hand: stepHand.download(), derived: stepDerived.download(), paramOnly: stepParamOnly.download(), dx: plus(stepDxHand.download()), dxDerived: stepDxDerived.download() },
    loss: [lossHand.download()[0]!, lossDerived.download()[0]!, lossParamOnly.download()[0]!],
  };
  mod.close();
  oracle.close();
  return out;
}

type MlpGrads = Awaited<ReturnType<typeof compareMlp>>["step"];
function expectMlpGrads(g: MlpGrads, exact: boolean): void {
  expect(relErr(g.hand, g.hand).scale).toBeGreaterThan(0);
  expect([...g.paramOnly]).toEqual([...g.derived]); // without the input gradient: the same kernel minus its last products
  if (exact) {
    expect([...g.derived]).toEqual([...g.hand]);
    expect([...g.dxDerived]).toEqual([...g.dx]);
  } else {
    expect(relErr(g.hand, g.derived).err).toBeLessThan(1e-5);
    expect(relErr(g.dx, g.dxDerived).err).toBeLessThan(1e-5);
  }
}

describe("the derived MLP backward passes (tile operations) against the hand-written ones (test/oracles/mlp_hand.ts)", () => {
  for (const [name, options, exact] of MLP_CASES) {
    test(`${name} (JS): the training step and the backward from dy`, async () => {
      const o = await compareMlp(options, "js", freshSeed(`mlp adjoint ${name}`));
      expectMlpGrads(o.backward, exact);
      expectMlpGrads(o.step, exact);
      expect(o.loss[1]).toBe(o.loss[0]!); // the same forward and loss, written by the derived step (`outputs`)
      expect(o.loss[2]).toBe(o.loss[0]!);
    }, 60_000);
  }
  test.skipIf(!CPU)("relu/l2 and sigmoid/softplus/relative_l2 (CPU): the same", async () => {
    for (const [, options, exact] of [MLP_CASES[0]!, MLP_CASES[3]!]) {
      const o = await compareMlp(options, "cpu", freshSeed("mlp adjoint cpu"));
      expectMlpGrads(o.backward, exact);
      expectMlpGrads(o.step, exact);
      expect(o.loss[1]).toBe(o.loss[0]!);
    }
  }, 240_000);
});

// ---- every derivative rule, by central differences ----------------------------------------------

const dir = mkdtempSync(join(tmpdir(), "ngpk-adjoint-"));
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));

/** Points where each intrinsic is smooth (away from kinks and domain limits). */
const DOMAIN: Record<string, [number, number]> = { sqrt: [0.5, 2], rsqrt: [0.5, 2], log: [0.5, 2], log2: [0.5, 2], pow: [0.5, 2] };

test("every intrinsic with f32 arguments and result has a derivative rule, and it matches central differences", async () => {
  const seed = freshSeed("derivative rules");
  const r = rng(seed);
  const checked: string[] = [];
  for (const [name, entry] of Object.entries(INTRINSICS)) {
    const e = entry as { params: readonly string[]; ret: string; T?: string[]; tile?: unknown; grad?: unknown };
    if (e.tile || !(e.ret === "f32" || (e.ret === "T" && e.T?.includes("f32")))) continue;
    const floatArgs = e.params.map((p) => p === "f32" || p === "T");
    if (!floatArgs.some(Boolean) || e.params.some((p) => p.startsWith("Buf") || p === "..." || p === "fn")) continue;
    if (name === "f32") continue; // the conversion: identity on f32, no derivative from integers
    expect(e.grad, `${name} has no grad rule`).toBeDefined();
    // y[i] = fn(a[i], b[i], ...) with its adjoint wrt every argument buffer.
    const args = e.params.map((p, k) => (p === "bool" ? `c[i] > 0.0` : `a${k}[i]`));
    const bufs = e.params.flatMap((p, k) => (p === "bool" ? ["c: Buf<f32>"] : [`a${k}: Buf<f32>`]));
    const wrt = e.params.flatMap((p, k) => (p === "bool" ? [] : [`a${k}`]));
    const file = join(dir, `${name}.ts`);
    writeFileSync(
      file,
      `import { type Buf, type f32, type u32, ${name} } from "${resolve(import.meta.dir, "../../dsl/index.ts")}";
/**
 * @kernel
 * @adjoint grad ${wrt.join(",")}
 */
export function f(i: u32, ${bufs.join(", ")}, y: Buf<f32>): void {
  y[i] = ${name}(${args.join(", ")});
}
`,
    );
    const mod = await loadKernels(file, { backend: "js", cacheDir, kernels: ["f", "grad"] });
    const n = 64;
    const [lo, hi] = DOMAIN[name] ?? [-2, 2];
    const inputs = e.params.map(() => uniformF32(r, n, lo, hi));
    const dy = uniformF32(r, n, -1, 1);
    const grads = wrt.map(() => mod.alloc("f32", n));
    const bufsIn = inputs.map((a) => mod.upload("f32", a));
    mod.kernels.grad!(n, ...bufsIn, mod.upload("f32", dy), ...grads);
    // Central differences of L = sum_i dy[i] y[i], per argument, in f64 through the JS twin.
    const impl = (entry as { impl: (...a: unknown[]) => number }).impl;
    if (name === "detach") {
      // A stop-gradient: the identity whose derivative is 0 by definition.
      expect([...grads[0]!.download()]).toEqual(new Array(n).fill(0));
      mod.close();
      checked.push(name);
      continue;
    }
    let wi = 0;
    for (let k = 0; k < e.params.length; k++) {
      if (e.params[k] === "bool") continue;
      const g = grads[wi++]!.download();
      let compared = 0;
      for (let i = 0; i < n; i++) {
        const at = (delta: number) => impl(...e.params.map((p, j) => (p === "bool" ? inputs[j]![i]! > 0 : inputs[j]![i]! + (j === k ? delta : 0))), "f32");
        const h = 1e-3;
        const fd = (dy[i]! * (at(h) - at(-h))) / (2 * h);
        // Kinks and jumps (abs, min, max, clamp, floor) are measure-zero: skip points with one
        // within 4h, where the one-sided slopes over 4h disagree (a kink nearer than h would
        // spoil the central difference; on the smooth domains here 4h|f''| stays far below 10%).
        const [ahead, behind] = [(at(4 * h) - at(0)) / (4 * h), (at(0) - at(-4 * h)) / (4 * h)];
        if (Math.abs(ahead - behind) > 0.1 * Math.max(1, Math.abs(ahead), Math.abs(behind))) continue;
        expect(Math.abs(g[i]! - fd), `${name} argument ${k} at ${inputs.map((a) => a[i]).join(", ")}`).toBeLessThan(2e-3 * Math.max(1, Math.abs(fd)));
        compared++;
      }
      expect(compared, `${name} argument ${k}: too many points skipped as kinks`).toBeGreaterThan(n / 2);
    }
    mod.close();
    checked.push(name);
  }
  expect(checked).toEqual(expect.arrayContaining(["abs", "min", "max", "clamp", "select", "detach", "fma", "sqrt", "rsqrt", "exp", "exp2", "log", "log2", "pow", "sin", "cos", "tanh", "floor", "ceil", "trunc"]));
}, 240_000);

// ---- refusals --------------------------------------------------------------------------------------

function refusal(body: string, tag = "@adjoint g x", params = "x: Buf<f32>, y: Buf<f32>"): string {
  const file = join(dir, `bad-${Math.random().toString(36).slice(2)}.ts`);
  writeFileSync(
    file,
    `import { type Buf, type f32, type u32, exp, select } from "${resolve(import.meta.dir, "../../dsl/index.ts")}";
/**
 * @kernel
 * ${tag}
 */
export function f(i: u32, ${params}): void {
${body}
}
`,
  );
  try {
    compileFile(file, "js", { kernels: ["g"] });
  } catch (e) {
    if (e instanceof DiagnosticError) return e.message;
    throw e;
  }
  return "compiled";
}

test("what cannot be differentiated correctly is refused with a code at the author's line", () => {
  expect(refusal("  let s: f32 = 0.0;\n  for (let k: u32 = 0; k < i; k++) {\n    s += x[k];\n  }\n  y[i] = s;")).toMatch(/NGP1055[\s\S]*loop that remains at run time[\s\S]*bad-\w+\.ts:8/);
  expect(refusal("  if (x[i] > 0.0) {\n    y[i] = x[i];\n  }")).toMatch(/NGP1055[\s\S]*branch[\s\S]*with effects/);
  expect(refusal("  x[i] = x[i] * 2.0;")).toMatch(/NGP1052/);
  expect(refusal("  y[i] = x[i];", "@adjoint g nope")).toMatch(/NGP1051[\s\S]*'nope' is not a buffer/);
  expect(refusal("  y[i] = x[i];", "@adjoint g")).toMatch(/NGP1051/);
  expect(refusal("  y[i] = select(x[i] > 0.0, exp(x[i]), x[i]);")).toBe("compiled");
});

test("a branch on a run-time value whose arms only compute values is differentiated as a select", async () => {
  const file = join(dir, "branch.ts");
  writeFileSync(
    file,
    `import { type Buf, type f32, type u32 } from "${resolve(import.meta.dir, "../../dsl/index.ts")}";
/**
 * @kernel
 * @adjoint g x
 */
export function f(i: u32, x: Buf<f32>, y: Buf<f32>): void {
  let s: f32 = x[i];
  if (s > 0.0) {
    const t: f32 = s * s;
    s = t * 3.0;
  } else {
    s = s * 2.0;
  }
  y[i] = s + x[i];
}
`,
  );
  const mod = await loadKernels(file, { backend: "js", cacheDir });
  const dx = mod.alloc("f32", 3);
  mod.kernels.g!(3, mod.upload("f32", [2, -1, -3]), mod.upload("f32", [1, 1, 0.5]), dx);
  expect([...dx.download()]).toEqual([6 * 2 + 1, 2 + 1, 0.5 * (2 + 1)]); // d(3s^2 + s) = 6s + 1; d(2s + s) = 3
  mod.close();
});

test("a helper's declared derivative (@grad) replaces the derived one; a wrong signature is refused", async () => {
  const file = join(dir, "custom.ts");
  const header = `import { type Buf, type f32, type u32, atomicAdd } from "${resolve(import.meta.dir, "../../dsl/index.ts")}";`;
  writeFileSync(
    file,
    `${header}
/** @grad squareGrad */
function square(x: Buf<f32>, i: u32): f32 {
  return x[i] * x[i];
}
/** Deliberately not the derivative (3x instead of 2x): the adjoint must use it as declared. */
function squareGrad(x: Buf<f32>, i: u32, adj: f32, d_x: Buf<f32>): void {
  atomicAdd(d_x, i, 3.0 * adj * x[i]);
}
/**
 * @kernel
 * @adjoint g x
 */
export function f(i: u32, x: Buf<f32>, y: Buf<f32>): void {
  y[i] = 2.0 * square(x, i) + x[i];
}
`,
  );
  const mod = await loadKernels(file, { backend: "js" });
  const x = mod.upload("f32", [1, 2, 3]);
  const [y, dx] = [mod.alloc("f32", 3), mod.alloc("f32", 3)];
  mod.kernels.f!(3, x, y);
  mod.kernels.g!(3, x, mod.upload("f32", [1, 1, 1]), dx);
  expect([...y.download()]).toEqual([3, 10, 21]); // the forward is unchanged
  expect([...dx.download()]).toEqual([7, 13, 19]); // 2 * 3x + 1: the declared derivative, then the rest
  mod.close();
  const bad = join(dir, "bad_grad.ts");
  writeFileSync(bad, `${header}
/** @grad squareGrad */
function square(x: Buf<f32>, i: u32): f32 {
  return x[i] * x[i];
}
function squareGrad(x: Buf<f32>, i: u32, adj: f32): void {
  atomicAdd(x, i, adj);
}
/** @kernel */
export function f(i: u32, x: Buf<f32>, y: Buf<f32>): void {
  y[i] = square(x, i);
}
`);
  expect(() => compileFile(bad, "js")).toThrow(/NGP1058[\s\S]*'squareGrad' must take \(x, i, adj: f32, d_x: Buf<f32>\) and return void[\s\S]*bad_grad\.ts:2/);
});

// The fused MLP of modules/mlp.ts (dsl/kernels/mlp.ts) against a float64 reference network written
// here, on fresh random inputs, targets and biases, for several widths, depths, activations and
// losses, with batches that end in a partial block: inference, the fused training step's loss,
// weight gradient and input gradient, the backward pass from a given output gradient; the
// reference's analytic gradients and the module's against central finite differences of the
// float64 reference; the CPU and JS backends bit for bit where every operation is exact
// (transcendentals follow each platform's math library, so tanh, sigmoid, softplus and exponential
// networks are compared within a few ulps instead); and a tiny network fitting a known function
// with the Adam optimizer.
import { beforeAll, describe, expect, test } from "bun:test";
import { compileFile } from "../../codegen/compile.ts";
import { CUDA_TILE_BYTES, cudaMlpRows, Mlp, MLP_KERNELS, mlpConfig, mlpKernels, mlpLayout, parseMlpOptions, type MlpLayout, type MlpOptionsInput, type MlpSettings } from "../../modules/mlp.ts";
import { Optimizer } from "../../modules/optimizer.ts";
import { allocBuffer } from "../../runtime/buffer.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { cacheDir, freshSeed, rng, uniformF32 } from "../util.ts";

const CPU = findCxx().tool !== undefined;
const BACKEND = CPU ? "cpu" : "js";
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

// ---- the float64 reference ------------------------------------------------------------------

type Act = MlpSettings["activation"];

function act(kind: Act, z: number, leak: number): number {
  switch (kind) {
    case "none": return z;
    case "relu": return Math.max(z, 0);
    case "leaky_relu": return z > 0 ? z : z * leak;
    case "sigmoid": return 1 / (1 + Math.exp(-z));
    case "tanh": return Math.tanh(z);
    case "softplus": return Math.log1p(Math.exp(z));
    case "exponential": return Math.exp(z);
  }
}

/** d act / d z. */
function actDeriv(kind: Act, z: number, leak: number): number {
  switch (kind) {
    case "none": return 1;
    case "relu": return z > 0 ? 1 : 0;
    case "leaky_relu": return z > 0 ? 1 : leak;
    case "sigmoid": { const s = 1 / (1 + Math.exp(-z)); return s * (1 - s); }
    case "tanh": return 1 - Math.tanh(z) ** 2;
    case "softplus": return 1 / (1 + Math.exp(-z));
    case "exponential": return Math.exp(z);
  }
}

interface Ref {
  s: MlpSettings;
  layout: MlpLayout;
  P: Float64Array;
}

interface Forward {
  /** Input of each layer ([n][fanIn]), pre-activations and outputs ([n][fanOut]). */
  ins: Float64Array[];
  zs: Float64Array[];
  ys: Float64Array[];
  out: Float64Array;
}

function refForward({ s, layout, P }: Ref, x: ArrayLike<number>, n: number): Forward {
  const L = s.hiddenLayers + 1;
  let h = Float64Array.from(x);
  const ins: Float64Array[] = [];
  const zs: Float64Array[] = [];
  const ys: Float64Array[] = [];
  for (let l = 0; l < L; l++) {
    const fi = layout.fanIn[l]!, fo = layout.fanOut[l]!, w = layout.weightOffset[l]!, b = layout.biasOffset[l]!;
    const kind = l === s.hiddenLayers ? s.outputActivation : s.activation;
    const z = new Float64Array(n * fo);
    const y = new Float64Array(n * fo);
    for (let i = 0; i < n; i++)
      for (let o = 0; o < fo; o++) {
        let acc = s.biases ? P[b + o]! : 0;
        for (let k = 0; k < fi; k++) acc += h[i * fi + k]! * P[w + o * fi + k]!;
        z[i * fo + o] = acc;
        y[i * fo + o] = act(kind, acc, s.leak);
      }
    ins.push(h);
    zs.push(z);
    ys.push(y);
    h = y;
  }
  return { ins, zs, ys, out: h };
}

/** The summed loss times scale and its gradient; relative L2's denominator is treated as a constant (frozen at `den`'s predictions when given). */
function refLoss(s: MlpSettings, p: ArrayLike<number>, t: ArrayLike<number>, scale: number, den?: ArrayLike<number>) {
  const dy = new Float64Array(p.length);
  let loss = 0;
  for (let i = 0; i < p.length; i++) {
    const d = p[i]! - t[i]!;
    const q = den ? den[i]! : p[i]!;
    let v: number, g: number;
    switch (s.loss) {
      case "l2": [v, g] = [d * d, 2 * d]; break;
      case "relative_l2": [v, g] = [(d * d) / (q * q + 0.01), (2 * d) / (q * q + 0.01)]; break;
      case "l1": [v, g] = [Math.abs(d), Math.sign(d)]; break;
      case "huber": {
        const delta = Math.fround(s.huberDelta); // the kernel compares against the f32 delta
        [v, g] = Math.abs(d) <= delta ? [0.5 * d * d, d] : [delta * (Math.abs(d) - 0.5 * delta), Math.sign(d) * delta];
        break;
      }
    }
    loss += v * scale;
    dy[i] = g * scale;
  }
  return { loss, dy };
}

/** Backprop of dy ([n][outputs]): the parameter gradient and dL/dx. */
function refBackward({ s, layout, P }: Ref, fw: Forward, dy: ArrayLike<number>, n: number) {
  const grad = new Float64Array(layout.paramCount);
  let g = Float64Array.from(dy);
  for (let l = s.hiddenLayers; l >= 0; l--) {
    const fi = layout.fanIn[l]!, fo = layout.fanOut[l]!, w = layout.weightOffset[l]!, b = layout.biasOffset[l]!;
    const kind = l === s.hiddenLayers ? s.outputActivation : s.activation;
    const z = fw.zs[l]!, h = fw.ins[l]!;
    for (let e = 0; e < n * fo; e++) g[e] = g[e]! * actDeriv(kind, z[e]!, s.leak);
    const dh = new Float64Array(n * fi);
    for (let i = 0; i < n; i++)
      for (let o = 0; o < fo; o++) {
        const go = g[i * fo + o]!;
        if (s.biases) grad[b + o]! += go;
        for (let k = 0; k < fi; k++) {
          grad[w + o * fi + k]! += go * h[i * fi + k]!;
          dh[i * fi + k]! += go * P[w + o * fi + k]!;
        }
      }
    g = dh;
  }
  return { grad, dx: g };
}

// ---- checks -------------------------------------------------------------------------------------

/** got within tol of want, relative to the largest |want| of its group (one layer's weights, biases, ...). */
function expectClose(what: string, got: ArrayLike<number>, want: ArrayLike<number>, groups: [string, number, number][], tol: number): void {
  expect(got.length).toBe(want.length);
  for (const [name, from, to] of groups) {
    let max = 0;
    for (let i = from; i < to; i++) max = Math.max(max, Math.abs(want[i]!));
    for (let i = from; i < to; i++) {
      const err = Math.abs(got[i]! - want[i]!);
      if (!(err <= tol * (max + Math.abs(want[i]!)) + 1e-30))
        throw new Error(`${what} (${name}) [${i}]: ${got[i]}, reference ${want[i]} (error ${err.toExponential(2)}, tolerance ${tol} x (${max.toExponential(2)} + |ref|))`);
    }
  }
}

/** The parameter vector's groups: each layer's weights, then each layer's biases. */
function paramGroups(layout: MlpLayout, biases: boolean): [string, number, number][] {
  const out: [string, number, number][] = layout.weightOffset.map((w, l) => [`W${l}`, w, w + layout.fanIn[l]! * layout.fanOut[l]!]);
  if (biases) layout.biasOffset.forEach((b, l) => out.push([`b${l}`, b, b + layout.fanOut[l]!]));
  return out;
}

interface Case {
  name: string;
  opts: MlpOptionsInput;
  n: number;
  /** Every operation exact (no transcendental): CPU and JS agree bit for bit. */
  exact: boolean;
}

const CASES: Case[] = [
  { name: "width 16, 1 hidden, relu, no biases, l2", opts: { inputs: 5, outputs: 3, width: 16, hiddenLayers: 1, activation: "relu", loss: "l2" }, n: 100, exact: true },
  {
    name: "width 32, 2 hidden, tanh -> sigmoid, biases, relative_l2, input gradient, 16 rows",
    opts: { inputs: 7, outputs: 2, width: 32, hiddenLayers: 2, activation: "tanh", outputActivation: "sigmoid", biases: true, loss: "relative_l2", inputGrad: true, rows: 16 },
    n: 100, exact: false,
  },
  {
    name: "width 16, 3 hidden, leaky_relu -> none, biases, l1, input gradient",
    opts: { inputs: 3, outputs: 4, width: 16, hiddenLayers: 3, activation: "leaky_relu", leak: 0.1, biases: true, loss: "l1", inputGrad: true, rows: 32 },
    n: 77, exact: true,
  },
  {
    name: "width 16, 1 hidden, softplus -> exponential, huber",
    opts: { inputs: 4, outputs: 1, width: 16, hiddenLayers: 1, activation: "softplus", outputActivation: "exponential", loss: "huber", huberDelta: 0.05, seed: 7, rows: 24 },
    n: 100, exact: false,
  },
];

for (const c of CASES) {
  describe(`Mlp ${c.name} (n ${c.n})`, () => {
    const r = rng(freshSeed(`mlp ${c.name}`));
    let mlp: Mlp;
    let js: Mlp | undefined;
    let ref: Ref;
    const { n } = c;
    let x: Float32Array, target: Float32Array, dyIn: Float32Array;
    beforeAll(async () => {
      mlp = await Mlp.create(c.opts, { backend: BACKEND, cacheDir });
      if (CPU) js = await Mlp.create(c.opts, { backend: "js", cacheDir });
      const { inputs, outputs } = mlp.settings;
      x = uniformF32(r, n * inputs, -1, 1);
      target = uniformF32(r, n * outputs, 0.1, 1);
      dyIn = uniformF32(r, n * outputs, -1, 1);
      // Random biases (they start at 0), the same on both backends.
      const p = mlp.params.download();
      if (mlp.settings.biases) for (const [l, b] of mlp.layout.biasOffset.entries()) for (let o = 0; o < mlp.layout.fanOut[l]!; o++) p[b + o] = (r() - 0.5) * 0.4;
      mlp.params.upload(p);
      js?.params.upload(p);
      ref = { s: mlp.settings, layout: mlp.layout, P: Float64Array.from(p) };
    });

    const train = (m: Mlp, scale?: number) => {
      m.grad.zero();
      const inputGrad = m.settings.inputGrad ? hostBuffer(m, n * m.settings.inputs) : undefined;
      const loss = m.trainStep(x, target, { scale, inputGrad });
      return { loss, grad: m.grad.download(), dx: inputGrad?.download() };
    };

    test("the layout and the initialization (tiny-cuda-nn's uniform ±sqrt(6 / (fanIn + fanOut)))", () => {
      const { layout, settings: s } = mlp;
      expect(layout.fanIn).toEqual([s.inputs, ...Array(s.hiddenLayers).fill(s.width)]);
      expect(layout.fanOut).toEqual([...Array(s.hiddenLayers).fill(s.width), s.outputs]);
      const weights = s.inputs * s.width + (s.hiddenLayers - 1) * s.width * s.width + s.width * s.outputs;
      expect(mlp.paramCount).toBe(weights + (s.biases ? s.hiddenLayers * s.width + s.outputs : 0));
      const p = ref.P;
      for (const [l, w] of layout.weightOffset.entries()) {
        const bound = Math.sqrt(6 / (layout.fanIn[l]! + layout.fanOut[l]!));
        let max = 0;
        for (let i = w; i < w + layout.fanIn[l]! * layout.fanOut[l]!; i++) max = Math.max(max, Math.abs(p[i]!));
        expect(max).toBeLessThanOrEqual(bound);
        expect(max).toBeGreaterThan(0.5 * bound);
      }
    });

    test("forward matches the float64 reference", () => {
      const y = mlp.forward(x).download();
      const want = refForward(ref, x, n).out;
      expectClose("forward", y, want, [["y", 0, want.length]], 1e-5);
    });

    test("trainStep: the mean loss, the weight gradient and the input gradient match the float64 reference", () => {
      const { loss, grad, dx } = train(mlp);
      const fw = refForward(ref, x, n);
      const scale = 1 / (n * mlp.settings.outputs);
      const rl = refLoss(mlp.settings, fw.out, target, scale);
      expect(Math.abs(loss - rl.loss)).toBeLessThanOrEqual(2e-5 * Math.abs(rl.loss));
      const rb = refBackward(ref, fw, rl.dy, n);
      expectClose("grad", grad, rb.grad, paramGroups(mlp.layout, mlp.settings.biases), 1e-5);
      if (mlp.settings.inputGrad) expectClose("input grad", dx!, rb.dx, [["dx", 0, rb.dx.length]], 1e-5);
      else expect(dx).toBeUndefined();
      // The scale multiplies the gradient, not the returned loss; the gradient accumulates.
      const scaled = train(mlp, 256);
      expect(Math.abs(scaled.loss - rl.loss)).toBeLessThanOrEqual(2e-5 * Math.abs(rl.loss));
      expectClose("grad x 256", scaled.grad, rb.grad.map((g) => g * 256), paramGroups(mlp.layout, mlp.settings.biases), 1e-5);
      mlp.trainStep(x, target, { scale: 256, inputGrad: mlp.settings.inputGrad ? hostBuffer(mlp, n * mlp.settings.inputs) : undefined });
      expectClose("grad accumulated twice", mlp.grad.download(), rb.grad.map((g) => g * 512), paramGroups(mlp.layout, mlp.settings.biases), 1e-5);
    });

    test("central finite differences of the float64 reference agree with its gradient and with the module's", () => {
      const { grad, dx } = train(mlp);
      const scale = 1 / (n * mlp.settings.outputs);
      const fw = refForward(ref, x, n);
      // Relative L2 differentiates with its denominator held constant: freeze it at these predictions.
      const den = fw.out;
      /** The loss, and where it sits on each kink (ReLU's, L1's, Huber's switch): a difference across a kink is no derivative. */
      const lossAt = (P: Float64Array, xs: ArrayLike<number>) => {
        const f = refForward({ ...ref, P }, xs, n);
        const side: boolean[] = [];
        f.zs.forEach((z, l) => {
          const kind = l === mlp.settings.hiddenLayers ? mlp.settings.outputActivation : mlp.settings.activation;
          if (kind === "relu" || kind === "leaky_relu") for (const v of z) side.push(v > 0);
        });
        f.out.forEach((p, i) => side.push(p > target[i]!, Math.abs(p - target[i]!) <= mlp.settings.huberDelta));
        return { loss: refLoss(mlp.settings, f.out, target, scale, den).loss, side: side.join() };
      };
      const rb = refBackward(ref, fw, refLoss(mlp.settings, fw.out, target, scale).dy, n);
      const h = 1e-7;
      /** Central difference of the loss along one coordinate (of P or of x); undefined across a kink. */
      const central = (set: (delta: number) => [Float64Array, ArrayLike<number>]) => {
        const up = lossAt(...set(h));
        const down = lossAt(...set(-h));
        return up.side === down.side ? (up.loss - down.loss) / (2 * h) : undefined;
      };
      const check = (what: string, fd: number, reference: number, module: number, max: number) => {
        if (!(Math.abs(fd - reference) <= 1e-5 * (max + Math.abs(fd)) + 1e-12)) throw new Error(`${what}: finite difference ${fd}, reference gradient ${reference}`);
        if (!(Math.abs(fd - module) <= 2e-5 * (max + Math.abs(fd)) + 1e-12)) throw new Error(`${what}: finite difference ${fd}, module gradient ${module}`);
      };
      let checked = 0;
      for (const [name, from, to] of paramGroups(mlp.layout, mlp.settings.biases)) {
        let max = 0;
        for (let i = from; i < to; i++) max = Math.max(max, Math.abs(rb.grad[i]!));
        for (let s = 0; s < 3; s++) {
          const i = from + Math.floor(r() * (to - from));
          const fd = central((d) => {
            const P = Float64Array.from(ref.P);
            P[i] = ref.P[i]! + d;
            return [P, x];
          });
          if (fd !== undefined) (check(`${name}[${i - from}]`, fd, rb.grad[i]!, grad[i]!, max), checked++);
        }
      }
      if (mlp.settings.inputGrad) {
        let max = 0;
        for (const v of rb.dx) max = Math.max(max, Math.abs(v));
        for (let s = 0; s < 4; s++) {
          const i = Math.floor(r() * x.length);
          const fd = central((d) => {
            const xs = Float64Array.from(x);
            xs[i] = x[i]! + d;
            return [ref.P, xs];
          });
          if (fd !== undefined) (check(`dx[${i}]`, fd, rb.dx[i]!, dx![i]!, max), checked++);
        }
      }
      expect(checked).toBeGreaterThan(0);
    });

    test("backward from a given output gradient matches the reference", () => {
      mlp.grad.zero();
      const inputGrad = mlp.settings.inputGrad ? hostBuffer(mlp, n * mlp.settings.inputs) : undefined;
      mlp.backward(x, dyIn, { inputGrad });
      const rb = refBackward(ref, refForward(ref, x, n), dyIn, n);
      expectClose("backward grad", mlp.grad.download(), rb.grad, paramGroups(mlp.layout, mlp.settings.biases), 1e-5);
      if (inputGrad) expectClose("backward input grad", inputGrad.download(), rb.dx, [["dx", 0, rb.dx.length]], 1e-5);
    });

    test.skipIf(!CPU)(c.exact ? "CPU and JS agree bit for bit (forward, loss, gradient, input gradient)" : "CPU and JS agree within a few ulps (transcendentals follow each platform's library)", () => {
      const a = { y: mlp.forward(x).download(), ...train(mlp) };
      const b = { y: js!.forward(x).download(), ...train(js!) };
      if (c.exact) {
        expect(bits(a.y)).toEqual(bits(b.y));
        expect(a.loss).toBe(b.loss);
        expect(bits(a.grad)).toEqual(bits(b.grad));
        if (a.dx) expect(bits(a.dx)).toEqual(bits(b.dx!));
      } else {
        expectClose("forward cpu vs js", a.y, b.y, [["y", 0, a.y.length]], 1e-6);
        expect(Math.abs(a.loss - b.loss)).toBeLessThanOrEqual(1e-6 * Math.abs(a.loss));
        expectClose("grad cpu vs js", a.grad, b.grad, paramGroups(mlp.layout, mlp.settings.biases), 1e-5);
        if (a.dx) expectClose("input grad cpu vs js", a.dx, b.dx!, [["dx", 0, a.dx.length]], 1e-5);
      }
    });
  });
}

test("a tiny network fits a known function with Adam: the held-out loss drops by at least 50x in 300 steps", async () => {
  const r = rng(freshSeed("mlp fit"));
  const mlp = await Mlp.create({ inputs: 2, outputs: 1, width: 16, hiddenLayers: 2, activation: "tanh", biases: true, seed: Math.floor(r() * 1e6) }, { backend: BACKEND, cacheDir });
  const opt = await Optimizer.create([{ name: "network", params: mlp.params, grad: mlp.grad }], { lr: 1e-2 }, { backend: BACKEND, cacheDir });
  // An offset, so that no initialization starts close (biases let the network represent it).
  const f = (u: number, v: number) => 0.5 * Math.sin(2 * u) + 0.3 * v + 0.4;
  const n = 100; // batches of 100, 117 and 134 items: each ends in a partial block
  const batch = (m: number) => {
    const x = uniformF32(r, 2 * m, -1, 1);
    return { x, t: Float32Array.from({ length: m }, (_, i) => f(x[2 * i]!, x[2 * i + 1]!)) };
  };
  const held = batch(200);
  const heldLoss = () => {
    const y = mlp.forward(held.x).download();
    return y.reduce((s, v, i) => s + (v - held.t[i]!) ** 2, 0) / y.length;
  };
  const before = heldLoss();
  let first = 0;
  let last = 0;
  for (let step = 0; step < 300; step++) {
    const { x, t } = batch(n + (step % 3) * 17);
    last = mlp.trainStep(x, t);
    if (step === 0) first = last;
    opt.update();
  }
  const after = heldLoss();
  console.log(`[mlp fit] held-out loss ${before.toExponential(3)} -> ${after.toExponential(3)} (${(before / after).toFixed(0)}x); training loss ${first.toExponential(3)} -> ${last.toExponential(3)}`);
  expect(before / after).toBeGreaterThanOrEqual(50);
  expect(first / last).toBeGreaterThanOrEqual(10);
  expect(Array.from(mlp.grad.download()).every((g) => g === 0)).toBe(true); // zeroed by the update
  opt.close();
  mlp.close();
});

/** A zeroed f32 buffer for dL/d input on the module's (host) backend. */
function hostBuffer(m: Mlp, length: number) {
  if (m.backend === "cuda") throw new Error("these tests run on host backends");
  return allocBuffer(m.backend, "f32", length);
}

test("on CUDA the rows per block are chosen so that a block's tiles fit in its 48 KiB of shared memory", async () => {
  const cases: [MlpOptionsInput, number][] = [
    [{ inputs: 32, outputs: 3, width: 64, hiddenLayers: 2, inputGrad: true }, 16],
    [{ inputs: 32, outputs: 16, width: 128, hiddenLayers: 3, biases: true, activation: "tanh", inputGrad: true }, 8],
    [{ inputs: 64, outputs: 16, width: 128, hiddenLayers: 8 }, 4],
  ];
  for (const [options, expected] of cases) {
    const s = parseMlpOptions(options);
    const layout = mlpLayout(s);
    const rows = await cudaMlpRows(s, layout);
    expect(rows).toBe(expected);
    const bytes = (r: number) => Math.max(...compileFile(MLP_KERNELS, "cuda", { config: mlpConfig(s, layout, r), kernels: mlpKernels(s) }).kernels.map((k) => k.tileBytes!));
    expect(bytes(rows)).toBeLessThanOrEqual(CUDA_TILE_BYTES);
    if (rows < 16) expect(bytes(rows * 2)).toBeGreaterThan(CUDA_TILE_BYTES); // the most that fit
  }
  // Rows given that do not fit are refused, naming the field.
  const s = parseMlpOptions({ inputs: 64, outputs: 16, width: 128, hiddenLayers: 8, rows: 64 });
  await expect(cudaMlpRows(s, mlpLayout(s))).rejects.toThrow(/mlp\.rows: 64 rows per block need \d+ bytes of CUDA shared memory/);
});

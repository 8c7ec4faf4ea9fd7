// The fused losses of dsl/kernels/loss.ts (lossAndGrad, the compiler's adjoint of lossSum) against their definitions
// in float64, on fresh random predictions and targets (some targets equal to their prediction, so
// that L1's and Huber's kinks are hit), with batches that end in a partial block and some with more
// blocks than accumulate()'s 16 slots; the CPU and JS backends bit for bit.
import { beforeAll, describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { HUBER, L1, L2, RELATIVE_L2 } from "../../dsl/kernels/loss.ts";
import { loadKernels, type KernelModule } from "../../modules/load.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { cacheDir, freshSeed, rng, uniformF32 } from "../util.ts";

const FILE = resolve(import.meta.dir, "../../dsl/kernels/loss.ts");
const CPU = findCxx().tool !== undefined;
const fr = Math.fround;

/** The definitions (per element, before the scale): value and d value / d p. */
const DEFS: Record<number, { value: (p: number, t: number, delta: number) => number; grad: (p: number, t: number, delta: number) => number }> = {
  [L2]: { value: (p, t) => (p - t) ** 2, grad: (p, t) => 2 * (p - t) },
  // tiny-cuda-nn's relative L2: (p - t)² / (p² + 0.01), its denominator treated as a constant.
  [RELATIVE_L2]: { value: (p, t) => (p - t) ** 2 / (p * p + 0.01), grad: (p, t) => (2 * (p - t)) / (p * p + 0.01) },
  [L1]: { value: (p, t) => Math.abs(p - t), grad: (p, t) => Math.sign(p - t) },
  [HUBER]: {
    value: (p, t, delta) => (Math.abs(p - t) <= delta ? 0.5 * (p - t) ** 2 : delta * (Math.abs(p - t) - 0.5 * delta)),
    grad: (p, t, delta) => Math.max(-delta, Math.min(delta, p - t)),
  },
};

const CASES = [
  { name: "l2", kind: L2, rows: 16, width: 3, huberDelta: 1, n: 16 * 5 + 7 },
  { name: "relative_l2", kind: RELATIVE_L2, rows: 64, width: 1, huberDelta: 1, n: 100 },
  { name: "l1", kind: L1, rows: 8, width: 4, huberDelta: 1, n: 8 * 20 + 3 },
  { name: "huber", kind: HUBER, rows: 32, width: 2, huberDelta: 0.3, n: 45 },
];

const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
const EXTRA = 3; // values after the batch's gradient that must stay untouched

function run(mod: KernelModule, pred: Float32Array, target: Float32Array, n: number, width: number, scale: number, gradInit: Float32Array) {
  const grad = mod.upload("f32", gradInit);
  const loss = mod.upload("f32", [0.5]); // accumulated into: the kernel adds to what is there
  mod.kernels.lossAndGrad!(n, mod.upload("f32", pred), mod.upload("f32", target), loss, scale, mod.upload("f32", [1]), grad);
  return { grad: grad.download() as Float32Array, loss: loss.download() as Float32Array };
}

for (const c of CASES) {
  describe(`loss ${c.name} (rows ${c.rows}, width ${c.width}, n ${c.n})`, () => {
    const config = { rows: c.rows, width: c.width, kind: c.kind, huberDelta: c.huberDelta };
    let js: KernelModule;
    let cpu: KernelModule | undefined;
    const r = rng(freshSeed(`loss ${c.name}`));
    const len = c.n * c.width;
    const pred = uniformF32(r, len, -2, 2);
    const target = uniformF32(r, len, -2, 2);
    for (let i = 0; i < len; i += 7) target[i] = pred[i]!; // d = 0: L1's sign is 0, Huber's quadratic side
    const scale = fr((0.5 + r()) / len);
    const gradInit = Float32Array.from({ length: len + EXTRA }, (_, i) => (i < len ? 0 : 7)); // the gradient is added to
    let out: ReturnType<typeof run>;
    let outJs: ReturnType<typeof run>;
    beforeAll(async () => {
      js = await loadKernels(FILE, { backend: "js", config, cacheDir });
      if (CPU) cpu = await loadKernels(FILE, { backend: "cpu", config, cacheDir });
      outJs = run(js, pred, target, c.n, c.width, scale, gradInit);
      out = cpu ? run(cpu, pred, target, c.n, c.width, scale, gradInit) : outJs;
    });

    test("the gradient is d loss / d prediction times scale, per element (rows past the batch untouched)", () => {
      const def = DEFS[c.kind]!;
      const delta = fr(c.huberDelta); // the kernel compares against the f32 delta
      for (let i = 0; i < len; i++) {
        const want = def.grad(pred[i]!, target[i]!, delta) * scale;
        const got = out.grad[i]!;
        if (!(Math.abs(got - want) <= 1e-6 * Math.abs(want) + 1e-30))
          throw new Error(`grad[${i}] = ${got}, want ${want} (p ${pred[i]}, t ${target[i]})`);
      }
      for (let i = len; i < len + EXTRA; i++) expect(out.grad[i]).toBe(7);
    });

    test("the loss is the sum of the elements' losses times scale, added to loss[0]", () => {
      const def = DEFS[c.kind]!;
      const delta = fr(c.huberDelta); // the kernel compares against the f32 delta
      let sum = 0;
      let abs = 0;
      for (let i = 0; i < len; i++) {
        const v = def.value(pred[i]!, target[i]!, delta) * scale;
        sum += v;
        abs += Math.abs(v);
      }
      expect(Math.abs(out.loss[0]! - (0.5 + sum))).toBeLessThanOrEqual(1e-5 * (abs + 0.5));
    });

    test.skipIf(!CPU)("CPU and JS agree bit for bit", () => {
      expect(bits(out.grad)).toEqual(bits(outJs.grad));
      expect(bits(out.loss)).toEqual(bits(outJs.loss));
    });
  });
}

test("the batch need not be a multiple of the rows: one item, one partial block", async () => {
  const mod = await loadKernels(FILE, { backend: "js", config: { rows: 16, width: 3, kind: L2, huberDelta: 1 }, cacheDir });
  const { grad, loss } = run(mod, Float32Array.of(1, 2, 3), Float32Array.of(0, 2, 5), 1, 3, 1, new Float32Array(3 + EXTRA).fill(7));
  expect(Array.from(grad)).toEqual([7 + 2, 7 + 0, 7 - 4, 7, 7, 7]); // added to the gradient there
  expect(loss[0]).toBe(0.5 + 1 + 0 + 4);
});

test("the Loss module: mean loss and gradient of the mean, sizes checked", async () => {
  const { Loss } = await import("../../modules/loss.ts");
  const loss = await Loss.create({ kind: "l1", width: 3 }, { backend: "js" });
  const r = loss.evaluate(Float32Array.from([1, 2, 3, 4, 5, 6]), Float32Array.from([0, 2, 5, 4, 4, 6]));
  expect(r.loss).toBeCloseTo(4 / 6, 6);
  expect(Array.from(r.grad.download())).toEqual([1, 0, -1, 0, 1, 0].map((s) => Math.fround(s / 6)));
  expect(() => loss.evaluate(new Float32Array(4), new Float32Array(4))).toThrow(/whole number of items of 3/);
  await expect(Loss.create({ kind: "l3" as "l1", width: 3 })).rejects.toThrow(/loss.kind: "l3" is not allowed \(allowed: l2, relative_l2, l1, huber\)/);
});

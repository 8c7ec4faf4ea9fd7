// The optimizers of modules/optimizer.ts against their defining formulas, on fresh random
// parameters and gradients over several steps: Adam in tiny-cuda-nn's form (bias corrections folded
// into the step size lr * sqrt(1 - b2^t) / (1 - b1^t); g += weightDecay * param;
// param -= step * m / (sqrt(v) + eps)) in float64 within f32 rounding, and bit for bit against the
// same formulas evaluated in f32 in the kernel's order; the gradient zeroed by the update; groups
// with their own learning rates and weight decay; state()/restore() continuing identically; SGD;
// refused settings naming their field; the CPU and JS backends bit for bit.
import { describe, expect, test } from "bun:test";
import { ConfigError } from "../../modules/options.ts";
import { Optimizer, type OptimizerOptionsInput, type ParamGroup } from "../../modules/optimizer.ts";
import { allocBuffer, type DeviceBuffer } from "../../runtime/buffer.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { cacheDir, freshSeed, rng, uniformF32 } from "../util.ts";

const CPU = findCxx().tool !== undefined;
const BACKEND = CPU ? "cpu" : "js";
const fr = Math.fround;
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

interface RefGroup {
  lr: number;
  wd: number;
  /** float64 state. */
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
  /** The same formulas in f32, in the kernel's order of operations. */
  p32: Float32Array;
  m32: Float32Array;
  v32: Float32Array;
}

const DEFAULTS = { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-15 };

function refGroup(p0: Float32Array, lr: number, wd: number): RefGroup {
  return {
    lr, wd,
    p: Float64Array.from(p0), m: new Float64Array(p0.length), v: new Float64Array(p0.length),
    p32: Float32Array.from(p0), m32: new Float32Array(p0.length), v32: new Float32Array(p0.length),
  };
}

/** One Adam step of a reference group at step t (1-based) with gradient g. */
function refAdam(r: RefGroup, g: Float32Array, t: number, o = DEFAULTS): void {
  const { beta1: b1, beta2: b2, eps } = o;
  const step = (r.lr * Math.sqrt(1 - b2 ** t)) / (1 - b1 ** t);
  for (let i = 0; i < g.length; i++) {
    const gi = g[i]! + r.wd * r.p[i]!;
    r.m[i] = b1 * r.m[i]! + (1 - b1) * gi;
    r.v[i] = b2 * r.v[i]! + (1 - b2) * gi * gi;
    r.p[i] = r.p[i]! - (step * r.m[i]!) / (Math.sqrt(r.v[i]!) + eps);
  }
  // f32: every operation rounded, scalars passed as f32.
  const [s, fb1, fb2, feps, fwd] = [fr(step), fr(b1), fr(b2), fr(eps), fr(r.wd)];
  for (let i = 0; i < g.length; i++) {
    const gi = fr(g[i]! + fr(fwd * r.p32[i]!));
    const mi = fr(fr(fb1 * r.m32[i]!) + fr(fr(1 - fb1) * gi));
    const vi = fr(fr(fb2 * r.v32[i]!) + fr(fr(fr(1 - fb2) * gi) * gi));
    r.m32[i] = mi;
    r.v32[i] = vi;
    r.p32[i] = fr(r.p32[i]! - fr(fr(s * mi) / fr(fr(Math.sqrt(vi)) + feps)));
  }
}

/** Within f32 rounding of the float64 reference: relative to the parameter's size and the steps taken. */
function expectNearRef(what: string, got: Float32Array, r: RefGroup, steps: number): void {
  for (let i = 0; i < got.length; i++) {
    const tol = 4e-6 * (Math.abs(r.p[i]!) + steps * r.lr);
    if (!(Math.abs(got[i]! - r.p[i]!) <= tol)) throw new Error(`${what}: param[${i}] = ${got[i]}, float64 reference ${r.p[i]} (tolerance ${tol})`);
  }
}

function groupOf(name: string, p0: Float32Array, backend: "cpu" | "js", extra: Partial<Omit<ParamGroup, "params">> = {}): ParamGroup & { params: DeviceBuffer<"f32">; grad: DeviceBuffer<"f32"> } {
  const params = allocBuffer(backend, "f32", p0.length);
  params.upload(p0);
  return { name, grad: allocBuffer(backend, "f32", p0.length), ...extra, params };
}

async function adam(groups: ParamGroup[], options: OptimizerOptionsInput = {}, backend: "cpu" | "js" = BACKEND) {
  return Optimizer.create(groups, options, { backend, cacheDir });
}

describe("Adam", () => {
  test("default settings: several steps against the formulas (float64 within f32 rounding, f32 order exactly); the gradient is zeroed", async () => {
    const r = rng(freshSeed("adam defaults"));
    const p0 = uniformF32(r, 257, -1, 1);
    const g = groupOf("net", p0, BACKEND);
    const opt = await adam([g]);
    expect(opt.settings).toMatchObject({ kind: "adam", ...DEFAULTS, weightDecay: 0 });
    const ref = refGroup(p0, 1e-2, 0);
    for (let t = 1; t <= 6; t++) {
      // Gradients of varying scale, some exactly 0.
      const grad = uniformF32(r, p0.length, -1, 1).map((x, i) => (i % 11 === 0 ? 0 : x * 10 ** (t % 3 - 1)));
      g.grad.upload(grad);
      opt.update();
      refAdam(ref, grad, t);
      expect(opt.step).toBe(t);
      expect(Array.from(g.grad.download()).every((x) => x === 0)).toBe(true);
      const got = g.params.download();
      expectNearRef(`step ${t}`, got, ref, t);
      expect(bits(got)).toEqual(bits(ref.p32));
      const st = opt.state();
      expect(bits(st.groups[0]!.m!)).toEqual(bits(ref.m32));
      expect(bits(st.groups[0]!.v!)).toEqual(bits(ref.v32));
    }
    opt.close();
  });

  test("weight decay (the optimizer's, and a group's own) is L2: g += wd * param", async () => {
    const r = rng(freshSeed("adam weight decay"));
    const p0 = uniformF32(r, 100, -3, 3);
    const a = groupOf("a", p0, BACKEND);
    const b = groupOf("b", p0, BACKEND, { weightDecay: 0.5 });
    const opt = await adam([a, b], { weightDecay: 0.1, beta1: 0.8, beta2: 0.95, eps: 1e-8, lr: 3e-3 });
    const o = { beta1: 0.8, beta2: 0.95, eps: 1e-8, lr: 3e-3 };
    const ra = refGroup(p0, 3e-3, 0.1);
    const rb = refGroup(p0, 3e-3, 0.5);
    for (let t = 1; t <= 5; t++) {
      const grad = uniformF32(r, p0.length, -0.1, 0.1);
      a.grad.upload(grad);
      b.grad.upload(grad);
      opt.update();
      refAdam(ra, grad, t, o);
      refAdam(rb, grad, t, o);
    }
    expectNearRef("group a", a.params.download(), ra, 5);
    expectNearRef("group b", b.params.download(), rb, 5);
    expect(bits(a.params.download())).toEqual(bits(ra.p32));
    expect(bits(b.params.download())).toEqual(bits(rb.p32));
    // Decay without a gradient still moves the parameters toward 0.
    const before = b.params.download();
    opt.update();
    const after = b.params.download();
    for (let i = 0; i < after.length; i++) if (Math.abs(before[i]!) > 0.1) expect(Math.abs(after[i]!)).toBeLessThan(Math.abs(before[i]!));
    opt.close();
  });

  test("two groups with different learning rates; setLearningRate takes effect on the next step", async () => {
    const r = rng(freshSeed("adam groups"));
    const pa = uniformF32(r, 64, -1, 1);
    const pb = uniformF32(r, 37, -1, 1);
    const a = groupOf("encoding", pa, BACKEND);
    const b = groupOf("network", pb, BACKEND, { lr: 1e-3 });
    const opt = await adam([a, b]);
    expect(opt.learningRate("encoding")).toBe(1e-2);
    expect(opt.learningRate("network")).toBe(1e-3);
    const ra = refGroup(pa, 1e-2, 0);
    const rb = refGroup(pb, 1e-3, 0);
    for (let t = 1; t <= 6; t++) {
      if (t === 4) {
        opt.setLearningRate("network", 5e-4);
        rb.lr = 5e-4;
      }
      const ga = uniformF32(r, pa.length, -1, 1);
      const gb = uniformF32(r, pb.length, -1, 1);
      a.grad.upload(ga);
      b.grad.upload(gb);
      opt.update();
      refAdam(ra, ga, t);
      refAdam(rb, gb, t);
    }
    expectNearRef("encoding", a.params.download(), ra, 6);
    expectNearRef("network", b.params.download(), rb, 6);
    expect(bits(a.params.download())).toEqual(bits(ra.p32));
    expect(bits(b.params.download())).toEqual(bits(rb.p32));
    expect(() => opt.learningRate("nope")).toThrow(/no parameter group "nope"/);
    expect(() => opt.setLearningRate("network", Number.NaN)).toThrow(RangeError);
    opt.close();
  });

  test("state() and restore() continue exactly where the checkpoint was taken", async () => {
    const r = rng(freshSeed("adam state"));
    const pa = uniformF32(r, 50, -1, 1);
    const pb = uniformF32(r, 20, -1, 1);
    const grads = Array.from({ length: 6 }, () => [uniformF32(r, pa.length, -1, 1), uniformF32(r, pb.length, -1, 1)] as const);
    const a = groupOf("a", pa, BACKEND);
    const b = groupOf("b", pb, BACKEND, { lr: 2e-3 });
    const opt = await adam([a, b]);
    const step = (o: Optimizer, ga: ParamGroup, gb: ParamGroup, t: number) => {
      ga.grad.upload(grads[t]![0]);
      gb.grad.upload(grads[t]![1]);
      o.update();
    };
    for (let t = 0; t < 3; t++) step(opt, a, b, t);
    opt.setLearningRate("b", 1.5e-3);
    const saved = opt.state();
    const savedParams = [a.params.download(), b.params.download()];
    expect(saved.step).toBe(3);
    for (let t = 3; t < 6; t++) step(opt, a, b, t);

    // A fresh optimizer over fresh buffers holding the saved parameters.
    const a2 = groupOf("a", savedParams[0]!, BACKEND);
    const b2 = groupOf("b", savedParams[1]!, BACKEND);
    const opt2 = await adam([a2, b2]);
    opt2.restore(structuredClone(saved));
    expect(opt2.step).toBe(3);
    expect(opt2.learningRate("b")).toBe(1.5e-3);
    for (let t = 3; t < 6; t++) step(opt2, a2, b2, t);
    expect(bits(a2.params.download())).toEqual(bits(a.params.download()));
    expect(bits(b2.params.download())).toEqual(bits(b.params.download()));
    expect(bits(opt2.state().groups[1]!.v!)).toEqual(bits(opt.state().groups[1]!.v!));
    // A state of the wrong size is refused, naming the group.
    const bad = structuredClone(saved);
    bad.groups[0]!.m = new Float32Array(3);
    expect(() => opt2.restore(bad)).toThrow(/group a has 3 values of m, expected 50/);
    opt.close();
    opt2.close();
  });

  test.skipIf(!CPU)("CPU and JS agree bit for bit", async () => {
    const r = rng(freshSeed("adam cpu vs js"));
    const p0 = uniformF32(r, 300, -1, 1);
    const grads = Array.from({ length: 4 }, () => uniformF32(r, p0.length, -2, 2));
    const out = await Promise.all(
      (["cpu", "js"] as const).map(async (backend) => {
        const g = groupOf("g", p0, backend);
        const opt = await adam([g], { weightDecay: 0.01 }, backend);
        for (const grad of grads) (g.grad.upload(grad), opt.update());
        const res = [g.params.download(), opt.state().groups[0]!.m!, opt.state().groups[0]!.v!];
        opt.close();
        return res;
      }),
    );
    for (let i = 0; i < 3; i++) expect(bits(out[0]![i]!)).toEqual(bits(out[1]![i]!));
  });
});

describe("SGD", () => {
  test("param -= lr * (grad + weightDecay * param), exactly in f32; the gradient is zeroed; no moments in the state", async () => {
    const r = rng(freshSeed("sgd"));
    const p0 = uniformF32(r, 129, -1, 1);
    const a = groupOf("a", p0, BACKEND);
    const b = groupOf("b", p0, BACKEND, { lr: 0.5, weightDecay: 0 });
    const opt = await Optimizer.create([a, b], { kind: "sgd", lr: 0.1, weightDecay: 0.2 }, { backend: BACKEND, cacheDir });
    const pa = Float32Array.from(p0);
    const pb = Float32Array.from(p0);
    const da = Float64Array.from(p0);
    for (let t = 0; t < 4; t++) {
      const grad = uniformF32(r, p0.length, -1, 1);
      a.grad.upload(grad);
      b.grad.upload(grad);
      opt.update();
      for (let i = 0; i < p0.length; i++) {
        pa[i] = fr(pa[i]! - fr(fr(0.1) * fr(grad[i]! + fr(fr(0.2) * pa[i]!))));
        pb[i] = fr(pb[i]! - fr(0.5 * fr(grad[i]! + 0 * pb[i]!)));
        da[i] = da[i]! - 0.1 * (grad[i]! + 0.2 * da[i]!);
      }
      expect(Array.from(a.grad.download()).every((x) => x === 0)).toBe(true);
    }
    const got = a.params.download();
    expect(bits(got)).toEqual(bits(pa));
    expect(bits(b.params.download())).toEqual(bits(pb));
    for (let i = 0; i < got.length; i++) expect(Math.abs(got[i]! - da[i]!)).toBeLessThanOrEqual(1e-6 * (Math.abs(da[i]!) + 1));
    const st = opt.state();
    expect(st.step).toBe(4);
    expect(st.groups[0]!.m).toBeUndefined();
    opt.close();
  });
});

describe("refused settings name the field", () => {
  const p = () => groupOf("g", new Float32Array(4), "js");
  const refuse = async (groups: ParamGroup[], options: unknown, pattern: RegExp) => {
    let err: unknown;
    try {
      await Optimizer.create(groups, options as OptimizerOptionsInput, { backend: "js", cacheDir });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(pattern);
  };
  test("lr", async () => {
    await refuse([p()], { lr: -1 }, /optimizer\.lr: -1 .*allowed: a number > 0/);
    await refuse([p()], { lr: 0 }, /optimizer\.lr: 0 /);
    await refuse([p()], { lr: Number.NaN }, /optimizer\.lr: NaN/);
    await refuse([p()], { lr: "fast" }, /optimizer\.lr: "fast" is not a number/);
  });
  test("kind, betas, eps, weightDecay, unknown options", async () => {
    await refuse([p()], { kind: "rmsprop" }, /optimizer\.kind: "rmsprop" is not allowed \(allowed: adam, sgd\)/);
    await refuse([p()], { beta1: 1 }, /optimizer\.beta1: 1 .*\[0, 1\)/);
    await refuse([p()], { beta2: -0.5 }, /optimizer\.beta2: -0\.5 /);
    await refuse([p()], { eps: 0 }, /optimizer\.eps: 0 /);
    await refuse([p()], { weightDecay: -1 }, /optimizer\.weightDecay: -1 /);
    await refuse([p()], { learningRate: 1 }, /unknown option "learningRate"/);
  });
  test("groups: duplicate names, a bad lr or weightDecay of a group, mismatched gradient", async () => {
    await refuse([p(), p()], {}, /two parameter groups are named "g"/);
    await refuse([groupOf("enc", new Float32Array(4), "js", { lr: -1 })], {}, /group enc: lr -1 is not allowed/);
    await refuse([groupOf("enc", new Float32Array(4), "js", { weightDecay: Number.POSITIVE_INFINITY })], {}, /group enc: weightDecay Infinity/);
    await refuse([{ name: "x", params: allocBuffer("js", "f32", 4), grad: allocBuffer("js", "f32", 3) }], {}, /group x has 4 parameters but 3 gradient values/);
  });
});

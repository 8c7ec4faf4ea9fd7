// The parameter average of modules/ema.ts (dsl/kernels/ema.ts) against its definition
// ema = decay * ema + (1 - decay) * param, bit for bit against an f32 emulation in the kernel's
// order (decay * ema, (1 - decay) * param, their sum, each rounded), over several steps with
// changing parameters, on the JS and CPU backends; it starts equal to the parameters; swap() twice
// restores; state()/restore() continue identically; bad settings and states are refused by name;
// in the warm-up the average lags steadily moving parameters by about a tenth of the steps.
import { describe, expect, test } from "bun:test";
import { Ema } from "../../modules/ema.ts";
import { ConfigError } from "../../modules/options.ts";
import { allocBuffer, type DeviceBuffer } from "../../runtime/buffer.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { cacheDir, freshSeed, rng, uniformF32 } from "../util.ts";

const BACKENDS = (findCxx().tool !== undefined ? ["js", "cpu"] : ["js"]) as ("js" | "cpu")[];
const fr = Math.fround;
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

/** One update in f32, in the kernel's order of operations. */
function emulate(ema: Float32Array, p: Float32Array, decay: number): void {
  const d = fr(decay);
  const w = fr(1 - d);
  for (let i = 0; i < ema.length; i++) ema[i] = fr(fr(d * ema[i]!) + fr(w * p[i]!));
}

function buffer(backend: "js" | "cpu", data: Float32Array): DeviceBuffer<"f32"> {
  const b = allocBuffer(backend, "f32", data.length);
  b.upload(data);
  return b;
}

for (const backend of BACKENDS) {
  describe(`Ema (${backend})`, () => {
    test("update against the definition over several steps, bit for bit; starts equal to the parameters", async () => {
      const r = rng(freshSeed(`ema ${backend}`));
      const sizes = { encoding: 1000, network: 37 };
      const groups = Object.entries(sizes).map(([name, n]) => ({ name, params: buffer(backend, uniformF32(r, n, -1, 1)) }));
      for (const decay of [0.999, 0.9, 0.5, 0]) {
        const ema = await Ema.create(groups, decay === 0.999 ? {} : { decay }, { cacheDir });
        expect(ema.decay).toBe(decay);
        expect(ema.backend).toBe(backend);
        const ref = groups.map((g) => g.params.download());
        expect(ema.state().groups.map((g) => bits(g.ema))).toEqual(ref.map(bits));
        // Past the decay's warm-up ((1 + t) / (10 + t) > 0.999 from t = 8991 on), so that the
        // configured decay is the one in effect.
        const start = 100_000;
        ema.restore({ ...ema.state(), steps: start });
        for (let step = 1; step <= 7; step++) {
          // An optimizer step: new parameters, of varying scale.
          groups.forEach((g, k) => {
            const p = uniformF32(r, g.params.length, -1, 1).map((x) => x * 10 ** ((step % 4) - 2));
            g.params.upload(p);
            emulate(ref[k]!, p, Math.min(decay, (1 + start + step) / (10 + start + step)));
          });
          ema.update();
          expect(ema.steps).toBe(start + step);
          const st = ema.state();
          expect(st.groups.map((g) => g.name)).toEqual(["encoding", "network"]);
          expect(st.groups.map((g) => bits(g.ema))).toEqual(ref.map(bits));
        }
        // And near the float64 definition (sanity of the emulation itself).
        if (decay === 0.9) {
          const p = groups[1]!.params.download();
          const before = ema.state().groups[1]!.ema;
          ema.update();
          const got = ema.state().groups[1]!.ema;
          const d = ema.effectiveDecay(start + 8);
          expect(d).toBe(0.9);
          for (let i = 0; i < p.length; i++) expect(Math.abs(got[i]! - (d * before[i]! + (1 - d) * p[i]!))).toBeLessThanOrEqual(1e-6 * (Math.abs(before[i]!) + Math.abs(p[i]!)));
        }
        ema.close();
      }
    });

    test("swap() exchanges parameters and averages; twice restores both; update refused while swapped", async () => {
      const r = rng(freshSeed(`ema swap ${backend}`));
      const g = { name: "net", params: buffer(backend, uniformF32(r, 513, -1, 1)) };
      const ema = await Ema.create([g], { decay: 0.8 }, { cacheDir });
      for (let k = 0; k < 3; k++) {
        g.params.upload(uniformF32(r, 513, -1, 1));
        ema.update();
      }
      const params = g.params.download();
      const avg = ema.state().groups[0]!.ema;
      expect(bits(avg)).not.toEqual(bits(params));
      ema.swap();
      expect(ema.swapped).toBe(true);
      expect(bits(g.params.download())).toEqual(bits(avg));
      expect(bits(ema.state().groups[0]!.ema)).toEqual(bits(avg)); // state() is the average, swapped or not
      expect(() => ema.update()).toThrow(/swapped/);
      ema.swap();
      expect(ema.swapped).toBe(false);
      expect(bits(g.params.download())).toEqual(bits(params));
      expect(bits(ema.state().groups[0]!.ema)).toEqual(bits(avg));
      ema.close();
    });

    test("state()/restore() continue identically; sizes and groups checked by name", async () => {
      const r = rng(freshSeed(`ema state ${backend}`));
      const p0 = uniformF32(r, 300, -1, 1);
      const a = { name: "encoding", params: buffer(backend, p0) };
      const b = { name: "encoding", params: buffer(backend, uniformF32(r, 300, -1, 1)) };
      const ea = await Ema.create([a], { decay: 0.95 }, { cacheDir });
      for (let k = 0; k < 4; k++) {
        a.params.upload(uniformF32(r, 300, -1, 1));
        ea.update();
      }
      const eb = await Ema.create([b], { decay: 0.5 }, { cacheDir });
      // Through a copy, as a checkpoint does.
      const saved = ea.state();
      eb.restore({ ...saved, groups: saved.groups.map((g) => ({ name: g.name, ema: Float32Array.from(g.ema) })) });
      expect(eb.decay).toBe(0.95);
      expect(eb.steps).toBe(4);
      for (let k = 0; k < 3; k++) {
        const p = uniformF32(r, 300, -1, 1);
        a.params.upload(p);
        b.params.upload(p);
        ea.update();
        eb.update();
        expect(bits(eb.state().groups[0]!.ema)).toEqual(bits(ea.state().groups[0]!.ema));
      }
      expect(eb.steps).toBe(7);
      expect(() => eb.restore({ decay: 0.9, steps: 1, groups: [{ name: "encoding", ema: new Float32Array(299) }] })).toThrow("ema state: group encoding has 299 values, expected 300");
      expect(() => eb.restore({ decay: 0.9, steps: 1, groups: [] })).toThrow("ema state: no values for group encoding");
      expect(() => eb.restore({ decay: 0.9, steps: 1, groups: [{ name: "encoding", ema: new Float32Array(300) }, { name: "network", ema: new Float32Array(3) }] })).toThrow(/group "network" is not one of this average's \(encoding\)/);
      expect(() => eb.restore({ decay: 1, steps: 1, groups: [{ name: "encoding", ema: new Float32Array(300) }] })).toThrow(/decay 1/);
      ea.close();
      eb.close();
    });
  });
}

describe("Ema settings", () => {
  test("decay outside [0, 1) and unknown options are refused, naming the field; duplicate groups too", async () => {
    const params = allocBuffer("js", "f32", 4);
    for (const decay of [1, -0.1, 1.5, NaN, "0.9"]) {
      const p = Ema.create([{ name: "net", params }], { decay } as never, { backend: "js", cacheDir });
      await expect(p).rejects.toThrow(ConfigError);
      await expect(Ema.create([{ name: "net", params }], { decay } as never, { backend: "js", cacheDir })).rejects.toThrow(/^ema\.decay: .* \(allowed: a number in \[0, 1\)\)/);
    }
    await expect(Ema.create([{ name: "net", params }], { decay: 0.9, beta: 1 } as never, { backend: "js", cacheDir })).rejects.toThrow(/unknown option "beta"/);
    await expect(Ema.create([{ name: "net", params }, { name: "net", params }], {}, { backend: "js", cacheDir })).rejects.toThrow(/two parameter groups are named "net"/);
    const ok = await Ema.create([{ name: "net", params }], { decay: 0 }, { backend: "js", cacheDir });
    expect(ok.decay).toBe(0);
    ok.close();
  });
});

test("the decay warms up as min(decay, (1 + t) / (10 + t))", async () => {
  const ema = await Ema.create([{ name: "net", params: buffer("js", new Float32Array(4)) }], { decay: 0.999 }, { backend: "js", cacheDir });
  expect(ema.effectiveDecay(1)).toBe(2 / 11);
  expect(ema.effectiveDecay(100)).toBe(101 / 110);
  expect(ema.effectiveDecay(1e6)).toBe(0.999);
  ema.close();
});

test("in the warm-up the average lags the parameters by about a tenth of the steps (why the trainer may evaluate the raw weights): against a float64 reference", async () => {
  // Parameters that move steadily (p = t after update t): the average is the mean step it weighs,
  // t minus its lag. The warm-up weighs update s of t by about 9 s^8 / t^9, a lag of about t / 10.
  for (const backend of BACKENDS) {
    const p = buffer(backend, new Float32Array([0]));
    const ema = await Ema.create([{ name: "net", params: p }], {}, { cacheDir });
    let ref = 0;
    for (let t = 1; t <= 2000; t++) {
      p.upload(new Float32Array([t]));
      ema.update();
      const d = Math.min(0.999, (1 + t) / (10 + t));
      ref = d * ref + (1 - d) * t;
      if (t === 50 || t === 300 || t === 2000) {
        const got = ema.state().groups[0]!.ema[0]!;
        expect(Math.abs(got - ref)).toBeLessThanOrEqual(1e-5 * t);
        expect((t - ref) / t).toBeCloseTo(0.1, 2);
      }
    }
    ema.close();
  }
});

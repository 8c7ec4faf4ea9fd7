// Mixed precision: an f16 parameter group is updated through f32 master weights that the optimizer
// keeps; the parameters are the master rounded to f16 after every step, and a checkpoint's state
// holds the master (not the rounded values), so training continues exactly.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { Optimizer } from "../../modules/optimizer.ts";
import { loadKernels } from "../../modules/load.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { cacheDir, freshSeed, rng, uniformF32 } from "../util.ts";

const backends = ["js", ...(findCxx().tool ? ["cpu" as const] : [])] as const;

for (const backend of backends) {
  test(`${backend}: an f16 group steps its f32 master and stores it rounded; state and restore carry the master`, async () => {
    const r = rng(freshSeed(`mixed precision ${backend}`));
    // Any module gives buffers on the backend; the saxpy example is small.
    const mod = await loadKernels(join(import.meta.dir, "../../dsl/examples/saxpy.ts"), { backend, cacheDir });
    const n = 300;
    const init = uniformF32(r, n, -1, 1);
    const half = mod.upload("f16", init);
    const full = mod.upload("f32", Float16Array.from(init)); // the same starting values, in f32
    const grads = [mod.alloc("f32", n), mod.alloc("f32", n)];
    const make = () => Optimizer.create([{ name: "h", params: half, grad: grads[0]! }], { lr: 1e-2 }, { backend, cacheDir });
    const opt = await make();
    const ref = await Optimizer.create([{ name: "h", params: full, grad: grads[1]! }], { lr: 1e-2 }, { backend, cacheDir });
    for (let step = 0; step < 5; step++) {
      const g = uniformF32(r, n, -1, 1);
      grads[0]!.upload(g);
      grads[1]!.upload(g);
      opt.update();
      ref.update();
      // The master follows f32 Adam exactly; the parameters are it, rounded to f16.
      expect(Array.from(opt.master("h").download())).toEqual(Array.from(full.download()));
      expect(Array.from(half.download())).toEqual(Array.from(Float16Array.from(full.download())));
    }
    const state = opt.state();
    expect(state.groups[0]!.master!.length).toBe(n);
    const other = await make();
    other.restore(state);
    expect(Array.from(other.master("h").download())).toEqual(Array.from(opt.master("h").download()));
    expect(() => other.restore({ ...state, groups: [{ ...state.groups[0]!, master: new Float32Array(3) }] })).toThrow(/f16 group h has 3 master weights, expected 300/);
  });
}

// Non-finite coordinates in the hash grid: NaN encodes as 0 and ±Infinity clamps to [0, 1] like
// any coordinate outside it, on every backend; the encoding and both gradients stay finite.
import { expect, test } from "bun:test";
import { HashGrid } from "../../modules/hashgrid.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { cacheDir } from "../util.ts";

const backends: ("js" | "cpu")[] = ["js", ...(findCxx().tool ? (["cpu"] as const) : [])];

// One bad coordinate per point, on either axis, among ordinary ones.
const BAD = Float32Array.of(NaN, 0.3, 0.7, NaN, NaN, NaN, Infinity, 0.2, 0.4, -Infinity, -Infinity, Infinity, 0.25, 0.5);
/** The documented substitute: NaN -> 0, and ±Infinity clamped like any value outside [0, 1]. */
const SUBSTITUTE = BAD.map((v) => (Number.isNaN(v) ? 0 : Math.min(Math.max(v, 0), 1)));

for (const backend of backends) {
  test(`${backend}: a NaN coordinate encodes as 0, ±Infinity as the nearest bound, gradients finite`, async () => {
    // Natively one configuration (the hash-grid tests' finite-difference grid, built once for both).
    for (const interpolation of backend === "cpu" ? (["smoothstep"] as const) : (["linear", "smoothstep"] as const)) {
      const enc = await HashGrid.create({ dims: 2, levels: 6, log2HashmapSize: 10, baseResolution: 4, finestResolution: 200, interpolation }, { backend, cacheDir });
      const n = BAD.length / 2;
      const dy = Float32Array.from({ length: n * enc.outputDim }, (_, k) => ((k * 7) % 5) - 2);
      const run = (x: Float32Array) => {
        const y = enc.forward(x).download().slice();
        const { params, inputs } = enc.backward(dy, { inputs: true });
        return { y, grad: params.download().slice(), dx: inputs!.download().slice() };
      };
      const bad = run(BAD);
      const good = run(SUBSTITUTE);
      expect(bad.y.every(Number.isFinite)).toBe(true);
      expect(bad.grad.every(Number.isFinite)).toBe(true);
      expect(bad.dx.every(Number.isFinite)).toBe(true);
      expect([...bad.y]).toEqual([...good.y]);
      expect([...bad.grad]).toEqual([...good.grad]);
      // A substituted coordinate has no gradient (as for a coordinate clamped to [0, 1]).
      BAD.forEach((v, k) => {
        if (!Number.isFinite(v)) expect(bad.dx[k]).toBe(0);
        else expect(bad.dx[k]).toBe(good.dx[k]!);
      });
    }
  });
}

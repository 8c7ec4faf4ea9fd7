// Bounds checks (on by default in loadKernels): an index outside a buffer is reported as an error
// naming the kernel, never performed; the process survives and in-range work is unchanged.
import { expect, test } from "bun:test";
import { resolve } from "node:path";
import { compileFile } from "../codegen/compile.ts";
import { KernelError } from "../runtime/ffi.ts";
import { loadKernels } from "../runtime/module.ts";
import { ptxasReport } from "../runtime/ptxas.ts";
import { findCxx, findNvcc } from "../runtime/toolchain.ts";

const FILE = resolve(import.meta.dir, "fixtures/out_of_bounds.ts");
const backends: ("js" | "cpu")[] = ["js", ...(findCxx().tool ? (["cpu"] as const) : [])];

for (const backend of backends) {
  test(`${backend}: an out-of-bounds store is reported, not performed`, async () => {
    const mod = await loadKernels(FILE, { backend });
    const x = Float32Array.of(1, 2, 3, 4);
    const whole = new Float32Array(8).fill(-1); // out is the first half: a stray write would land in [4]
    const out = whole.subarray(0, 4);
    const run = () => mod.kernels.shiftRight!(4, x, out);
    if (backend === "js") expect(run).toThrow(/index 4 is outside the buffer out of 4 elements/);
    else expect(run).toThrow(KernelError);
    expect(whole[4]).toBe(-1);
    // Within bounds, the same kernel works.
    mod.kernels.shiftRight!(3, x, out);
    expect([...out]).toEqual([-1, 1, 2, 3]);
  });

  test(`${backend}: an out-of-bounds atomic index is reported`, async () => {
    const mod = await loadKernels(FILE, { backend });
    const acc = new Float32Array(4);
    expect(() => mod.kernels.scatter!(2, Uint32Array.of(1, 1000000), Float32Array.of(2, 3), acc)).toThrow(backend === "js" ? /index 1000000 is outside the buffer acc/ : /outside a buffer/);
    mod.kernels.scatter!(2, Uint32Array.of(1, 3), Float32Array.of(2, 3), acc.fill(0));
    expect([...acc]).toEqual([0, 2, 0, 3]);
  });
}

test.skipIf(!findNvcc().tool)(`nvcc compiles the bounds-checked CUDA${findNvcc().tool ? "" : ` (skipped: ${findNvcc().reason})`}`, async () => {
  const mod = compileFile(FILE, "cuda", { boundsChecks: true });
  expect(mod.source).toContain("ngp_at(out, ");
  const report = await ptxasReport(mod.source, ["sm_80"]);
  expect(report.map((r) => r.kernel).sort()).toEqual(["scatter", "shiftRight"]);
});

// Bounds checks (on by default in loadKernels): an index outside a buffer is never used; the kernel
// fails with a KernelError naming the kernel, the buffer, the index, its length and the thread, the
// same on every backend: the first bad access of the lowest thread that made one. The process
// survives and in-range work is unchanged.
import { expect, test } from "bun:test";
import { resolve } from "node:path";
import { compileFile } from "../../codegen/compile.ts";
import { KernelError, type BoundsFault } from "../../runtime/ffi.ts";
import { loadKernels } from "../../modules/load.ts";
import { ptxasReport } from "../../runtime/ptxas.ts";
import { findCxx, findNvcc } from "../../runtime/toolchain.ts";

const FILE = resolve(import.meta.dir, "../fixtures/out_of_bounds.ts");
const backends: ("js" | "cpu")[] = ["js", ...(findCxx().tool ? (["cpu"] as const) : [])];

/** The KernelError that `run` throws. */
function failure(run: () => void): KernelError {
  try {
    run();
  } catch (e) {
    expect(e).toBeInstanceOf(KernelError);
    return e as KernelError;
  }
  throw new Error("the kernel did not fail");
}

function expectFault(e: KernelError, kernel: string, fault: BoundsFault): void {
  expect(e.fault).toEqual(fault);
  expect(e.message).toBe(`kernel ${kernel} failed: index ${fault.index} is outside the buffer ${fault.buffer} of ${fault.length} elements (thread ${fault.thread}; bounds check)`);
}

for (const backend of backends) {
  test(`${backend}: an out-of-bounds store is reported, not performed`, async () => {
    const mod = await loadKernels(FILE, { backend });
    const x = Float32Array.of(1, 2, 3, 4);
    const whole = new Float32Array(8).fill(-1); // out is the first half: a stray write would land in [4]
    const out = whole.subarray(0, 4);
    expectFault(failure(() => mod.kernels.shiftRight!(4, x, out)), "shiftRight", { thread: 3, buffer: "out", index: 4, length: 4 });
    expect(whole[4]).toBe(-1);
    // Within bounds, the same kernel works.
    mod.kernels.shiftRight!(3, x, out);
    expect([...out]).toEqual([-1, 1, 2, 3]);
  });

  test(`${backend}: of many faulting threads, the lowest is reported (parallel launch)`, async () => {
    const mod = await loadKernels(FILE, { backend });
    // Threads 4999 to 9999 write past out; on the CPU the higher ones run (and fault) first.
    const n = 10000;
    expectFault(failure(() => mod.kernels.shiftRight!(n, new Float32Array(n), new Float32Array(5000))), "shiftRight", { thread: 4999, buffer: "out", index: 5000, length: 5000 });
  });

  test(`${backend}: an out-of-bounds atomic index is reported, unsigned indices in full`, async () => {
    const mod = await loadKernels(FILE, { backend });
    const acc = new Float32Array(4);
    expectFault(failure(() => mod.kernels.scatter!(2, Uint32Array.of(1, 1000000), Float32Array.of(2, 3), acc)), "scatter", { thread: 1, buffer: "acc", index: 1000000, length: 4 });
    expectFault(failure(() => mod.kernels.scatter!(1, Uint32Array.of(4294967295), Float32Array.of(2), acc)), "scatter", { thread: 0, buffer: "acc", index: 4294967295, length: 4 });
    mod.kernels.scatter!(2, Uint32Array.of(1, 3), Float32Array.of(2, 3), acc.fill(0));
    expect([...acc]).toEqual([0, 2, 0, 3]);
  });

  test(`${backend}: a thread's first bad access is the one reported; negative indices`, async () => {
    const mod = await loadKernels(FILE, { backend });
    expectFault(failure(() => mod.kernels.twoFaults!(4, new Float32Array(4), new Float32Array(4))), "twoFaults", { thread: 0, buffer: "b", index: -2, length: 4 });
  });

  test(`${backend}: a scheduled kernel reports a point's lowest level first`, async () => {
    const mod = await loadKernels(FILE, { backend });
    const n = 8192;
    const idx = new Uint32Array(4 * n); // all in range (0) but for:
    idx[4 * 5000 + 1] = 777777; // point 5000, level 1: the report
    idx[4 * 5000 + 3] = 666666; // point 5000, level 3 (smaller, later)
    idx[4 * 7000] = 555555; // a higher point
    expectFault(failure(() => mod.kernels.perLevelOwner!(n, idx, new Float32Array(16))), "perLevelOwner", { thread: 5000, buffer: "acc", index: 777777, length: 16 });
  });
}

test.skipIf(!findNvcc().tool)(`nvcc compiles the bounds-checked CUDA${findNvcc().tool ? "" : ` (skipped: ${findNvcc().reason})`}`, async () => {
  const mod = compileFile(FILE, "cuda", { boundsChecks: true });
  expect(mod.source).toContain("ngp_at(out, ");
  expect(mod.source).toContain('extern "C" void ngp_bounds_fault(uint64_t* out)');
  const report = await ptxasReport(mod.source, ["sm_75", "sm_90"]);
  expect([...new Set(report.map((r) => r.kernel))].sort()).toEqual(["perLevelOwner", "scatter", "shiftRight", "twoFaults"]);
}, 300_000);

// nvcc compiles the generated CUDA of every shipped configuration for sm_75, the oldest target (its
// PTX ISA the most restricted; the most registers per thread in docs/benchmarks.md's table), and
// grid/hashgrid_3d, the largest kernels, for every target a build without a device compiles
// (sm_75, sm_80, sm_90 plus PTX for newer GPUs: DEFAULT_CUDA_ARCHS); the ptxas report of each
// kernel is read and recorded. The generated code cannot run here, but a spill or a compile error
// shows up in this report. (Each target costs nvcc a device compile of its own: every target on
// every module took about 100 s of CPU, the test suite's longest file on 2 cores.)
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { compileFile } from "../../codegen/compile.ts";
import { ROOT, SHIPPED } from "../../modules/shipped.ts";
import { parsePtxas, ptxasReport } from "../../runtime/ptxas.ts";
import { DEFAULT_CUDA_ARCHS, findNvcc } from "../../runtime/toolchain.ts";

const nvcc = findNvcc();
/** The module compiled for every default target; the others for the first (sm_75). */
const EVERY_TARGET = "grid/hashgrid_3d";
const targets = (name: string): string[] => (name === EVERY_TARGET ? [...DEFAULT_CUDA_ARCHS] : DEFAULT_CUDA_ARCHS.slice(0, 1));

test("the ptxas report parser reads registers, stack and spills", () => {
  const text = `ptxas info    : Compiling entry function '_Z12saxpy_kernellfPKfS0_Pf' for 'sm_80'
ptxas info    : Function properties for _Z12saxpy_kernellfPKfS0_Pf
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 22 registers, used 0 barriers, 392 bytes cmem[0]`;
  expect(parsePtxas(text)).toEqual([{ arch: "sm_80", kernel: "saxpy", registers: 22, sharedBytes: 0, stackBytes: 8, spillStoreBytes: 4, spillLoadBytes: 12 }]);
  expect(parsePtxas(`${text.split("\n")[0]}\nptxas info    : Used 40 registers, used 1 barriers, 16384 bytes smem, 400 bytes cmem[0]`)[0]!.sharedBytes).toBe(16384);
});

/** Runs at most `n` of the started jobs at once (nvcc is single-threaded: two run side by side). */
function limiter(n: number): <T>(job: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async (job) => {
    if (running >= n) await new Promise<void>((go) => waiting.push(go));
    running++;
    try {
      return await job();
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}

describe.skipIf(!nvcc.tool)(`nvcc compiles the generated CUDA${nvcc.tool ? "" : ` (skipped: ${nvcc.reason})`}`, () => {
  const shipped = SHIPPED.filter((x) => !x.targets || x.targets.includes("cuda"));
  // Every module's compile starts now, two at a time; each test awaits its own.
  const run = limiter(2);
  const modules = shipped.map((s) => compileFile(resolve(ROOT, s.file), "cuda", { config: s.config, kernels: s.kernels }));
  const reports = nvcc.tool ? modules.map((mod, i) => run(() => ptxasReport(mod.source, targets(shipped[i]!.name)))) : [];
  reports.forEach((r) => r.catch(() => {})); // a failure is reported by its test
  test(`${EVERY_TARGET} (compiled for every target) is shipped`, () => expect(shipped.map((s) => s.name)).toContain(EVERY_TARGET));
  shipped.forEach((s, i) => {
    const archs = targets(s.name).filter((a) => a.startsWith("sm_"));
    test(`${s.name}: ${archs.join(", ")}${archs.length > 1 ? " + PTX" : ""}, no spills`, async () => {
      const mod = modules[i]!;
      // The committed snapshot is what we compile (the snapshot test keeps it current).
      expect(readFileSync(resolve(ROOT, `generated/${s.name}.cu`), "utf8")).toBe(mod.source);
      const report = await reports[i]!;
      for (const k of mod.kernels) {
        for (const arch of archs) {
          const e = report.find((r) => r.kernel === k.name && r.arch === arch);
          if (!e) throw new Error(`no ptxas report for ${k.name} on ${arch}`);
          console.log(`[ptxas] ${s.name} ${k.name} ${arch}: ${e.registers} registers, ${e.sharedBytes} B shared, ${e.stackBytes} B stack, ${e.spillStoreBytes}/${e.spillLoadBytes} B spill st/ld`);
          expect(e.registers).toBeGreaterThan(0);
          expect(e.spillStoreBytes + e.spillLoadBytes).toBe(0);
          expect(e.sharedBytes).toBeLessThanOrEqual(48 * 1024); // the static shared-memory limit
        }
      }
    }, 300_000);
  });
});

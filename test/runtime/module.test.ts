// The path a user takes: a kernel file -> loadKernels -> callable kernels, on every backend that
// exists here, through the build cache.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { DiagnosticError } from "../../codegen/diagnostics.ts";
import { ROOT } from "../../modules/shipped.ts";
import { detectCudaDevices } from "../../runtime/device.ts";
import { loadKernels, type KernelModule } from "../../modules/load.ts";
import { findCxx } from "../../runtime/toolchain.ts";

const SAXPY = resolve(ROOT, "dsl/examples/saxpy.ts");
const NO_CXX = findCxx().tool ? undefined : findCxx().reason;
const cacheDir = mkdtempSync(join(tmpdir(), "ngpk-module-"));
// afterAll, not process.on("exit"): bun test (1.4) does not run exit handlers, so the directory was left behind.
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

describe.skipIf(NO_CXX !== undefined)(`CPU native through the cache${NO_CXX ? ` (skipped: ${NO_CXX})` : ""}`, () => {
  test("first load builds, second load hits the cache and is fast", async () => {
    const first = await loadKernels(SAXPY, { backend: "cpu", cacheDir });
    expect(first.backend).toBe("cpu");
    expect(first.reason).toContain("cpu");
    const second = await loadKernels(SAXPY, { backend: "cpu", cacheDir });
    expect(first.build!.hit).toBe(false);
    expect(second.build!.hit).toBe(true);
    // Fast: a fraction of the first load's build (a ratio measured in this run, so a loaded machine slows both).
    expect(second.build!.ms).toBeLessThan(first.build!.ms / 5);
    const x = Float32Array.of(1, 2, 3);
    const out = new Float32Array(3);
    second.kernels.saxpy!(3, 2, x, Float32Array.of(10, 20, 30), out);
    expect([...out]).toEqual([12, 24, 36]);
  });

  test("a kernel with a compile error is still reported with a warm cache", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ngpk-err-"));
    const file = join(dir, "k.ts");
    const good = `import { type Buf, type f32, type u32 } from "${ROOT}/dsl/index.ts";\n/** @kernel */\nexport function k(i: u32, x: Buf<f32>): void {\n  x[i] = x[i] * 2.0;\n}\n`;
    writeFileSync(file, good);
    await loadKernels(file, { backend: "cpu", cacheDir });
    writeFileSync(file, good.replace("* 2.0", "* 2"));
    const err = await loadKernels(file, { backend: "cpu", cacheDir }).catch((e) => e);
    expect(err).toBeInstanceOf(DiagnosticError);
    expect((err as DiagnosticError).diagnostics[0]!.code).toBe("NGP1009");
    rmSync(dir, { recursive: true, force: true });
  });

  test("arguments are validated before the native call", async () => {
    const mod = await loadKernels(SAXPY, { backend: "cpu", cacheDir });
    const f = new Float32Array(4);
    expect(() => mod.kernels.saxpy!(4, 1, f, f)).toThrow(/takes 5 arguments/);
    expect(() => mod.kernels.saxpy!(4, 1, new Int32Array(4), f, f)).toThrow(/argument x must be/);
    const buf = mod.alloc("f32", 4);
    buf.dispose();
    expect(() => mod.kernels.saxpy!(4, 1, buf, f, f)).toThrow(/disposed/);
    // The output may not overlap an input (the generated code assumes no aliasing)...
    const g = new Float32Array(4);
    expect(() => mod.kernels.saxpy!(4, 1, f, g, f)).toThrow(/overlap and out is written/);
    const whole = new Float32Array(8);
    expect(() => mod.kernels.saxpy!(4, 1, whole.subarray(0, 4), g, whole.subarray(2, 6))).toThrow(/overlap/);
    // ...but inputs may share memory, and disjoint views of one allocation are fine.
    mod.kernels.saxpy!(4, 1, g, g, whole.subarray(4, 8));
  });
});

test("the JS backend runs the same kernels with the same interface", async () => {
  const mod = await loadKernels(SAXPY, { backend: "js", cacheDir });
  expect(mod.backend).toBe("js");
  const out = mod.alloc("f32", 2);
  mod.kernels.saxpy!(2, 0.5, mod.upload("f32", [2, 4]), mod.upload("f32", [1, 1]), out);
  expect([...out.download()]).toEqual([2, 3]);
  expect(() => mod.kernels.saxpy!(2, 0.5, new Float32Array(2), new Float32Array(2), "x" as never)).toThrow(/argument out/);
});

test("kernels of a closed module throw on every backend; alloc of an unknown type names the allowed ones", async () => {
  for (const backend of NO_CXX ? (["js"] as const) : (["js", "cpu"] as const)) {
    const mod = await loadKernels(SAXPY, { backend, cacheDir });
    expect(() => mod.alloc("f64" as never, 2)).toThrow('unknown buffer element type "f64": buffers hold f32, i32, u32, f16');
    const run = () => mod.kernels.saxpy!(1, 1, new Float32Array(1), new Float32Array(1), new Float32Array(1));
    run();
    mod.close();
    mod.close();
    expect(run).toThrow(/^kernel saxpy called after its module \S+\/saxpy-\w+\.(so|mjs) was closed$/);
  }
});

test("the JS backend rewrites a module file whose text is not the source", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ngpk-js-"));
  await loadKernels(SAXPY, { backend: "js", cacheDir: dir });
  const file = join(dir, readdirSync(dir).find((name) => name.endsWith(".mjs"))!);
  const good = readFileSync(file, "utf8");
  writeFileSync(file, "export function saxpy() { throw new Error('not ours'); }");
  await loadKernels(SAXPY, { backend: "js", cacheDir: dir });
  expect(readFileSync(file, "utf8")).toBe(good);
  rmSync(dir, { recursive: true, force: true });
});

test("loadKernels keeps the emitted module: a copy in this process, and in the cache for the next process, used while every file its compile read is unchanged", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ngpk-emitted-"));
  try {
    const [kernels, helper, cache] = [join(dir, "k.ts"), join(dir, "helper.ts"), join(dir, "cache")];
    mkdirSync(cache, { mode: 0o700 });
    const head = `import { type Buf, type f32, type u32 } from "ngp-kernels/dsl";\n`;
    writeFileSync(kernels, `${head}import { scaled } from "./helper.ts";\n/** @kernel */\nexport function run(i: u32, x: Buf<f32>, out: Buf<f32>): void {\n  out[i] = scaled(x[i] + 1.0);\n}\n`);
    const helperFile = (k: number) => writeFileSync(helper, `${head}export function scaled(v: f32): f32 {\n  return v * ${k}.0;\n}\n`);
    helperFile(2);
    const opts = { backend: "js" as const, cacheDir: cache };
    const run = (mod: KernelModule) => {
      const out = new Float32Array(2);
      mod.kernels.run!(2, Float32Array.of(1, 2), out);
      return [...out];
    };
    // A child process: this process's copy is not there.
    const child = async () => {
      const code = `const { loadKernels } = await import(${JSON.stringify(resolve(ROOT, "modules/load.ts"))}); const m = await loadKernels(${JSON.stringify(kernels)}, ${JSON.stringify(opts)}); const out = new Float32Array(2); m.kernels.run(2, Float32Array.of(1, 2), out); console.log(JSON.stringify([...out]));`;
      const p = Bun.spawn([process.execPath, "-e", code], { stdout: "pipe", stderr: "pipe" });
      const [out, err] = [await new Response(p.stdout).text(), await new Response(p.stderr).text()];
      expect(err).toBe("");
      return JSON.parse(out) as number[];
    };
    const first = await loadKernels(kernels, opts);
    expect(run(first)).toEqual([4, 6]);
    first.emitted.source = "changed by its caller";
    expect((await loadKernels(kernels, opts)).emitted.source).toContain("function run_body");
    // The cache's entry lists the files the compile read. Its module is what the next process runs
    // (edited here to tell it from a compile).
    const entry = join(cache, readdirSync(cache).find((f) => f.endsWith(".emitted.json"))!);
    const kept = JSON.parse(readFileSync(entry, "utf8")) as { sources: [string, string][]; module: { source: string } };
    expect(kept.sources.map(([f]) => f).sort()).toEqual([helper, kernels].sort());
    kept.module.source = kept.module.source.replace("* 2)", "* 100)");
    writeFileSync(entry, JSON.stringify(kept));
    expect(await child()).toEqual([200, 300]);
    // An import edited: compiled again, in this process and the next.
    helperFile(3);
    expect(run(await loadKernels(kernels, opts))).toEqual([6, 9]);
    expect(await child()).toEqual([6, 9]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const cuda = detectCudaDevices();
test.skipIf(cuda.count === 0)(`CUDA execution: saxpy on the device matches the JS reference${cuda.count === 0 ? ` (skipped: ${cuda.reason})` : ""}`, async () => {
  const [gpu, js] = await Promise.all([loadKernels(SAXPY, { backend: "cuda", cacheDir }), loadKernels(SAXPY, { backend: "js", cacheDir })]);
  const n = 100_000;
  const x = Float32Array.from({ length: n }, () => Math.random() * 8 - 4);
  const y = Float32Array.from({ length: n }, () => Math.random() * 8 - 4);
  const out = gpu.alloc("f32", n);
  gpu.kernels.saxpy!(n, 1.25, gpu.upload("f32", x), gpu.upload("f32", y), out);
  gpu.synchronize();
  const ref = new Float32Array(n);
  js.kernels.saxpy!(n, 1.25, x, y, ref);
  expect([...out.download()]).toEqual([...ref]);
});

// The command-line tools, run as a user runs them: exit status, what they print.
import { expect, test } from "bun:test";
import { resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");

async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const proc = Bun.spawn(["bun", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, out, err };
}

test("bun run compile prints the generated CUDA", async () => {
  const r = await run("codegen/cli.ts", "dsl/examples/saxpy.ts", "--target", "cuda");
  expect(r.code).toBe(0);
  expect(r.out).toContain("__global__ void saxpy_kernel(");
  expect(r.out).toContain('extern "C" int32_t saxpy(');
});

test("bun run compile reports diagnostics with exit status 1", async () => {
  const r = await run("codegen/cli.ts", "test/fixtures/errors/ternary.ts");
  expect(r.code).toBe(1);
  expect(r.err).toContain("error[NGP1001]");
  expect(r.err).toContain("test/fixtures/errors/ternary.ts:6:13");
  expect(r.err).toContain("hint: use select(cond, a, b)");
});

test("bun run compile refuses a bad --target and a missing config, saying why", async () => {
  const bad = await run("codegen/cli.ts", "dsl/examples/saxpy.ts", "--target", "metal");
  expect(bad.code).toBe(2);
  expect(bad.err).toContain("--target must be cpu, cuda or js");
  const noConfig = await run("codegen/cli.ts", "dsl/examples/polynomial.ts");
  expect(noConfig.code).toBe(1);
  expect(noConfig.err).toContain("NGP1022");
});

test("bun run grid prints the levels and the parameter count", async () => {
  const r = await run("runtime/grid_cli.ts", "--finest", "2048");
  expect(r.code).toBe(0);
  expect(r.out).toContain("5522000 parameters");
  expect(r.out).toMatch(/15 {2}2048 x 2048 +524288 {2}hashed/);
});

test("bun run grid names the field of a bad setting", async () => {
  const r = await run("runtime/grid_cli.ts", "--levels", "100");
  expect(r.code).toBe(2);
  expect(r.err).toContain("hashGrid.levels");
});

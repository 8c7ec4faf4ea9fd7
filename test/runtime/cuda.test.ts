// nvcc builds a real CUDA module; it is loaded in a child process (a GPU need not be present).
import { describe, expect, test } from "bun:test";
import { buildCached } from "../../runtime/cache.ts";
import { detectCudaDevices } from "../../runtime/device.ts";
import { definedDynamicSymbols, validateSharedLibrary } from "../../runtime/elf.ts";
import { cudaFlags, findNvcc } from "../../runtime/toolchain.ts";
import { fixture, runFixture, tempDir } from "./helpers.ts";

const nvcc = findNvcc();

describe.skipIf(!nvcc.tool)(`CUDA module${nvcc.tool ? "" : ` (skipped: ${nvcc.reason})`}`, () => {
  const dir = tempDir("cuda");

  test("builds with the default gencode list, validates, and loads with the runtime entry points", async () => {
    const { path } = await buildCached({
      source: fixture("cuda_module.cu"),
      lang: "cu",
      tool: nvcc.tool!,
      flags: cudaFlags(),
      compilerVersion: "test",
      cacheDir: dir,
      name: "cuda_module",
    });
    expect(path).toEndWith(".so");
    expect(validateSharedLibrary(path)).toBeUndefined();
    expect(definedDynamicSymbols(path).has("ngp_cuda_malloc")).toBe(true);

    const child = await runFixture("cuda_child.ts", { path });
    expect(child.err).toBe("");
    expect(child.code).toBe(0);
    const result = JSON.parse(child.out) as { out?: number[]; errorName?: string };
    if (detectCudaDevices().count > 0) expect(result.out).toEqual([2, 3, 4]);
    else expect(result.errorName).toMatch(/^cudaError\w+$/); // here: cudaErrorInsufficientDriver
  }, 60_000);
});

import { describe, expect, test } from "bun:test";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  CPU_FLAGS,
  CUDA_BASE_FLAGS,
  cpuIdentity,
  cudaFlags,
  DEFAULT_CUDA_ARCHS,
  defaultCudaArchs,
  findCxx,
  findNvcc,
} from "../../runtime/toolchain.ts";
import { detectCudaDevices } from "../../runtime/device.ts";
import { withEnv } from "../util.ts";
import { CXX, NO_CXX, tempDir } from "./helpers.ts";

const NVCC = findNvcc();

describe("findCxx / findNvcc", () => {
  test.skipIf(!CXX)(`finds the C++ compiler with its version${NO_CXX}`, () => {
    const { tool, reason } = findCxx();
    expect(tool!.version).toMatch(/\d+\.\d+/);
    expect(reason).toBe(`${tool!.version} at ${tool!.path}`);
  });

  test.skipIf(!NVCC.tool)(`finds nvcc and takes its release line, not the banner${NVCC.tool ? "" : ` (skipped: ${NVCC.reason})`}`, () => {
    expect(NVCC.tool!.version).toMatch(/release \d+\.\d+/);
  });

  const dir = tempDir("toolchain");

  test("an unusable $CXX gives undefined and a reason instead of throwing", () => {
    const failing = join(dir, "failing-cxx");
    writeFileSync(failing, "#!/bin/sh\necho 'license expired' >&2\nexit 3\n");
    chmodSync(failing, 0o755);
    withEnv({ CXX: join(dir, "absent-cxx") }, () => {
      expect(findCxx()).toEqual({ tool: undefined, reason: `CXX=${join(dir, "absent-cxx")} is not an executable file or on PATH` });
    });
    withEnv({ CXX: failing }, () => {
      expect(findCxx()).toEqual({ tool: undefined, reason: `${failing} --version failed (exit 3): license expired` });
    });
  });
});

describe("flags", () => {
  test("CPU flags keep f32 results identical to JS: no fast-math, no contraction", () => {
    expect(CPU_FLAGS).toContain("-ffp-contract=off");
    expect(CPU_FLAGS).toContain("-march=native");
    expect(CPU_FLAGS).toContain("-Wl,-z,defs");
    expect(CPU_FLAGS.some((flag) => /fast-math|Ofast|-ffp-contract=fast/.test(flag))).toBe(false);
    expect(CUDA_BASE_FLAGS).toContain("--fmad=false");
  });

  test("cudaFlags turns sm_XY into SASS and compute_XY into PTX", () => {
    expect(cudaFlags(["sm_80", "compute_90"])).toEqual([
      ...CUDA_BASE_FLAGS,
      "-gencode",
      "arch=compute_80,code=sm_80",
      "-gencode",
      "arch=compute_90,code=compute_90",
    ]);
    expect(() => cudaFlags(["80"])).toThrow('bad CUDA architecture "80"');
  });

  test("without a device the default archs are sm_75..sm_90 plus PTX", () => {
    const devices = detectCudaDevices();
    expect(defaultCudaArchs()).toEqual(devices.count > 0 ? [...new Set(devices.archs)] : [...DEFAULT_CUDA_ARCHS]);
  });
});

test("cpuIdentity names the CPU and hashes its feature flags", () => {
  expect(cpuIdentity()).toMatch(/\S.* \(\w+, flags [0-9a-f]{12}\)$/);
  expect(cpuIdentity()).toBe(cpuIdentity());
});

import { expect, test } from "bun:test";
import { detectCudaDevices } from "../../runtime/device.ts";

const devices = detectCudaDevices();

test("device detection reports one arch per device", () => {
  expect(devices.archs.length).toBe(devices.count);
  for (const arch of devices.archs) expect(arch).toMatch(/^sm_\d+$/);
  expect(devices.reason.length).toBeGreaterThan(0);
});

test.skipIf(devices.count > 0)(`without a GPU: count 0 and the reason${devices.count > 0 ? " (skipped: a GPU is present)" : ""}`, () => {
  expect(devices.count).toBe(0);
  // Here: "cudaGetDeviceCount returned 35 (cudaErrorInsufficientDriver)"; elsewhere CUDA may be absent.
  expect(devices.reason).toMatch(/^cudaGetDeviceCount returned \d+ \(cuda\w+\)$|^libcudart could not be loaded|no devices/);
});

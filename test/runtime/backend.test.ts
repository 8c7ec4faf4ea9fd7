import { describe, expect, test } from "bun:test";
import { chooseBackend, type BackendRequest } from "../../runtime/backend.ts";
import { detectCudaDevices } from "../../runtime/device.ts";
import { findCxx, findNvcc } from "../../runtime/toolchain.ts";
import { withEnv } from "../util.ts";

const NO_GPU = detectCudaDevices().count === 0;
const HAS_CXX = findCxx().tool !== undefined;

describe("chooseBackend", () => {
  test("the option wins over NGPK_BACKEND, which wins over auto", () => {
    withEnv({ NGPK_BACKEND: "js" }, () => {
      expect(chooseBackend()).toEqual({ backend: "js", reason: "js: requested by NGPK_BACKEND" });
      expect(chooseBackend({ backend: "js" }).reason).toBe("js: requested by option backend");
      expect(chooseBackend({ backend: "auto" }).backend).not.toBe("js"); // auto finds at least a compiler here
    });
  });

  test("an empty NGPK_BACKEND means auto", () => {
    withEnv({ NGPK_BACKEND: "" }, () => expect(chooseBackend()).toEqual(chooseBackend({ backend: "auto" })));
  });

  test("a bad value names its source and the allowed values", () => {
    withEnv({ NGPK_BACKEND: "gpu" }, () => {
      expect(() => chooseBackend()).toThrow('NGPK_BACKEND: "gpu" is not allowed (allowed: auto, cuda, cpu, js)');
    });
    expect(() => chooseBackend({ backend: "metal" as BackendRequest })).toThrow('option backend: "metal" is not allowed (allowed: auto, cuda, cpu, js)');
  });

  test.skipIf(!NO_GPU || !HAS_CXX)("auto without a GPU picks cpu and says why", () => {
    withEnv({ NGPK_BACKEND: undefined }, () => {
      const { backend, reason } = chooseBackend();
      expect(backend).toBe("cpu");
      const cuda = findNvcc().tool ? `no CUDA device (${detectCudaDevices().reason})` : "no nvcc";
      expect(reason).toStartWith(`cpu: ${cuda}`);
      expect(reason).toEndWith(`; ${findCxx().reason}`);
    });
  });

  test.skipIf(!NO_GPU)("cuda requested without a GPU throws saying what is missing", () => {
    withEnv({ NGPK_BACKEND: "cuda" }, () => {
      expect(() => chooseBackend()).toThrow(/^backend cuda requested by NGPK_BACKEND, but no (nvcc|CUDA device)/);
    });
  });

  test.skipIf(!NO_GPU)("without a C++ compiler: cpu requested throws, auto falls back to js", () => {
    withEnv({ CXX: "/nonexistent/c++" }, () => {
      expect(() => chooseBackend({ backend: "cpu" })).toThrow(
        "backend cpu requested by option backend, but no C++ compiler: CXX=/nonexistent/c++ is not an executable file or on PATH",
      );
      const { backend, reason } = chooseBackend({ backend: "auto" });
      expect(backend).toBe("js");
      expect(reason).toEndWith("; no C++ compiler (CXX=/nonexistent/c++ is not an executable file or on PATH)");
    });
  });
});

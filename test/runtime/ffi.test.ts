import { beforeAll, describe, expect, test } from "bun:test";
import { dlopen } from "bun:ffi";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CudaBuffer, HostBuffer } from "../../runtime/buffer.ts";
import { buildCached } from "../../runtime/cache.ts";
import { CudaError } from "../../runtime/cuda.ts";
import { KernelError, loadNativeModule, type NativeModule } from "../../runtime/ffi.ts";
import { cpuRequest, CXX, fixture, NO_CXX, tempDir } from "./helpers.ts";
import { ADD_ONE, IOTA, SCALE_ADD } from "./fixtures/signatures.ts";

describe.skipIf(!CXX)(`loadNativeModule${NO_CXX}`, () => {
  const dir = tempDir("ffi");
  let kernelsPath = "";
  let mockCudaPath = "";
  let cpu: NativeModule;
  let cuda: NativeModule;

  beforeAll(async () => {
    [kernelsPath, mockCudaPath] = (
      await Promise.all([
        buildCached({ ...cpuRequest(fixture("kernels.cpp"), dir), name: "kernels" }),
        buildCached({ ...cpuRequest(fixture("mock_cuda.cpp"), dir), name: "mock_cuda" }),
      ])
    ).map((result) => result.path) as [string, string];
    cpu = loadNativeModule(kernelsPath, [ADD_ONE, SCALE_ADD], "cpu");
    cuda = loadNativeModule(mockCudaPath, [IOTA], "cuda");
  });

  test("runs a kernel on a HostBuffer and on a bare TypedArray", () => {
    using x = HostBuffer.alloc("f32", 5);
    x.upload([1, 2, 3, 4, 5]);
    cpu.kernels.add_one!(4, x);
    expect([...x.data]).toEqual([2, 3, 4, 5, 5]);

    const bare = new Float32Array([10, 20]);
    cpu.kernels.add_one!(2, bare);
    expect([...bare]).toEqual([11, 21]);
  });

  test("passes every scalar type in its place", () => {
    const y = new Float32Array([1, 2, 3]);
    const idx = new Int32Array([0xff, 0x1f0, -1]);
    cpu.kernels.scale_add!(3, y, idx, 0.5, 0x0f, true);
    expect([...y]).toEqual([0.5 + 15, 1 + 0, 1.5 + 15]);
    cpu.kernels.scale_add!(3, y, idx, 100, 0xffffffff, false);
    expect([...y]).toEqual([15.5, 1, 16.5]);
  });

  test("a nonzero return code throws KernelError naming the kernel and code", () => {
    const error = (() => {
      try {
        cpu.kernels.add_one!(10, new Float32Array(2));
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(KernelError);
    expect((error as KernelError).message).toBe("kernel add_one failed with error code 1");
  });

  test("rejects wrong arguments before calling native code", () => {
    const y = new Float32Array(4);
    const idx = new Int32Array(4);
    const call = (...args: Parameters<NonNullable<typeof cpu.kernels.scale_add>>) => () => cpu.kernels.scale_add!(...args);
    expect(call(4, y, idx, 1, 1)).toThrow("scale_add(n, y, idx, a, mask, enabled) takes 6 arguments, got 5");
    expect(call(4, y, idx, 1, 1, true, 7)).toThrow("takes 6 arguments, got 7");
    expect(call(4, idx, idx, 1, 1, true)).toThrow("argument y must be a cpu f32 buffer or a Float32Array, got Int32Array");
    expect(call(4, y, new Uint32Array(4), 1, 1, true)).toThrow("argument idx must be");
    expect(call(4, y, HostBuffer.alloc("i32", 4, "js"), 1, 1, true)).toThrow("got a js i32[4] buffer");
    expect(call(4, y, idx, 1, -1, true)).toThrow("argument mask must be an integer in [0, 2^32), got -1");
    expect(call(4, y, idx, 1, 2 ** 32, true)).toThrow("argument mask");
    expect(call(4, y, idx, 1, 1.5, true)).toThrow("argument mask");
    expect(call(4, y, idx, Number.NaN, 1, true)).toThrow("argument a must be a finite f32, got NaN");
    expect(call(4, y, idx, 1e39, 1, true)).toThrow("argument a must be a finite f32");
    expect(call(4, y, idx, 1, 1, 1)).toThrow("argument enabled must be a boolean, got 1");
    expect(call(-1, y, idx, 1, 1, true)).toThrow("n must be an integer in [0, 2^31), got -1");
    expect(call(2 ** 31, y, idx, 1, 1, true)).toThrow("n must be an integer");
    expect(call(0.5, y, idx, 1, 1, true)).toThrow("n must be an integer");
  });

  test("rejects a disposed buffer", () => {
    const x = HostBuffer.alloc("f32", 4);
    x.dispose();
    expect(() => cpu.kernels.add_one!(4, x)).toThrow("argument x must be a cpu f32 buffer or a Float32Array, got a disposed cpu f32[4] buffer");
  });

  test("lists every missing symbol", () => {
    const missing = [
      { name: "no_such_kernel", params: [] },
      { name: "another_missing", params: [] },
    ];
    expect(() => loadNativeModule(kernelsPath, [ADD_ONE, ...missing], "cpu")).toThrow(
      `${kernelsPath} does not export no_such_kernel, another_missing (missing extern "C"?)`,
    );
    // A cpu library lacks the CUDA runtime entry points a cuda module must have.
    expect(() => loadNativeModule(kernelsPath, [ADD_ONE], "cuda")).toThrow("does not export ngp_cuda_malloc, ngp_cuda_free");
  });

  test("refuses to load a file that is not a complete shared library", () => {
    const path = join(dir, "fake.so");
    writeFileSync(path, "not a library at all, but long enough to hold an ELF header...........");
    expect(() => loadNativeModule(path, [ADD_ONE], "cpu")).toThrow(`refusing to load ${path}: not an ELF file`);
  });

  test("a closed module's kernels throw instead of calling unloaded code", () => {
    const module = loadNativeModule(kernelsPath, [ADD_ONE], "cpu");
    module.close();
    expect(() => module.kernels.add_one!(1, new Float32Array(1))).toThrow("called after its module");
  });

  test("cuda: kernels take CudaBuffers (device addresses) and nothing else", () => {
    using x = CudaBuffer.alloc(cuda.cuda!.memory, "f32", 4);
    expect([...x.download()]).toEqual([0, 0, 0, 0]);
    cuda.kernels.iota!(3, x);
    expect([...x.download()]).toEqual([0, 1, 2, 0]);
    x.upload(new Float64Array([9, 8, 7, 6]));
    expect([...x.download()]).toEqual([9, 8, 7, 6]);
    expect(() => cuda.kernels.iota!(4, new Float32Array(4))).toThrow("argument x must be a cuda f32 buffer, got Float32Array");
    expect(() => cuda.kernels.iota!(4, HostBuffer.alloc("f32", 4))).toThrow("got a cpu f32[4] buffer");
    expect(() => cuda.kernels.iota!(5, x)).toThrow("kernel iota failed with cudaErrorInvalidValue (1)");
  });

  test("cuda: errors carry the CUDA error name; buffers refuse use after dispose", () => {
    const memory = cuda.cuda!.memory;
    expect(() => CudaBuffer.alloc(memory, "f32", 2 ** 40)).toThrow(CudaError);
    expect(() => CudaBuffer.alloc(memory, "f32", 2 ** 40)).toThrow("cudaMalloc(4398046511104 bytes) failed: cudaErrorMemoryAllocation (2)");
    expect(() => memory.free(12345n)).toThrow("cudaErrorInvalidValue");

    const x = CudaBuffer.alloc(memory, "u32", 2);
    x.dispose();
    x.dispose(); // a second dispose is a no-op, not a double free
    expect(x.disposed).toBe(true);
    expect(() => x.download()).toThrow("cuda u32[2] buffer used after dispose()");
    expect(() => x.upload([1, 2])).toThrow("used after dispose()");
    expect(() => cuda.kernels.iota!(1, x)).toThrow("got a disposed cuda u32[2] buffer");
  });

  test("cuda: a forgotten buffer is freed by the garbage collector", async () => {
    const live = dlopen(mockCudaPath, { mock_live_allocations: { args: [], returns: "i64" } });
    const count = () => Number(live.symbols.mock_live_allocations());
    const before = count();
    (() => {
      for (let i = 0; i < 8; i++) CudaBuffer.alloc(cuda.cuda!.memory, "f32", 16);
    })();
    expect(count()).toBe(before + 8);
    for (let attempt = 0; attempt < 50 && count() > before; attempt++) {
      Bun.gc(true);
      await Bun.sleep(10);
    }
    expect(count()).toBe(before);
    live.close();
  });

  test("cuda: a buffer that outlives its closed module throws instead of calling unloaded code", () => {
    const module = loadNativeModule(mockCudaPath, [IOTA], "cuda");
    const x = CudaBuffer.alloc(module.cuda!.memory, "f32", 1);
    module.close();
    expect(() => x.download()).toThrow(`CUDA runtime of ${mockCudaPath} used after close()`);
    expect(() => module.kernels.iota!(1, x)).toThrow("called after its module");
  });
});

import { describe, expect, test } from "bun:test";
import { allocBuffer, CudaBuffer, elemTypeOf, HostBuffer, type CudaMemory } from "../../runtime/buffer.ts";

describe("HostBuffer", () => {
  test("allocates zeroed memory of the element type and exposes it as .data", () => {
    const cases = [
      ["f32", Float32Array],
      ["i32", Int32Array],
      ["u32", Uint32Array],
      ["f16", Float16Array],
    ] as const;
    for (const [elem, ArrayType] of cases) {
      const buffer = HostBuffer.alloc(elem, 3);
      expect(buffer.data).toBeInstanceOf(ArrayType);
      expect([...buffer.data]).toEqual([0, 0, 0]);
      expect(buffer).toMatchObject({ elem, length: 3, backend: "cpu", disposed: false });
    }
  });

  test("upload converts to the element type; download is a copy", () => {
    const buffer = HostBuffer.alloc("u32", 3, "js");
    buffer.upload([1, 2 ** 32 + 5, -1]);
    expect([...buffer.data]).toEqual([1, 5, 2 ** 32 - 1]);
    const copy = buffer.download();
    copy[0] = 99;
    expect(buffer.data[0]).toBe(1);

    const half = HostBuffer.alloc("f16", 1);
    half.upload(new Float32Array([0.1]));
    expect(half.data[0]).toBe(Math.f16round(0.1));
  });

  test("upload of the wrong length throws", () => {
    expect(() => HostBuffer.alloc("f32", 2).upload([1, 2, 3])).toThrow("upload of 3 values into a buffer of 2");
  });

  test("use after dispose throws; dispose twice is harmless; `using` disposes", () => {
    const buffer = HostBuffer.alloc("i32", 2);
    buffer.dispose();
    buffer.dispose();
    expect(buffer.disposed).toBe(true);
    expect(buffer.length).toBe(2);
    expect(() => buffer.data).toThrow("cpu i32[2] buffer used after dispose()");
    expect(() => buffer.download()).toThrow("used after dispose()");
    expect(() => buffer.upload([1, 2])).toThrow("used after dispose()");

    let scoped: HostBuffer<"f32">;
    {
      using b = HostBuffer.alloc("f32", 1);
      scoped = b;
    }
    expect(scoped.disposed).toBe(true);
  });

  test("bad lengths throw RangeError", () => {
    for (const length of [-1, 1.5, Number.NaN]) expect(() => HostBuffer.alloc("f32", length)).toThrow(RangeError);
  });
});

describe("allocBuffer and elemTypeOf", () => {
  test("allocBuffer makes host buffers, and needs CudaMemory for cuda", () => {
    expect(allocBuffer("js", "f32", 2)).toBeInstanceOf(HostBuffer);
    expect(() => allocBuffer("cuda", "f32", 2)).toThrow("needs the CudaMemory");
  });

  test("an unknown element type is a TypeError naming it and the allowed ones, on every backend", () => {
    const message = 'unknown buffer element type "f64": buffers hold f32, i32, u32, f16';
    for (const backend of ["cpu", "js"] as const) expect(() => allocBuffer(backend, "f64" as never, 2)).toThrow(message);
    const memory = { malloc: () => expect.unreachable("malloc of an unknown element type") } as unknown as CudaMemory;
    expect(() => CudaBuffer.alloc(memory, "f64" as never, 2)).toThrow(message);
    expect(() => HostBuffer.alloc("toString" as never, 2)).toThrow('unknown buffer element type "toString"');
    expect(() => HostBuffer.alloc(undefined as never, 2)).toThrow(TypeError);
  });

  test("elemTypeOf tells the element type of a TypedArray", () => {
    expect(elemTypeOf(new Float32Array(1))).toBe("f32");
    expect(elemTypeOf(new Int32Array(1))).toBe("i32");
    expect(elemTypeOf(new Uint32Array(1))).toBe("u32");
    expect(elemTypeOf(new Float16Array(1))).toBe("f16");
    expect(elemTypeOf(new Float64Array(1))).toBeUndefined();
    expect(elemTypeOf([1, 2])).toBeUndefined();
  });
});

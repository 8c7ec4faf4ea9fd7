// One buffer interface for every backend: host memory for cpu and js, device memory for cuda.
//
// A buffer owns its memory until dispose(); every use after that throws instead of touching freed
// memory. Device memory forgotten without dispose() is freed by a FinalizationRegistry, so a leak
// costs memory for a while rather than forever.

import type { ElemType } from "../dsl/abi.ts";

export const ELEM_ARRAYS = {
  f32: Float32Array,
  i32: Int32Array,
  u32: Uint32Array,
  f16: Float16Array,
} as const;

interface ElemArrays {
  f32: Float32Array;
  i32: Int32Array;
  u32: Uint32Array;
  f16: Float16Array;
}
/** The TypedArray that holds elements of type E. */
export type ArrayOf<E extends ElemType> = ElemArrays[E];
export type ElemArray = ArrayOf<ElemType>;
export type BufferBackend = "cpu" | "cuda" | "js";

export interface DeviceBuffer<E extends ElemType = ElemType> {
  readonly elem: E;
  /** Number of elements. */
  readonly length: number;
  readonly backend: BufferBackend;
  readonly disposed: boolean;
  /** Copies `data` (exactly `length` values, converted to the element type) into the buffer. */
  upload(data: ArrayLike<number>): void;
  /** A copy of the contents, on every backend (use HostBuffer.data to share host memory). */
  download(): ArrayOf<E>;
  /** Sets every element to 0. */
  zero(): void;
  /** Releases the memory; later uses throw. Calling it again does nothing. */
  dispose(): void;
  [Symbol.dispose](): void;
}

/** Device memory operations; pointers are device addresses as bigint. Failures throw. */
export interface CudaMemory {
  malloc(bytes: bigint): bigint;
  free(ptr: bigint): void;
  htod(dst: bigint, src: ElemArray): void;
  dtoh(dst: ElemArray, src: bigint): void;
  memset0(ptr: bigint, bytes: bigint): void;
}

/** The element type of a TypedArray, or undefined if it is not one a buffer can hold. */
export function elemTypeOf(value: unknown): ElemType | undefined {
  for (const elem of Object.keys(ELEM_ARRAYS) as ElemType[]) {
    if (value instanceof ELEM_ARRAYS[elem]) return elem;
  }
  return undefined;
}

/** A zeroed buffer of `length` elements on `backend` (cuda needs the module's CudaMemory). */
export function allocBuffer<E extends ElemType>(
  backend: BufferBackend,
  elem: E,
  length: number,
  memory?: CudaMemory,
): DeviceBuffer<E> {
  if (backend !== "cuda") return HostBuffer.alloc(elem, length, backend);
  if (!memory) throw new Error("allocBuffer: a cuda buffer needs the CudaMemory of a loaded CUDA module");
  return CudaBuffer.alloc(memory, elem, length);
}

/** The TypedArray constructor for `elem`; a clear TypeError for anything that is not an ElemType. */
function elemArray(elem: ElemType): (typeof ELEM_ARRAYS)[ElemType] {
  // Callers in plain JS (or with casts) can pass any string; Object.hasOwn skips "toString" & co.
  if (typeof elem === "string" && Object.hasOwn(ELEM_ARRAYS, elem)) return ELEM_ARRAYS[elem];
  const allowed = Object.keys(ELEM_ARRAYS).join(", ");
  throw new TypeError(`unknown buffer element type ${JSON.stringify(elem) ?? String(elem)}: buffers hold ${allowed}`);
}

function checkLength(length: number): void {
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new RangeError(`buffer length must be a non-negative integer, got ${length}`);
  }
}

function newArray<E extends ElemType>(elem: E, length: number): ArrayOf<E> {
  const ArrayType = elemArray(elem);
  checkLength(length);
  return new ArrayType(length) as ArrayOf<E>;
}

function checkUpload(buffer: DeviceBuffer, data: ArrayLike<number>): void {
  if (data.length !== buffer.length) {
    throw new RangeError(`upload of ${data.length} values into a buffer of ${buffer.length}`);
  }
}

function usedAfterDispose(buffer: DeviceBuffer): Error {
  return new Error(`${buffer.backend} ${buffer.elem}[${buffer.length}] buffer used after dispose()`);
}

/** Host memory for the cpu and js backends; `.data` is the memory itself, for zero-copy use. */
export class HostBuffer<E extends ElemType = ElemType> implements DeviceBuffer<E> {
  readonly length: number;
  #data: ArrayOf<E> | undefined;

  private constructor(
    readonly elem: E,
    data: ArrayOf<E>,
    readonly backend: "cpu" | "js",
  ) {
    this.length = data.length;
    this.#data = data;
  }

  static alloc<E extends ElemType>(elem: E, length: number, backend: "cpu" | "js" = "cpu"): HostBuffer<E> {
    return new HostBuffer(elem, newArray(elem, length), backend);
  }

  get disposed(): boolean {
    return this.#data === undefined;
  }

  get data(): ArrayOf<E> {
    if (!this.#data) throw usedAfterDispose(this);
    return this.#data;
  }

  upload(data: ArrayLike<number>): void {
    checkUpload(this, data);
    this.data.set(data);
  }

  download(): ArrayOf<E> {
    return this.data.slice() as ArrayOf<E>;
  }

  zero(): void {
    this.data.fill(0);
  }

  dispose(): void {
    this.#data = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

interface Allocation {
  memory: CudaMemory;
  ptr: bigint;
}

const forgotten = new FinalizationRegistry<Allocation>(({ memory, ptr }) => {
  try {
    memory.free(ptr);
  } catch {
    // Nobody to report to from a finalizer (and at exit the CUDA context may already be gone).
  }
});

/** Device memory for the cuda backend; `.ptr` is the device address passed to kernels. */
export class CudaBuffer<E extends ElemType = ElemType> implements DeviceBuffer<E> {
  readonly backend = "cuda";
  #ptr: bigint | undefined;

  private constructor(
    readonly memory: CudaMemory,
    readonly elem: E,
    readonly length: number,
    ptr: bigint,
  ) {
    this.#ptr = ptr;
    forgotten.register(this, { memory, ptr }, this);
  }

  static alloc<E extends ElemType>(memory: CudaMemory, elem: E, length: number): CudaBuffer<E> {
    const bytesPerElement = elemArray(elem).BYTES_PER_ELEMENT;
    checkLength(length);
    const bytes = BigInt(length * bytesPerElement);
    const ptr = memory.malloc(bytes);
    try {
      memory.memset0(ptr, bytes); // same starting contents as a host buffer
    } catch (error) {
      memory.free(ptr);
      throw error;
    }
    return new CudaBuffer(memory, elem, length, ptr);
  }

  get disposed(): boolean {
    return this.#ptr === undefined;
  }

  get ptr(): bigint {
    if (this.#ptr === undefined) throw usedAfterDispose(this);
    return this.#ptr;
  }

  upload(data: ArrayLike<number>): void {
    checkUpload(this, data);
    const ArrayType = ELEM_ARRAYS[this.elem];
    this.memory.htod(this.ptr, data instanceof ArrayType ? data : ArrayType.from(data));
  }

  download(): ArrayOf<E> {
    const out = newArray(this.elem, this.length);
    this.memory.dtoh(out, this.ptr);
    return out;
  }

  zero(): void {
    this.memory.memset0(this.ptr, BigInt(this.length * ELEM_ARRAYS[this.elem].BYTES_PER_ELEMENT));
  }

  dispose(): void {
    if (this.#ptr === undefined) return;
    const ptr = this.#ptr;
    this.#ptr = undefined;
    forgotten.unregister(this);
    this.memory.free(ptr);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

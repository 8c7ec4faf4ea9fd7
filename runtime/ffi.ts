// Loading a built module with bun:ffi and wrapping each kernel in a typed, validating function.
//
// bun:ffi checks nothing: a wrong argument count, a float where a pointer belongs or a freed
// buffer crashes the process or corrupts memory silently. The wrappers here are the safety layer;
// they follow the calling convention of dsl/abi.ts exactly:
//     int32_t <name>(int64_t n, [T* p, int64_t p_len | scalar]...)

import { dlopen, type FFIFunction, type FFITypeOrString } from "bun:ffi";
import { NGP_ERR_OUT_OF_BOUNDS, type ElemType, type KernelParam, type KernelSignature, type ScalarType } from "../dsl/abi.ts";
import { CudaBuffer, ELEM_ARRAYS, elemTypeOf, HostBuffer, type DeviceBuffer } from "./buffer.ts";
import { CUDA_RUNTIME_SYMBOLS, openCudaRuntime, type CudaRuntime } from "./cuda.ts";
import { definedDynamicSymbols, validateSharedLibrary } from "./elf.ts";

export type NativeTarget = "cpu" | "cuda";
/** Where a wrapped kernel runs: a native library, or the JS backend's module. */
export type WrapTarget = NativeTarget | "js";
/** A buffer, or on cpu a TypedArray of the parameter's element type; or a scalar. */
export type KernelArg = DeviceBuffer | Float32Array | Int32Array | Uint32Array | Float16Array | number | boolean;
/** Runs the kernel for every index in [0, n). Throws KernelError if it reports a failure. */
export type Kernel = (n: number, ...args: KernelArg[]) => void;

export interface NativeModule {
  readonly path: string;
  readonly target: NativeTarget;
  readonly kernels: Readonly<Record<string, Kernel>>;
  /** Device memory and synchronization (cuda target only). */
  readonly cuda: CudaRuntime | undefined;
  /** Unloads the library; its kernels throw afterwards. */
  close(): void;
}

/**
 * What a bounds-checked kernel reports, identically on every backend: the first out-of-range
 * access of the lowest thread that made one (no such access is performed).
 */
export interface BoundsFault {
  thread: number;
  buffer: string;
  index: number;
  length: number;
}

export class KernelError extends Error {
  constructor(
    readonly kernel: string,
    readonly code: number,
    readonly codeName: string | undefined,
    readonly fault?: BoundsFault,
  ) {
    super(
      fault
        ? `kernel ${kernel} failed: index ${fault.index} is outside the buffer ${fault.buffer} of ${fault.length} elements (thread ${fault.thread}; bounds check)`
        : `kernel ${kernel} failed with ${codeName ? `${codeName} (${code})` : `error code ${code}`}`,
    );
    this.name = "KernelError";
  }
}

const OUT_OF_BOUNDS = "an index outside a buffer (bounds check)";

/** What a kernel of a closed module throws (native and JS alike). */
export function closedModuleError(kernel: string, path: string): Error {
  return new Error(`kernel ${kernel} called after its module ${path} was closed`);
}

/**
 * OpenMP's runtime, opened once and never closed. After a parallel region libgomp's worker threads
 * wait (spinning) inside libgomp; if closing the last CPU module unloaded it under them, the
 * process would crash. Holding our own reference keeps it loaded for the life of the process.
 */
let openmp: unknown;
function keepOpenMP(): void {
  if (openmp !== undefined) return;
  try {
    openmp = dlopen("libgomp.so.1", { omp_get_max_threads: { args: [], returns: "i32" } });
  } catch {
    openmp = null; // another OpenMP runtime (or none): nothing to hold
  }
}

/** Validates, loads and wraps the module at `path`, which must export every kernel in `kernels`. */
export function loadNativeModule(path: string, kernels: KernelSignature[], target: NativeTarget): NativeModule {
  const problem = validateSharedLibrary(path);
  if (problem) throw new Error(`refusing to load ${path}: ${problem}`);
  if (target === "cpu") keepOpenMP();
  const defined = definedDynamicSymbols(path);
  checkSymbols(path, kernels, target, defined);

  const symbols: Record<string, FFIFunction> = {};
  for (const k of kernels) symbols[k.name] = { args: nativeArgs(k, target), returns: "i32" };
  // A bounds-checked module exports the fault record of its last launch.
  const checked = defined.has("ngp_bounds_fault");
  if (checked) symbols.ngp_bounds_fault = { args: ["ptr"], returns: "void" };
  const lib = dlopen(path, symbols);
  const cuda = target === "cuda" ? openCudaRuntime(path) : undefined;
  const faultRecord = checked
    ? () => {
        const record = new BigUint64Array(2);
        (lib.symbols.ngp_bounds_fault as unknown as (out: BigUint64Array) => void)(record);
        return record;
      }
    : undefined;

  let closed = false;
  const wrapped: Record<string, Kernel> = {};
  for (const k of kernels) {
    const call = lib.symbols[k.name] as unknown as (...args: unknown[]) => number;
    const checkOpen = () => {
      if (closed) throw closedModuleError(k.name, path);
    };
    wrapped[k.name] = wrapKernel(k, target, call, checkOpen, cuda, faultRecord);
  }
  return {
    path,
    target,
    kernels: wrapped,
    cuda,
    close() {
      if (closed) return;
      closed = true;
      cuda?.close();
      lib.close();
    },
  };
}

// bun:ffi reports only the first missing symbol; reading the dynamic symbol table lists them all.
function checkSymbols(path: string, kernels: KernelSignature[], target: NativeTarget, defined: Set<string>): void {
  const required = kernels.map((k) => k.name);
  if (target === "cuda") required.push(...Object.keys(CUDA_RUNTIME_SYMBOLS));
  const missing = required.filter((name) => !defined.has(name));
  if (missing.length > 0) {
    throw new Error(`${path} does not export ${missing.join(", ")} (missing extern "C"?)`);
  }
}

const SCALAR_FFI: Record<ScalarType, FFITypeOrString> = { f32: "f32", i32: "i32", u32: "u32", bool: "i32" };

function nativeArgs(k: KernelSignature, target: NativeTarget): FFITypeOrString[] {
  // A CUDA buffer is a device address (an integer to the host), a CPU buffer a host pointer.
  const pointer: FFITypeOrString = target === "cuda" ? "u64" : "ptr";
  return ["i64", ...k.params.flatMap((p) => (p.kind === "buffer" ? [pointer, "i64" as const] : [SCALAR_FFI[p.type]]))];
}

/** Appends the native arguments for one JS argument, or throws saying what is wrong with it. */
type Converter = (value: unknown, out: unknown[]) => void;

/**
 * Wraps `call` (a native symbol, or a JS backend function) in the validating signature of `k`.
 * Native calls get `n, [ptr, len | scalar]...`; JS calls get `n, [TypedArray | scalar]...`.
 * A bounds fault becomes a KernelError with its BoundsFault: a native kernel returns
 * NGP_ERR_OUT_OF_BOUNDS and `faultRecord` reads what it recorded; a JS kernel throws an error
 * carrying `ngpFault`.
 */
export function wrapKernel(
  k: KernelSignature,
  target: WrapTarget,
  call: (...args: unknown[]) => number,
  checkOpen: () => void,
  cuda: CudaRuntime | undefined,
  faultRecord?: () => BigUint64Array,
): Kernel {
  const converters = k.params.map((p) => converter(k.name, p, target));
  const usage = `${k.name}(${["n", ...k.params.map((p) => p.name)].join(", ")})`;
  return (n, ...args) => {
    checkOpen();
    if (args.length !== k.params.length) {
      throw new TypeError(`${usage} takes ${k.params.length + 1} arguments, got ${args.length + 1}`);
    }
    if (!Number.isSafeInteger(n) || n < 0 || n >= 2 ** 31) {
      throw new RangeError(`${k.name}: n must be an integer in [0, 2^31), got ${describe(n)}`);
    }
    const native: unknown[] = [n];
    for (let i = 0; i < args.length; i++) converters[i]!(args[i], native);
    checkAliasing(k, args);
    let status: number;
    try {
      status = call(...native);
    } catch (e) {
      const fault = target === "js" ? (e as { ngpFault?: BoundsFault } | undefined)?.ngpFault : undefined;
      if (fault) throw new KernelError(k.name, NGP_ERR_OUT_OF_BOUNDS, OUT_OF_BOUNDS, { ...fault });
      throw e;
    }
    if (status === NGP_ERR_OUT_OF_BOUNDS) throw new KernelError(k.name, status, OUT_OF_BOUNDS, faultRecord && decodeFault(k, args, faultRecord()));
    if (status !== 0) throw new KernelError(k.name, status, cuda?.errorName(status));
  };
}

/** The BoundsFault of a native fault record (codegen/emit/c_base.ts: thread, parameter, index). */
function decodeFault(k: KernelSignature, args: unknown[], [key, index]: BigUint64Array): BoundsFault {
  const param = Number((key! & 0xffffffffn) >> 1n);
  const low = Number(index! & 0xffffffffn);
  return { thread: Number(key! >> 32n), buffer: k.params[param]!.name, index: key! & 1n ? low - 2 ** 32 : low, length: (args[param] as { length: number }).length };
}

/** The memory a buffer argument occupies: an identity for its allocation and a byte range in it. */
function extent(value: unknown): { base: unknown; start: bigint; end: bigint } | undefined {
  if (value instanceof CudaBuffer) {
    const bytes = BigInt(value.length * ELEM_ARRAYS[value.elem as ElemType].BYTES_PER_ELEMENT);
    return { base: "device", start: value.ptr, end: value.ptr + bytes };
  }
  const array = value instanceof HostBuffer ? value.data : value;
  if (!ArrayBuffer.isView(array)) return undefined;
  return { base: array.buffer, start: BigInt(array.byteOffset), end: BigInt(array.byteOffset + array.byteLength) };
}

/**
 * The generated code declares buffer parameters `__restrict__` (no two of them alias), which is
 * false when the caller passes overlapping memory for a buffer the kernel writes: refuse that.
 */
function checkAliasing(k: KernelSignature, args: unknown[]): void {
  const buffers = k.params.flatMap((p, i) => (p.kind === "buffer" ? [{ p, e: extent(args[i]) }] : []));
  for (let a = 0; a < buffers.length; a++)
    for (let b = a + 1; b < buffers.length; b++) {
      const [x, y] = [buffers[a]!, buffers[b]!];
      if (!x.e || !y.e || x.e.base !== y.e.base || x.e.end <= y.e.start || y.e.end <= x.e.start) continue;
      if (!x.p.writes && !y.p.writes) continue; // overlapping inputs are fine
      const written = x.p.writes ? x.p.name : y.p.name;
      throw new TypeError(`${k.name}: arguments ${x.p.name} and ${y.p.name} overlap and ${written} is written; pass separate buffers`);
    }
}

function converter(kernel: string, p: KernelParam, target: WrapTarget): Converter {
  const fail = (expected: string, value: unknown): never => {
    throw new TypeError(`${kernel}: argument ${p.name} must be ${expected}, got ${describe(value)}`);
  };
  if (p.kind === "scalar") {
    const native = scalarConverter(p.type, fail);
    if (target !== "js") return native;
    // The JS backend gets what C would see: f32 arguments rounded to f32, booleans as booleans.
    if (p.type === "bool") return (v, out) => out.push(typeof v === "boolean" ? v : fail("a boolean", v));
    if (p.type === "f32") return (v, out) => (native(v, out), out.push(Math.fround(out.pop() as number)));
    return native;
  }

  const host = target !== "cuda";
  const expected = `a ${target} ${p.elem} buffer${host ? ` or a ${ELEM_ARRAYS[p.elem].name}` : ""}`;
  // Native calls take a pointer and an element count; JS calls take the TypedArray itself.
  const pushHost = (array: ArrayLike<number>, out: unknown[]) => (target === "js" ? out.push(array) : out.push(array, array.length));
  return (value, out) => {
    if (isBuffer(value) && value.disposed) fail(expected, value);
    if (host && elemTypeOf(value) === p.elem) {
      pushHost(value as ArrayLike<number>, out);
    } else if (host && value instanceof HostBuffer && value.backend === target && value.elem === p.elem) {
      pushHost(value.data, out);
    } else if (target === "cuda" && value instanceof CudaBuffer && value.elem === p.elem) {
      out.push(value.ptr, value.length);
    } else {
      fail(expected, value);
    }
  };
}

function scalarConverter(type: ScalarType, fail: (expected: string, value: unknown) => never): Converter {
  switch (type) {
    case "f32":
      // A finite double beyond the f32 range would silently become infinity in the kernel.
      return (v, out) => out.push(typeof v === "number" && Number.isFinite(Math.fround(v)) ? v : fail("a finite f32", v));
    case "i32":
      return (v, out) => out.push(isIntegerIn(v, -(2 ** 31), 2 ** 31 - 1) ? v : fail("an integer in the i32 range", v));
    case "u32":
      return (v, out) => out.push(isIntegerIn(v, 0, 2 ** 32 - 1) ? v : fail("an integer in [0, 2^32)", v));
    case "bool":
      return (v, out) => out.push(typeof v === "boolean" ? Number(v) : fail("a boolean", v));
  }
}

function isIntegerIn(v: unknown, min: number, max: number): v is number {
  return Number.isInteger(v) && (v as number) >= min && (v as number) <= max;
}

function isBuffer(value: unknown): value is DeviceBuffer {
  return value instanceof HostBuffer || value instanceof CudaBuffer;
}

function describe(value: unknown): string {
  if (isBuffer(value)) {
    return `${value.disposed ? "a disposed " : "a "}${value.backend} ${value.elem}[${value.length}] buffer`;
  }
  if (ArrayBuffer.isView(value)) return value.constructor.name;
  return typeof value === "number" ? String(value) : typeof value;
}

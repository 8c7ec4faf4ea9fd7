// Scalar and buffer types of the kernel language.
//
// They are plain aliases of `number` so that kernels type-check as ordinary TypeScript and editors
// help authors. The compiler does not rely on the TypeScript checker (which erases these aliases):
// it reads the type *names* from the source and infers its own types, with C semantics
// (f32 rounding, u32 wrap-around). Each type name doubles as a cast function: `f32(x)`, `u32(x)`.
// This file imports nothing: the intrinsic table (intrinsics.ts) takes the casts from here.

// These JS implementations let a kernel file run as plain TypeScript for quick experiments; the
// exact reference is the JS the compiler emits (codegen/emit/js.ts), not this file.

/** The names of the value types, as the compiler knows them. `f16` is storage-only (buffer elements), never a value type. */
export type Scalar = "f32" | "i32" | "u32" | "bool";

/** 32-bit IEEE float; arithmetic rounds to f32 after every operation. */
export type f32 = number;
/** 32-bit signed integer; arithmetic wraps. */
export type i32 = number;
/** 32-bit unsigned integer; arithmetic wraps modulo 2^32 (hashing relies on it). */
export type u32 = number;
/** Storage-only half float: loads widen to f32, stores round to nearest. */
export type f16 = number;
/** Boolean; produced by comparisons, consumed by `if`, `select`, `&&`, `||`, `!`. */
export type bool = boolean;
/**
 * Float storage of either width, for helper parameters: `Buf<Float>` accepts a Buf<f32> or a
 * Buf<f16>, so one helper serves an f32 and an f16 kernel (loads are f32 either way).
 */
export type Float = f32 | f16;

/**
 * The conversions f32(x), i32(x), u32(x) (intrinsics: see intrinsics.ts), as JS. f32 -> integer
 * truncates toward zero, saturates at the type's range and maps NaN to 0 on every backend (C
 * leaves these cases undefined; CUDA's __float2int_rz does this). Between integers the bits are
 * reinterpreted (u32(-1) = 4294967295). When folding, the compiler passes the argument's type
 * after the argument.
 */
export const f32 = ((x: number): f32 => Math.fround(x)) as (x: number) => f32;
export const i32 = ((x: number, from: Scalar = Number.isInteger(x) ? "i32" : "f32"): i32 => {
  if (from !== "f32") return x | 0;
  return Number.isNaN(x) ? 0 : Math.min(2147483647, Math.max(-2147483648, Math.trunc(x)));
}) as (x: number) => i32;
export const u32 = ((x: number, from: Scalar = Number.isInteger(x) ? "u32" : "f32"): u32 => {
  if (from !== "f32") return x >>> 0;
  return Number.isNaN(x) ? 0 : Math.min(4294967295, Math.max(0, Math.trunc(x)));
}) as (x: number) => u32;

/** A global buffer (device or host memory), indexed with `[]`. Element type is a scalar type. */
export interface Buf<T extends number> {
  [index: number]: T;
}

/**
 * A compile-time configuration: every field is baked into the generated code as a literal, so
 * branches on it disappear and loops over it unroll. Declare the fields with the scalar types above
 * (`levels: i32`, `scales: f32[]`, `smooth: bool`).
 */
export type Const<T> = Readonly<T>;

/** A fixed-size local (register/stack) array; `size` must be a compile-time constant. */
export function localArray<T extends number>(size: number): T[] {
  return new Array<T>(size).fill(0 as T);
}

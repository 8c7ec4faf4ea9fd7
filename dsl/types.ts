// Scalar and buffer types of the kernel language.
//
// They are plain aliases of `number` so that kernels type-check as ordinary TypeScript and editors
// help authors. The compiler does not rely on the TypeScript checker (which erases these aliases):
// it reads the type *names* from the source and infers its own types, with C semantics
// (f32 rounding, u32 wrap-around). Each type name doubles as a cast function, `f32(x)`, `u32(x)`:
// an intrinsic (dsl/intrinsics.ts) whose JS twin dsl/index.ts exports under the type's name, so that
// this file imports nothing.

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

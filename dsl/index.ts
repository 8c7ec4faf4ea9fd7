// What kernel authors import: `import { f32, u32, Buf, Const, floor, atomicAdd } from "../dsl";`
import { INTRINSICS } from "./intrinsics.ts";
import type * as types from "./types.ts";
export * from "./types.ts";
export {
  floor, ceil, trunc, abs, min, max, clamp, select, detach, fma, sqrt, rsqrt, exp, exp2, log, log2, pow,
  sin, cos, tanh, floatBitsToUint, uintBitsToFloat, clz, popcount, atomicAdd, prefetch,
} from "./intrinsics.ts";
export {
  type Tile, type Tiles, loadRows, storeRows, loadTile, matmul, matmulNT, matmulTN, tileMap, tileSum, accumulate, rowMask, tiles,
} from "./tiles.ts";

// Each conversion is a type of types.ts and, under the same name, the intrinsic's JS twin (a kernel
// file also runs as plain TypeScript): `const x: f32 = f32(n)`. Declared here, where both meet, so
// that types.ts imports nothing.
/** 32-bit IEEE float; arithmetic rounds to f32 after every operation. `f32(x)` converts. */
export type f32 = types.f32;
/** 32-bit signed integer; arithmetic wraps. `i32(x)` converts. */
export type i32 = types.i32;
/** 32-bit unsigned integer; arithmetic wraps modulo 2^32. `u32(x)` converts. */
export type u32 = types.u32;
export const f32 = INTRINSICS.f32.impl as (x: number) => f32;
export const i32 = INTRINSICS.i32.impl as (x: number) => i32;
export const u32 = INTRINSICS.u32.impl as (x: number) => u32;

// What kernel authors import: `import { f32, u32, Buf, Const, floor, atomicAdd } from "../dsl";`
export * from "./types.ts";
export {
  floor, ceil, trunc, abs, min, max, clamp, select, detach, fma, sqrt, rsqrt, exp, exp2, log, log2, pow,
  sin, cos, tanh, floatBitsToUint, uintBitsToFloat, clz, popcount, atomicAdd, prefetch,
} from "./intrinsics.ts";
export {
  type Tile, type Tiles, loadRows, storeRows, loadTile, matmul, matmulNT, matmulTN, tileMap, tileSum, accumulate, rowMask, tiles,
} from "./tiles.ts";

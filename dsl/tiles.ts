// Cooperative tiles: block-level 2-D f32 values for small dense math (the MLP) inside the kernel
// language. A *block kernel* (`/** @kernel @block <rows> */`) runs once per batch tile of `<rows>`
// consecutive items (a literal, or the name of a configuration field); its index is the tile's
// number. Its tiles are local values of compile-time shape that the whole block computes together:
// on the CPU a tile is an aligned local array and every operation a register-blocked loop nest; on
// CUDA a tile lives in shared memory and the block's threads share each operation.
//
//   const x = loadRows(input, stride, col, cols)     this block's rows of a row-major buffer
//   const w = loadTile(weights, offset, rows, cols)  a row-major matrix (weights)
//   const h = matmulNT(x, w)                         x · wᵀ      (also matmul: x · w, matmulTN: xᵀ · w)
//   const a = tileMap(relu, h)                       elementwise through a helper; further tile
//                                                    arguments of the same shape, a 1×C or R×1 tile
//                                                    (broadcast) or scalars follow
//   const s = tileSum(a, 0)                          sum along an axis (0: over rows -> 1×C)
//   accumulate(grad, offset, matmulTN(d, x))         grad[offset..] += tile, summed over all blocks
//   storeRows(output, stride, col, a)                this block's rows (rows past the end skipped)
//   rowMask()                                        R×1: 1 for rows inside the batch, 0 past its end
//   const hs = tiles(n); hs[l] = ...                 a list of tiles indexed by unrolled loops
//
// Shapes come from the operations (and the configuration) and are checked after specialization;
// rows past the end of the batch load as zeros. Every entry of TILE_INTRINSICS is one operation of
// the intrinsic table (dsl/intrinsics.ts): its signature for the checker, its shape rule for the
// tiles phase (codegen/tiles.ts), its derivative rules for the adjoint (codegen/adjoint_tile.ts),
// and its spellings, whose arguments are the output tile `$0` (empty for operations without a
// result), the operands, the shapes and constants the tiles phase computes (`extra`), then the
// block's number and the batch size. The C spellings name templates, the JS spellings their
// exact-semantics twins, both defined by the operations' helpers (dsl/tile_helpers.ts). The
// operations only the compiler writes (a fused product, a tile read in place) are in
// codegen/forms.ts.
import type { Buf, f32, i32 } from "./types.ts";

/** A block-level 2-D f32 value of compile-time shape (opaque: use the tile operations). */
export interface Tile {
  readonly __tile: unique symbol;
}
/** A fixed-length list of tiles, indexed by a compile-time constant (an unrolled loop's variable). */
export interface Tiles {
  [index: number]: Tile;
}

/** A shape [rows, cols]. */
export type Shape = readonly [number, number];

/** What the tiles phase knows about an operation's arguments when it computes a shape. */
export interface ShapeArgs {
  /** Shapes of the tile arguments (undefined where the argument is not a tile). */
  tiles: (Shape | undefined)[];
  /** Values of the compile-time integer arguments (undefined where not constant). */
  consts: (number | undefined)[];
  /** Rows per block of the kernel. */
  rows: number;
}

/** The tile part of an intrinsic-table entry. */
export interface TileOp {
  /** The output's shape, or a message saying which shapes are wrong. */
  shape: (a: ShapeArgs) => Shape | string;
  /** Indices of the arguments that must be compile-time constants (shapes, axes). */
  constArgs?: number[];
  /** The extra spelling arguments after the operands: shapes and constants, in order. */
  extra: (a: ShapeArgs, out: Shape) => (number | boolean)[];
  /** The written buffer (the intrinsic's `writes`) is accumulated into by every block. */
  accumulates?: boolean;
  /**
   * Not a call of a prelude template: `map` (tileMap) becomes an elementwise loop over a helper
   * (the inliner makes it a `tilemap` statement), `list` (tiles) declares a list of tiles.
   */
  form?: "map" | "list";
  /** A product (the matmul family), whose extra arguments `fusedProduct` takes after its own. */
  product?: boolean;
  /** This operation of a product that nothing else reads fuses into the named operation of the compiler (codegen/forms.ts). */
  fusedProduct?: string;
  /** Of a buffer the kernel does not write, the tile is read in place through the named operation of the compiler. */
  view?: string;
  /**
   * Bounds-checked mode: the buffer range the operation touches, as indices of the lowered call's
   * arguments: `rows` [buf, R, C, stride, col, block, n] (this block's rows), `span` [buf, R, C,
   * offset] (R * C consecutive elements). The targets check every index, in the operation's order.
   */
  check?: { kind: "rows" | "span"; args: number[] };
  /**
   * The reverse-mode derivative (codegen/adjoint_tile.ts): from the adjoint of the result and the
   * operands (tiles, undefined for scalars), the adjoint of each tile operand (undefined: none).
   */
  grad?: <T>(b: TileGradBuilder<T>, adj: T, operands: (T | undefined)[]) => (T | undefined)[];
  /**
   * A load (its buffer is argument 0): how the adjoint of the loaded tile is added into `grad`,
   * the gradient of the buffer, when the buffer is differentiated (`args`: the call's arguments).
   */
  loadGrad?: <T>(b: TileGradBuilder<T>, adj: T, grad: T, args: T[]) => void;
  /** A store: the adjoint of the stored tile (of `shape`), read from `grad`, the output's adjoint. */
  storeGrad?: <T>(b: TileGradBuilder<T>, grad: T, args: T[], shape: Shape) => T;
}

type TileOpName = "loadRows" | "storeRows" | "loadTile" | "matmul" | "matmulNT" | "matmulTN" | "tileSum" | "accumulate";

/** Builds the tile expressions (and statements) of the derivative rules. */
export interface TileGradBuilder<T> {
  /** A tile operation's result. */
  op: (fn: TileOpName, args: T[]) => T;
  /** A tile operation as a statement (a store). */
  effect: (fn: TileOpName, args: T[]) => void;
  /** a + b elementwise, as a new tile. */
  add: (a: T, b: T) => T;
  /** An integer constant (a shape). */
  int: (n: number) => T;
  /** `t` repeated to the shape of `like` (the adjoint of a sum along an axis). */
  broadcast: (t: T, like: T) => T;
}

const unsupported = (): never => {
  throw new Error("tile operations run only in compiled block kernels (loadKernels)");
};

const fmt = (s: Shape | undefined) => (s ? `${s[0]}×${s[1]}` : "?");
const positive = (n: number | undefined, what: string): string | undefined =>
  n === undefined ? `${what} must be a compile-time constant` : !Number.isInteger(n) || n < 1 || n > 4096 ? `${what} ${n} is outside [1, 4096]` : undefined;

/** matmul family: out = op(a) · op(b), op transposing when the flag is set. */
function matmulOp(ta: boolean, tb: boolean, doc: string) {
  const tile: TileOp = {
    shape: ({ tiles: [a, b] }) => {
      const [m, k1] = ta ? [a![1], a![0]] : a!;
      const [k2, n] = tb ? [b![1], b![0]] : b!;
      if (k1 !== k2) return `inner dimensions differ: ${doc} of ${fmt(a)} and ${fmt(b)} (${k1} vs ${k2})`;
      return [m, n];
    },
    // <R, K, C, TA, TB>: out is R×C, the sum runs over K.
    extra: ({ tiles: [a] }, out) => [out[0], ta ? a![0] : a![1], out[1], ta, tb],
    // The adjoint of a product is the same kind of product with the layouts flipped.
    grad: (m, d, [a, b]) => {
      if (!ta && !tb) return [m.op("matmulNT", [d, b!]), m.op("matmulTN", [a!, d])]; // C = A·B
      if (!ta) return [m.op("matmul", [d, b!]), m.op("matmulTN", [d, a!])]; // C = A·Bᵀ
      return [m.op("matmulNT", [b!, d]), m.op("matmul", [a!, d])]; // C = Aᵀ·B
    },
    product: true,
  };
  return {
    doc, params: ["Tile", "Tile"], ret: "Tile", tile,
    c: "ngp_tile_mm<$3, $4, $5, $6, $7>($0, $1, $2)", js: "__tile_mm($3, $4, $5, $6, $7, $0, $1, $2)", helpers: ["tileMm"],
    pure: true, exact: false, impl: unsupported,
  } as const;
}

export const TILE_INTRINSICS = {
  loadRows: {
    doc: "this block's rows of a row-major buffer: rows[r][c] = buf[(row0 + r) * stride + col + c]; rows past the batch are 0",
    params: ["Buf<f32>", "int", "int", "int"], ret: "Tile",
    tile: {
      constArgs: [3],
      shape: ({ consts: [, , , cols], rows }) => positive(cols, "the column count") ?? [rows, cols!],
      extra: (_, out) => [out[0], out[1]],
      check: { kind: "rows", args: [1, 5, 6, 2, 3, 7, 8] },
      // This block's rows of the gradient are its own: added to in place.
      loadGrad: (m, d, g, [, stride, col, cols]) => m.effect("storeRows", [g, stride!, col!, m.add(m.op("loadRows", [g, stride!, col!, cols!]), d)]),
    } satisfies TileOp,
    c: "ngp_tile_load_rows<$5, $6>($0, $1, $2, $3, $7, $8)", js: "__tile_load_rows($5, $6, $0, $1, $2, $3, $7, $8)", helpers: ["tileLoadRows"],
    pure: true, exact: false, impl: unsupported,
  },
  storeRows: {
    doc: "store a tile into this block's rows of a row-major buffer (rows past the batch are skipped)",
    params: ["Buf<f32>", "int", "int", "Tile"], ret: "void", writes: 1,
    tile: {
      shape: ({ tiles: [, , , t], rows }) => (t![0] === rows ? t! : `storeRows needs a tile of ${rows} rows (one per item of the block), got ${fmt(t)}`),
      extra: (a) => [a.tiles[3]![0], a.tiles[3]![1]],
      check: { kind: "rows", args: [1, 5, 6, 2, 3, 7, 8] },
      storeGrad: (m, g, [, stride, col], [, cols]) => m.op("loadRows", [g, stride!, col!, m.int(cols)]),
    } satisfies TileOp,
    c: "ngp_tile_store_rows<$5, $6>($1, $2, $3, $4, $7, $8)", js: "__tile_store_rows($5, $6, $1, $2, $3, $4, $7, $8)", helpers: ["tileStoreRows"],
    pure: false, exact: false, impl: unsupported,
  },
  loadTile: {
    doc: "a rows×cols row-major matrix from buf[offset ..] (weights)",
    params: ["Buf<f32>", "int", "int", "int"], ret: "Tile",
    tile: {
      constArgs: [2, 3],
      shape: ({ consts: [, , r, c] }) => positive(r, "the row count") ?? positive(c, "the column count") ?? [r!, c!],
      extra: (_, out) => [out[0], out[1]],
      check: { kind: "span", args: [1, 5, 6, 2] },
      view: "tileView",
      // Summed over every block, like a hand-written weight gradient.
      loadGrad: (m, d, g, [, offset]) => m.effect("accumulate", [g, offset!, d]),
    } satisfies TileOp,
    c: "ngp_tile_load<$5, $6>($0, $1, $2)", js: "__tile_load($5, $6, $0, $1, $2)", helpers: ["tileLoad"],
    pure: true, exact: false, impl: unsupported,
  },
  matmul: matmulOp(false, false, "a · b"),
  matmulNT: matmulOp(false, true, "a · bᵀ"),
  matmulTN: matmulOp(true, false, "aᵀ · b"),
  tileMap: {
    doc: "elementwise: out[r][c] = fn(args at [r][c]); tile arguments of the first's shape, 1×C or R×1 (broadcast), or scalars",
    params: ["fn", "..."], ret: "Tile",
    tile: { shape: () => "lowered by the tiles phase", extra: () => [], form: "map" } satisfies TileOp, // a loop, not a call: see codegen/tiles.ts
    c: "", js: "", pure: true, exact: false, impl: unsupported,
  },
  tileSum: {
    doc: "sum along an axis, in index order: axis 0 (over rows) gives 1×C, axis 1 (over columns) R×1",
    params: ["Tile", "int"], ret: "Tile",
    tile: {
      constArgs: [1],
      shape: ({ tiles: [t], consts: [, axis] }) => (axis === 0 ? [1, t![1]] : axis === 1 ? [t![0], 1] : `the axis must be the constant 0 or 1, got ${axis ?? "a run-time value"}`),
      extra: ({ tiles: [t], consts: [, axis] }) => [t![0], t![1], axis!],
      grad: (m, d, [t]) => [m.broadcast(d, t!)],
    } satisfies TileOp,
    c: "ngp_tile_sum<$3, $4, $5>($0, $1)", js: "__tile_sum($3, $4, $5, $0, $1)", helpers: ["tileSum"],
    pure: true, exact: false, impl: unsupported,
  },
  accumulate: {
    doc: "buf[offset + r * cols + c] += t[r][c], summed over every block (CPU: per-slot partial sums reduced in a fixed order; CUDA: one atomic per element and block)",
    params: ["Buf<f32>", "int", "Tile"], ret: "void", writes: 1,
    tile: {
      shape: ({ tiles: [, , t] }) => t!,
      extra: ({ tiles: [, , t] }) => [t![0], t![1]],
      accumulates: true,
      check: { kind: "span", args: [1, 4, 5, 2] },
      fusedProduct: "accumulateMatmul",
      storeGrad: (m, g, [, offset], [rows, cols]) => m.op("loadTile", [g, offset!, m.int(rows), m.int(cols)]),
    } satisfies TileOp,
    c: "ngp_tile_accumulate<$4, $5>($1, $2, $3)", js: "__tile_accumulate($4, $5, $1, $2, $3)", helpers: ["tileAccumulate"],
    pure: false, exact: false, impl: unsupported,
  },
  rowMask: {
    doc: "an R×1 tile: 1 for the block's rows inside the batch, 0 for rows past its end",
    params: [], ret: "Tile",
    tile: { shape: ({ rows }) => [rows, 1], extra: (_, out) => [out[0]] } satisfies TileOp,
    c: "ngp_tile_row_mask<$1>($0, $2, $3)", js: "__tile_row_mask($1, $0, $2, $3)", helpers: ["tileRowMask"],
    pure: true, exact: false, impl: unsupported,
  },
  tiles: {
    doc: "a list of `count` tiles, each element assigned once per index (the index must be constant after unrolling)",
    params: ["int"], ret: "Tiles",
    tile: { constArgs: [0], shape: () => "a list, not a tile", extra: () => [], form: "list" } satisfies TileOp,
    c: "", js: "", pure: true, exact: false, impl: unsupported,
  },
} as const;

// The JS twins (they throw: tiles need a block of threads, which only compiled kernels have).
export const loadRows = TILE_INTRINSICS.loadRows.impl as (buf: Buf<f32>, stride: number, col: number, cols: number) => Tile;
export const storeRows = TILE_INTRINSICS.storeRows.impl as (buf: Buf<f32>, stride: number, col: number, t: Tile) => void;
export const loadTile = TILE_INTRINSICS.loadTile.impl as (buf: Buf<f32>, offset: number, rows: number, cols: number) => Tile;
export const matmul = TILE_INTRINSICS.matmul.impl as (a: Tile, b: Tile) => Tile;
export const matmulNT = TILE_INTRINSICS.matmulNT.impl as (a: Tile, b: Tile) => Tile;
export const matmulTN = TILE_INTRINSICS.matmulTN.impl as (a: Tile, b: Tile) => Tile;
export const tileMap = TILE_INTRINSICS.tileMap.impl as (fn: (...x: never[]) => f32, ...args: (Tile | f32 | i32 | boolean)[]) => Tile;
export const tileSum = TILE_INTRINSICS.tileSum.impl as (t: Tile, axis: 0 | 1) => Tile;
export const accumulate = TILE_INTRINSICS.accumulate.impl as (buf: Buf<f32>, offset: number, t: Tile) => void;
export const rowMask = TILE_INTRINSICS.rowMask.impl as () => Tile;
export const tiles = TILE_INTRINSICS.tiles.impl as (count: number) => Tiles;

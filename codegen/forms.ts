// The compiler's view of the intrinsic table (dsl/intrinsics.ts), and the special forms: the
// forms of the language that are not calls of the table, the tile operations only the compiler
// writes, and the intrinsics the compiler writes itself, by the role they play. Everything else
// the compiler knows about a call it reads from the call's entry (its fields), never from its name.
import { lookupIntrinsic, type Intrinsic, type IntrinsicName } from "../dsl/intrinsics.ts";
import type { TileOp } from "../dsl/tiles.ts";
import { childBodies, exprsOf, type Expr, type Span, type Stmt } from "./ir.ts";

const unsupported = (): never => {
  throw new Error("internal: a tile operation of the compiler has no JS twin");
};

/**
 * Tile operations the tiles phase (tiles.ts) makes: an author cannot call them. Their spellings
 * follow the tile operations' convention (dsl/tiles.ts): the output tile `$0`, the operands, the
 * shape constants, then the block's number and the batch size.
 */
export const INTERNAL_TILE_OPS = {
  accumulateMatmul: {
    doc: "accumulate(buf, offset, matmul*(a, b)) in one operation: each element of the product added as it is computed",
    params: ["Buf<f32>", "int", "Tile", "Tile"], ret: "void", writes: 1,
    tile: {
      shape: () => "made by the tiles phase",
      extra: () => [],
      accumulates: true,
      check: { kind: "span", args: [1, 5, 7, 2] },
    } satisfies TileOp,
    c: "ngp_tile_mm_accumulate<$5, $6, $7, $8, $9>($1, $2, $3, $4)", js: "__tile_mm_accumulate($5, $6, $7, $8, $9, $1, $2, $3, $4)", helpers: ["tileMmAccumulate"],
    pure: false, exact: false, impl: unsupported,
  },
  tileView: {
    doc: "a read-only tile in place: the elements of buf from offset on",
    params: ["Buf<f32>", "int"], ret: "void",
    c: "($0 + $1)", js: "$0.subarray($1)", pure: true, exact: false, impl: unsupported,
  },
} as const satisfies Record<string, Intrinsic>;

/** Forms of the language that are not functions of the intrinsic table: the front end makes each a statement. */
export const FORMS = {
  localArray: { k: "array", doc: "localArray<T>(n): a fixed-size local array, only as the initializer of a declaration (an `array` statement)" },
} as const;

/** The intrinsics the compiler writes into kernels itself, by the role they play. */
export const MADE = {
  /** The adjoint's choice between the values of a branch's two arms (and the rules' select). */
  choice: "select",
  /** The adjoint's addition into a gradient element. */
  gradientAdd: "atomicAdd",
  /** The CPU schedule's prefetch of a buffer element (schedule.ts). */
  prefetch: "prefetch",
  /** The adjoint's rounding toward zero (the derivative of `%`). */
  truncate: "trunc",
  /** The adjoint's sum of a broadcast tile operand's adjoint along the broadcast axis. */
  tileSum: "tileSum",
} as const satisfies Record<string, IntrinsicName>;

/** The entry of an intrinsic or of a tile operation of the compiler. */
export function intrinsic(fn: string): Intrinsic | undefined {
  return lookupIntrinsic(fn) ?? (Object.hasOwn(INTERNAL_TILE_OPS, fn) ? (INTERNAL_TILE_OPS as Record<string, Intrinsic>)[fn] : undefined);
}

/** The entry of the intrinsic that `e` calls (undefined: not an intrinsic call). */
export function intrinsicOf(e: Expr): Intrinsic | undefined {
  return e.k === "call" && e.kind === "intrinsic" ? intrinsic(e.fn) : undefined;
}

/** The tile part of the entry that `e` calls (undefined: not a tile operation). */
export function tileOpOf(e: Expr): TileOp | undefined {
  return intrinsicOf(e)?.tile;
}

/** The special form a dsl name denotes, if any. */
export function formOf(name: string | undefined): (typeof FORMS)[keyof typeof FORMS] | undefined {
  return name !== undefined && Object.hasOwn(FORMS, name) ? FORMS[name as keyof typeof FORMS] : undefined;
}

/** The buffer element a call adds to (an `add` effect, atomicAdd's), as the call's argument expressions. */
export function addedElement(e: Expr): { buf: Expr; index: Expr; value: Expr } | undefined {
  const effect = intrinsicOf(e)?.effect;
  if (effect?.k !== "add") return undefined;
  const args = (e as Extract<Expr, { k: "call" }>).args;
  return { buf: args[effect.buf]!, index: args[effect.index]!, value: args[effect.value]! };
}

/**
 * The buffers a body writes (stores, and the buffer of each call with `writes`), each with the
 * span of the first statement that writes it. `tileProgram`: a block kernel's body before the tiles
 * phase, which writes only through its tile operations (any other write is refused there, NGP1046)
 * and whose calls lack the output tile that `writes` counts.
 */
export function writtenBuffers(body: Stmt[], tileProgram = false): Map<string, Span> {
  const out = new Map<string, Span>();
  const write = (buf: Expr | undefined, at: Span) => buf?.k === "var" && !out.has(buf.name) && out.set(buf.name, at);
  const visit = (b: Stmt[]) => b.forEach((s) => {
    if (!tileProgram && s.k === "assign" && s.target.k === "index") write(s.target.base, s.span);
    for (const e of exprsOf(s, false)) {
      const w = intrinsicOf(e)?.writes;
      if (w === undefined || (tileProgram && tileOpOf(e) === undefined)) continue;
      write((e as Extract<Expr, { k: "call" }>).args[tileProgram ? w - 1 : w], s.span);
    }
    childBodies(s).forEach(visit);
  });
  visit(body);
  return out;
}

/** Whether `body` has a tile statement: a tileMap, a tile (or tile list) declaration, or a tile operation. */
export function containsTiles(body: Stmt[]): boolean {
  return body.some((s) => s.k === "tilemap" || (s.k === "let" && s.tile !== undefined) || [...exprsOf(s)].some((e) => tileOpOf(e) !== undefined) || childBodies(s).some(containsTiles));
}

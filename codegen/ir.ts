// The typed intermediate representation, and the utilities every phase shares. The front end
// (parse.ts) builds it from the TypeScript syntax tree, the checker (check.ts) fills in types, the
// phases after it (see compile.ts) rewrite a kernel for one configuration (a SpecializedKernel), and
// the emitters render it. Every node keeps the span of the TypeScript source it came from, so any
// phase can point at the author's line.
import type { Scalar } from "../dsl/types.ts";
import type { Span } from "./diagnostics.ts";
export type { Scalar, Span };
/** Buffer element types: f16 is storage-only (loads widen to f32, stores round). */
export type Elem = Scalar | "f16";
/**
 * A helper's buffer parameter may be `Buf<Float>`: f32 or f16 storage, decided by the kernel's
 * buffer at each call (the helper is inlined, so each call site gets its own conversions).
 */
export type ParamElem = Elem | "Float";

export interface ConfigType {
  name: string;
  /** Field name -> scalar type, or a list (`f32[]`) of scalars. */
  fields: Map<string, { s: Scalar; list: boolean; span: Span }>;
}

export type Type =
  | { k: "scalar"; s: Scalar }
  | { k: "buf"; elem: ParamElem }
  | { k: "array"; elem: Scalar }
  | { k: "config"; cfg: ConfigType }
  /** A cooperative tile of a block kernel (dsl/tiles.ts), or a list of them; shapes come later. */
  | { k: "tile" }
  | { k: "tiles" }
  | { k: "void" };

export type BinOp =
  | "+" | "-" | "*" | "/" | "%"
  | "&" | "|" | "^" | "<<" | ">>" | ">>>"
  | "<" | "<=" | ">" | ">=" | "===" | "!=="
  | "&&" | "||";
export type UnOp = "-" | "!" | "~";
export type AssignOp = "=" | "+=" | "-=" | "*=" | "/=" | "%=" | "&=" | "|=" | "^=" | "<<=" | ">>=" | ">>>=";

/** Scalar-valued expressions carry `ty` once checked; references to buffers/arrays/configs do not. */
export type Expr =
  /** A literal. `abstract` marks an integer literal whose type (i32 or u32) is set by context. */
  | { k: "lit"; v: number | boolean; ty: Scalar; abstract?: boolean; span: Span }
  | { k: "var"; name: string; ty?: Scalar; span: Span }
  | { k: "bin"; op: BinOp; a: Expr; b: Expr; ty?: Scalar; span: Span }
  | { k: "un"; op: UnOp; a: Expr; ty?: Scalar; span: Span }
  /** `fn` is an intrinsic's name (conversions included) or a helper's key (`file#name`). */
  | { k: "call"; fn: string; kind: "intrinsic" | "helper"; args: Expr[]; T?: Scalar; ty?: Scalar; span: Span }
  | { k: "index"; base: Expr; index: Expr; ty?: Scalar; span: Span }
  /** A configuration field, `cfg.levels`; bound to a literal or a table by the specializer. */
  | { k: "field"; base: Expr; name: string; ty?: Scalar; span: Span }
  /** A constant table (module `const` array or a bound config list), indexed with `index`. */
  | { k: "table"; id: string; elem: Scalar; values: number[]; span: Span }
  /** A helper named as a value: only as tileMap's elementwise function. */
  | { k: "fnref"; fn: string; span: Span };

export type Stmt =
  /**
   * `ty` is the declared type, or set by the checker from the initializer; `tile` marks a tile
   * (or tile list) declaration, whose initializer is a tile operation (set by the checker).
   */
  | { k: "let"; name: string; mutable: boolean; ty?: Scalar; tile?: "tile" | "tiles"; init: Expr; span: Span }
  /** `tile`: the storage of a tile (aligned on the CPU, shared memory on CUDA), made by the tiles phase. */
  | { k: "array"; name: string; elem: Scalar; size: Expr; tile?: boolean; span: Span }
  | { k: "assign"; target: Expr; op: AssignOp; value: Expr; span: Span }
  | { k: "if"; cond: Expr; then: Stmt[]; else: Stmt[]; span: Span }
  /**
   * `for (let v: vty = start; v cmp end; v += step)`; a decrementing loop has a negative step.
   * `coop` (made by the tiles phase): the block's threads share the iterations, then synchronize.
   */
  | { k: "for"; v: string; vty?: Scalar; start: Expr; cmp: "<" | "<=" | ">" | ">="; end: Expr; step: Expr; body: Stmt[]; coop?: boolean; span: Span }
  /**
   * `target = tileMap(fn, inputs...)` after inlining (`declare`: `const target = ...`): `body`
   * computes the variable `result` from one element of each input tile, named `elems` (scalar
   * arguments are already substituted into the body).
   */
  | { k: "tilemap"; target: Expr; declare: boolean; inputs: Expr[]; elems: string[]; body: Stmt[]; result: string; span: Span }
  | { k: "expr"; e: Expr; span: Span }
  | { k: "return"; value?: Expr; span: Span }
  | { k: "break"; span: Span }
  | { k: "continue"; span: Span }
  /** `unrolled` marks iteration `iter` of unrolled loop number `loop` (the CPU schedule splits on it). */
  | {
      k: "block";
      body: Stmt[];
      span: Span;
      unrolled?: { loop: number; iter: number };
      /**
       * An inlined call of a helper with a declared derivative (`@grad`, codegen/adjoint.ts): the
       * body computes the variable `result`, and ends with the `derivative` block.
       */
      custom?: { result: string };
      /**
       * The declared derivative of the enclosing `custom` block, inlined: `adj` names the adjoint
       * of the result, and each of `bufs` a placeholder for the gradient of a buffer argument.
       * Only the adjoint phase runs it; specialization removes it from every other kernel.
       */
      derivative?: { adj: string; bufs: { placeholder: string; buffer: Expr }[] };
    };

export interface Param {
  name: string;
  ty: Type;
  span: Span;
}

/**
 * How the CPU runs a kernel whose body is one loop with constant bounds (over levels, say):
 *   split  each iteration becomes its own pass over a chunk of points (level-major order);
 *   owner  each iteration is one pass over all points on one thread, so its atomics need no
 *          atomicity (the author promises that iterations write disjoint memory).
 *   lanes  (any straight-line body, such as a row of a few constant-width slots) groups of 16
 *          threads per call, each statement over the 16 lanes, so that the C++ compiler vectorizes
 *          across threads what it cannot vectorize as a loop over them (strided rows, exp).
 * CUDA and JS run the body as written. Set with the JSDoc tag `@schedule split|owner|lanes`.
 */
export type Schedule = "split" | "owner" | "lanes";

export interface Func {
  /** Unique key: `file#name`. */
  key: string;
  name: string;
  params: Param[];
  ret: Type;
  body: Stmt[];
  kernel: boolean;
  schedule?: Schedule;
  /**
   * A block kernel (`@block <rows>`): it runs once per tile of `rows` consecutive items, a literal
   * or the name of a configuration field, and may use the tile operations (dsl/tiles.ts).
   */
  block?: number | string;
  /** The helper that is this helper's derivative (`@grad <name>`), by key. */
  grad?: { key: string; span: Span };
  /** Kernels derived from this one by automatic differentiation (`@adjoint` tags, codegen/adjoint.ts). */
  adjoints?: { name: string; wrt: string[]; owner: boolean; outputs: boolean; span: Span }[];
  span: Span;
}

/** What the front end produces for one entry file (kernels) and the helpers it reaches. */
export interface Program {
  file: string;
  kernels: Func[];
  /** Every function reachable from the entry file, by key. */
  funcs: Map<string, Func>;
}

/**
 * A kernel after specialization (specialize.ts): no helpers, no configuration, no `field` nodes.
 * The phases after it rewrite it, and the emitters render it.
 */
export interface SpecializedKernel {
  name: string;
  schedule?: Schedule;
  /**
   * A block kernel: the index is a block of `rows` items and the body reads the batch size
   * `ngp_n`; `accumulates` lists the buffers its blocks sum into (set by the tiles phase, tiles.ts).
   */
  block?: { rows: number; accumulates: string[] };
  index: { name: string; ty: "i32" | "u32" };
  /** Runtime parameters (buffers and scalars), in order. */
  params: Param[];
  body: Stmt[];
  /** The CPU schedule's passes (schedule.ts): a kernel with a split or owner schedule, on the CPU. */
  passes?: Pass[];
  span: Span;
}

/** One pass of a CPU schedule: one iteration of the split loop, after the prologue's declarations. */
export interface Pass {
  /** The prologue's declarations, then the iteration's statements. */
  stmts: Stmt[];
  /** Run in lane form (groups of points per call, see emit/cpu.ts), else one point per call. */
  lanes: boolean;
  /** The pass's prefetch variant, run ahead of it (schedule.ts prefetchVariant). */
  prefetch?: Stmt[];
}

export const scalar = (s: Scalar): Type => ({ k: "scalar", s });

/** The checked type of a scalar-valued expression (a table is not a value). */
export function typeOf(e: Expr): Scalar | undefined {
  return e.k === "table" || e.k === "fnref" ? undefined : e.ty;
}
export const isInt = (s: Scalar | undefined): s is "i32" | "u32" => s === "i32" || s === "u32";

/** Visit every expression in `e` bottom-up, replacing each with `f`'s result. */
export function mapExpr(e: Expr, f: (e: Expr) => Expr): Expr {
  switch (e.k) {
    case "bin":
      return f({ ...e, a: mapExpr(e.a, f), b: mapExpr(e.b, f) });
    case "un":
      return f({ ...e, a: mapExpr(e.a, f) });
    case "call":
      return f({ ...e, args: e.args.map((x) => mapExpr(x, f)) });
    case "index":
      return f({ ...e, base: mapExpr(e.base, f), index: mapExpr(e.index, f) });
    case "field":
      return f({ ...e, base: mapExpr(e.base, f) });
    default:
      return f(e);
  }
}

/** Apply `f` to every expression directly held by `s` (not recursing into nested statements). */
export function mapStmtExprs(s: Stmt, f: (e: Expr) => Expr): Stmt {
  switch (s.k) {
    case "let":
      return { ...s, init: f(s.init) };
    case "array":
      return { ...s, size: f(s.size) };
    case "assign":
      return { ...s, target: f(s.target), value: f(s.value) };
    case "if":
      return { ...s, cond: f(s.cond) };
    case "for":
      return { ...s, start: f(s.start), end: f(s.end), step: f(s.step) };
    case "expr":
      return { ...s, e: f(s.e) };
    case "return":
      return s.value ? { ...s, value: f(s.value) } : s;
    case "tilemap":
      return { ...s, target: f(s.target), inputs: s.inputs.map(f) };
    default:
      return s;
  }
}

/** Every expression node within `s`, including nested statements' (`nested` false: only its own). */
export function* exprsOf(s: Stmt, nested = true): Generator<Expr> {
  const walk = function* (e: Expr): Generator<Expr> {
    yield e;
    switch (e.k) {
      case "bin":
        yield* walk(e.a);
        yield* walk(e.b);
        break;
      case "un":
      case "field":
        yield* walk(e.k === "un" ? e.a : e.base);
        break;
      case "call":
        for (const a of e.args) yield* walk(a);
        break;
      case "index":
        yield* walk(e.base);
        yield* walk(e.index);
        break;
    }
  };
  const direct: Expr[] = [];
  mapStmtExprs(s, (e) => (direct.push(e), e));
  for (const e of direct) yield* walk(e);
  if (nested) for (const child of childBodies(s)) for (const c of child) yield* exprsOf(c);
}

/** The nested statement lists of `s`. */
export function childBodies(s: Stmt): Stmt[][] {
  switch (s.k) {
    case "if":
      return [s.then, s.else];
    case "for":
    case "block":
    case "tilemap":
      return [s.body];
    default:
      return [];
  }
}

/** Rebuild every statement of a body (recursively), applying `f` to each after its children. */
export function mapBody(body: Stmt[], f: (s: Stmt) => Stmt): Stmt[] {
  return body.map((s) => {
    switch (s.k) {
      case "if":
        return f({ ...s, then: mapBody(s.then, f), else: mapBody(s.else, f) });
      case "for":
      case "block":
      case "tilemap":
        return f({ ...s, body: mapBody(s.body, f) });
      default:
        return f(s);
    }
  });
}

/** Names of the variables that `body` assigns (anywhere, nested included). */
export function assignedNames(body: Stmt[]): Set<string> {
  const out = new Set<string>();
  const visit = (b: Stmt[]) => b.forEach((s) => {
    if (s.k === "assign" && s.target.k === "var") out.add(s.target.name);
    childBodies(s).forEach(visit);
  });
  visit(body);
  return out;
}

/** Every name a body declares (locals, local arrays, loop variables, a tileMap's elements), added to `out`. */
export function declaredNames(body: Stmt[], out = new Set<string>()): Set<string> {
  for (const s of body) {
    if (s.k === "let" || s.k === "array") out.add(s.name);
    if (s.k === "for") out.add(s.v);
    if (s.k === "tilemap") [...s.elems, s.result].forEach((n) => out.add(n));
    childBodies(s).forEach((b) => declaredNames(b, out));
  }
  return out;
}

/** The names `e` reads, in order (with repeats). */
export function namesIn(e: Expr): string[] {
  const out: string[] = [];
  mapExpr(e, (x) => (x.k === "var" && out.push(x.name), x));
  return out;
}

/** The variable an assignment's target belongs to (`a` of `a[i][j]`; "" for anything else). */
export function rootName(target: Expr): string {
  return target.k === "index" ? rootName(target.base) : target.k === "var" ? target.name : "";
}

/** Drop statements whose results nobody reads; `live` holds the names read after `body`. */
export function deadCodeElimination(body: Stmt[], live: Set<string>): Stmt[] {
  const kept: Stmt[] = [];
  for (let k = body.length - 1; k >= 0; k--) {
    const s = body[k]!;
    const uses = () => [...exprsOf(s)].flatMap((e) => (e.k === "var" ? [e.name] : []));
    if (s.k === "block") {
      const inner = deadCodeElimination(s.body, new Set(live));
      if (!inner.length) continue;
      const declared = new Set(inner.flatMap((t) => (t.k === "let" || t.k === "array" ? [t.name] : [])));
      for (const t of inner) for (const e of exprsOf(t)) if (e.k === "var" && !declared.has(e.name)) live.add(e.name);
      kept.push({ ...s, body: inner });
      continue;
    }
    const defines = s.k === "let" || s.k === "array" ? s.name : s.k === "assign" ? rootName(s.target) : undefined;
    if (defines !== undefined && !live.has(defines)) continue;
    if (s.k === "let" || s.k === "array") live.delete(s.name);
    for (const n of uses()) live.add(n);
    kept.push(s);
  }
  return kept.reverse();
}

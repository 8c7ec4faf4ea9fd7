// Phase 3b, reverse-mode automatic differentiation: from a specialized kernel (straight-line code
// after inlining and unrolling), the kernel of its adjoint with respect to the buffers the author
// names differentiable. A kernel asks for it with a JSDoc tag,
//
//   @adjoint <name> <buffer>[,<buffer>...] [owner] [outputs]
//
// and <name> becomes a kernel of the module like any other. Its parameters: the source kernel's,
// without the buffers it writes (its outputs; with `outputs`, a block kernel's derived kernel keeps
// them and writes them as the source does: a training step that also reports its loss); then
// d_<output> for each f32 output (the adjoint of the loss with respect to it, read); then
// d_<buffer> for each differentiable buffer (f32, the gradient, added to: the caller zeroes it or
// accumulates).
//
// How: the body is linearized into single assignments (each f32 operation its own constant, each
// mutable variable and local-array element a new version per assignment). The adjoint kernel
// recomputes those values (the forward sweep), then walks them backwards (the reverse sweep),
// accumulating each value's adjoint from its uses and passing it to its operands by the derivative
// rules of the operators and of the intrinsics (dsl/intrinsics.ts, `grad`, next to each
// intrinsic's spellings). A read of a differentiable buffer becomes an atomicAdd into its gradient;
// a write to an output reads that output's adjoint. Integer, boolean and conversion values have no
// derivative (floor, casts, comparisons, bit operations), and `select` passes the adjoint to the
// branch it chose.
//
// A helper may declare its own derivative (`@grad <helper>`, a surrogate such as learned probing's
// straight-through estimator): the inliner marks its call (a `custom` block ending in the
// `derivative` block, specialize.ts); the values computed inside carry no adjoint, and in the
// reverse sweep the declared derivative runs with the adjoint of the helper's result, its gradient
// placeholders bound to the differentiated buffers' gradients (or dropped).
//
// With `owner`, the body's passes (a split or owner schedule's unrolled loop, e.g. one per level)
// are differentiated one by one and the adjoint runs with the owner schedule: each pass's gradient
// writes are its own (the author's promise, as for a hand-written @schedule owner kernel), so on
// the CPU they need no atomics.
//
// Refused, with a diagnostic at the author's line: loops or branches that remain at run time
// (unroll them over Const fields, or use select), local arrays indexed at run time, writes to a
// differentiable buffer, reads of an output, f32 intrinsics without a derivative rule.
//
// A block kernel is differentiated as a tile program (below, `deriveTileAdjoint`).
import { piecewiseConstant, type DerivBuilder } from "../dsl/intrinsics.ts";
import { fail } from "./diagnostics.ts";
import { addedElement, intrinsic, intrinsicOf, MADE, tileOpOf } from "./forms.ts";
import type { Shape, ShapeArgs, TileGradBuilder } from "../dsl/tiles.ts";
import { childBodies, exprsOf, mapExpr, type Expr, type Param, type Scalar, type Span, type Stmt } from "./ir.ts";
import { deadCodeElimination, splitPasses } from "./schedule.ts";
import { writtenBuffers, type SpecializedKernel, type TileProgram } from "./specialize.ts";
import { tidy } from "./tidy.ts";

export interface AdjointSpec {
  /** The derived kernel's name. */
  name: string;
  /** The buffers differentiated with respect to (their gradients are d_<name>). */
  wrt: string[];
  /** Differentiate pass by pass and run with the owner schedule. */
  owner?: boolean;
  /** Also write the source kernel's outputs (the forward sweep stores them): block kernels. */
  outputs?: boolean;
  span: Span;
}

/** The adjoint of a buffer (or value) `name`. */
export const adjointName = (name: string): string => `d_${name}`;

/**
 * One entry of the linearized body: a constant (`opaque`: computed inside a helper with a declared
 * derivative, which the adjoint does not look into), a write to an output, or the declared
 * derivative of such a helper (its own linearized statements, run in the reverse sweep).
 */
type Tape =
  | { k: "let"; name: string; ty: Scalar; e: Expr; span: Span; opaque?: boolean }
  | { k: "write"; buf: string; index: Expr; value: Expr; span: Span }
  | { k: "derivative"; result: string; adj: string; tape: Tape[]; bufs: Map<string, string>; span: Span };

export function deriveAdjoint(k: SpecializedKernel, spec: AdjointSpec): SpecializedKernel {
  if (spec.outputs) fail("NGP1051", spec.span, `@adjoint ${spec.name}: 'outputs' (also writing the outputs) is for block kernels`, "derive the adjoint alone, and run the kernel itself for its outputs");
  const buffers = new Map(k.params.filter((p) => p.ty.k === "buf").map((p) => [p.name, p]));
  const outputs = new Set([...writtenBuffers(k.body)].filter((b) => buffers.has(b)));
  for (const w of spec.wrt) {
    const p = buffers.get(w);
    if (!p) fail("NGP1051", spec.span, `'${w}' is not a buffer parameter of '${k.name}' (buffers: ${[...buffers.keys()].join(", ")})`);
    const elem = (p.ty as { elem: string }).elem;
    if (elem !== "f32" && elem !== "f16") fail("NGP1051", spec.span, `'${w}' holds ${elem}: only f32 (or f16) buffers have a gradient`);
    if (outputs.has(w)) fail("NGP1052", writeOf(k.body, w) ?? spec.span, `'${k.name}' writes '${w}', which is differentiated: a value read from it may be overwritten`, "give the output a buffer of its own");
  }
  const floatOutputs = [...outputs].filter((o) => (buffers.get(o)!.ty as { elem: string }).elem === "f32");
  const ctx: Ctx = { wrt: new Set(spec.wrt), outputs: new Set(floatOutputs), names: new Set(), kernel: k.name };
  let body: Stmt[];
  if (spec.owner || k.schedule === "split" || k.schedule === "owner") {
    // Pass by pass (a scheduled kernel's unrolled loop: one pass per level, say), so that only one
    // pass's values are live at a time. Without `owner` the result runs unscheduled, and the sums
    // of elements read by every pass (x[i * D + d] at every level) are kept across the passes and
    // added to the gradient once, after them.
    const { prologue, passes } = splitPasses(k);
    const first = k.body.findIndex((s) => s.k === "block" && s.unrolled);
    const blocks = k.body.slice(first) as Extract<Stmt, { k: "block" }>[];
    const shared: Shared | undefined = spec.owner ? undefined : { sums: new Map(), local: new Set([k.index.name, ...k.params.map((p) => p.name), ...prologue.flatMap((s) => (s.k === "let" ? [s.name] : []))]) };
    const differentiated = passes.map((p, n) => ({ ...blocks[n]!, body: differentiate(p, ctx, prologue, shared) }));
    const sums = [...(shared?.sums.values() ?? [])];
    body = [
      ...prologue,
      ...sums.map((x): Stmt => ({ k: "let", name: x.name, mutable: true, ty: "f32", init: lit(0), span: x.span })),
      ...differentiated,
      ...sums.map((x) => addTo(x)),
    ];
  } else {
    body = differentiate(k.body, ctx, []);
  }
  const params: Param[] = [
    ...k.params.filter((p) => !outputs.has(p.name)),
    ...floatOutputs.map((o) => ({ name: adjointName(o), ty: { k: "buf" as const, elem: "f32" as const }, span: spec.span })),
    ...spec.wrt.map((w) => ({ name: adjointName(w), ty: { k: "buf" as const, elem: "f32" as const }, span: spec.span })),
  ];
  for (const p of params) if (k.params.some((q) => q.name === p.name && q !== p)) fail("NGP1051", spec.span, `the kernel already has a parameter named '${p.name}'`);
  return {
    ...k,
    name: spec.name,
    schedule: spec.owner ? "owner" : undefined,
    params,
    body: tidy(deadCodeElimination(body, new Set()), [k.index.name, ...params.map((p) => p.name)]),
    span: spec.span,
  };
}

interface Ctx {
  wrt: Set<string>;
  outputs: Set<string>;
  /** Every name given out, so that new ones are unique. */
  names: Set<string>;
  kernel: string;
}

/** `<base>_<n>`, the first n that no name of the kernel has. */
function freshName(ctx: Ctx, base: string): string {
  let n = 1;
  while (ctx.names.has(`${base}_${n}`)) n++;
  ctx.names.add(`${base}_${n}`);
  return `${base}_${n}`;
}

/** The forward sweep (the linearized body, outputs not written) and the reverse sweep. */
function differentiate(body: Stmt[], ctx: Ctx, outer: Stmt[], shared?: Shared): Stmt[] {
  const lin = new Linearizer(ctx, outer);
  lin.stmts(body);
  const forward: Stmt[] = lin.tape.flatMap((t): Stmt[] => (t.k === "let" ? [{ k: "let", name: t.name, mutable: false, ty: t.ty, init: t.e, span: t.span }] : []));
  return [...forward, ...reverseSweep(lin.tape, ctx, shared).stmts];
}

/** A gradient element's sum: added to `d_<buf>[index]` once, at the end. */
interface Sum {
  name: string;
  buf: string;
  index: Expr;
  span: Span;
}

/**
 * Sums kept across passes: of the elements whose index reads only `local` names (the kernel's
 * index and parameters, the prologue's constants), valid after every pass.
 */
interface Shared {
  sums: Map<string, Sum>;
  local: Set<string>;
}

function addTo(s: Sum): Stmt {
  const call: Expr = { k: "call", fn: MADE.gradientAdd, kind: "intrinsic", args: [v(adjointName(s.buf), "f32", s.span), s.index, v(s.name, "f32", s.span)], T: "f32", span: s.span };
  return { k: "expr", e: call, span: s.span };
}

/** The names `e` reads. */
function namesIn(e: Expr): string[] {
  const out: string[] = [];
  mapExpr(e, (x) => (x.k === "var" && out.push(x.name), x));
  return out;
}

const NO_SPAN: Span = { file: "", start: 0, end: 0, line: 0, col: 0 };
/** The scalar type of an expression (undefined for buffers, tables and the like). */
const tyOf = (e: Expr): Scalar | undefined => ("ty" in e ? e.ty : undefined);
const isFloat = (e: Expr): boolean => tyOf(e) === "f32";
const lit = (v: number, span: Span = NO_SPAN): Expr => ({ k: "lit", v, ty: "f32", span });
const v = (name: string, ty: Scalar, span: Span = NO_SPAN): Expr => ({ k: "var", name, ty, span });

/** Single assignments: every f32 operation becomes a constant of the tape; versions of variables. */
class Linearizer {
  readonly tape: Tape[] = [];
  /** Current value of each variable and local-array element (`name#k`). */
  private env = new Map<string, Expr>();
  private types = new Map<string, Scalar>();
  /** Inside a helper with a declared derivative: its constants carry no adjoint. */
  private opaque = 0;
  /** In a declared derivative: its gradient placeholders, to the buffers they stand for. */
  private placeholders = new Map<string, string>();
  /** The declared derivative just linearized, for its enclosing helper block. */
  private pendingDerivative: { adj: string; tape: Tape[]; bufs: Map<string, string>; span: Span } | undefined;

  constructor(
    private readonly ctx: Ctx,
    outer: Stmt[],
  ) {
    // Names declared before the differentiated passes (the prologue) are read as they are.
    for (const s of outer) if (s.k === "let") ctx.names.add(s.name);
  }

  /** A linearizer for a declared derivative: the same values in scope, its own tape. */
  private nested(placeholders: Map<string, string>): Linearizer {
    const sub = new Linearizer(this.ctx, []);
    sub.env = new Map(this.env);
    sub.types = new Map(this.types);
    sub.placeholders = placeholders;
    return sub;
  }

  private fresh(base: string): string {
    return freshName(this.ctx, base.replace(/_[0-9]+$/, ""));
  }

  /** A constant of the tape holding `e`, or `e` itself if it is a variable or literal. */
  private constant(e: Expr, hint: string): Expr {
    if (e.k === "var" || e.k === "lit") return e;
    const name = this.fresh(hint);
    this.tape.push({ k: "let", name, ty: tyOf(e)!, e, span: e.span, ...(this.opaque ? { opaque: true } : {}) });
    return v(name, tyOf(e)!, e.span);
  }

  stmts(body: Stmt[]): void {
    for (const s of body) this.stmt(s);
  }

  private stmt(s: Stmt): void {
    switch (s.k) {
      case "let": {
        this.types.set(s.name, s.ty!);
        this.env.set(s.name, this.constant(this.expr(s.init), s.name));
        return;
      }
      case "array": {
        const n = s.size.k === "lit" ? (s.size.v as number) : fail("NGP1053", s.span, `local array '${s.name}' has a size known only at run time`);
        for (let i = 0; i < n; i++) this.env.set(`${s.name}#${i}`, { k: "lit", v: s.elem === "bool" ? false : 0, ty: s.elem, span: s.span });
        this.types.set(s.name, s.elem);
        return;
      }
      case "assign":
        return this.assign(s);
      case "expr": {
        const added = addedElement(s.e);
        if (added) {
          const { buf, index, value } = added;
          const name = (buf as { name: string }).name;
          // A declared derivative adding to a gradient: kept if that buffer is differentiated.
          const target = this.placeholders.get(name);
          if (target !== undefined) {
            if (this.ctx.wrt.has(target)) this.tape.push({ k: "write", buf: target, index: this.expr(index), value: this.constant(this.expr(value), "g"), span: s.span });
            return;
          }
          if (this.ctx.wrt.has(name)) fail("NGP1052", s.span, `'${name}' is differentiated and written here`, "give the output a buffer of its own");
          if (this.ctx.outputs.has(name)) this.tape.push({ k: "write", buf: name, index: this.expr(index), value: this.constant(this.expr(value), "v"), span: s.span });
          return;
        }
        if (intrinsicOf(s.e)?.effect?.k === "hint") return;
        return fail("NGP1054", s.span, "a statement with effects the adjoint cannot follow");
      }
      case "block": {
        if (s.derivative) {
          // The declared derivative of the enclosing helper: linearized apart, run in the reverse
          // sweep with the adjoint of the helper's result.
          const bufs = new Map(s.derivative.bufs.map((b) => [b.placeholder, b.buffer.k === "var" ? b.buffer.name : ""]));
          const sub = this.nested(bufs);
          // The adjoint's name, unique per call (an unrolled loop repeats the block).
          const adj = this.fresh("adj");
          sub.types.set(s.derivative.adj, "f32");
          sub.env.set(s.derivative.adj, v(adj, "f32"));
          sub.stmts(s.body);
          this.pendingDerivative = { adj, tape: sub.tape, bufs, span: s.span };
          return;
        }
        // Names declared inside go out of scope at its end: restore what they shadowed.
        const saved = new Map(this.env);
        if (s.custom) this.opaque++;
        this.stmts(s.body);
        if (s.custom) {
          this.opaque--;
          const d = this.pendingDerivative;
          this.pendingDerivative = undefined;
          const result = this.env.get(s.custom.result);
          if (d && result?.k === "var") this.tape.push({ k: "derivative", result: result.name, adj: d.adj, tape: d.tape, bufs: d.bufs, span: d.span });
        }
        const declared = new Set(s.body.flatMap((t) => (t.k === "let" || t.k === "array" ? [t.name] : [])));
        for (const [key, value] of this.env) {
          const base = key.split("#")[0]!;
          if (declared.has(base)) {
            if (saved.has(key)) this.env.set(key, saved.get(key)!);
            else this.env.delete(key);
          }
        }
        return;
      }
      case "if":
        return this.branch(s);
      case "for":
        return fail("NGP1055", s.span, "a loop that remains at run time", "loop over Const fields or literals, so that the loop unrolls");
      default:
        return fail("NGP1054", s.span, `'${s.k}' statement`);
    }
  }

  /**
   * A branch on a run-time value whose arms only compute values (the inliner makes one of
   * `select(c, helper(...), v)`) is differentiated as a select: both arms are linearized, and each
   * variable they leave different becomes select(cond, then, else), whose adjoint goes to the arm
   * chosen. A branch with effects (stores, atomics, loops) is refused.
   */
  private branch(s: Extract<Stmt, { k: "if" }>): void {
    const pure = (body: Stmt[]): boolean =>
      body.every((t) =>
        t.k === "let" || t.k === "array" ? true
        : t.k === "assign" ? t.target.k === "var" || (t.target.k === "index" && t.target.base.k === "var" && (this.types.has(t.target.base.name) || body.some((d) => d.k === "array" && d.name === (t.target as { base: { name: string } }).base.name)))
        : t.k === "block" ? !t.custom && !t.derivative && pure(t.body)
        : t.k === "if" && pure(t.then) && pure(t.else));
    if (!pure(s.then) || !pure(s.else))
      fail("NGP1055", s.span, "a branch on a value known only at run time, with effects", "compute both values and choose with select(cond, a, b), and store after the choice");
    const cond = this.expr(s.cond);
    const before = new Map(this.env);
    this.stmts(s.then);
    const then = this.env;
    this.env = new Map(before);
    this.stmts(s.else);
    const otherwise = this.env;
    this.env = new Map(before);
    for (const key of before.keys()) {
      const [a, b] = [then.get(key)!, otherwise.get(key)!];
      const same = a === b || (a.k === "var" && b.k === "var" && a.name === b.name) || (a.k === "lit" && b.k === "lit" && a.v === b.v);
      const base = key.split("#")[0]!;
      const ty = this.types.get(base) ?? tyOf(a)!;
      this.env.set(key, same ? a : this.constant({ k: "call", fn: MADE.choice, kind: "intrinsic", args: [cond, a, b], T: ty, ty, span: s.span }, base));
    }
  }

  private assign(s: Extract<Stmt, { k: "assign" }>): void {
    const t = s.target;
    const op = s.op === "=" ? undefined : (s.op.slice(0, -1) as Extract<Expr, { k: "bin" }>["op"]);
    if (t.k === "index" && t.base.k === "var" && !this.types.has(t.base.name)) {
      // A buffer element.
      const name = t.base.name;
      if (this.ctx.wrt.has(name)) fail("NGP1052", s.span, `'${name}' is differentiated and written here`, "give the output a buffer of its own");
      // out[i] += v adds v: its adjoint is the output's, as for out[i] = v.
      if (this.ctx.outputs.has(name)) this.tape.push({ k: "write", buf: name, index: this.expr(t.index), value: this.constant(this.expr(s.value), "v"), span: s.span });
      return;
    }
    let key: string;
    let ty: Scalar;
    if (t.k === "var") {
      key = t.name;
      ty = this.types.get(t.name) ?? t.ty!;
    } else if (t.k === "index" && t.base.k === "var") {
      const index = this.expr(t.index);
      if (index.k !== "lit") fail("NGP1053", s.span, `local array '${t.base.name}' indexed by a value known only at run time`, "index local arrays with constants (loop counters of unrolled loops)");
      key = `${t.base.name}#${index.v}`;
      ty = this.types.get(t.base.name)!;
    } else {
      return fail("NGP1054", s.span, "an assignment the adjoint cannot follow");
    }
    const value = this.expr(s.value);
    const next: Expr = op ? { k: "bin", op, a: this.env.get(key)!, b: value, ty, span: s.span } : value;
    this.env.set(key, this.constant(next, key.split("#")[0]!));
  }

  /** `e` over the current versions, its f32 operations made constants of the tape. */
  expr(e: Expr): Expr {
    switch (e.k) {
      case "lit":
      case "table":
      case "fnref":
      case "field":
        return e;
      case "var":
        return this.env.get(e.name) ?? e; // parameters and the prologue's names are read as they are
      case "index": {
        if (e.base.k === "var" && this.types.has(e.base.name)) {
          const index = this.expr(e.index);
          if (index.k !== "lit") fail("NGP1053", e.span, `local array '${e.base.name}' indexed by a value known only at run time`, "index local arrays with constants (loop counters of unrolled loops)");
          return this.env.get(`${e.base.name}#${index.v}`)!;
        }
        if (e.base.k === "var" && this.ctx.outputs.has(e.base.name))
          fail("NGP1057", e.span, `'${e.base.name}' is read here and written by the kernel`, "keep the value in a variable (or a local array) instead of reading it back from the output");
        const out: Expr = { ...e, index: this.expr(e.index) };
        return isFloat(e) ? this.constant(out, e.base.k === "var" ? e.base.name : "r") : out;
      }
      case "bin": {
        const out: Expr = { ...e, a: this.expr(e.a), b: this.expr(e.b) };
        return isFloat(e) ? this.constant(out, "t") : out;
      }
      case "un": {
        const out: Expr = { ...e, a: this.expr(e.a) };
        return isFloat(e) ? this.constant(out, "t") : out;
      }
      case "call": {
        if (e.kind !== "intrinsic") return fail("NGP1054", e.span, `a call of '${e.fn}' left after inlining`);
        const out: Expr = { ...e, args: e.args.map((a) => this.expr(a)) };
        return isFloat(e) ? this.constant(out, e.fn) : out;
      }
    }
  }
}

/** Builds IR for the intrinsics' derivative rules. */
const builder: DerivBuilder<Expr> = {
  lit: (x) => lit(x),
  add: (a, b) => ({ k: "bin", op: "+", a, b, ty: "f32", span: NO_SPAN }),
  sub: (a, b) => ({ k: "bin", op: "-", a, b, ty: "f32", span: NO_SPAN }),
  mul: (a, b) => ({ k: "bin", op: "*", a, b, ty: "f32", span: NO_SPAN }),
  div: (a, b) => ({ k: "bin", op: "/", a, b, ty: "f32", span: NO_SPAN }),
  neg: (a) => ({ k: "un", op: "-", a, ty: "f32", span: NO_SPAN }),
  lt: (a, b) => ({ k: "bin", op: "<", a, b, ty: "bool", span: NO_SPAN }),
  le: (a, b) => ({ k: "bin", op: "<=", a, b, ty: "bool", span: NO_SPAN }),
  not: (a) => ({ k: "un", op: "!", a, ty: "bool", span: NO_SPAN }),
  select: (c, a, b) => ({ k: "call", fn: MADE.choice, kind: "intrinsic", args: [c, a, b], T: "f32", ty: "f32", span: NO_SPAN }),
  call: (fn, ...args) => ({ k: "call", fn, kind: "intrinsic", args, ty: "f32", span: NO_SPAN }),
};

/**
 * The reverse sweep over the tape: adjoints of constants, gradients added to the buffers. An
 * elementwise body (a tileMap's) has `inputs`, variables read as they are whose adjoints the
 * caller asks for (`adjointOf`), and a `seed`: the adjoint of its result.
 */
function reverseSweep(tape: Tape[], ctx: Ctx, shared?: Shared, elementwise?: { inputs: string[]; seed: { value: Expr; adj: Expr } }): { stmts: Stmt[]; adjointOf: (name: string) => string | undefined } {
  const out: Stmt[] = [];
  const adj = new Map<string, string>(); // constant -> its adjoint variable
  const sums = new Map<string, Sum>(); // gradient element -> its sum, added at the end of this sweep
  const types = new Map(tape.flatMap((t) => (t.k === "let" ? [[t.name, t.ty] as const] : [])));
  for (const t of tape) if (t.k === "derivative") types.set(t.result, "f32");
  // Activity: only f32 values computed from a differentiated buffer carry an adjoint worth having.
  const active = new Set<string>();
  const reaches = (e: Expr): boolean => {
    switch (e.k) {
      case "var":
        return active.has(e.name);
      case "index":
        return (e.base.k === "var" && ctx.wrt.has(e.base.name)) || reaches(e.index);
      case "bin":
        return reaches(e.a) || reaches(e.b);
      case "un":
        return reaches(e.a);
      case "call":
        // floor, ceil, trunc (constant between jumps) and detach: their results carry no adjoint.
        return intrinsic(e.fn)?.grad !== piecewiseConstant && e.args.some(reaches);
      default:
        return false;
    }
  };
  for (const x of elementwise?.inputs ?? []) {
    types.set(x, "f32");
    active.add(x);
  }
  for (const t of tape) {
    if (t.k === "let" && t.ty === "f32" && !t.opaque && reaches(t.e)) active.add(t.name);
    // A helper with a declared derivative: its result carries an adjoint if the derivative adds
    // to a differentiated buffer's gradient.
    if (t.k === "derivative" && [...t.bufs.values()].some((b) => ctx.wrt.has(b))) active.add(t.result);
  }
  const fresh = (base: string) => freshName(ctx, base);
  /** Add `value` to the adjoint of operand `e` (a constant of the tape; others have none). */
  const contribute = (e: Expr, value: Expr, span: Span) => {
    if (e.k !== "var" || types.get(e.name) !== "f32" || !active.has(e.name)) return;
    const a = adj.get(e.name);
    if (a === undefined) {
      const name = fresh(adjointName(e.name));
      adj.set(e.name, name);
      out.push({ k: "let", name, mutable: true, ty: "f32", init: value, span });
    } else {
      out.push({ k: "assign", target: v(a, "f32"), op: "+=", value, span });
    }
  };
  if (elementwise) contribute(elementwise.seed.value, elementwise.seed.adj, NO_SPAN);
  for (let n = tape.length - 1; n >= 0; n--) {
    const t = tape[n]!;
    if (t.k === "derivative") {
      // The declared derivative, with its adjoint bound to the result's.
      const a = adj.get(t.result);
      if (a === undefined) continue;
      out.push({ k: "let", name: t.adj, mutable: false, ty: "f32", init: v(a, "f32"), span: t.span });
      for (const d of t.tape) {
        if (d.k === "let") out.push({ k: "let", name: d.name, mutable: false, ty: d.ty, init: d.e, span: d.span });
        else if (d.k === "write") {
          const call: Expr = { k: "call", fn: MADE.gradientAdd, kind: "intrinsic", args: [v(adjointName(d.buf), "f32", d.span), d.index, d.value], T: "f32", span: d.span };
          out.push({ k: "expr", e: call, span: d.span });
        }
      }
      continue;
    }
    if (t.k === "write") {
      const d: Expr = { k: "index", base: { k: "var", name: adjointName(t.buf), span: t.span }, index: t.index, ty: "f32", span: t.span };
      contribute(t.value, d, t.span);
      continue;
    }
    const name = adj.get(t.name);
    if (t.ty !== "f32" || name === undefined || t.opaque) continue;
    const a = v(name, "f32", t.span);
    const e = t.e;
    switch (e.k) {
      case "var":
        contribute(e, a, t.span);
        break;
      case "index":
        if (e.base.k === "var" && ctx.wrt.has(e.base.name)) {
          // Reads of one element (the same index expression over the same values, e.g. x[i * 2u]
          // at every level) share one sum, added to the gradient once, at the end.
          const key = e.base.name + JSON.stringify(e.index, (k, x) => (k === "span" ? undefined : x));
          const across = shared !== undefined && namesIn(e.index).every((n) => shared.local.has(n));
          const sum = (across ? shared.sums : sums).get(key);
          if (sum) out.push({ k: "assign", target: v(sum.name, "f32"), op: "+=", value: a, span: t.span });
          else if (across) {
            // Declared before the passes (deriveAdjoint): this pass adds to it.
            const name = fresh(adjointName(e.base.name));
            shared.sums.set(key, { name, buf: e.base.name, index: e.index, span: t.span });
            out.push({ k: "assign", target: v(name, "f32"), op: "+=", value: a, span: t.span });
          } else {
            const name = fresh(adjointName(e.base.name));
            sums.set(key, { name, buf: e.base.name, index: e.index, span: t.span });
            out.push({ k: "let", name, mutable: true, ty: "f32", init: a, span: t.span });
          }
        }
        break;
      case "un":
        if (e.op === "-") contribute(e.a, builder.neg(a), t.span);
        break;
      case "bin":
        switch (e.op) {
          case "+":
            contribute(e.a, a, t.span);
            contribute(e.b, a, t.span);
            break;
          case "-":
            contribute(e.a, a, t.span);
            contribute(e.b, builder.neg(a), t.span);
            break;
          case "*":
            contribute(e.a, builder.mul(a, e.b), t.span);
            contribute(e.b, builder.mul(a, e.a), t.span);
            break;
          case "/":
            contribute(e.a, builder.div(a, e.b), t.span);
            contribute(e.b, builder.neg(builder.div(builder.mul(a, v(t.name, "f32")), e.b)), t.span);
            break;
          case "%":
            contribute(e.a, a, t.span); // x % y = x - y * trunc(x / y): d/dx = 1, d/dy = -trunc(x/y)
            contribute(e.b, builder.neg(builder.mul(a, builder.call("trunc", builder.div(e.a, e.b)))), t.span);
            break;
        }
        break;
      case "call": {
        const entry = intrinsic(e.fn);
        if (!entry?.grad) {
          if (e.args.some(isFloat)) fail("NGP1056", e.span, `'${e.fn}' has no derivative rule`, "add a `grad` rule to its entry in dsl/intrinsics.ts, or keep its arguments out of the differentiated values");
          break;
        }
        const parts = entry.grad(builder, a, v(t.name, "f32"), ...e.args);
        parts.forEach((p, i) => p && contribute(e.args[i]!, p, t.span));
        break;
      }
    }
  }
  for (const s of sums.values()) out.push(addTo(s));
  return { stmts: out, adjointOf: (name) => adj.get(name) };
}

/** The span of the first statement that writes buffer `name` (a store or an atomicAdd). */
function writeOf(body: Stmt[], name: string): Span | undefined {
  for (const s of body) {
    if (s.k === "assign" && s.target.k === "index" && s.target.base.k === "var" && s.target.base.name === name) return s.span;
    const buf = s.k === "expr" ? addedElement(s.e)?.buf : undefined;
    if (buf?.k === "var" && buf.name === name) return s.span;
    for (const b of childBodies(s)) {
      const at = writeOf(b, name);
      if (at) return at;
    }
  }
  return undefined;
}


// ---- block kernels: the adjoint of a tile program -------------------------------------------------
//
// A block kernel's body, unrolled, is straight-line tile code: the same reverse walk applies with
// tiles for values. Each tile version is recomputed (the forward sweep, stores to outputs dropped);
// then, from the last operation back, its adjoint tile goes to its operands by the operation's
// rule (dsl/tiles.ts `grad`: a product's adjoint is a product with flipped layouts, a sum's is a
// broadcast) or, for tileMap, by an elementwise tileMap whose body is the scalar adjoint of the
// mapped helper (the reverse sweep above, with the elements as its inputs). The loads of a
// differentiated buffer become accumulations into its gradient: `accumulate` (summed over every
// block, like a hand-written weight gradient) for loadTile, the block's own rows added to for
// loadRows. A store to an output (storeRows, accumulate) reads the output's adjoint. The tiles
// phase (codegen/tiles.ts) then lowers the result like any block kernel, sharing storage by liveness.

interface TileNode {
  name: string;
  shape: Shape;
  def: { k: "call"; fn: string; args: TileArg[]; span: Span } | { k: "map"; inputs: number[]; elems: string[]; body: Stmt[]; result: string; span: Span };
  active: boolean;
}
type TileArg = { tile: number } | { expr: Expr };
type TileEntry = { k: "node"; node: number } | { k: "effect"; fn: string; args: TileArg[]; span: Span } | { k: "stmt"; s: Stmt };

const containsTiles = (body: Stmt[]): boolean =>
  body.some((s) => s.k === "tilemap" || (s.k === "let" && s.tile !== undefined) || [...exprsOf(s)].some((e) => tileOpOf(e) !== undefined) || childBodies(s).some(containsTiles));

/** The buffers a tile program writes (storeRows, accumulate: the source call's buffer argument). */
function tileWrites(body: Stmt[], out = new Set<string>()): Set<string> {
  for (const s of body) {
    for (const e of exprsOf(s)) {
      const w = tileOpOf(e) !== undefined ? intrinsicOf(e)!.writes : undefined;
      const buf = w === undefined ? undefined : (e as Extract<Expr, { k: "call" }>).args[w - 1]; // the source call lacks the output tile
      if (buf?.k === "var") out.add(buf.name);
    }
    childBodies(s).forEach((b) => tileWrites(b, out));
  }
  return out;
}

/** Every name a body declares (so that new names do not clash with any of them). */
function declaredNames(body: Stmt[], out: Set<string>): Set<string> {
  for (const s of body) {
    if (s.k === "let" || s.k === "array") out.add(s.name);
    if (s.k === "for") out.add(s.v);
    if (s.k === "tilemap") [...s.elems, s.result].forEach((n) => out.add(n));
    childBodies(s).forEach((b) => declaredNames(b, out));
  }
  return out;
}

/**
 * The adjoint of a specialized block kernel's body (before the tiles phase lowers it): its
 * parameters and body, which the tiles phase then lowers.
 */
export function deriveTileAdjoint(k: TileProgram, spec: AdjointSpec): { params: Param[]; body: Stmt[] } {
  const buffers = new Map(k.params.filter((p) => p.ty.k === "buf").map((p) => [p.name, p]));
  const outputs = new Set([...tileWrites(k.body)].filter((b) => buffers.has(b)));
  for (const w of spec.wrt) {
    const p = buffers.get(w);
    if (!p) fail("NGP1051", spec.span, `'${w}' is not a buffer parameter of '${k.name}' (buffers: ${[...buffers.keys()].join(", ")})`);
    if ((p.ty as { elem: string }).elem !== "f32") fail("NGP1051", spec.span, `'${w}' holds ${(p.ty as { elem: string }).elem}: a block kernel's differentiated buffers are f32`);
    if (outputs.has(w)) fail("NGP1052", spec.span, `'${k.name}' writes '${w}', which is differentiated`, "give the output a buffer of its own");
  }
  const floatOutputs = [...outputs].filter((o) => (buffers.get(o)!.ty as { elem: string }).elem === "f32");
  const ctx: Ctx = { wrt: new Set(spec.wrt), outputs: new Set(floatOutputs), names: declaredNames(k.body, new Set(k.params.map((p) => p.name))), kernel: k.name };
  const tape = new TileLinearizer(k.rows, ctx);
  tape.stmts(k.body);
  const params: Param[] = [
    ...k.params.filter((p) => spec.outputs || !outputs.has(p.name)),
    ...floatOutputs.map((o) => ({ name: adjointName(o), ty: { k: "buf" as const, elem: "f32" as const }, span: spec.span })),
    ...spec.wrt.map((w) => ({ name: adjointName(w), ty: { k: "buf" as const, elem: "f32" as const }, span: spec.span })),
  ];
  for (const p of params) if (k.params.some((q) => q.name === p.name && q !== p)) fail("NGP1051", spec.span, `the kernel already has a parameter named '${p.name}'`);
  return { params, body: [...tape.forward(spec.outputs ?? false), ...tape.reverse()] };
}

class TileLinearizer {
  readonly nodes: TileNode[] = [];
  readonly entries: TileEntry[] = [];
  private readonly scopes: Map<string, number | "list">[] = [new Map()];

  constructor(
    private readonly rows: number,
    private readonly ctx: Ctx,
  ) {}

  stmts(body: Stmt[]): void {
    this.scopes.push(new Map());
    for (const s of body) this.stmt(s);
    this.scopes.pop();
  }

  private stmt(s: Stmt): void {
    switch (s.k) {
      case "let":
        if (s.tile === "tiles") return void this.scopes.at(-1)!.set(s.name, "list");
        if (s.tile) return void this.scopes.at(-1)!.set(s.name, this.value(s.init));
        break;
      case "assign":
        if (this.isTile(s.target)) return this.bind(s.target, this.value(s.value), false);
        break;
      case "tilemap": {
        const inputs = s.inputs.map((e) => this.value(e));
        const shapes = inputs.map((n) => this.nodes[n]!.shape);
        const shape: Shape = [Math.max(...shapes.map((x) => x[0])), Math.max(...shapes.map((x) => x[1]))];
        this.refuseBufferReads(s.body);
        const node = this.define(shape, { k: "map", inputs, elems: s.elems, body: s.body, result: s.result, span: s.span }, inputs.some((n) => this.nodes[n]!.active));
        return this.bind(s.target, node, s.declare);
      }
      case "expr": {
        const op = tileOpOf(s.e);
        if (!op) break;
        const e = s.e as Extract<Expr, { k: "call" }>;
        if (intrinsic(e.fn)!.writes === undefined) return void this.value(e);
        return void this.entries.push({ k: "effect", fn: e.fn, args: e.args.map((a) => this.arg(a)), span: s.span });
      }
      case "block":
        return this.stmts(s.body);
      case "if":
      case "for":
        if (containsTiles(childBodies(s).flat())) fail("NGP1055", s.span, s.k === "if" ? "a branch on a value known only at run time around tile operations" : "a loop around tile operations that remains at run time", "loop and branch over Const fields, so that the tile code is straight-line");
        break;
    }
    this.refuseBufferReads([s]);
    this.entries.push({ k: "stmt", s });
  }

  /** A block kernel's scalar code must not read a differentiated buffer (only tiles carry adjoints). */
  private refuseBufferReads(body: Stmt[]): void {
    for (const s of body) {
      for (const e of exprsOf(s))
        if (e.k === "index" && e.base.k === "var" && this.ctx.wrt.has(e.base.name))
          fail("NGP1054", e.span, `'${e.base.name}' is read element by element in a block kernel`, "read differentiated buffers with loadTile or loadRows");
      childBodies(s).forEach((b) => this.refuseBufferReads(b));
    }
  }

  private arg(e: Expr): TileArg {
    return tileOpOf(e) !== undefined || this.isTile(e) ? { tile: this.value(e) } : { expr: e };
  }

  private key(e: Expr): string {
    if (e.k === "var") return e.name;
    if (e.k === "index" && e.base.k === "var" && e.index.k === "lit") return `${e.base.name}[${e.index.v}]`;
    return fail("NGP1043", e.span, "a tile list's index must be a compile-time constant", "index it with the variable of a loop over constant bounds (it unrolls)");
  }

  private isTile(e: Expr): boolean {
    const name = e.k === "var" ? e.name : e.k === "index" && e.base.k === "var" ? e.base.name : undefined;
    return name !== undefined && this.scopes.some((m) => m.has(name));
  }

  private bind(target: Expr, node: number, declare: boolean): void {
    const key = this.key(target);
    const owner = target.k === "index" ? (target.base as { name: string }).name : key;
    const scope = declare ? this.scopes.at(-1)! : this.scopes.findLast((m) => m.has(owner))!;
    scope.set(key, node);
  }

  private value(e: Expr): number {
    const op = tileOpOf(e);
    if (op) {
      const c = e as Extract<Expr, { k: "call" }>;
      const args = c.args.map((a) => this.arg(a));
      const shapeArgs: ShapeArgs = {
        tiles: args.map((a) => ("tile" in a ? this.nodes[a.tile]!.shape : undefined)),
        consts: c.args.map((a) => (a.k === "lit" && typeof a.v === "number" ? a.v : undefined)),
        rows: this.rows,
      };
      const shape = op.shape(shapeArgs);
      if (typeof shape === "string") fail("NGP1041", c.span, shape);
      const tiles = args.flatMap((a) => ("tile" in a ? [a.tile] : []));
      const loads = op.loadGrad !== undefined && c.args[0]?.k === "var" && this.ctx.wrt.has(c.args[0].name);
      const active = loads || tiles.some((n) => this.nodes[n]!.active);
      if (active && !loads && !op.grad) fail("NGP1056", c.span, `'${c.fn}' has no derivative rule`, "add a `grad` rule to its entry in dsl/tiles.ts, or keep its operands out of the differentiated values");
      return this.define(shape, { k: "call", fn: c.fn, args, span: c.span }, active);
    }
    const key = this.key(e);
    const owner = e.k === "index" ? (e.base as { name: string }).name : key;
    const found = this.scopes.findLast((m) => m.has(owner))?.get(key);
    if (found === undefined || found === "list") fail("NGP1043", e.span, `tile '${key}' is used before it is assigned`);
    return found;
  }

  private define(shape: Shape, def: TileNode["def"], active: boolean): number {
    this.nodes.push({ name: freshName(this.ctx, "tile"), shape, def, active });
    this.entries.push({ k: "node", node: this.nodes.length - 1 });
    return this.nodes.length - 1;
  }

  private ref(n: number): Expr {
    return v(this.nodes[n]!.name, "f32", this.nodes[n]!.def.span);
  }
  private argExpr(a: TileArg): Expr {
    return "tile" in a ? this.ref(a.tile) : a.expr;
  }

  /** The forward sweep: every tile version (and scalar statement) in order; stores only with `outputs`. */
  forward(outputs: boolean): Stmt[] {
    return this.entries.flatMap((en): Stmt[] => {
      if (en.k === "stmt") return [en.s];
      if (en.k === "effect") return outputs ? [{ k: "expr", e: call(en.fn, en.args.map((a) => this.argExpr(a)), en.span), span: en.span }] : [];
      const node = this.nodes[en.node]!;
      const d = node.def;
      if (d.k === "map") return [{ k: "tilemap", target: v(node.name, "f32", d.span), declare: true, inputs: d.inputs.map((n) => this.ref(n)), elems: d.elems, body: d.body, result: d.result, span: d.span }];
      return [tileLet(node.name, call(d.fn, d.args.map((a) => this.argExpr(a)), d.span), d.span)];
    });
  }

  /** The reverse sweep: adjoint tiles, from the stores back to the loads. */
  reverse(): Stmt[] {
    const out: Stmt[] = [];
    const adj = new Map<number, string>();
    const fresh = (base: string) => freshName(this.ctx, base);
    /** A tile expression as a tile of its own (so that it can be added to). */
    const contribute = (n: number, value: Expr, span: Span) => {
      if (!this.nodes[n]!.active) return;
      const a = adj.get(n);
      if (a === undefined) {
        const name = fresh(adjointName(this.nodes[n]!.name));
        adj.set(n, name);
        out.push(tileLet(name, value, span));
      } else out.push(addMap(a, [v(a, "f32", span), value], false, this.ctx, span));
    };
    /** The builder of the operations' derivative rules, writing at `span`. */
    const builder = (span: Span): TileGradBuilder<Expr> => ({
      op: (fn, args) => call(fn, args, span),
      effect: (fn, args) => void out.push({ k: "expr", e: call(fn, args, span), span }),
      add: (a, b) => {
        const name = fresh("tile");
        out.push(addMap(name, [a, b], true, this.ctx, span));
        return v(name, "f32", span);
      },
      int: (n) => ilit(n, span),
      broadcast: (t, like) => {
        const name = fresh("tile");
        out.push(copyMap(name, [t, like], this.ctx, span));
        return v(name, "f32");
      },
    });
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const en = this.entries[i]!;
      if (en.k === "stmt") continue;
      if (en.k === "effect") {
        // A store to an output: its adjoint is read where the value went.
        const buf = en.args[0]!;
        const name = "expr" in buf && buf.expr.k === "var" ? buf.expr.name : undefined;
        if (name === undefined || !this.ctx.outputs.has(name)) continue;
        const last = en.args.at(-1)!;
        if (!("tile" in last)) continue;
        const dBuf = v(adjointName(name), "f32", en.span);
        const read = intrinsic(en.fn)!.tile!.storeGrad!(builder(en.span), dBuf, en.args.map((a) => this.argExpr(a)), this.nodes[last.tile]!.shape);
        contribute(last.tile, read, en.span);
        continue;
      }
      const node = this.nodes[en.node]!;
      const a = adj.get(en.node);
      if (a === undefined || !node.active) continue;
      const d = node.def;
      const dv = v(a, "f32", d.span);
      if (d.k === "call") {
        const op = intrinsic(d.fn)!.tile!;
        if (op.loadGrad) {
          // A load of a differentiated buffer (the only active one): into the buffer's gradient.
          const args = d.args.map((x) => this.argExpr(x));
          op.loadGrad(builder(d.span), dv, v(adjointName((args[0] as { name: string }).name), "f32", d.span), args);
          continue;
        }
        const parts = op.grad!(builder(NO_SPAN), dv, d.args.map((x) => ("tile" in x ? this.ref(x.tile) : undefined)));
        parts.forEach((p, j) => {
          const x = d.args[j]!;
          if (p && "tile" in x) contribute(x.tile, p, d.span);
        });
        continue;
      }
      // tileMap: per active input, an elementwise map of the helper's scalar adjoint.
      d.inputs.forEach((input, j) => {
        if (!this.nodes[input]!.active) return;
        const seed = fresh("adj");
        const { body, result, identity } = elementAdjoint(d.body, d.result, d.elems, j, seed, this.ctx);
        let g: Expr;
        if (identity) g = dv;
        else {
          const name = fresh("tile");
          out.push({ k: "tilemap", target: v(name, "f32", d.span), declare: true, inputs: [...d.inputs.map((n) => this.ref(n)), dv], elems: [...d.elems, seed], body, result, span: d.span });
          g = v(name, "f32", d.span);
        }
        // A broadcast operand (1×C or R×1) gets the sum over what it was repeated along.
        const [r, c] = this.nodes[input]!.shape;
        if (r === 1 && node.shape[0] !== 1) g = call("tileSum", [g, ilit(0, d.span)], d.span);
        if (c === 1 && node.shape[1] !== 1) g = call("tileSum", [g, ilit(1, d.span)], d.span);
        contribute(input, g, d.span);
      });
    }
    return out;
  }
}

const ilit = (x: number, span: Span): Expr => ({ k: "lit", v: x, ty: "i32", span });
const call = (fn: string, args: Expr[], span: Span): Expr => ({ k: "call", fn, kind: "intrinsic", args, span });
const tileLet = (name: string, init: Expr, span: Span): Stmt => ({ k: "let", name, mutable: true, tile: "tile", init, span });

/** `target = a + b` elementwise (a tileMap; declared, or assigned to an existing tile). */
function addMap(target: string, [a, b]: [Expr, Expr], declare: boolean, ctx: Ctx, span: Span): Stmt {
  const [x, y, r] = [freshName(ctx, "el"), freshName(ctx, "el"), freshName(ctx, "sum")];
  const body: Stmt[] = [{ k: "let", name: r, mutable: false, ty: "f32", init: { k: "bin", op: "+", a: v(x, "f32", span), b: v(y, "f32", span), ty: "f32", span }, span }];
  return { k: "tilemap", target: v(target, "f32", span), declare, inputs: [a, b], elems: [x, y], body, result: r, span };
}

/** A new tile of `like`'s shape holding `t` (broadcast), `like` read only for its shape. */
function copyMap(target: string, [t, like]: [Expr, Expr], ctx: Ctx, span: Span): Stmt {
  const [x, y] = [freshName(ctx, "el"), freshName(ctx, "el")];
  return { k: "tilemap", target: v(target, "f32", span), declare: true, inputs: [t, like], elems: [x, y], body: [], result: x, span };
}

/**
 * The scalar adjoint of a tileMap's body with respect to its element `elems[j]`, from the adjoint
 * `seed` of its result: statements computing it into `result`. `identity`: it is the seed itself.
 */
function elementAdjoint(body: Stmt[], result: string, elems: string[], j: number, seed: string, ctx: Ctx): { body: Stmt[]; result: string; identity: boolean } {
  const sub: Ctx = { ...ctx, wrt: new Set(), outputs: new Set() };
  const lin = new Linearizer(sub, []);
  lin.stmts(body);
  const value = lin.expr({ k: "var", name: result, ty: "f32", span: NO_SPAN });
  const forward: Stmt[] = lin.tape.flatMap((t): Stmt[] => (t.k === "let" ? [{ k: "let", name: t.name, mutable: false, ty: t.ty, init: t.e, span: t.span }] : []));
  const rev = reverseSweep(lin.tape, sub, undefined, { inputs: elems, seed: { value, adj: v(seed, "f32") } });
  let name = rev.adjointOf(elems[j]!);
  const out = freshName(ctx, "grad");
  if (name === undefined) return { body: [{ k: "let", name: out, mutable: false, ty: "f32", init: lit(0), span: NO_SPAN }], result: out, identity: false };
  // The seed passed through unchanged (by additions, say): no map needed.
  for (;;) {
    const def = rev.stmts.find((s) => s.k === "let" && s.name === name) as Extract<Stmt, { k: "let" }> | undefined;
    const reassigned = rev.stmts.some((s) => s.k === "assign" && s.target.k === "var" && s.target.name === name);
    if (def?.init.k !== "var" || reassigned) break;
    name = def.init.name;
  }
  if (name === seed) return { body: [], result: seed, identity: true };
  const all: Stmt[] = [...forward, ...rev.stmts, { k: "let", name: out, mutable: false, ty: "f32", init: v(name, "f32"), span: NO_SPAN }];
  return { body: deadCodeElimination(all, new Set([out])), result: out, identity: false };
}

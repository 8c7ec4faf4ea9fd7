// Phase adjoint (see compile.ts), reverse-mode automatic differentiation: from a specialized kernel
// (straight-line code after inlining and unrolling), the kernel of its adjoint with respect to the
// buffers the author names differentiable. A kernel asks for it with a JSDoc tag,
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
// A block kernel is differentiated as a tile program (adjoint_tile.ts).
import { piecewiseConstant, type DerivBuilder } from "../dsl/intrinsics.ts";
import { fail, NO_SPAN } from "./diagnostics.ts";
import { addedElement, intrinsic, intrinsicOf, MADE, writtenBuffers } from "./forms.ts";
import { deadCodeElimination, namesIn, type Expr, type Param, type Scalar, type Span, type SpecializedKernel, type Stmt } from "./ir.ts";
import { splitPasses } from "./schedule.ts";

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
  const { outputs, floatOutputs } = kernelOutputs(k, spec);
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
  const params = adjointParams(k.params, outputs, floatOutputs, spec);
  return { ...k, name: spec.name, schedule: spec.owner ? "owner" : undefined, params, body: deadCodeElimination(body, new Set()), span: spec.span };
}

/**
 * The buffers a kernel (a block kernel: before the tiles phase) writes, and the f32 ones among
 * them, once the differentiated buffers are checked: buffer parameters of the kernel (NGP1051)
 * holding f32, or f16 outside a block kernel (NGP1051), that the kernel does not write (NGP1052).
 */
export function kernelOutputs(k: SpecializedKernel, spec: AdjointSpec): { outputs: Set<string>; floatOutputs: string[] } {
  const written = writtenBuffers(k.body, k.block !== undefined);
  const buffers = new Map(k.params.flatMap((p) => (p.ty.k === "buf" ? [[p.name, p.ty.elem] as const] : [])));
  const outputs = new Set([...written.keys()].filter((b) => buffers.has(b)));
  for (const w of spec.wrt) {
    const elem = buffers.get(w) ?? fail("NGP1051", spec.span, `'${w}' is not a buffer parameter of '${k.name}' (buffers: ${[...buffers.keys()].join(", ")})`);
    if (elem !== "f32" && (elem !== "f16" || k.block))
      fail("NGP1051", spec.span, `'${w}' holds ${elem}: ${k.block ? "a block kernel's differentiated buffers are f32" : "only f32 (or f16) buffers have a gradient"}`);
    const at = written.get(w);
    if (at) fail("NGP1052", at, `'${k.name}' writes '${w}', which is differentiated: a value read from it may be overwritten`, "give the output a buffer of its own");
  }
  return { outputs, floatOutputs: [...outputs].filter((o) => buffers.get(o) === "f32") };
}

/**
 * The derived kernel's parameters: the source's without `dropped` (its outputs), then d_<output>
 * for each f32 output, then d_<buffer> for each differentiated buffer.
 */
export function adjointParams(source: Param[], dropped: Set<string>, floatOutputs: string[], spec: AdjointSpec): Param[] {
  const params: Param[] = [
    ...source.filter((p) => !dropped.has(p.name)),
    ...floatOutputs.map((o) => ({ name: adjointName(o), ty: { k: "buf" as const, elem: "f32" as const }, span: spec.span })),
    ...spec.wrt.map((w) => ({ name: adjointName(w), ty: { k: "buf" as const, elem: "f32" as const }, span: spec.span })),
  ];
  for (const p of params) if (source.some((q) => q.name === p.name && q !== p)) fail("NGP1051", spec.span, `the kernel already has a parameter named '${p.name}'`);
  return params;
}

export interface Ctx {
  wrt: Set<string>;
  outputs: Set<string>;
  /** Every name given out, so that new ones are unique. */
  names: Set<string>;
  kernel: string;
}

/** `<base>_<n>`, the first n that no name of the kernel has. */
export function freshName(ctx: Ctx, base: string): string {
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

/** The scalar type of an expression (undefined for buffers, tables and the like). */
const tyOf = (e: Expr): Scalar | undefined => ("ty" in e ? e.ty : undefined);
const isFloat = (e: Expr): boolean => tyOf(e) === "f32";
export const lit = (v: number, span: Span = NO_SPAN): Expr => ({ k: "lit", v, ty: "f32", span });
export const v = (name: string, ty: Scalar, span: Span = NO_SPAN): Expr => ({ k: "var", name, ty, span });

/** Single assignments: every f32 operation becomes a constant of the tape; versions of variables. */
export class Linearizer {
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
export function reverseSweep(tape: Tape[], ctx: Ctx, shared?: Shared, elementwise?: { inputs: string[]; seed: { value: Expr; adj: Expr } }): { stmts: Stmt[]; adjointOf: (name: string) => string | undefined } {
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
            contribute(e.b, builder.neg(builder.mul(a, builder.call(MADE.truncate, builder.div(e.a, e.b)))), t.span);
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

// Phase 3, the specializer: turns a checked kernel into straight-line code for one configuration.
//
//   inline    every helper call, hoisting it out of its expression (conditional operands become
//             `if` statements, so `a && h(x)` still evaluates h only when a holds)
//   bind      configuration fields become literals, configuration lists become constant tables
//   simplify  (to a fixed point) constant folding with exact per-type semantics, propagation of
//             constants, removal of dead branches, and unrolling of loops with constant bounds
//
// The result has no helpers, no configuration and no `field` nodes: what the emitters render.
import { fail } from "./diagnostics.ts";
import { intrinsicOf, tileOpOf } from "./forms.ts";
import { assignedNames, childBodies, exprsOf, mapBody, mapExpr, mapStmtExprs } from "./ir.ts";
import type { ConfigType, Expr, Func, Param, Program, Scalar, Schedule, Span, Stmt } from "./ir.ts";
import { lowerTiles } from "./tiles.ts";
import { tidy } from "./tidy.ts";

export interface SpecializeOptions {
  /** Loops with constant bounds and at most this many iterations are unrolled. */
  maxUnroll?: number;
  /** Check every buffer index at run time; an out-of-bounds access is reported, not performed. */
  boundsChecks?: boolean;
  /** Keep helpers' declared derivatives (`@grad`) in the body: for the adjoint phase. */
  derivatives?: boolean;
  /**
   * A rewrite of a block kernel's tile program after unrolling, before the tiles phase lowers it:
   * the adjoint phase derives a block kernel's adjoint there (codegen/compile.ts).
   */
  tileProgram?: (k: TileProgram) => TileProgram;
}

/** A block kernel between specialization and the tiles phase. */
export interface TileProgram {
  name: string;
  rows: number;
  params: Param[];
  body: Stmt[];
}

export interface SpecializedKernel {
  name: string;
  schedule?: Schedule;
  /**
   * A block kernel: the index is a block of `rows` items and the body reads the batch size
   * `ngp_n`; `accumulates` lists the buffers its blocks sum into (see codegen/tiles.ts).
   */
  block?: { rows: number; accumulates: string[] };
  index: { name: string; ty: "i32" | "u32" };
  /** Runtime parameters (buffers and scalars), in order. */
  params: Param[];
  body: Stmt[];
  span: Span;
}

/** Configuration values as given by the user: numbers, booleans and lists of them. */
export type ConfigValue = Record<string, number | boolean | (number | boolean)[]>;

const MAX_STATEMENTS = 200_000;
const NO_SPAN: Span = { file: "", start: 0, end: 0, line: 0, col: 0 };

export function specialize(program: Program, kernel: Func, config: ConfigValue | undefined, opts: SpecializeOptions = {}): SpecializedKernel {
  const [index, ...rest] = kernel.params;
  const cfgParam = rest.find((p) => p.ty.k === "config");
  const bound = cfgParam ? validateConfig((cfgParam.ty as { cfg: ConfigType }).cfg, config, cfgParam.span) : undefined;
  const names = new NameGen(kernel);
  let body = new Inliner(program, names).body(kernel.body, new Scope(new Map(), false));
  if (cfgParam && bound) body = bindConfig(body, cfgParam.name, bound);
  body = new Simplifier(opts.maxUnroll ?? 64).run(body);
  if (!opts.derivatives) body = withoutDerivatives(body);
  let params = rest.filter((p) => p.ty.k !== "config");
  let name = kernel.name;
  const rows = blockRows(kernel, bound);
  if (opts.tileProgram && rows !== undefined) ({ name, params, body } = opts.tileProgram({ name, rows, params, body }));
  const buffers = new Set(params.filter((p) => p.ty.k === "buf").map((p) => p.name));
  const tiles = lowerTiles({ name, index: index!.name, rows, body, buffers, checked: opts.boundsChecks, span: kernel.span });
  body = tidy(tiles.body, [index!.name, ...params.map((p) => p.name)]);
  return {
    name,
    schedule: kernel.schedule,
    block: rows === undefined ? undefined : { rows, accumulates: tiles.accumulates },
    index: { name: index!.name, ty: (index!.ty as { s: "i32" | "u32" }).s },
    params,
    body,
    span: kernel.span,
  };
}

// ---- configuration ----------------------------------------------------------------------------

/** Check a user-supplied configuration against its Const<> type; each error names the field. */
export function validateConfig(cfg: ConfigType, value: ConfigValue | undefined, at: Span): Map<string, number | boolean | number[]> {
  if (value === undefined || value === null || typeof value !== "object" || Array.isArray(value))
    fail("NGP1022", at, `kernel needs a ${cfg.name} configuration object`, `pass --config '{${[...cfg.fields.keys()].map((k) => `"${k}": ...`).join(", ")}}'`);
  const out = new Map<string, number | boolean | number[]>();
  for (const key of Object.keys(value)) if (!cfg.fields.has(key)) fail("NGP1022", at, `${cfg.name} has no field '${key}' (fields: ${[...cfg.fields.keys()].join(", ")})`);
  for (const [name, f] of cfg.fields) {
    const v = value[name];
    const where = `${cfg.name}.${name}`;
    if (v === undefined) fail("NGP1022", f.span, `missing field ${where} (${f.s}${f.list ? "[]" : ""})`);
    if (f.list) {
      if (!Array.isArray(v)) fail("NGP1022", f.span, `${where} must be a list of ${f.s}, got ${JSON.stringify(v)}`);
      out.set(name, v.map((x, i) => checkScalarValue(x, f.s, `${where}[${i}]`, f.span) as number));
    } else out.set(name, checkScalarValue(v, f.s, where, f.span));
  }
  return out;
}

function checkScalarValue(v: unknown, s: Scalar, where: string, at: Span): number | boolean {
  const bad = (range: string) => fail("NGP1022", at, `${where} must be ${range}, got ${JSON.stringify(v)}`);
  if (s === "bool") return typeof v === "boolean" ? v : bad("true or false");
  if (typeof v !== "number" || !Number.isFinite(v)) return bad(`a finite ${s}`);
  if (s === "f32") return Math.fround(v);
  if (!Number.isInteger(v)) return bad(`an integer (${s})`);
  if (s === "i32" && (v < -0x80000000 || v > 0x7fffffff)) return bad("an i32 in [-2147483648, 2147483647]");
  if (s === "u32" && (v < 0 || v > 0xffffffff)) return bad("a u32 in [0, 4294967295]");
  return v;
}

/** The rows per block of a block kernel: its `@block` literal or configuration field. */
function blockRows(kernel: Func, bound: Map<string, number | boolean | number[]> | undefined): number | undefined {
  if (kernel.block === undefined) return undefined;
  const rows = typeof kernel.block === "number" ? kernel.block : bound?.get(kernel.block);
  if (typeof rows !== "number" || !Number.isInteger(rows) || rows < 1 || rows > 4096)
    fail("NGP1022", kernel.span, `@block ${kernel.block} must give an integer number of rows in [1, 4096], got ${JSON.stringify(rows)}`);
  return rows;
}

function bindConfig(body: Stmt[], cfgName: string, bound: Map<string, number | boolean | number[]>): Stmt[] {
  const bind = (e: Expr): Expr =>
    mapExpr(e, (x) => {
      if (x.k !== "field" || x.base.k !== "var" || x.base.name !== cfgName) return x;
      const v = bound.get(x.name)!;
      if (Array.isArray(v)) return { k: "table", id: `cfg_${x.name}`, elem: x.ty!, values: v, span: x.span };
      return { k: "lit", v, ty: x.ty!, span: x.span };
    });
  return mapBody(body, (s) => mapStmtExprs(s, bind));
}


// ---- inlining ---------------------------------------------------------------------------------

class NameGen {
  private readonly used = new Set<string>();
  private n = 0;
  constructor(kernel: Func) {
    for (const p of kernel.params) this.used.add(p.name);
    const visit = (b: Stmt[]) => b.forEach((s) => {
      if (s.k === "let" || s.k === "array") this.used.add(s.name);
      if (s.k === "for") this.used.add(s.v);
      childBodies(s).forEach(visit);
    });
    visit(kernel.body);
  }
  fresh(base: string): string {
    let name: string;
    do name = `${base}_${++this.n}`;
    while (this.used.has(name));
    this.used.add(name);
    return name;
  }
}

/** Renames applied inside an inlined body: a helper's names -> the caller's expressions. */
type Renames = Map<string, Expr>;

/** Lexical scope during inlining: the renames in force, and whether we are inside a helper. */
class Scope {
  constructor(
    readonly renames: Renames,
    readonly inlined: boolean,
  ) {}
  child(): Scope {
    return new Scope(new Map(this.renames), this.inlined);
  }
}

class Inliner {
  constructor(
    private readonly program: Program,
    private readonly names: NameGen,
  ) {}

  body(stmts: Stmt[], scope: Scope): Stmt[] {
    const out: Stmt[] = [];
    for (const s of stmts) out.push(...this.stmt(s, scope));
    return out;
  }

  private stmt(s: Stmt, scope: Scope): Stmt[] {
    const pre: Stmt[] = [];
    const ex = (e: Expr) => this.expr(rename(e, scope.renames), pre);
    switch (s.k) {
      case "let": {
        const init = ex(s.init);
        return [...pre, { ...s, name: this.declare(s.name, scope), init }];
      }
      case "array": {
        const size = ex(s.size);
        return [...pre, { ...s, name: this.declare(s.name, scope), size }];
      }
      case "assign": {
        const target = ex(s.target);
        const value = ex(s.value);
        return [...pre, { ...s, target, value }];
      }
      case "if": {
        const cond = ex(s.cond);
        return [...pre, { ...s, cond, then: this.body(s.then, scope.child()), else: this.body(s.else, scope.child()) }];
      }
      case "for": {
        const start = ex(s.start);
        const inner = scope.child();
        const v = this.declare(s.v, inner);
        // The bound and step are evaluated on every iteration: a helper call there cannot be hoisted.
        const mark = pre.length;
        const end = this.expr(rename(s.end, inner.renames), pre);
        const step = this.expr(rename(s.step, inner.renames), pre);
        if (pre.length > mark) fail("NGP1031", s.span, "helper calls in a loop condition or step", "compute the bound into a const before the loop");
        return [...pre, { ...s, v, start, end, step, body: this.body(s.body, inner) }];
      }
      case "expr": {
        const e = rename(s.e, scope.renames);
        if (e.k === "call" && e.kind === "helper") {
          const args = e.args.map((a) => this.expr(a, pre));
          this.inlineCall({ ...e, args }, pre, undefined);
          return pre;
        }
        const call = this.expr(e, pre);
        return [...pre, { ...s, e: call }];
      }
      case "return": {
        if (!s.value) return [s];
        const value = ex(s.value);
        return [...pre, { ...s, value }];
      }
      case "block":
        return [{ ...s, body: this.body(s.body, scope.child()) }];
      default:
        return [s];
    }
  }

  /** Declare `name`; inside an inlined helper under a fresh name (kernel names stay as written). */
  private declare(name: string, scope: Scope): string {
    if (!scope.inlined) return name;
    const fresh = this.names.fresh(name);
    // The span is a placeholder: rename() keeps the span of each use.
    scope.renames.set(name, { k: "var", name: fresh, span: NO_SPAN });
    return fresh;
  }

  /** Hoist helper calls out of `e` into `pre`, returning the rewritten expression. */
  private expr(e: Expr, pre: Stmt[]): Expr {
    switch (e.k) {
      case "call": {
        if (intrinsicOf(e)?.chooses && e.args.slice(1).some((a) => this.hasHelperCall(a))) {
          const [c, a, b] = e.args as [Expr, Expr, Expr];
          const cond = this.expr(c, pre);
          const tv: Expr = { k: "var", name: this.temp(e.ty!, pre, zero(e.ty!, e.span), "sel"), ty: e.ty, span: e.span };
          const thenPre: Stmt[] = [];
          const elsePre: Stmt[] = [];
          const av = this.expr(a, thenPre);
          const bv = this.expr(b, elsePre);
          pre.push({
            k: "if", cond, span: e.span,
            then: [...thenPre, { k: "assign", target: tv, op: "=", value: av, span: e.span }],
            else: [...elsePre, { k: "assign", target: tv, op: "=", value: bv, span: e.span }],
          });
          return tv;
        }
        if (tileOpOf(e)?.form === "map") return this.tileMap(e, pre);
        const args = e.args.map((a) => this.expr(a, pre));
        if (e.kind !== "helper") return { ...e, args };
        const result = this.inlineCall({ ...e, args }, pre, this.program.funcs.get(e.fn)!.ret.k === "tile" ? "tile" : e.ty);
        return result!;
      }
      case "bin": {
        if ((e.op === "&&" || e.op === "||") && this.hasHelperCall(e.b)) {
          const t = this.temp("bool", pre, this.expr(e.a, pre), "cond");
          const tv: Expr = { k: "var", name: t, ty: "bool", span: e.span };
          const rhsPre: Stmt[] = [];
          const rhs = this.expr(e.b, rhsPre);
          const guard: Expr = e.op === "&&" ? tv : { k: "un", op: "!", a: tv, ty: "bool", span: e.span };
          pre.push({ k: "if", cond: guard, then: [...rhsPre, { k: "assign", target: tv, op: "=", value: rhs, span: e.span }], else: [], span: e.span });
          return tv;
        }
        return { ...e, a: this.expr(e.a, pre), b: this.expr(e.b, pre) };
      }
      case "un":
        return { ...e, a: this.expr(e.a, pre) };
      case "index":
        return { ...e, base: this.expr(e.base, pre), index: this.expr(e.index, pre) };
      case "field":
        return { ...e, base: this.expr(e.base, pre) };
      default:
        return e;
    }
  }

  /**
   * `tileMap(fn, args...)` becomes a `tilemap` statement declaring a fresh tile: the helper is
   * inlined once, over one element of each tile argument (the tiles phase makes it a loop).
   */
  private tileMap(e: Extract<Expr, { k: "call" }>, pre: Stmt[]): Expr {
    const [fn, ...rest] = e.args;
    const inputs: Expr[] = [];
    const elems: string[] = [];
    const args = rest.map((a) => {
      const arg = this.expr(a, pre);
      if (!isTileValued(arg)) return arg;
      const name = this.names.fresh("el");
      inputs.push(arg);
      elems.push(name);
      return { k: "var", name, ty: "f32", span: a.span } as Expr;
    });
    const body: Stmt[] = [];
    const value = this.inlineCall({ k: "call", fn: (fn as { fn: string }).fn, kind: "helper", args, ty: "f32", span: e.span }, body, "f32")!;
    const result = this.names.fresh("mapped");
    body.push({ k: "let", name: result, mutable: true, ty: "f32", init: value, span: e.span });
    const target = this.names.fresh("tile");
    pre.push({ k: "tilemap", target: { k: "var", name: target, span: e.span }, declare: true, inputs, elems, body, result, span: e.span });
    return { k: "var", name: target, span: e.span };
  }

  private temp(ty: Scalar, pre: Stmt[], init: Expr, base: string): string {
    const name = this.names.fresh(base);
    pre.push({ k: "let", name, mutable: true, ty, init, span: init.span });
    return name;
  }

  private hasHelperCall(e: Expr): boolean {
    let found = false;
    mapExpr(e, (x) => ((found ||= x.k === "call" && x.kind === "helper"), x));
    return found;
  }

  /** Append the body of helper call `call` (arguments already hoisted) to `pre`; return its value. */
  private inlineCall(call: Extract<Expr, { k: "call" }>, pre: Stmt[], ty: Scalar | "tile" | undefined): Expr | undefined {
    const fn = this.program.funcs.get(call.fn)!;
    if (fn.grad && ty === "f32") return this.inlineWithDerivative(fn, call, pre);
    return this.inlineBody(fn, call, pre, ty);
  }

  /**
   * A helper with a declared derivative: `let r; { <its body>; r = value; { <its derivative> } }`,
   * the blocks marked for the adjoint phase (codegen/adjoint.ts); the derivative's adjoint and
   * gradient buffers are placeholders, and specialization removes it from every other kernel.
   */
  private inlineWithDerivative(fn: Func, call: Extract<Expr, { k: "call" }>, pre: Stmt[]): Expr {
    const result = this.names.fresh(`${fn.name}_value`);
    const rv: Expr = { k: "var", name: result, ty: "f32", span: call.span };
    pre.push({ k: "let", name: result, mutable: true, ty: "f32", init: zero("f32", call.span), span: call.span });
    const body: Stmt[] = [];
    const value = this.inlineBody(fn, call, body, "f32")!;
    body.push({ k: "assign", target: rv, op: "=", value, span: call.span });
    const adj = this.names.fresh("ngp_adj");
    const bufs = fn.params.flatMap((p, i) => (p.ty.k === "buf" ? [{ placeholder: this.names.fresh(`ngp_grad_${p.name}`), buffer: call.args[i]! }] : []));
    const args = [...call.args, { k: "var", name: adj, ty: "f32", span: call.span } as Expr, ...bufs.map((b) => ({ k: "var", name: b.placeholder, span: call.span }) as Expr)];
    const derivative: Stmt[] = [];
    this.inlineBody(this.program.funcs.get(fn.grad!.key)!, { ...call, fn: fn.grad!.key, args, ty: undefined }, derivative, undefined);
    body.push({ k: "block", body: derivative, derivative: { adj, bufs }, span: fn.grad!.span });
    pre.push({ k: "block", body, custom: { result }, span: call.span });
    return rv;
  }

  private inlineBody(fn: Func, call: Extract<Expr, { k: "call" }>, pre: Stmt[], ty: Scalar | "tile" | undefined): Expr | undefined {
    const scope = new Scope(new Map(), true);
    const renames = scope.renames;
    const assigned = assignedNames(fn.body);
    fn.params.forEach((p, i) => {
      const arg = call.args[i]!;
      const simple = arg.k === "lit" || arg.k === "var";
      if (p.ty.k === "tile" && !simple) {
        // A tile operation as an argument runs once, not at every use of the parameter.
        const name = this.names.fresh(p.name);
        pre.push({ k: "let", name, mutable: false, tile: "tile", init: arg, span: arg.span });
        renames.set(p.name, { k: "var", name, span: arg.span });
      } else if (p.ty.k !== "scalar" || (simple && !assigned.has(p.name))) renames.set(p.name, arg);
      else {
        const name = this.names.fresh(p.name);
        pre.push({ k: "let", name, mutable: assigned.has(p.name), ty: p.ty.s, init: arg, span: arg.span });
        renames.set(p.name, { k: "var", name, ty: p.ty.s, span: arg.span });
      }
    });
    const body = this.body(fn.body, scope);
    if (fn.ret.k === "void" || ty === undefined) {
      pre.push(...stripReturns(body, undefined));
      return undefined;
    }
    const last = body[body.length - 1];
    if (last?.k === "return" && !body.slice(0, -1).some(hasReturn)) {
      pre.push(...body.slice(0, -1));
      return last.value!;
    }
    if (ty === "tile") fail("NGP1020", fn.span, `'${fn.name}' returns a tile: it must return once, at its end`);
    const result = this.names.fresh(`${fn.name}_result`);
    const rv: Expr = { k: "var", name: result, ty, span: call.span };
    pre.push({ k: "let", name: result, mutable: true, ty, init: zero(ty, call.span), span: call.span });
    pre.push(...stripReturns(body, rv));
    return rv;
  }
}

/** The body without the declared derivatives of helpers (only the adjoint phase runs them). */
function withoutDerivatives(body: Stmt[]): Stmt[] {
  return mapBody(body, (s) => (s.k === "block" && (s.derivative || s.custom) ? { ...s, body: s.body.filter((t) => !(t.k === "block" && t.derivative)), custom: undefined } : s));
}

/** A tile operation or a reference to a tile (tiles carry no scalar type). */
function isTileValued(e: Expr): boolean {
  if (e.k === "call") return intrinsicOf(e)?.ret === "Tile";
  return (e.k === "var" || e.k === "index") && e.ty === undefined;
}

function zero(ty: Scalar, span: Span): Expr {
  return { k: "lit", v: ty === "bool" ? false : 0, ty, span };
}

function hasReturn(s: Stmt): boolean {
  return s.k === "return" || childBodies(s).some((b) => b.some(hasReturn));
}

/** Replace the tail returns of an inlined body by assignments to `result` (or nothing). */
function stripReturns(body: Stmt[], result: Expr | undefined): Stmt[] {
  return body.flatMap((s): Stmt[] => {
    if (s.k === "return") return result && s.value ? [{ k: "assign", target: result, op: "=", value: s.value, span: s.span }] : [];
    if (s.k === "if") return [{ ...s, then: stripReturns(s.then, result), else: stripReturns(s.else, result) }];
    if (s.k === "block") return [{ ...s, body: stripReturns(s.body, result) }];
    return [s];
  });
}


function rename(e: Expr, renames: Renames): Expr {
  if (renames.size === 0) return e;
  return mapExpr(e, (x) => {
    if (x.k !== "var") return x;
    const to = renames.get(x.name);
    if (!to) return x;
    return to.k === "var" ? { ...x, name: to.name } : { ...to, span: x.span };
  });
}

// ---- folding, propagation, dead branches, unrolling -------------------------------------------

class Simplifier {
  private statements = 0;
  private loops = 0;
  constructor(private readonly maxUnroll: number) {}

  run(body: Stmt[]): Stmt[] {
    return this.body(body, new Map());
  }

  /** `consts`: names bound to literals in the enclosing scopes. */
  private body(stmts: Stmt[], outer: Map<string, Expr>): Stmt[] {
    const consts = new Map(outer);
    const out: Stmt[] = [];
    for (const s of stmts) {
      this.statements++;
      if (this.statements > MAX_STATEMENTS) fail("NGP1032", s.span, `more than ${MAX_STATEMENTS} statements after unrolling`);
      out.push(...this.stmt(s, consts));
    }
    return out;
  }

  private stmt(s: Stmt, consts: Map<string, Expr>): Stmt[] {
    const ex = (e: Expr) => fold(substitute(e, consts));
    switch (s.k) {
      case "let": {
        const init = ex(s.init);
        // A name is shadowed from here on: forget any outer constant of the same name.
        consts.delete(s.name);
        if (!s.mutable && init.k === "lit") {
          consts.set(s.name, init);
          return [];
        }
        return [{ ...s, init }];
      }
      case "array": {
        const size = ex(s.size);
        consts.delete(s.name);
        if (size.k !== "lit" || typeof size.v !== "number") fail("NGP1011", s.size.span);
        if (size.v < 1 || size.v > 65536) fail("NGP1011", s.size.span, `size ${size.v} is outside [1, 65536]`);
        return [{ ...s, size }];
      }
      case "assign":
        return [{ ...s, target: ex(s.target), value: ex(s.value) }];
      case "if": {
        const cond = ex(s.cond);
        if (cond.k === "lit") {
          const taken = this.body(cond.v ? s.then : s.else, consts);
          return taken.length ? [{ k: "block", body: taken, span: s.span }] : [];
        }
        return [{ ...s, cond, then: this.body(s.then, consts), else: this.body(s.else, consts) }];
      }
      case "for":
        return this.loop({ ...s, start: ex(s.start), end: ex(s.end), step: ex(s.step) }, consts);
      case "expr":
        return [{ ...s, e: ex(s.e) }];
      case "return":
        return [s.value ? { ...s, value: ex(s.value) } : s];
      case "block": {
        const body = this.body(s.body, consts);
        return body.length ? [{ ...s, body }] : [];
      }
      case "tilemap":
        return [{ ...s, inputs: s.inputs.map(ex), body: this.body(s.body, consts) }];
      default:
        return [s];
    }
  }

  private loop(s: Extract<Stmt, { k: "for" }>, consts: Map<string, Expr>): Stmt[] {
    const inner = new Map(consts);
    inner.delete(s.v);
    const trips = tripCount(s);
    // A loop of tile operations cannot stay a loop (they run in straight-line code): it unrolls up
    // to the C targets' limit even where a target prefers less (JS).
    const limit = hasTileOps(s.body) ? Math.max(this.maxUnroll, 64) : this.maxUnroll;
    if (trips === undefined || trips > limit) return [{ ...s, body: this.body(s.body, inner) }];
    const jump = findJump(s.body);
    if (jump) fail("NGP1013", jump.span, `this loop runs a constant ${trips} times and is unrolled`);
    const out: Stmt[] = [];
    const start = s.start as Extract<Expr, { k: "lit" }>;
    const step = (s.step as { v: number }).v;
    const loop = this.loops++;
    for (let t = 0; t < trips; t++) {
      const v = normalize((start.v as number) + t * step, s.vty!);
      const iter = new Map(inner).set(s.v, { k: "lit", v, ty: s.vty!, span: s.span });
      const body = this.body(s.body, iter);
      if (body.length) out.push({ k: "block", body, span: s.span, unrolled: { loop, iter: t } });
    }
    return out;
  }
}

function hasTileOps(body: Stmt[]): boolean {
  return body.some((s) => s.k === "tilemap" || (s.k === "let" && s.tile !== undefined) || [...exprsOf(s)].some((e) => tileOpOf(e) !== undefined) || childBodies(s).some(hasTileOps));
}

function tripCount(s: Extract<Stmt, { k: "for" }>): number | undefined {
  if (s.start.k !== "lit" || s.end.k !== "lit" || s.step.k !== "lit") return undefined;
  const [a, b, step] = [s.start.v as number, s.end.v as number, s.step.v as number];
  if (step === 0) return undefined;
  let n = 0;
  // Count exactly as the loop would run (no closed form: it must agree on every edge).
  for (let v = a; n <= 1_000_000; v = normalize(v + step, s.vty!), n++) {
    const go = s.cmp === "<" ? v < b : s.cmp === "<=" ? v <= b : s.cmp === ">" ? v > b : v >= b;
    if (!go) return n;
    if (s.vty === "u32" && ((step > 0 && v + step > 0xffffffff) || (step < 0 && v + step < 0))) return undefined; // wraps
  }
  return undefined;
}

/** A break/continue that belongs to this loop (not to a nested loop). */
function findJump(body: Stmt[]): Stmt | undefined {
  for (const s of body) {
    if (s.k === "break" || s.k === "continue") return s;
    if (s.k === "if" || s.k === "block") {
      const inner = findJump(childBodies(s).flat());
      if (inner) return inner;
    }
  }
  return undefined;
}

function substitute(e: Expr, consts: Map<string, Expr>): Expr {
  if (consts.size === 0) return e;
  return mapExpr(e, (x) => (x.k === "var" && consts.has(x.name) ? { ...consts.get(x.name)!, span: x.span } : x));
}

/** Wrap/round a folded value to its type, exactly as the generated code would. */
export function normalize(v: number, ty: Scalar): number {
  if (ty === "i32") return v | 0;
  if (ty === "u32") return v >>> 0;
  if (ty === "f32") return Math.fround(v);
  return v;
}

/** Constant-fold `e` bottom-up with the exact semantics of each operation. */
export function fold(e: Expr): Expr {
  return mapExpr(e, (x) => {
    // select() with a constant condition is the chosen operand, whatever the others are.
    if (x.k === "call" && intrinsicOf(x)?.chooses && x.args[0]!.k === "lit") return x.args[x.args[0]!.v ? 1 : 2]!;
    const v = foldNode(x);
    return v === undefined ? x : { k: "lit", v, ty: x.k === "lit" ? x.ty : (x as { ty: Scalar }).ty, span: x.span };
  });
}

function litValue(e: Expr): number | boolean | undefined {
  return e.k === "lit" ? e.v : undefined;
}

function foldNode(e: Expr): number | boolean | undefined {
  switch (e.k) {
    case "index": {
      const i = litValue(e.index);
      if (e.base.k === "table" && typeof i === "number") {
        if (i < 0 || i >= e.base.values.length) fail("NGP1024", e.index.span, `index ${i} is outside the table '${e.base.id}' of length ${e.base.values.length}`);
        return e.base.values[i];
      }
      return undefined;
    }
    case "un": {
      const a = litValue(e.a);
      if (a === undefined) return undefined;
      if (e.op === "!") return !a;
      if (e.op === "~") return normalize(~(a as number), e.ty!);
      return normalize(-(a as number), e.ty!);
    }
    case "bin": {
      const a = litValue(e.a);
      const b = litValue(e.b);
      if (a === undefined || b === undefined) return undefined;
      return foldBinary(e.op, a, b, e.a.k === "lit" ? e.a.ty : "i32", e.ty!);
    }
    case "call": {
      const args = e.args.map(litValue);
      if (args.some((a) => a === undefined)) return undefined;
      const intr = intrinsicOf(e);
      if (!intr?.exact || !intr.pure) return undefined;
      return normalize((intr.impl as (...a: unknown[]) => number)(...args, e.T), e.ty!);
    }
    default:
      return undefined;
  }
}

function foldBinary(op: string, a: number | boolean, b: number | boolean, operand: Scalar, ty: Scalar): number | boolean | undefined {
  if (op === "&&") return (a as boolean) && (b as boolean);
  if (op === "||") return (a as boolean) || (b as boolean);
  if (op === "===") return a === b;
  if (op === "!==") return a !== b;
  const x = a as number;
  const y = b as number;
  switch (op) {
    case "<": return x < y;
    case "<=": return x <= y;
    case ">": return x > y;
    case ">=": return x >= y;
    case "+": return normalize(x + y, ty);
    case "-": return normalize(x - y, ty);
    case "*": return ty === "f32" ? Math.fround(x * y) : normalize(Math.imul(x, y), ty);
    case "/":
      if (ty === "f32") return Math.fround(x / y);
      return y === 0 ? 0 : normalize(Math.trunc(x / y), ty);
    case "%":
      if (ty === "f32") return Math.fround(x % y);
      return y === 0 ? 0 : normalize(x % y, ty);
    case "&": return normalize(x & y, ty);
    case "|": return normalize(x | y, ty);
    case "^": return normalize(x ^ y, ty);
    case "<<": return normalize(x << (y & 31), ty);
    case ">>": return operand === "u32" ? x >>> (y & 31) : x >> (y & 31);
    case ">>>": return x >>> (y & 31);
  }
  return undefined;
}

/** Names of buffer parameters the kernel writes (stores or atomics); the others are read-only. */
export function writtenBuffers(body: Stmt[]): Set<string> {
  const out = new Set<string>();
  const visit = (b: Stmt[]) => b.forEach((s) => {
    if (s.k === "assign" && s.target.k === "index" && s.target.base.k === "var") out.add(s.target.base.name);
    for (const e of exprsOf(s)) {
      const w = intrinsicOf(e)?.writes;
      const buf = w === undefined ? undefined : (e as Extract<Expr, { k: "call" }>).args[w];
      if (buf?.k === "var") out.add(buf.name);
    }
    childBodies(s).forEach(visit);
  });
  visit(body);
  return out;
}

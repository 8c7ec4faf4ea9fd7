// Phase specialize (see compile.ts): a checked kernel, for one configuration, without helpers.
//
//   inline    every helper call, hoisting it out of its expression (conditional operands become
//             `if` statements, so `a && h(x)` still evaluates h only when a holds); a helper with a
//             declared derivative (`@grad`) is marked for the adjoint (see withoutDerivatives)
//   bind      configuration fields become literals, configuration lists become constant tables
//
// The result (a SpecializedKernel) has no helpers, no configuration and no `field` nodes; the
// simplifier (simplify.ts) then makes it straight-line code.
import { fail, NO_SPAN } from "./diagnostics.ts";
import { intrinsicOf, tileOpOf } from "./forms.ts";
import { assignedNames, childBodies, declaredNames, mapBody, mapExpr, mapStmtExprs } from "./ir.ts";
import type { ConfigType, Expr, Func, Program, Scalar, Span, SpecializedKernel, Stmt } from "./ir.ts";

/** Configuration values as given by the user: numbers, booleans and lists of them. */
export type ConfigValue = Record<string, number | boolean | (number | boolean)[]>;


export function specialize(program: Program, kernel: Func, config: ConfigValue | undefined): SpecializedKernel {
  const [index, ...rest] = kernel.params;
  const cfgParam = rest.find((p) => p.ty.k === "config");
  const bound = cfgParam ? validateConfig((cfgParam.ty as { cfg: ConfigType }).cfg, config, cfgParam.span) : undefined;
  const names = new NameGen(kernel);
  let body = new Inliner(program, names).body(kernel.body, new Scope(new Map(), false));
  if (cfgParam && bound) body = bindConfig(body, cfgParam.name, bound);
  const rows = blockRows(kernel, bound);
  return {
    name: kernel.name,
    schedule: kernel.schedule,
    block: rows === undefined ? undefined : { rows, accumulates: [] },
    index: { name: index!.name, ty: (index!.ty as { s: "i32" | "u32" }).s },
    params: rest.filter((p) => p.ty.k !== "config"),
    body,
    span: kernel.span,
  };
}

/**
 * The kernel without the declared derivatives of helpers (`@grad`): only the adjoint phase runs
 * them, every other kernel drops them (after simplification).
 */
export function withoutDerivatives(k: SpecializedKernel): SpecializedKernel {
  const body = mapBody(k.body, (s) => (s.k === "block" && (s.derivative || s.custom) ? { ...s, body: s.body.filter((t) => !(t.k === "block" && t.derivative)), custom: undefined } : s));
  return { ...k, body };
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
  private readonly used: Set<string>;
  private n = 0;
  constructor(kernel: Func) {
    this.used = declaredNames(kernel.body, new Set(kernel.params.map((p) => p.name)));
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

// Phase check (see compile.ts): infers and checks the type of every expression, fills `ty` into
// the IR, and enforces the rules of the subset that need types or scopes (implicit numeric mixes,
// assignments to constants, kernel signatures, returns). Integer literals are "abstract" until
// context makes them i32 or u32; decimals are f32; nothing else converts implicitly.
//
// Mistakes are reported per statement. What the parser already rejected (stand-ins, UNKNOWN types)
// and names bound to it have an error type: a check that meets one gives up silently (POISON), so
// a mistake is reported once, not again by every check its value flows into.
import { lookupIntrinsic, type Intrinsic } from "../dsl/intrinsics.ts";
import { type DiagnosticSink, fail } from "./diagnostics.ts";
import { intrinsicOf, tileOpOf } from "./forms.ts";
import type { BinOp, Expr, Func, Program, Scalar, Span, Stmt, Type } from "./ir.ts";
import { isInt } from "./ir.ts";
import { STAND_IN, UNKNOWN } from "./parse.ts";

interface Binding {
  ty: Type;
  /** `let` and scalar parameters may be assigned; `const`, loop variables and buffers may not. */
  mutable: boolean;
  what: string;
}

/** Thrown by a check that meets a value of the error type; its statement is skipped silently. */
const POISON = Symbol("poison");
/** The binding of a name whose type is unknown because its declaration was rejected. */
const POISONED: Binding = { ty: UNKNOWN, mutable: true, what: "rejected declaration" };

class Env {
  private readonly frames: Map<string, Binding>[] = [new Map([[STAND_IN, POISONED]])];
  push(): void {
    this.frames.push(new Map());
  }
  pop(): void {
    this.frames.pop();
  }
  declare(name: string, b: Binding): void {
    this.frames[this.frames.length - 1]!.set(name, b);
  }
  lookup(name: string): Binding | undefined {
    for (let i = this.frames.length - 1; i >= 0; i--) {
      const b = this.frames[i]!.get(name);
      if (b) return b;
    }
    return undefined;
  }
}

const ARITH = new Set<BinOp>(["+", "-", "*", "/", "%"]);
const BITWISE = new Set<BinOp>(["&", "|", "^"]);
const SHIFT = new Set<BinOp>(["<<", ">>", ">>>"]);
const COMPARE = new Set<BinOp>(["<", "<=", ">", ">=", "===", "!=="]);

/** Check every function of `program`, reporting mistakes into `sink`. */
export function checkProgram(program: Program, sink: DiagnosticSink): void {
  for (const fn of program.funcs.values()) sink.guard(() => new FuncChecker(program, fn, sink).run());
}

class FuncChecker {
  private readonly env = new Env();
  private loopDepth = 0;
  constructor(
    private readonly program: Program,
    private readonly fn: Func,
    private readonly sink: DiagnosticSink,
  ) {}

  run(): void {
    const { fn } = this;
    // A bad signature is reported, and the body is still checked.
    this.attempt(() => {
      if (fn.kernel) return this.kernelSignature();
      if (fn.ret.k !== "void" && fn.ret.k !== "scalar" && fn.ret.k !== "tile") fail("NGP1017", fn.span, "a helper returns a scalar, a tile or nothing");
      checkTailReturns(fn.body, true);
      if ((fn.ret.k === "scalar" || fn.ret.k === "tile") && !endsWithReturn(fn.body)) fail("NGP1020", fn.span, `'${fn.name}' does not end with a return`);
    });
    for (const p of fn.params) this.env.declare(p.name, p.ty === UNKNOWN ? POISONED : { ty: p.ty, mutable: p.ty.k === "scalar", what: "parameter" });
    this.stmts(fn.body);
  }

  /** Run a check, reporting its diagnostic; one that meets the error type ends silently. */
  private attempt(check: () => void): void {
    this.sink.guard(() => {
      try {
        check();
      } catch (e) {
        if (e !== POISON) throw e;
      }
    });
  }

  /** The binding of `name`; a check that reads a name whose declaration was rejected gives up. */
  private binding(name: string): Binding | undefined {
    const b = this.env.lookup(name);
    if (b === POISONED) throw POISON;
    return b;
  }

  private kernelSignature(): void {
    const { fn } = this;
    if (fn.ret.k !== "void") fail("NGP1008", fn.span, `'${fn.name}' is declared to return a value`);
    const index = fn.params[0];
    if (!index || (index.ty !== UNKNOWN && (index.ty.k !== "scalar" || !isInt(index.ty.s))))
      fail("NGP1025", index?.span ?? fn.span, "the first parameter must be the thread index, typed i32 or u32");
    const configs = fn.params.filter((p) => p.ty.k === "config");
    if (configs.length > 1) fail("NGP1025", configs[1]!.span, "a kernel takes at most one Const<> configuration");
    for (const p of fn.params.slice(1))
      if (p.ty.k === "array") fail("NGP1025", p.span, "kernel parameters are scalars, buffers or a Const<> configuration", "declare local arrays inside the kernel with localArray<T>(n)");
    for (const p of fn.params) if (p.ty.k === "buf" && p.ty.elem === "Float") fail("NGP1025", p.span, "a kernel's buffers have a concrete element type", "use Buf<f32> or Buf<f16>; Buf<Float> is for helpers");
    for (const p of fn.params) if (p.ty.k === "tile" || p.ty.k === "tiles") fail("NGP1044", p.span, "a kernel parameter", "tiles are made inside a block kernel, from buffers (loadRows, loadTile)");
    if (fn.block !== undefined && fn.schedule) fail("NGP1034", fn.span, "a block kernel has no @schedule", "remove @schedule: a block kernel runs its blocks in parallel");
  }

  private stmts(list: Stmt[]): void {
    this.env.push();
    for (const s of list) this.attempt(() => this.stmt(s));
    this.env.pop();
  }

  private stmt(s: Stmt): void {
    switch (s.k) {
      case "let": {
        if (s.tile || this.isTileValued(s.init)) return this.tileLet(s);
        // A bad initializer is reported; the name keeps its declared type, or else has the error type.
        this.attempt(() => (s.ty ? this.coerce(s.init, s.ty) : void (s.ty = this.settle(s.init))));
        this.env.declare(s.name, s.ty ? { ty: { k: "scalar", s: s.ty }, mutable: s.mutable, what: s.mutable ? "variable" : "constant" } : POISONED);
        return;
      }
      case "array":
        this.attempt(() => this.index(s.size));
        this.env.declare(s.name, { ty: { k: "array", elem: s.elem }, mutable: false, what: "local array" });
        return;
      case "assign":
        return this.assign(s);
      case "if":
        this.attempt(() => this.condition(s.cond));
        this.stmts(s.then);
        this.stmts(s.else);
        return;
      case "for": {
        // A bad header is reported; the body is still checked (the loop variable as for `let`).
        this.attempt(() => {
          if (s.vty) this.coerce(s.start, s.vty);
          else s.vty = this.settle(s.start);
          const vty = s.vty;
          if (!isInt(vty) && vty !== "f32") fail("NGP1019", s.start.span, "a loop variable is numeric");
          this.coerce(s.end, vty);
          const negLit = s.step.k === "lit" && s.step.abstract && typeof s.step.v === "number" && s.step.v < 0;
          if (negLit && vty === "u32") (s.step as { ty: Scalar }).ty = "i32"; // `i--` on u32: emitted as `i -= 1`
          else this.coerce(s.step, vty);
        });
        this.env.push();
        this.env.declare(s.v, s.vty ? { ty: { k: "scalar", s: s.vty }, mutable: false, what: "loop variable" } : POISONED);
        this.loopDepth++;
        this.stmts(s.body);
        this.loopDepth--;
        this.env.pop();
        return;
      }
      case "expr": {
        if (s.e.k !== "call") fail("NGP1016", s.span, "an expression statement without effect");
        this.call(s.e, true);
        return;
      }
      case "return": {
        if (this.fn.kernel) {
          if (s.value && this.fn.ret.k === "void") fail("NGP1008", s.span, `'${this.fn.name}' returns a value`); // else the signature was reported
          return;
        }
        if (this.fn.ret === UNKNOWN) return void (s.value && this.settle(s.value));
        if (this.fn.ret.k === "void") {
          if (s.value) fail("NGP1019", s.span, `'${this.fn.name}' returns a value but declares no return type`, `annotate it: function ${this.fn.name}(...): f32`);
          return;
        }
        if (!s.value) fail("NGP1019", s.span, `'${this.fn.name}' must return a ${this.fn.ret.k === "scalar" ? this.fn.ret.s : "value"}`);
        if (this.fn.ret.k === "tile") return this.tile(s.value);
        this.coerce(s.value, (this.fn.ret as { s: Scalar }).s);
        return;
      }
      case "break":
      case "continue":
        if (this.loopDepth === 0) fail("NGP1016", s.span, `'${s.k}' outside a loop`);
        return;
      case "block":
        return this.stmts(s.body);
    }
  }

  private assign(s: Extract<Stmt, { k: "assign" }>): void {
    const t = s.target;
    let target: Scalar;
    const tileTarget = t.k === "var" ? this.binding(t.name) : t.k === "index" && t.base.k === "var" ? this.binding(t.base.name) : undefined;
    if (tileTarget?.ty.k === "tile" || tileTarget?.ty.k === "tiles") {
      if (s.op !== "=") fail("NGP1044", s.span, `'${s.op}' on a tile`, "use tileMap for elementwise arithmetic");
      if (tileTarget.ty.k === "tile" && t.k !== "var") fail("NGP1024", t.span, "a tile is not indexed", "tiles() lists are indexed; a tile is used whole");
      if (tileTarget.ty.k === "tiles" && t.k === "var") fail("NGP1044", t.span, "a whole tile list cannot be assigned", "assign its elements");
      if (t.k === "index") this.index(t.index);
      if (t.k === "var" && !tileTarget.mutable) fail("NGP1014", t.span, `'${t.name}' is a ${tileTarget.what}`);
      return this.tile(s.value);
    }
    if (t.k === "var") {
      const b = this.binding(t.name);
      if (!b) fail("NGP1018", t.span, `'${t.name}'`);
      if (b.ty.k !== "scalar") fail("NGP1019", t.span, `cannot assign a whole ${b.what}`, "assign its elements");
      if (!b.mutable) fail("NGP1014", t.span, `'${t.name}' is a ${b.what}`, b.what === "loop variable" ? "loop variables change only in the for header" : undefined);
      target = t.ty = b.ty.s;
    } else {
      if (t.k !== "index" || t.base.k !== "var") fail("NGP1014", t.span);
      const b = this.binding(t.base.name);
      if (b?.ty.k === "config") fail("NGP1014", t.span, "config fields are compile-time constants");
      target = this.expr(t);
    }
    if (s.op === "=") return this.coerce(s.value, target);
    const op = s.op.slice(0, -1) as BinOp;
    this.binaryTypes(op, { k: "lit", v: 0, ty: target, span: t.span }, s.value, s.span); // the target, as a typed operand
  }

  private condition(e: Expr): void {
    if (this.expr(e) !== "bool") fail("NGP1019", e.span, "a condition must be a bool", "compare explicitly, e.g. x !== 0");
  }

  /** The type of `e`; an abstract literal settles to i32 (or u32 if it does not fit). */
  private settle(e: Expr): Scalar {
    const t = this.expr(e);
    if (e.k === "lit" && e.abstract) e.abstract = false;
    return t;
  }

  /** Check `e` has type `want`, letting an abstract integer literal take that type. */
  private coerce(e: Expr, want: Scalar): void {
    const got = this.expr(e, want);
    if (e.k === "lit" && e.abstract) {
      const v = e.v as number;
      if (want === "i32" && v <= 0x7fffffff) return void ((e.ty = "i32"), (e.abstract = false));
      if (want === "u32" && v >= 0) return void ((e.ty = "u32"), (e.abstract = false));
      if (want === "f32") fail("NGP1009", e.span, `integer literal ${v} where f32 is expected`, `write ${v}.0`);
      fail("NGP1023", e.span, `${v} does not fit ${want}`);
    }
    if (got === want) return;
    if (got !== "bool" && want !== "bool") fail("NGP1009", e.span, `${got} where ${want} is expected`, `convert explicitly: ${want}(...)`);
    fail("NGP1019", e.span, `${got} where ${want} is expected`);
  }

  private index(e: Expr): void {
    const t = this.expr(e);
    if (e.k === "lit" && e.abstract) {
      e.abstract = false;
      return;
    }
    if (!isInt(t)) fail("NGP1024", e.span, `index of type ${t}`, "convert with i32(x) or u32(x)");
  }

  /** Infer the type of `e`; `expected` (from context) instantiates generic intrinsics like select(c, 1, 0). */
  private expr(e: Expr, expected?: Scalar): Scalar {
    switch (e.k) {
      case "lit":
        return e.ty;
      case "var": {
        const b = this.binding(e.name);
        if (!b) fail("NGP1018", e.span, `'${e.name}'`);
        if (b.ty.k !== "scalar") fail("NGP1019", e.span, `the ${b.what} '${e.name}' is not a value`, "index it, or pass it to a function");
        return (e.ty = b.ty.s);
      }
      case "un": {
        const t = this.expr(e.a);
        if (e.op === "!" && t !== "bool") fail("NGP1019", e.span, "! needs a bool");
        if (e.op === "~" && !isInt(t)) fail("NGP1019", e.span, "~ needs an i32 or u32");
        if (e.op === "-" && t === "bool") fail("NGP1019", e.span, "- needs a number");
        if (e.a.k === "lit" && e.a.abstract) e.a.abstract = false;
        return (e.ty = t);
      }
      case "bin":
        return (e.ty = this.binaryTypes(e.op, e.a, e.b, e.span, expected));
      case "call":
        return this.call(e, false, expected);
      case "index": {
        this.index(e.index);
        const base = e.base;
        if (base.k === "table") return (e.ty = base.elem);
        if (base.k === "field") return (e.ty = this.configField(base, true));
        if (base.k !== "var") fail("NGP1024", base.span, "only buffers, local arrays and config lists can be indexed");
        const b = this.binding(base.name);
        if (!b) fail("NGP1018", base.span, `'${base.name}'`);
        if (b.ty.k === "buf") return (e.ty = b.ty.elem === "f16" || b.ty.elem === "Float" ? "f32" : b.ty.elem);
        if (b.ty.k === "array") return (e.ty = b.ty.elem);
        fail("NGP1024", base.span, `'${base.name}' is a ${b.what}, not a buffer or array`);
      }
      case "field":
        return (e.ty = this.configField(e, false));
      case "table":
        fail("NGP1019", e.span, `the table '${e.id}' is not a value`, "index it");
      case "fnref":
        fail("NGP1019", e.span, "a function is not a value", "call it, or map it over tiles with tileMap(fn, ...)");
    }
  }

  private configField(e: Extract<Expr, { k: "field" }>, indexed: boolean): Scalar {
    const base = e.base;
    const b = base.k === "var" ? this.binding(base.name) : undefined;
    if (!b || b.ty.k !== "config") fail("NGP1033", e.span, "property access", "only Const<> configuration fields can be read with `.`");
    const f = b.ty.cfg.fields.get(e.name);
    if (!f) fail("NGP1018", e.span, `'${b.ty.cfg.name}' has no field '${e.name}'`);
    if (f.list !== indexed) fail("NGP1024", e.span, f.list ? `'${e.name}' is a list; index it` : `'${e.name}' is not a list`);
    return (e.ty = f.s); // for a list, the element type (bound lists become tables of it)
  }

  private binaryTypes(op: BinOp, a: Expr, b: Expr, sp: Span, expected?: Scalar): Scalar {
    // Arithmetic passes the expected type on to its operands; comparisons and logic do not.
    const ctx = COMPARE.has(op) || op === "&&" || op === "||" ? undefined : expected;
    let ta = this.expr(a, ctx);
    let tb = this.expr(b, SHIFT.has(op) ? undefined : ctx);
    const absA = a.k === "lit" && a.abstract;
    const absB = b.k === "lit" && b.abstract;
    if (SHIFT.has(op)) {
      if (!isInt(ta)) fail("NGP1019", a.span, `'${op}' needs an i32 or u32 on the left`);
      if (absA) this.coerce(a, (ta = "i32"));
      if (absB) b.abstract = false;
      else if (!isInt(tb)) fail("NGP1019", b.span, "a shift amount is an i32 or u32");
      if (op === ">>>" && ta !== "u32") fail("NGP1019", sp, "'>>>' needs a u32", "use >> on i32 (arithmetic shift), or convert with u32(x)");
      return ta;
    }
    if (absA && !absB) this.coerce(a, (ta = tb));
    else if (absB && !absA) this.coerce(b, (tb = ta));
    else if (absA && absB) {
      const t: Scalar = ta === "u32" || tb === "u32" ? "u32" : "i32";
      this.coerce(a, t);
      this.coerce(b, t);
      ta = tb = t;
    }
    if (ta !== tb) {
      if (ta !== "bool" && tb !== "bool") fail("NGP1009", sp, `${ta} ${op} ${tb}`);
      fail("NGP1019", sp, `${ta} ${op} ${tb}`);
    }
    if (op === "&&" || op === "||") {
      if (ta !== "bool") fail("NGP1019", sp, `'${op}' needs bools`, "compare explicitly, e.g. x !== 0");
      return "bool";
    }
    if (COMPARE.has(op)) {
      if (ta === "bool" && op !== "===" && op !== "!==") fail("NGP1019", sp, `'${op}' on bools`);
      return "bool";
    }
    if (ta === "bool") fail("NGP1019", sp, `'${op}' on bools`, "use && and ||");
    if (BITWISE.has(op) && !isInt(ta)) fail("NGP1019", sp, `'${op}' needs i32 or u32`, "use floatBitsToUint(x) for the bits of an f32");
    if (!ARITH.has(op) && !BITWISE.has(op)) fail("NGP1015", sp, `'${op}'`);
    return ta;
  }

  private call(e: Extract<Expr, { k: "call" }>, statement: boolean, expected?: Scalar): Scalar {
    if (e.kind === "intrinsic") return this.intrinsicCall(e, lookupIntrinsic(e.fn)!, statement, expected);
    const callee = this.program.funcs.get(e.fn)!;
    if (e.args.length !== callee.params.length)
      fail("NGP1021", e.span, `'${callee.name}' takes ${callee.params.length} argument(s), got ${e.args.length}`);
    callee.params.forEach((p, i) => {
      const arg = e.args[i]!;
      if (p.ty === UNKNOWN) return; // the parameter's type was rejected
      if (p.ty.k === "scalar") return this.coerce(arg, p.ty.s);
      if (p.ty.k === "tile") return this.tile(arg);
      const b = arg.k === "var" ? this.binding(arg.name) : undefined;
      if (!b || !sameRefType(b.ty, p.ty)) fail("NGP1021", arg.span, `argument ${i + 1} of '${callee.name}' must be ${describe(p.ty)}`);
    });
    if (callee.ret === UNKNOWN) throw POISON;
    if (callee.ret.k === "tile") {
      if (!statement) fail("NGP1044", e.span, `'${callee.name}' returns a tile, not a scalar`, "bind it: const t = ...");
      return "bool"; // unused
    }
    if (callee.ret.k === "void") {
      if (!statement) fail("NGP1019", e.span, `'${callee.name}' returns nothing`);
      return "bool"; // unused: a void call is only a statement
    }
    return (e.ty = (callee.ret as { s: Scalar }).s);
  }

  // ---- tiles ----------------------------------------------------------------------------------

  /** Does `e` denote a tile or tile list (so that a `let` of it declares one)? */
  private isTileValued(e: Expr): boolean {
    if (e.k === "call") {
      if (e.kind === "intrinsic") return lookupIntrinsic(e.fn)?.ret === "Tile" || lookupIntrinsic(e.fn)?.ret === "Tiles";
      const ret = this.program.funcs.get(e.fn)?.ret;
      return ret?.k === "tile";
    }
    const name = e.k === "var" ? e.name : e.k === "index" && e.base.k === "var" ? e.base.name : undefined;
    const b = name === undefined ? undefined : this.env.lookup(name);
    return b !== undefined && b !== POISONED && (b.ty.k === "tile" || (b.ty.k === "tiles" && e.k === "index"));
  }

  private tileLet(s: Extract<Stmt, { k: "let" }>): void {
    const list = tileOpOf(s.init)?.form === "list";
    if (s.tile === "tiles" && !list) fail("NGP1044", s.init.span, "a Tiles list is made with tiles(count)");
    s.tile = list ? "tiles" : "tile";
    this.env.declare(s.name, POISONED); // until the initializer checks
    if (list) this.tileArgs(s.init as Extract<Expr, { k: "call" }>, intrinsicOf(s.init)!);
    else this.tile(s.init);
    this.env.declare(s.name, { ty: { k: s.tile }, mutable: s.mutable, what: list ? "tile list" : s.mutable ? "tile variable" : "tile" });
  }

  /** Check that `e` is a tile: a tile name, an element of a tile list, or a call making a tile. */
  private tile(e: Expr): void {
    if (e.k === "call") {
      if (e.kind === "intrinsic") {
        const intr = lookupIntrinsic(e.fn)!;
        if (intr.ret !== "Tile") fail("NGP1044", e.span, `${e.fn}() is not a tile`);
        return this.tileArgs(e, intr);
      }
      const callee = this.program.funcs.get(e.fn)!;
      if (callee.ret.k !== "tile") fail("NGP1044", e.span, `'${callee.name}' does not return a tile`);
      return void this.call(e, true); // its result (a tile) is used: checking the arguments is all
    }
    const name = e.k === "var" ? e.name : e.k === "index" && e.base.k === "var" ? e.base.name : undefined;
    const b = name === undefined ? undefined : this.binding(name);
    if (name !== undefined && !b) fail("NGP1018", e.span, `'${name}'`);
    if (e.k === "var" && b?.ty.k === "tile") return;
    if (e.k === "index" && b?.ty.k === "tiles") return this.index(e.index);
    fail("NGP1044", e.span, "a tile is expected here");
  }

  /** The arguments of a tile operation, by their parameter specs. */
  private tileArgs(e: Extract<Expr, { k: "call" }>, intr: Intrinsic): void {
    const variadic = intr.params.at(-1) === "...";
    const fixed = variadic ? intr.params.length - 1 : intr.params.length;
    if (variadic ? e.args.length < fixed + 1 : e.args.length !== fixed)
      fail("NGP1021", e.span, `${e.fn}() takes ${variadic ? "at least " : ""}${variadic ? fixed + 1 : fixed} argument(s), got ${e.args.length}`);
    intr.params.slice(0, fixed).forEach((p, i) => {
      const arg = e.args[i]!;
      if (p === "Tile") return this.tile(arg);
      if (p === "int") return this.index(arg);
      if (p === "Buf<f32>") {
        const b = arg.k === "var" ? this.binding(arg.name) : undefined;
        if (!b || b.ty.k !== "buf" || b.ty.elem !== "f32") fail("NGP1021", arg.span, `argument ${i + 1} of ${e.fn}() is a Buf<f32>`);
        return;
      }
      if (p !== "fn") return this.coerce(arg, p as Scalar);
    });
    if (intr.tile?.form === "map") this.tileMapArgs(e);
  }

  /** tileMap(fn, args...): fn returns f32; a tile argument fills an f32 parameter, a scalar any. */
  private tileMapArgs(e: Extract<Expr, { k: "call" }>): void {
    const [fnArg, ...args] = e.args;
    const fn = this.program.funcs.get((fnArg as Extract<Expr, { k: "fnref" }>).fn)!;
    if (fn.ret.k !== "scalar" || fn.ret.s !== "f32") fail("NGP1021", fnArg!.span, `'${fn.name}' must return an f32 to be mapped over tiles`);
    if (fn.params.length !== args.length) fail("NGP1021", e.span, `'${fn.name}' takes ${fn.params.length} argument(s), tileMap passes it ${args.length}`);
    let tiles = 0;
    args.forEach((arg, i) => {
      const p = fn.params[i]!;
      if (p.ty === UNKNOWN) return;
      if (p.ty.k !== "scalar") fail("NGP1021", arg.span, `'${fn.name}' is mapped over tiles: its parameters are scalars`);
      if (this.isTileValued(arg)) {
        if (p.ty.s !== "f32") fail("NGP1021", arg.span, `a tile fills '${p.name}', which is ${p.ty.s}`, "tile elements are f32");
        tiles++;
        return this.tile(arg);
      }
      this.coerce(arg, p.ty.s);
    });
    if (tiles === 0) fail("NGP1021", e.span, "tileMap needs at least one tile argument");
  }

  private intrinsicCall(e: Extract<Expr, { k: "call" }>, intr: Intrinsic, statement: boolean, expected?: Scalar): Scalar {
    if (intr.tile) {
      if (intr.ret !== "void") fail("NGP1044", e.span, `${e.fn}() makes a tile`, `bind it: const t = ${e.fn}(...)`);
      this.tileArgs(e, intr);
      if (!statement) fail("NGP1019", e.span, `${e.fn}() returns nothing`);
      return "bool";
    }
    if (e.args.length !== intr.params.length) fail("NGP1021", e.span, `${e.fn}() takes ${intr.params.length} argument(s), got ${e.args.length}`);
    // Instantiate T from the first argument whose type is known.
    let T: Scalar | undefined;
    intr.params.forEach((p, i) => {
      const arg = e.args[i]!;
      if (T || (p !== "T" && p !== "Buf<T>")) return;
      if (p === "Buf<T>") {
        const b = arg.k === "var" ? this.binding(arg.name) : undefined;
        if (!b || b.ty.k !== "buf") fail("NGP1021", arg.span, `the first argument of ${e.fn}() is a buffer`);
        if (b.ty.elem === "f16" || b.ty.elem === "Float") fail("NGP1021", arg.span, `${e.fn}() on an f16 buffer`, "accumulate into an f32 buffer");
        T = b.ty.elem;
      } else if (!(arg.k === "lit" && arg.abstract)) T = this.expr(arg);
    });
    // All T arguments are integer literals: take T from the context, else from the first
    // literal (i32, or u32 when it does not fit), else i32.
    if (!T && intr.ret === "T" && expected && intr.T?.includes(expected)) T = expected;
    const literal = intr.params.map((p, i) => (p === "T" ? e.args[i] : undefined)).find((a) => a?.k === "lit" && a.abstract);
    if (!T && literal?.k === "lit" && intr.T?.includes(literal.ty)) T = literal.ty;
    T ??= intr.T?.includes("i32") ? "i32" : intr.T?.[0];
    if (intr.T && T && !intr.T.includes(T)) fail("NGP1021", e.span, `${e.fn}() is not defined for ${T}`, `it takes ${intr.T.join(", ")}`);
    intr.params.forEach((p, i) => {
      const arg = e.args[i]!;
      if (p === "Buf<T>") return;
      if (p === "int") return this.index(arg);
      if (p === "num") return void this.settle(arg);
      this.coerce(arg, p === "T" ? T! : (p as Scalar)); // (tile specs: tile operations are checked by tileArgs)
    });
    e.T = T;
    if (intr.ret === "void") {
      if (!statement) fail("NGP1019", e.span, `${e.fn}() returns nothing`);
      return "bool";
    }
    return (e.ty = intr.ret === "T" ? T! : (intr.ret as Scalar));
  }
}

/** Can an argument of type `a` be passed for a parameter of type `b`? */
// (tiles: see FuncChecker.tile; tile lists are passed by name)
function sameRefType(a: Type, b: Type): boolean {
  if (a.k === "buf" && b.k === "buf") return a.elem === b.elem || (b.elem === "Float" && (a.elem === "f32" || a.elem === "f16" || a.elem === "Float"));
  if (a.k === "array" && b.k === "array") return a.elem === b.elem;
  if (a.k === "config" && b.k === "config") return a.cfg.name === b.cfg.name;
  return a.k === "tiles" && b.k === "tiles";
}

function describe(t: Type): string {
  switch (t.k) {
    case "buf":
      return `a Buf<${t.elem}>`;
    case "array":
      return `a local ${t.elem}[] array`;
    case "config":
      return `a Const<${t.cfg.name}>`;
    case "scalar":
      return `an ${t.s}`;
    case "tile":
      return "a Tile";
    case "tiles":
      return "a Tiles list";
    case "void":
      return "nothing";
  }
}

/** Helpers are inlined, so a `return` may only end the body (or both arms of a final if/else). */
function checkTailReturns(body: Stmt[], tail: boolean): void {
  body.forEach((s, i) => {
    const last = tail && i === body.length - 1;
    if (s.k === "return" && !last) fail("NGP1020", s.span);
    if (s.k === "if") {
      checkTailReturns(s.then, last);
      checkTailReturns(s.else, last);
    } else if (s.k === "block") checkTailReturns(s.body, last);
    else if (s.k === "for") checkTailReturns(s.body, false);
  });
}

function endsWithReturn(body: Stmt[]): boolean {
  const last = body[body.length - 1];
  if (!last) return false;
  if (last.k === "return") return true;
  if (last.k === "if") return endsWithReturn(last.then) && endsWithReturn(last.else);
  if (last.k === "block") return endsWithReturn(last.body);
  return false;
}

// Phase tile adjoint (see compile.ts): the adjoint of a block kernel (`@adjoint`, adjoint.ts), taken
// of its tile program after simplification, before the tiles phase lowers it.
//
// A block kernel's body, unrolled, is straight-line tile code: the same reverse walk applies with
// tiles for values. Each tile version is recomputed (the forward sweep, stores to outputs dropped);
// then, from the last operation back, its adjoint tile goes to its operands by the operation's
// rule (dsl/tiles.ts `grad`: a product's adjoint is a product with flipped layouts, a sum's is a
// broadcast) or, for tileMap, by an elementwise tileMap whose body is the scalar adjoint of the
// mapped helper (adjoint.ts's reverse sweep, with the elements as its inputs). The loads of a
// differentiated buffer become accumulations into its gradient: `accumulate` (summed over every
// block, like a hand-written weight gradient) for loadTile, the block's own rows added to for
// loadRows. A store to an output (storeRows, accumulate) reads the output's adjoint. The tiles
// phase (codegen/tiles.ts) then lowers the result like any block kernel, sharing storage by liveness.
import type { Shape, ShapeArgs, TileGradBuilder } from "../dsl/tiles.ts";
import { adjointName, adjointParams, freshName, kernelOutputs, Linearizer, lit, reverseSweep, v, type AdjointSpec, type Ctx } from "./adjoint.ts";
import { fail, NO_SPAN } from "./diagnostics.ts";
import { containsTiles, intrinsic, MADE, tileOpOf } from "./forms.ts";
import { childBodies, deadCodeElimination, declaredNames, exprsOf, type Expr, type Span, type SpecializedKernel, type Stmt } from "./ir.ts";

interface TileNode {
  name: string;
  shape: Shape;
  def: { k: "call"; fn: string; args: TileArg[]; span: Span } | { k: "map"; inputs: number[]; elems: string[]; body: Stmt[]; result: string; span: Span };
  active: boolean;
}
type TileArg = { tile: number } | { expr: Expr };
type TileEntry = { k: "node"; node: number } | { k: "effect"; fn: string; args: TileArg[]; span: Span } | { k: "stmt"; s: Stmt };

/** The adjoint of a specialized block kernel (before the tiles phase lowers it, as it then lowers the result). */
export function deriveTileAdjoint(k: SpecializedKernel, spec: AdjointSpec): SpecializedKernel {
  const { outputs, floatOutputs } = kernelOutputs(k, spec);
  const ctx: Ctx = { wrt: new Set(spec.wrt), outputs: new Set(floatOutputs), names: declaredNames(k.body, new Set(k.params.map((p) => p.name))), kernel: k.name };
  const tape = new TileLinearizer(k.block!.rows, ctx);
  tape.stmts(k.body);
  const params = adjointParams(k.params, spec.outputs ? new Set() : outputs, floatOutputs, spec);
  return { ...k, name: spec.name, params, body: [...tape.forward(spec.outputs ?? false), ...tape.reverse()] };
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
        if (r === 1 && node.shape[0] !== 1) g = call(MADE.tileSum, [g, ilit(0, d.span)], d.span);
        if (c === 1 && node.shape[1] !== 1) g = call(MADE.tileSum, [g, ilit(1, d.span)], d.span);
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

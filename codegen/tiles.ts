// Phase tiles (see compile.ts): lowers the tile operations of a specialized block kernel (dsl/tiles.ts) to
// local arrays, calls of the targets' tile preludes, and cooperative loops.
//
//   resolve   after unrolling, tile operations are straight-line code: each assignment of a tile
//             (or of a tile list's element, whose index is now constant) makes a new version
//   shape     every version gets its shape from its operation's rule in the intrinsic table;
//             mismatches are reported at the operation's TypeScript line
//   allocate  operations whose result is never used are dropped (a backward pass that need not
//             produce the input gradient does not compute it); versions share storage by liveness
//             (an output never shares with its inputs), so a deep network keeps a few tiles live,
//             not one per layer and operation
//   lower     a call `op(out, operands..., shape constants..., block, n)` per operation; tileMap
//             becomes a loop over the elements that the block's threads share
//
// The emitters see only arrays, calls and loops; the block launch (slots of partial sums for
// `accumulate` on the CPU) is theirs.
import type { Shape, ShapeArgs } from "../dsl/tiles.ts";
import { fail } from "./diagnostics.ts";
import { intrinsic, intrinsicOf, tileOpOf, writtenBuffers } from "./forms.ts";
import { childBodies, exprsOf, type Expr, type Span, type SpecializedKernel, type Stmt } from "./ir.ts";

interface LoweredTiles {
  body: Stmt[];
  /** Buffers written through `accumulate` (the CPU gives each slot of blocks its own partial sums). */
  accumulates: string[];
}

/** The batch size inside a block kernel's body (a parameter the emitters add). */
export const BATCH_VAR = "ngp_n";

interface Version {
  shape: Shape;
  lastUse: number;
  slot?: Slot;
  /** A tile read in place from a buffer the kernel does not write (loadTile): no storage, no copy. */
  view?: Expr;
}
interface Slot {
  name: string;
  size: number;
}
/** A lowered operation: its output and input versions, and how to write it once slots are known. */
interface Op {
  out: number | undefined;
  ins: number[];
  /** Without side effects: dropped when its result is unused. */
  pure: boolean;
  at: Stmt & { k: "block" };
  build: (slot: (v: number) => Expr) => Stmt[];
  /** A tile operation call: its name, operands and shape constants (for fusing, see `fuse`). */
  call?: { fn: string; operands: { tile?: number; expr: Expr }[]; extra: Expr[]; span: Span };
}

const isTileOp = (e: Expr): boolean => tileOpOf(e) !== undefined;
const lit = (v: number | boolean, span: Span): Expr => ({ k: "lit", v, ty: typeof v === "boolean" ? "bool" : "i32", span });
const v32 = (name: string, span: Span): Expr => ({ k: "var", name, ty: "i32", span });

/** `checked`: bounds-checked mode. */
export function lowerTiles(k: SpecializedKernel, checked = false): SpecializedKernel {
  if (k.block === undefined) {
    const first = firstTileStmt(k.body);
    if (first) fail("NGP1040", first.span, `'${k.name}' is not a block kernel`);
    return k;
  }
  const { body, accumulates } = new Lowerer(k, k.block.rows, checked).run();
  return { ...k, block: { ...k.block, accumulates }, body };
}

function firstTileStmt(body: Stmt[]): Stmt | undefined {
  for (const s of body) {
    if (s.k === "tilemap" || (s.k === "let" && s.tile) || [...exprsOf(s)].some(isTileOp)) return s;
    for (const b of childBodies(s)) {
      const inner = firstTileStmt(b);
      if (inner) return inner;
    }
  }
  return undefined;
}

class Lowerer {
  private readonly versions: Version[] = [];
  private readonly ops: Op[] = [];
  /** Lexical scopes: tile name -> version; a tile list's elements are `name[index]`. */
  private readonly scopes: Map<string, number | "list">[] = [new Map()];
  private readonly accumulates = new Map<string, number>();
  /** Buffers the kernel writes (through tile operations: the only way a block kernel may). */
  private readonly written: Map<string, Span>;
  /** Buffer parameter names. */
  private readonly buffers: Set<string>;
  constructor(
    private readonly k: SpecializedKernel,
    /** Rows per block. */
    private readonly rows: number,
    /** Bounds-checked mode: loadTile copies (its range is checked) instead of reading in place. */
    private readonly checked: boolean,
  ) {
    this.written = writtenBuffers(k.body, true);
    this.buffers = new Set(k.params.filter((p) => p.ty.k === "buf").map((p) => p.name));
  }

  run(): LoweredTiles {
    const body = this.body(this.k.body, true);
    this.checkBufferUse();
    const slots = this.allocate();
    for (const op of this.ops) op.at.body = op.build((v) => this.versions[v]!.view ?? v32(this.versions[v]!.slot!.name, this.k.span));
    const decls: Stmt[] = slots.map((s) => ({ k: "array", name: s.name, elem: "f32", size: lit(s.size, this.k.span), tile: true, span: this.k.span }));
    return { body: [...decls, ...body], accumulates: [...this.accumulates.keys()] };
  }

  private body(stmts: Stmt[], straight: boolean): Stmt[] {
    this.scopes.push(new Map());
    const out = stmts.flatMap((s) => this.stmt(s, straight));
    this.scopes.pop();
    return out;
  }

  private stmt(s: Stmt, straight: boolean): Stmt[] {
    const tileStmt = s.k === "tilemap" || (s.k === "let" && s.tile) || [...exprsOf(s)].some(isTileOp) || (s.k === "assign" && this.isTileTarget(s.target));
    if (tileStmt && !straight) fail("NGP1042", s.span, undefined);
    switch (s.k) {
      case "let":
        if (s.tile === "tiles") return (this.scopes.at(-1)!.set(s.name, "list"), []);
        if (s.tile) return (this.scopes.at(-1)!.set(s.name, this.value(s.init)), this.flush());
        return [s];
      case "assign":
        if (!this.isTileTarget(s.target)) return [s];
        return (this.bind(s.target, this.value(s.value), false), this.flush());
      case "expr":
        if (!isTileOp(s.e)) return [s];
        this.call(s.e as Extract<Expr, { k: "call" }>);
        return this.flush();
      case "tilemap":
        return (this.bind(s.target, this.map(s), s.declare), this.flush());
      case "block":
        return [{ ...s, body: this.body(s.body, straight) }];
      case "if":
        return [{ ...s, then: this.body(s.then, false), else: this.body(s.else, false) }];
      case "for":
        return [{ ...s, body: this.body(s.body, false) }];
      default:
        return [s];
    }
  }

  /** The placeholders of the operations lowered since the last statement. */
  private pending: Stmt[] = [];
  private flush(): Stmt[] {
    const out = this.pending;
    this.pending = [];
    return out;
  }

  private isTileTarget(e: Expr): boolean {
    const name = e.k === "var" ? e.name : e.k === "index" && e.base.k === "var" ? e.base.name : undefined;
    return name !== undefined && this.lookup(name) !== undefined;
  }

  private lookup(name: string): number | "list" | undefined {
    return this.scopes.findLast((m) => m.has(name))?.get(name);
  }

  /** The key a tile reference binds: a name, or `list[index]` with a constant index. */
  private key(e: Expr): string {
    if (e.k === "var") return e.name;
    if (e.k === "index" && e.base.k === "var") {
      if (e.index.k !== "lit") fail("NGP1043", e.index.span, "a tile list's index must be a compile-time constant", "index it with the variable of a loop over constant bounds (it unrolls)");
      return `${e.base.name}[${e.index.v}]`;
    }
    return fail("NGP1044", e.span, "not a tile");
  }

  private bind(target: Expr, version: number, declare: boolean): void {
    const key = this.key(target);
    if (declare || target.k === "index") {
      // A list element binds in the list's scope; a declaration in the innermost one.
      const scope = declare ? this.scopes.at(-1)! : this.scopes.findLast((m) => m.has((target as { base: { name: string } }).base.name))!;
      scope.set(key, version);
      return;
    }
    this.scopes.findLast((m) => m.has(key))!.set(key, version);
  }

  /** The version a tile-valued expression evaluates to (lowering it if it is an operation). */
  private value(e: Expr): number {
    if (isTileOp(e)) return this.call(e as Extract<Expr, { k: "call" }>)!;
    const key = this.key(e);
    const base = e.k === "index" && e.base.k === "var" ? e.base.name : key;
    const found = e.k === "index" ? this.scopes.findLast((m) => m.has(base))?.get(key) : this.lookup(key);
    if (found === undefined || found === "list") fail("NGP1043", e.span, `tile '${key}' is used before it is assigned`);
    return found;
  }

  private define(shape: Shape): number {
    this.versions.push({ shape, lastUse: -1 });
    return this.versions.length - 1;
  }

  private placeholder(span: Span): Stmt & { k: "block" } {
    const at: Stmt & { k: "block" } = { k: "block", body: [], span };
    this.pending.push(at);
    return at;
  }

  /** Lower one tile operation call; returns its output version (undefined for stores). */
  private call(e: Extract<Expr, { k: "call" }>): number | undefined {
    const intr = intrinsic(e.fn)!;
    const op = intr.tile!;
    if (op.form) fail("NGP1044", e.span, `${e.fn}() must initialize a tile (const t = ${e.fn}(...))`);
    // Operands first (nested operations are lowered before this one), then the shape.
    const operands: { tile?: number; expr: Expr }[] = e.args.map((a) => (isTileOp(a) || this.isTileRef(a) ? { tile: this.value(a), expr: a } : { expr: a }));
    const args: ShapeArgs = {
      tiles: operands.map((o) => (o.tile !== undefined ? this.versions[o.tile]!.shape : undefined)),
      consts: e.args.map((a) => (a.k === "lit" && typeof a.v === "number" ? a.v : undefined)),
      rows: this.rows,
    };
    for (const i of op.constArgs ?? [])
      if (args.consts[i] === undefined) fail("NGP1011", e.args[i]!.span, `argument ${i + 1} of ${e.fn}() sets a shape or axis`);
    const shape = op.shape(args);
    if (typeof shape === "string") fail("NGP1041", e.span, shape);
    const ins = operands.flatMap((o) => (o.tile !== undefined ? [o.tile] : []));
    if (op.accumulates) {
      const buf = e.args[intr.writes! - 1]!; // `writes` counts the output tile, which the source call lacks
      if (buf.k === "var") this.accumulates.set(buf.name, (this.accumulates.get(buf.name) ?? 0) + 1);
    }
    const out = intr.ret === "Tile" ? this.define(shape) : undefined;
    const [buf, offset] = e.args;
    if (op.view && buf?.k === "var" && !this.written.has(buf.name) && !this.checked) {
      // A read-only matrix needs no copy: its consumers read the buffer (on CUDA: global memory,
      // cached, instead of shared memory that large weight matrices would not fit).
      this.versions[out!]!.view = { k: "call", fn: op.view, kind: "intrinsic", args: [buf, offset!], span: e.span };
      return out;
    }
    const extra = op.extra(args, shape).map((x) => lit(x, e.span));
    const at = this.placeholder(e.span);
    this.ops.push({
      out, ins, at, pure: intr.pure, call: { fn: e.fn, operands, extra, span: e.span },
      build: (slot) => {
        const outArg = out === undefined ? lit(0, e.span) : slot(out);
        const opArgs = operands.map((o) => (o.tile !== undefined ? slot(o.tile) : o.expr));
        const call: Expr = { k: "call", fn: e.fn, kind: "intrinsic", args: [outArg, ...opArgs, ...extra, v32(this.k.index.name, e.span), v32(BATCH_VAR, e.span)], span: e.span };
        return [{ k: "expr", e: call, span: e.span }];
      },
    });
    return out;
  }

  private isTileRef(e: Expr): boolean {
    return (e.k === "var" || (e.k === "index" && e.base.k === "var")) && this.isTileTarget(e);
  }

  /** tileMap: a loop over the output's elements, each input read at its (broadcast) position. */
  private map(s: Extract<Stmt, { k: "tilemap" }>): number {
    const ins = s.inputs.map((e) => this.value(e));
    const shapes = ins.map((v) => this.versions[v]!.shape);
    if (shapes.length === 0) fail("NGP1021", s.span, "tileMap needs at least one tile argument");
    const out: Shape = [Math.max(...shapes.map((x) => x[0])), Math.max(...shapes.map((x) => x[1]))];
    shapes.forEach((x, i) => {
      if ((x[0] !== out[0] && x[0] !== 1) || (x[1] !== out[1] && x[1] !== 1))
        fail("NGP1041", s.inputs[i]!.span, `tileMap argument of shape ${x[0]}×${x[1]} does not match ${out[0]}×${out[1]} (nor broadcasts: 1×${out[1]} or ${out[0]}×1)`);
    });
    const version = this.define(out);
    const at = this.placeholder(s.span);
    const e = v32("ngp_e", s.span);
    const C = out[1];
    const position = ([r, c]: Shape): Expr => {
      const bin = (op: "/" | "%"): Expr => ({ k: "bin", op, a: e, b: lit(C, s.span), ty: "i32", span: s.span });
      if (r === out[0] && c === C) return e;
      if (r === 1 && c === 1) return lit(0, s.span);
      return r === 1 ? bin("%") : bin("/");
    };
    this.ops.push({
      out: version, ins, at, pure: true,
      build: (slot) => {
        const reads: Stmt[] = s.elems.map((name, i) => ({
          k: "let", name, mutable: false, ty: "f32", span: s.span,
          init: { k: "index", base: slot(ins[i]!), index: position(shapes[i]!), ty: "f32", span: s.span },
        }));
        const write: Stmt = {
          k: "assign", op: "=", span: s.span,
          target: { k: "index", base: slot(version), index: e, ty: "f32", span: s.span },
          value: { k: "var", name: s.result, ty: "f32", span: s.span },
        };
        return [{
          k: "for", v: "ngp_e", vty: "i32", start: lit(0, s.span), cmp: "<", end: lit(out[0] * C, s.span), step: lit(1, s.span),
          body: [...reads, ...s.body, write], coop: true, span: s.span,
        }];
      },
    });
    return version;
  }

  /**
   * Drops operations whose results are never used (backwards, so that what only they used goes
   * too), then gives each version the first free slot that fits, never one of its op's inputs.
   */
  private allocate(): Slot[] {
    this.fuse();
    const needed = new Set<number>();
    const alive = this.ops.map(() => false);
    for (let i = this.ops.length - 1; i >= 0; i--) {
      const op = this.ops[i]!;
      alive[i] = !op.pure || (op.out !== undefined && needed.has(op.out));
      if (alive[i]) op.ins.forEach((v) => needed.add(v));
    }
    this.ops.forEach((op, i) => alive[i] && op.ins.forEach((v) => (this.versions[v]!.lastUse = i)));
    const slots: Slot[] = [];
    const free: Slot[] = [];
    const release = (v: Version) => v.slot && free.push(v.slot);
    this.ops.forEach((op, i) => {
      if (!alive[i]) return void (op.build = () => []);
      if (op.out !== undefined && !this.versions[op.out]!.view) {
        const v = this.versions[op.out]!;
        const size = v.shape[0] * v.shape[1];
        free.sort((a, b) => a.size - b.size);
        const at = free.findIndex((s) => s.size >= size);
        v.slot = at >= 0 ? free.splice(at, 1)[0]! : { name: `ngp_tile${slots.length}`, size };
        if (at < 0) slots.push(v.slot);
      }
      for (const input of new Set(op.ins)) if (this.versions[input]!.lastUse === i) release(this.versions[input]!);
      if (op.out !== undefined && this.versions[op.out]!.lastUse < i + 1) release(this.versions[op.out]!);
    });
    return slots;
  }

  /**
   * `accumulate(buf, offset, matmul*(a, b))` where nothing else reads the product: one operation
   * that adds each element of the product as it is computed (accumulateMatmul), so the product
   * needs no tile (a weight gradient is fanIn × fanOut floats, 64 KiB at width 128: more shared
   * memory than a CUDA block has). The CPU and JS add the same values in the same order.
   */
  private fuse(): void {
    const uses = new Map<number, number>();
    for (const op of this.ops) for (const v of op.ins) uses.set(v, (uses.get(v) ?? 0) + 1);
    const producer = new Map<number, Op>();
    for (const op of this.ops) if (op.out !== undefined) producer.set(op.out, op);
    for (const op of this.ops) {
      const fused = op.call ? intrinsic(op.call.fn)!.tile!.fusedProduct : undefined;
      if (!op.call || !fused || op.ins.length !== 1) continue;
      const v = op.ins[0]!;
      const mm = producer.get(v);
      if (!mm?.call || !intrinsic(mm.call.fn)!.tile!.product || uses.get(v) !== 1 || this.versions[v]!.view) continue;
      const [buf, offset] = op.call.operands.map((o) => o.expr);
      const { operands, extra, span } = mm.call;
      op.ins = [...mm.ins];
      op.call = undefined;
      op.build = (slot) => {
        const args = [lit(0, span), buf!, offset!, ...operands.map((o) => (o.tile !== undefined ? slot(o.tile) : o.expr)), ...extra, v32(this.k.index.name, span), v32(BATCH_VAR, span)];
        return [{ k: "expr", e: { k: "call", fn: fused, kind: "intrinsic", args, span }, span }];
      };
      mm.pure = true; // its product is now unread: dropped
      uses.set(v, 0);
    }
  }

  /**
   * A buffer that blocks accumulate into is replaced by per-slot partial sums on the CPU, so the
   * kernel may do nothing else with it; and only tile operations write buffers (on CUDA every
   * thread of a block runs the scalar statements).
   */
  private checkBufferUse(): void {
    const mentions = new Map<string, number>();
    for (const s of this.k.body) {
      for (const e of exprsOf(s)) {
        if (e.k === "var" && this.buffers.has(e.name)) mentions.set(e.name, (mentions.get(e.name) ?? 0) + 1);
        if (e.k === "call" && intrinsicOf(e)?.writes !== undefined && !isTileOp(e))
          fail("NGP1046", e.span, `${e.fn}() in a block kernel`);
      }
      for (const t of assignTargets(s))
        if (t.k === "index" && t.base.k === "var" && this.buffers.has(t.base.name))
          fail("NGP1046", t.span, `'${t.base.name}' is written element by element in a block kernel`);
    }
    for (const [name, calls] of this.accumulates)
      if (mentions.get(name)! > calls) fail("NGP1045", this.k.span, `'${name}' is accumulated into and also used otherwise`);
  }
}

function assignTargets(s: Stmt): Expr[] {
  return [...(s.k === "assign" ? [s.target] : []), ...childBodies(s).flat().flatMap(assignTargets)];
}

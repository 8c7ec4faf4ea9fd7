// Phase simplify (see compile.ts): to a fixed point over a specialized kernel, constants folded (fold.ts) and
// propagated, branches on constants removed, and loops with constant bounds unrolled (up to
// `maxUnroll` iterations; each iteration a block marked `unrolled`, which the CPU schedule splits
// on). After it, a kernel over Const fields is straight-line code.
import { fail } from "./diagnostics.ts";
import { fold, normalize } from "./fold.ts";
import { containsTiles } from "./forms.ts";
import { childBodies, mapExpr, type Expr, type SpecializedKernel, type Stmt } from "./ir.ts";

const MAX_STATEMENTS = 200_000;

export function simplify(k: SpecializedKernel, maxUnroll: number): SpecializedKernel {
  return { ...k, body: new Simplifier(maxUnroll).run(k.body) };
}

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
    const limit = containsTiles(s.body) ? Math.max(this.maxUnroll, 64) : this.maxUnroll;
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

// Phase tidy (see compile.ts): makes the specialized code read like code a person would write.
// Inlining and unrolling leave `let r = 0; { r = e; }`, `x + 0u`, `const w = w_3`; none of it
// changes what the code computes, but generated code is reviewed (generated/ snapshots), so we
// clean it:
//   - exact algebraic identities (integer x + 0, x * 1, x | 0, ...; f32 x * 1.0),
//   - blocks are spliced into their parent unless a name they declare is also declared or read
//     by the rest of the parent (unrolled iterations are kept),
//   - `let r = <literal>;` directly followed by `r = e;` becomes `let r = e;`,
//   - a `let` that is never assigned again becomes `const`,
//   - `const a = b;` with b a literal or a variable never assigned is removed and b read for a
//     (unless b is shadowed).
import { assignedNames, childBodies, declaredNames, exprsOf, mapBody, mapExpr, mapStmtExprs, type Expr, type SpecializedKernel, type Stmt } from "./ir.ts";

export function tidy(k: SpecializedKernel): SpecializedKernel {
  return { ...k, body: tidyBody(k.body, [k.index.name, ...k.params.map((p) => p.name)]) };
}

function tidyBody(body: Stmt[], params: string[]): Stmt[] {
  let out = mapBody(body, (s) => mapStmtExprs(s, identities));
  out = flatten(out, true);
  out = forwardInits(out);
  const assigned = assignedNames(out);
  out = constify(out, assigned);
  out = propagateCopies(out, new Set([...params, ...declaredNames(out)].filter((n) => !assigned.has(n))), assigned);
  return mapBody(out, (s) => mapStmtExprs(s, identities)); // propagation exposes more (15.0 * 1.0)
}


const isLit = (e: Expr, v: number) => e.k === "lit" && e.v === v;

/** Identities that hold bit for bit: integer x+0, x-0, x*1, x|0, x^0, x<<0, x>>0; f32 x*1.0. */
function identities(e: Expr): Expr {
  return mapExpr(e, (x) => {
    if (x.k !== "bin") return x;
    const int = x.ty === "i32" || x.ty === "u32";
    if (int && ["+", "|", "^"].includes(x.op) && isLit(x.a, 0)) return x.b;
    if (int && ["+", "-", "|", "^", "<<", ">>", ">>>"].includes(x.op) && isLit(x.b, 0)) return x.a;
    if ((int || x.ty === "f32") && x.op === "*" && isLit(x.b, 1)) return x.a;
    if ((int || x.ty === "f32") && x.op === "*" && isLit(x.a, 1)) return x.b;
    return x;
  });
}

const declares = (s: Stmt) => s.k === "let" || s.k === "array";

/** Splice blocks that declare nothing into their parent; keep top-level unrolled iterations (passes). */
function flatten(body: Stmt[], top = false): Stmt[] {
  return body.flatMap((s, k): Stmt[] => {
    switch (s.k) {
      case "if":
        return [{ ...s, then: flatten(s.then), else: flatten(s.else) }];
      case "for":
        return [{ ...s, body: flatten(s.body) }];
      case "block": {
        const inner = flatten(s.body);
        // Unrolled iterations (passes), and the marks of declared derivatives (for the adjoint), stay.
        if ((top && s.unrolled) || s.custom || s.derivative) return [{ ...s, body: inner }];
        // A block that declares names the rest of its parent neither declares nor reads (an
        // inlined helper's or a folded if's) is spliced in too: nothing can tell the difference.
        const names = inner.flatMap((t) => (t.k === "let" || t.k === "array" ? [t.name] : []));
        const clash = names.some((n) => body.some((t, j) => j !== k && (mentions(t, n) || declaresName(t, n))));
        return clash ? [{ ...s, body: inner }] : inner;
      }
      default:
        return [s];
    }
  });
}

/**
 * `let r = <literal>; ...; r = e;` -> `...; let r = e;` when the statements in between do not
 * mention r and e does not read it: the declaration moves down to its first real value (also for
 * `r *= e` after `r = 1` and the like, see isIdentityFor).
 */
function forwardInits(body: Stmt[]): Stmt[] {
  const out = body.map((s) => recurse(s, forwardInits));
  for (let k = 0; k < out.length; k++) {
    const s = out[k]!;
    if (s.k !== "let" || s.init.k !== "lit") continue;
    const j = out.findIndex((t, idx) => idx > k && mentions(t, s.name));
    const t = out[j];
    if (t?.k === "assign" && t.target.k === "var" && t.target.name === s.name && !reads(t.value, s.name) && isIdentityFor(t.op, s.init)) {
      out[j] = { ...s, init: t.value, span: t.span };
      out.splice(k--, 1);
    }
  }
  return out;
}

/**
 * `r = e`, or `r op= e` where r's initial literal is op's identity bit for bit: 1 for `*=`
 * (f32 too: 1.0 * e is e, even for -0 and NaN), 0 for integer `+= |= ^=` (not f32: 0.0 + -0.0 is +0).
 */
function isIdentityFor(op: string, init: Expr): boolean {
  if (op === "=") return true;
  if (init.k !== "lit") return false;
  if (op === "*=") return init.v === 1;
  return ["+=", "|=", "^="].includes(op) && init.v === 0 && (init.ty === "i32" || init.ty === "u32");
}

function mentions(s: Stmt, name: string): boolean {
  return [...exprsOf(s)].some((e) => e.k === "var" && e.name === name);
}

function recurse(s: Stmt, f: (b: Stmt[]) => Stmt[]): Stmt {
  switch (s.k) {
    case "if":
      return { ...s, then: f(s.then), else: f(s.else) };
    case "for":
    case "block":
      return { ...s, body: f(s.body) };
    default:
      return s;
  }
}

function reads(e: Expr, name: string): boolean {
  let found = false;
  mapExpr(e, (x) => ((found ||= x.k === "var" && x.name === name), x));
  return found;
}

function constify(body: Stmt[], assigned: Set<string>): Stmt[] {
  return mapBody(body, (s) => (s.k === "let" && s.mutable && !assigned.has(s.name) ? { ...s, mutable: false } : s));
}

/**
 * Remove `const a = b;` (b a variable never assigned) and read b for a in the rest of the scope,
 * unless some later statement of that scope declares another b (or a again).
 */
function propagateCopies(body: Stmt[], immutable: Set<string>, everAssigned: Set<string>): Stmt[] {
  const out: Stmt[] = [];
  let renames = new Map<string, Expr>();
  const apply = (e: Expr) => mapExpr(e, (x) => (x.k === "var" && renames.has(x.name) ? { ...renames.get(x.name)!, span: x.span } : x));
  for (let k = 0; k < body.length; k++) {
    const s = mapStmtExprs(body[k]!, apply);
    const copy = s.k === "let" && !s.mutable && (s.init.k === "lit" || (s.init.k === "var" && immutable.has(s.init.name)));
    if (copy && s.k === "let" && !everAssigned.has(s.name)) {
      const rest = body.slice(k + 1);
      const source = s.init.k === "var" ? s.init.name : "";
      if (!rest.some((r) => declaresName(r, source) || declaresName(r, s.name))) {
        renames = new Map(renames).set(s.name, s.init);
        continue;
      }
    }
    out.push(recurse(s, (b) => propagateCopies(mapBody(b, (t) => mapStmtExprs(t, apply)), immutable, everAssigned)));
  }
  return out;
}

function declaresName(s: Stmt, name: string): boolean {
  if ((s.k === "let" || s.k === "array") && s.name === name) return true;
  if (s.k === "for" && s.v === name) return true;
  return childBodies(s).some((b) => b.some((t) => declaresName(t, name)));
}

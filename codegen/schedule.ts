// Phase 5, schedule (CPU only): a kernel marked `@schedule split|owner` whose specialized body is
// constant declarations followed by one unrolled loop is cut into passes, one per iteration, each
// with its own copy of the declarations. The CPU emitter runs the passes level-major (split) or
// one pass per thread (owner); CUDA and JS run the unsplit body. The passes are the body's own
// statements, so what runs on the CPU is what nvcc compiles, grouped differently.
import { fail } from "./diagnostics.ts";
import { addedElement, intrinsicOf, MADE } from "./forms.ts";
import { childBodies, exprsOf, mapExpr, type Expr, type Stmt } from "./ir.ts";
import type { SpecializedKernel } from "./specialize.ts";

export interface Passes {
  /** Declarations every pass starts with (pure `const`s and local arrays). */
  prologue: Stmt[];
  /** One statement list per iteration of the split loop. */
  passes: Stmt[][];
}

export function splitPasses(k: SpecializedKernel): Passes {
  const body = k.body;
  const first = body.findIndex((s) => s.k === "block" && s.unrolled);
  const at = body[first]?.span ?? k.span;
  if (first < 0) fail("NGP1034", k.span, `'${k.name}' has no loop with constant bounds at its top level`);
  const loop = (body[first] as Extract<Stmt, { k: "block" }>).unrolled!.loop;
  let end = first;
  while (end < body.length && body[end]!.k === "block" && (body[end] as Extract<Stmt, { k: "block" }>).unrolled?.loop === loop) end++;
  if (end < body.length) fail("NGP1034", body[end]!.span, "statements after the loop that is split");
  const prologue = body.slice(0, first);
  const passes = body.slice(first, end).map((b) => (b as Extract<Stmt, { k: "block" }>).body);
  for (const s of prologue) {
    const pure = s.k === "array" || (s.k === "let" && !s.mutable && ![...exprsOf(s)].some((e) => intrinsicOf(e)?.writes !== undefined));
    if (!pure) fail("NGP1034", s.span, "before the split loop only constant declarations may appear (they are repeated in every pass)");
  }
  // A pass may not assign what the prologue declares: each pass has its own copy.
  const declared = new Set(prologue.map((s) => (s.k === "let" || s.k === "array" ? s.name : "")));
  const visit = (b: Stmt[]) => b.forEach((s) => {
    if (s.k === "assign" && s.target.k === "var" && declared.has(s.target.name)) fail("NGP1034", s.span, `a pass assigns '${s.target.name}', declared before the split loop`);
    if (s.k === "assign" && s.target.k === "index" && s.target.base.k === "var" && declared.has(s.target.base.name)) fail("NGP1034", s.span, `a pass writes the local array '${s.target.base.name}', declared before the split loop`);
    childBodies(s).forEach(visit);
  });
  passes.forEach(visit);
  return { prologue, passes };
}

/** `@schedule lanes`: the specialized body must run in lane form (no loop or branch is left; see c_base.ts lanesSupported). */
export function checkLanesBody(k: SpecializedKernel): void {
  const bad = (body: Stmt[]): Stmt | undefined => {
    for (const s of body) {
      if (s.k === "block") {
        const inner = bad(s.body);
        if (inner) return inner;
      } else if (s.k !== "let" && s.k !== "array" && s.k !== "assign" && s.k !== "expr") return s;
    }
    return undefined;
  };
  const s = bad(k.body);
  if (s) fail("NGP1034", s.span, `'${k.name}' has @schedule lanes, but this ${s.k === "if" ? "branch" : s.k === "for" ? "loop" : "statement"} remains after specialization`, "write the branch as select(...), give the loop constant bounds, or remove @schedule lanes");
}

/**
 * The prefetch variant of a pass (lane form, straight-line): the statements that compute the
 * addresses of its data-dependent accesses (gathers such as a table read at a hashed index, and
 * scatters such as a gradient added at one), ending in a prefetch of each, with everything else
 * removed. Run a few groups ahead of the pass
 * itself, it brings the table lines into cache before they are needed. Undefined if the pass
 * has no data-dependent access.
 */
export function prefetchVariant(stmts: Stmt[], buffers: Set<string>): Stmt[] | undefined {
  let sites = 0;
  const dependent = new Set<string>(); // names whose value depends on a buffer's contents
  const definitions = new Map<string, Expr>(); // the initializer of each `let` seen so far
  const withPrefetches = (body: Stmt[]): Stmt[] => {
    const seen = new Set<string>();
    return body.flatMap((s): Stmt[] => {
      if (s.k === "block") return [{ ...s, body: withPrefetches(s.body) }];
      const out: Stmt[] = [];
      for (const [base, index] of accesses(s)) {
        if (base.k !== "var" || !buffers.has(base.name) || !refs(index).some((n) => dependent.has(n))) continue;
        if (smallTable(index, definitions)) continue;
        // One prefetch per cache line: params[b] and params[b + 1u] share one.
        const key = base.name + JSON.stringify(stripOffset(index), (k, v) => (k === "span" || k === "ty" ? undefined : v));
        if (seen.has(key)) continue;
        seen.add(key);
        sites++;
        out.push({ k: "expr", e: { k: "call", fn: MADE.prefetch, kind: "intrinsic", args: [base, index], span: index.span }, span: s.span });
      }
      if (s.k === "let") definitions.set(s.name, s.init);
      if ((s.k === "let" || s.k === "assign") && [...exprsOf(s)].some((e) => (e.k === "index" && e.base.k === "var" && buffers.has(e.base.name)) || (e.k === "var" && dependent.has(e.name)))) {
        dependent.add(s.k === "let" ? s.name : rootName(s.target));
      }
      const writesBuffer = s.k === "assign" && s.target.k === "index" && s.target.base.k === "var" && buffers.has(s.target.base.name);
      const adds = s.k === "expr" && addedElement(s.e) !== undefined;
      return writesBuffer || adds ? out : [...out, s];
    });
  };
  const body = deadCodeElimination(withPrefetches(stmts), new Set());
  return sites ? body : undefined;
}

/** Below this many entries a table stays in L2 cache: prefetching it only costs instructions. */
const PREFETCH_MIN_ENTRIES = 1 << 16;

/**
 * The index (through the `let`s it reads) is reduced modulo a constant smaller than
 * PREFETCH_MIN_ENTRIES: it addresses a small table.
 */
function smallTable(index: Expr, definitions: Map<string, Expr>, depth = 0): boolean {
  let small = false;
  mapExpr(index, (x) => {
    small ||= x.k === "bin" && x.op === "%" && x.b.k === "lit" && (x.b.v as number) < PREFETCH_MIN_ENTRIES;
    if (x.k === "var" && definitions.has(x.name) && depth < 8) small ||= smallTable(definitions.get(x.name)!, definitions, depth + 1);
    return x;
  });
  return small;
}

/**
 * The buffer elements a statement touches, as [buffer, index]: its reads (gathers), the element
 * it assigns and the element an intrinsic adds to (atomicAdd: scatters, the read-modify-write
 * waits on the line as a gather does).
 */
function accesses(s: Stmt): [Expr, Expr][] {
  const out: [Expr, Expr][] = [];
  for (const e of exprsOf(s)) {
    if (e.k === "index") out.push([e.base, e.index]);
    const added = addedElement(e);
    if (added) out.push([added.buf, added.index]);
  }
  if (s.k === "assign" && s.target.k === "index") out.push([s.target.base, s.target.index]);
  return out;
}

function stripOffset(e: Expr): Expr {
  return e.k === "bin" && e.op === "+" && e.b.k === "lit" ? e.a : e;
}

function rootName(target: Expr): string {
  return target.k === "index" ? rootName(target.base) : target.k === "var" ? target.name : "";
}

function refs(e: Expr): string[] {
  const out: string[] = [];
  mapExpr(e, (x) => (x.k === "var" && out.push(x.name), x));
  return out;
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

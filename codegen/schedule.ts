// Phase schedule (see compile.ts; CPU only): a kernel marked `@schedule split|owner` whose
// specialized body is constant declarations followed by one unrolled loop is cut into passes, one
// per iteration, each with its own copy of the declarations; each pass runs in lane form (groups of
// points per call, vectorized) where it can and gains, and gets a prefetch variant. The CPU emitter
// runs the passes level-major (split) or one pass per thread (owner); CUDA and JS run the unsplit
// body. The passes are the body's own statements, so what runs on the CPU is what nvcc compiles,
// grouped differently. A kernel marked `@schedule lanes` is checked to be straight-line.
import { fail } from "./diagnostics.ts";
import { addedElement, intrinsicOf, MADE, writtenBuffers } from "./forms.ts";
import { childBodies, deadCodeElimination, exprsOf, mapExpr, namesIn, rootName, type Expr, type SpecializedKernel, type Stmt } from "./ir.ts";

/** Passes longer than this (statements) do not run in lane form. */
const MAX_LANE_STATEMENTS = 400;

export function schedule(k: SpecializedKernel): SpecializedKernel {
  if (k.block || !k.schedule) return k;
  if (k.schedule === "lanes") {
    const s = nonLaneStatement(k.body);
    if (s) fail("NGP1034", s.span, `'${k.name}' has @schedule lanes, but this ${s.k === "if" ? "branch" : s.k === "for" ? "loop" : "statement"} remains after specialization`, "write the branch as select(...), give the loop constant bounds, or remove @schedule lanes");
    return k;
  }
  const { prologue, passes } = splitPasses(k);
  const owner = k.schedule === "owner";
  const buffers = new Set(k.params.filter((p) => p.ty.k === "buf").map((p) => p.name));
  const elemBytes = new Map(k.params.flatMap((p) => (p.ty.k === "buf" ? [[p.name, p.ty.elem === "f16" ? 2 : 4] as const] : [])));
  const scheduled = passes.map((p) => {
    const stmts = [...prologue, ...p];
    // A very long pass (learned probing with many slots, say) runs one point at a time: its lane
    // form would multiply a large body by 16 lanes, and GCC's time and memory with it.
    const lanes = nonLaneStatement(stmts) === undefined && statementCount(stmts) <= MAX_LANE_STATEMENTS && !gathersAndScatters(stmts, buffers);
    // One point at a time, only a pass that walks every point on one thread (owner) prefetches.
    return { stmts, lanes, prefetch: lanes || owner ? prefetchVariant(stmts, buffers, owner ? { index: k.index.name, elemBytes } : undefined) : undefined };
  });
  return { ...k, passes: scheduled };
}

/**
 * The first statement that keeps `stmts` from lane form, which needs straight-line code (no if,
 * for, return, break or continue): every per-thread value becomes an array over consecutive
 * threads and every statement a loop over these lanes, which the C++ compiler vectorizes.
 */
function nonLaneStatement(stmts: Stmt[]): Stmt | undefined {
  for (const s of stmts) {
    if (s.k === "block") {
      const inner = nonLaneStatement(s.body);
      if (inner) return inner;
    } else if (s.k !== "let" && s.k !== "array" && s.k !== "assign" && s.k !== "expr") return s;
  }
  return undefined;
}

function statementCount(stmts: Stmt[]): number {
  return stmts.reduce((n, s) => n + 1 + (s.k === "block" ? statementCount(s.body) : 0), 0);
}

/**
 * Whether a pass both gathers (reads a buffer at an index computed from buffer contents, such as
 * a table entry at a hashed vertex) and scatters (adds or writes at such an index). Its lane form
 * would lose: the C++ compiler emulates each gathered element with a scalar load and an insert
 * (GCC emits no AVX-512 gathers for these machines), the scatters run lane by lane from the lane
 * arrays, and the moves between the two cost more than the vectorized arithmetic saves. Learned
 * probing's backward (per corner N_p feature rows read and N_p slot gradients added) runs 1.7x
 * faster one point at a time (N_p = 4, 2D and 3D); forwards (gathers only) and plain backwards
 * (scatters only) run faster in lane form.
 */
function gathersAndScatters(stmts: Stmt[], buffers: Set<string>): boolean {
  const dependent = new Set<string>(); // names whose value depends on a buffer's contents
  const isBuffer = (e: Expr) => e.k === "var" && buffers.has(e.name);
  const dependsOnData = (e: Expr) => {
    let found = false;
    mapExpr(e, (x) => ((found ||= (x.k === "var" && dependent.has(x.name)) || (x.k === "index" && isBuffer(x.base))), x));
    return found;
  };
  let gathers = false;
  let scatters = false;
  const visit = (body: Stmt[]) => {
    for (const s of body) {
      if (s.k === "block") {
        visit(s.body);
        continue;
      }
      for (const e of exprsOf(s)) {
        if (e.k === "index" && isBuffer(e.base) && dependsOnData(e.index)) gathers = true;
        const added = addedElement(e);
        if (added && dependsOnData(added.index)) scatters = true;
      }
      if (s.k === "let" && dependsOnData(s.init)) dependent.add(s.name);
      if (s.k === "assign") {
        const t = s.target;
        const root = t.k === "var" ? t.name : t.k === "index" && t.base.k === "var" ? t.base.name : undefined;
        if (t.k === "index" && isBuffer(t.base) && dependsOnData(t.index)) scatters = true;
        else if (root !== undefined && (dependsOnData(s.value) || (t.k === "index" && dependsOnData(t.index)))) dependent.add(root);
      }
    }
  };
  visit(stmts);
  return gathers && scatters;
}


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

/**
 * The prefetch variant of a pass (lane form, straight-line): the statements that compute the
 * addresses of its data-dependent accesses (gathers such as a table read at a hashed index, and
 * scatters such as a gradient added at one) and, with `rows` (a pass of the owner schedule, which
 * walks every point on one thread), of its row accesses: an element of each point's row of a
 * buffer, rows a cache line or more apart (a level's slice of the output gradient). Each ends in
 * a prefetch, everything else is removed. Run a few groups ahead of the pass itself, it brings
 * the table lines into cache before they are needed. A row access is a stream, but an owner pass
 * reads a few bytes of each line, one line per point, which the hardware prefetchers leave
 * waiting on memory (the hand-written backward prefetches its dy rows for the same reason):
 * without these prefetches the derived backward ran at 0.56 of the hand-written one at 2^20
 * points, with them at 0.87 (docs/benchmarks.md). The split schedule's passes write their rows
 * chunk by chunk, every pass the same lines: prefetching them did not help the forward. Undefined
 * if the pass has neither.
 */
function prefetchVariant(stmts: Stmt[], buffers: Set<string>, rows?: { index: string; elemBytes: Map<string, number> }): Stmt[] | undefined {
  let sites = 0;
  const dependent = new Set<string>(); // names whose value depends on a buffer's contents
  const definitions = new Map<string, Expr>(); // the initializer of each `let` seen so far
  const constants = new Map<string, Expr>(); // the same, of the `const`s only (for rowStride)
  // One prefetch per cache line over the whole pass, nested blocks included (params[b] and
  // params[b + 1u] share one, also when each sits in its own block): the key names each variable
  // with its version, bumped at each declaration or assignment, so that a name declared again in
  // a sibling block (the next corner's index) is another key.
  const version = new Map<string, number>();
  const seen = new Set<string>();
  const bump = (name: string) => version.set(name, (version.get(name) ?? 0) + 1);
  const lineKey = (base: string, index: Expr) =>
    base + JSON.stringify(mapExpr(stripOffset(index), (x) => (x.k === "var" ? { ...x, name: `${x.name}#${version.get(x.name) ?? 0}` } : x)), (k, v) => (k === "span" || k === "ty" ? undefined : v));
  const withPrefetches = (body: Stmt[]): Stmt[] => {
    return body.flatMap((s): Stmt[] => {
      if (s.k === "block") return [{ ...s, body: withPrefetches(s.body) }];
      // A loop or branch that writes a buffer anywhere inside is left out: the variant runs ahead
      // of the pass and must write nothing (the probed backward's slot loop adds logit gradients,
      // the touched entries' pass sets bits under a condition). An `if`'s condition is still
      // prefetched (its names are in scope here; a loop's body is not).
      const writes = childBodies(s).length > 0 && [...writtenBuffers([s]).keys()].some((n) => buffers.has(n));
      const out: Stmt[] = [];
      for (const [base, at] of writes ? (s.k === "if" ? accesses(s, false) : []) : accesses(s)) {
        if (base.k !== "var" || !buffers.has(base.name)) continue;
        if (namesIn(at).some((n) => dependent.has(n))) {
          if (smallTable(at, definitions)) continue;
        } else if (!rows || !((rowStride(at, rows.index, constants) ?? 0) * rows.elemBytes.get(base.name)! >= CACHE_LINE)) continue;
        const key = lineKey(base.name, at);
        if (seen.has(key)) continue;
        seen.add(key);
        sites++;
        out.push({ k: "expr", e: { k: "call", fn: MADE.prefetch, kind: "intrinsic", args: [base, at], span: at.span }, span: s.span });
      }
      if (s.k === "let") definitions.set(s.name, s.init);
      if (s.k === "let" && !s.mutable) constants.set(s.name, s.init);
      if (s.k === "let" || s.k === "array") bump(s.name);
      else if (s.k === "assign") bump(rootName(s.target));
      if ((s.k === "let" || s.k === "assign") && [...exprsOf(s)].some((e) => (e.k === "index" && e.base.k === "var" && buffers.has(e.base.name)) || (e.k === "var" && dependent.has(e.name)))) {
        dependent.add(s.k === "let" ? s.name : rootName(s.target));
      }
      const writesBuffer = s.k === "assign" && s.target.k === "index" && s.target.base.k === "var" && buffers.has(s.target.base.name);
      const adds = s.k === "expr" && addedElement(s.e) !== undefined;
      return writes || writesBuffer || adds ? out : [...out, s];
    });
  };
  const body = deadCodeElimination(withPrefetches(stmts), new Set());
  return sites ? body : undefined;
}

const CACHE_LINE = 64;

/**
 * How many elements apart an index puts consecutive points (its value at index + 1 less its value
 * at index), for an index computed from the thread index and literals only, through the `let`s it
 * reads; undefined for any other (data-dependent, or a name this cannot follow).
 */
function rowStride(e: Expr, index: string, definitions: Map<string, Expr>): number | undefined {
  const at = (t: number) => evaluate(e, index, t, definitions, 0);
  const [a, b] = [at(0), at(1)];
  return a === undefined || b === undefined ? undefined : Math.abs(b - a);
}

function evaluate(e: Expr, index: string, t: number, definitions: Map<string, Expr>, depth: number): number | undefined {
  if (depth > 16) return undefined;
  const sub = (x: Expr) => evaluate(x, index, t, definitions, depth + 1);
  if (e.k === "lit") return typeof e.v === "number" ? e.v : undefined;
  if (e.k === "var") return e.name === index ? t : definitions.has(e.name) ? sub(definitions.get(e.name)!) : undefined;
  if (e.k !== "bin" || !["+", "-", "*"].includes(e.op)) return undefined;
  const [a, b] = [sub(e.a), sub(e.b)];
  if (a === undefined || b === undefined) return undefined;
  return e.op === "+" ? a + b : e.op === "-" ? a - b : a * b;
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
function accesses(s: Stmt, nested = true): [Expr, Expr][] {
  const out: [Expr, Expr][] = [];
  for (const e of exprsOf(s, nested)) {
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

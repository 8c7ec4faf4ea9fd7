// Phase 5, schedule (CPU only): a kernel marked `@schedule split|owner` whose specialized body is
// constant declarations followed by one unrolled loop is cut into passes, one per iteration, each
// with its own copy of the declarations. The CPU emitter runs the passes level-major (split) or
// one pass per thread (owner); CUDA and JS run the unsplit body. The passes are the body's own
// statements, so what runs on the CPU is what nvcc compiles, grouped differently.
import { fail } from "./diagnostics.ts";
import { childBodies, exprsOf, type Stmt } from "./ir.ts";
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
    const pure = s.k === "array" || (s.k === "let" && !s.mutable && ![...exprsOf(s)].some((e) => e.k === "call" && e.fn === "atomicAdd"));
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

// The compiler's phases (codegen/compile.ts), each on its own on a small kernel: what it takes, what
// it leaves, and the IR facts the next phase relies on. The end-to-end tests (snapshot, parity,
// semantics, adjoint, tiles) check what the phases compute together.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { deriveAdjoint } from "../../codegen/adjoint.ts";
import { deriveTileAdjoint } from "../../codegen/adjoint_tile.ts";
import { checkProgram } from "../../codegen/check.ts";
import { compileFile } from "../../codegen/compile.ts";
import { DiagnosticError, DiagnosticSink, type Span } from "../../codegen/diagnostics.ts";
import { emitCpu } from "../../codegen/emit/cpu.ts";
import { emitCuda } from "../../codegen/emit/cuda.ts";
import { emitJs } from "../../codegen/emit/js.ts";
import { fold } from "../../codegen/fold.ts";
import { FORMS, INTERNAL_TILE_OPS, MADE, writtenBuffers } from "../../codegen/forms.ts";
import { deadCodeElimination, exprsOf, type Expr, type Program, type Scalar, type SpecializedKernel, type Stmt } from "../../codegen/ir.ts";
import { parseProgram } from "../../codegen/parse.ts";
import { schedule } from "../../codegen/schedule.ts";
import { simplify } from "../../codegen/simplify.ts";
import { specialize, withoutDerivatives, type ConfigValue } from "../../codegen/specialize.ts";
import { tidy } from "../../codegen/tidy.ts";
import { lowerTiles } from "../../codegen/tiles.ts";
import { HELPERS, INTRINSICS, helperDefinitions, spell, type Helper, type Intrinsic } from "../../dsl/intrinsics.ts";
import { CPU_TILES } from "../../codegen/emit/tile_prelude.ts";

const FILE = resolve(import.meta.dir, "../fixtures/phases_inline.ts");
const HEAD = `import { type Buf, type Const, type f32, type i32, type u32, atomicAdd, exp, localArray, min, u32 } from "../../dsl/index.ts";
import { type Tile, accumulate, loadRows, loadTile, matmulNT, matmulTN, storeRows } from "../../dsl/tiles.ts";
`;
const NO_SPAN: Span = { file: "", start: 0, end: 0, line: 0, col: 0 };

/** Parse `src` (and check it unless `check` is false). */
function program(src: string, check = true): Program {
  const sink = new DiagnosticSink();
  const p = parseProgram(FILE, sink, { text: HEAD + src });
  if (check) checkProgram(p, sink);
  sink.throwIfAny();
  return p;
}

/** Parse, check and specialize the first kernel of `src` (or `name`). */
function specialized(src: string, config?: ConfigValue, name?: string): SpecializedKernel {
  const p = program(src);
  return specialize(p, name ? p.kernels.find((k) => k.name === name)! : p.kernels[0]!, config);
}

/** Through the phases before the adjoint and the schedule (as compile.ts runs them). */
function tidied(src: string, config?: ConfigValue): SpecializedKernel {
  return tidy(lowerTiles(withoutDerivatives(simplify(specialized(src, config), 64))));
}

/** Every expression of a body (nested statements included). */
const exprs = (body: Stmt[]): Expr[] => body.flatMap((s) => [...exprsOf(s)]);
/** The functions a body calls, in order. */
const calls = (body: Stmt[]): string[] => exprs(body).flatMap((e) => (e.k === "call" ? [e.fn] : []));
/** Every statement of a body (nested ones included), depth first. */
const stmts = (body: Stmt[]): Stmt[] => body.flatMap((s) => [s, ...("body" in s ? stmts(s.body) : s.k === "if" ? [...stmts(s.then), ...stmts(s.else)] : [])]);
const lit = (v: number | boolean, ty: Scalar): Expr => ({ k: "lit", v, ty, span: NO_SPAN });
/** The first diagnostic `f` reports, as `code at line:col` (line 1: the first line of the source after HEAD). */
const reported = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    if (e instanceof DiagnosticError) {
      const d = e.diagnostics[0]!;
      return `${d.code} at ${d.span.line - HEAD.split("\n").length + 1}:${d.span.col}`;
    }
    throw e;
  }
  return undefined;
};
const code = (f: () => unknown): string | undefined => reported(f)?.split(" ")[0];

const SAXPY2 = `
interface Cfg { scale: f32; weights: f32[]; n: i32 }
function twice(x: f32): f32 {
  return x * 2.0;
}
/** @kernel */
export function k(i: u32, cfg: Const<Cfg>, x: Buf<f32>, out: Buf<f32>): void {
  out[i] = twice(x[i]) * cfg.scale + cfg.weights[i % 2];
}`;

describe("parse and check", () => {
  const SRC = `
/** @kernel */
export function k(i: u32, x: Buf<i32>, out: Buf<i32>): void {
  const a = localArray<i32>(2);
  a[0] = min(x[i], 7);
  out[i] = a[0];
}`;

  test("the front end resolves the dsl's names: a special form becomes its statement, an intrinsic a call", () => {
    const [k] = program(SRC, false).kernels;
    expect(k!.body[0]).toMatchObject({ k: "array", name: "a", elem: "i32", size: { k: "lit", v: 2 } });
    expect(k!.body[1]).toMatchObject({ k: "assign", value: { k: "call", fn: "min", kind: "intrinsic" } });
    expect(exprs(k!.body).every((e) => e.k !== "call" || e.kind === "intrinsic")).toBe(true);
  });

  test("the checker types every expression and instantiates a generic intrinsic", () => {
    const [k] = program(SRC).kernels;
    expect(k!.body[1]).toMatchObject({ value: { k: "call", T: "i32", ty: "i32", args: [{ ty: "i32" }, { k: "lit", v: 7, ty: "i32", abstract: false }] } });
  });
});

describe("specialize: inlining and binding", () => {
  test("helpers are inlined, configuration fields become literals and lists tables", () => {
    const k = specialized(SAXPY2, { scale: 3, weights: [1, 2], n: 4 });
    expect(k.params.map((p) => p.name)).toEqual(["x", "out"]); // the configuration is no parameter
    const all = exprs(k.body);
    expect(all.some((e) => e.k === "call" && e.kind === "helper")).toBe(false);
    expect(all.some((e) => e.k === "field")).toBe(false);
    expect(all.find((e) => e.k === "table")).toMatchObject({ id: "cfg_weights", values: [1, 2] });
    expect(all.some((e) => e.k === "lit" && e.v === 3 && e.ty === "f32")).toBe(true);
  });

  test("a missing configuration field is reported by name", () => {
    expect(() => specialized(SAXPY2, { scale: 3, weights: [1, 2] })).toThrow(/missing field Cfg\.n/);
  });

  test("a helper's declared derivative is kept for the adjoint, and dropped otherwise", () => {
    const src = `
/** @grad sqGrad */
function sq(x: Buf<f32>, i: u32): f32 {
  return x[i] * x[i];
}
function sqGrad(x: Buf<f32>, i: u32, adj: f32, d_x: Buf<f32>): void {
  atomicAdd(d_x, i, 2.0 * x[i] * adj);
}
/** @kernel */
export function k(i: u32, x: Buf<f32>, out: Buf<f32>): void {
  out[i] = sq(x, i);
}`;
    const k = simplify(specialized(src), 64);
    expect(stmts(k.body).some((s) => s.k === "block" && s.derivative)).toBe(true);
    const dropped = withoutDerivatives(k);
    expect(stmts(dropped.body).some((s) => s.k === "block" && (s.derivative || s.custom))).toBe(false);
    expect(calls(dropped.body)).not.toContain(MADE.gradientAdd);
  });
});

describe("simplify and fold", () => {
  const LOOP = `
/** @kernel */
export function k(i: u32, x: Buf<f32>, out: Buf<f32>): void {
  let s = 0.0;
  for (let j = 0; j < 3; j++) {
    s += x[i * 3 + u32(j)];
  }
  out[i] = s;
}`;

  test("a loop over constant bounds unrolls into marked iterations, its counter folded", () => {
    const k = simplify(specialized(LOOP), 64);
    const iterations = k.body.filter((s) => s.k === "block" && s.unrolled);
    expect(iterations.map((s) => (s as Extract<Stmt, { k: "block" }>).unrolled!.iter)).toEqual([0, 1, 2]);
    expect(stmts(k.body).some((s) => s.k === "for")).toBe(false);
    expect(calls(k.body)).toEqual([]); // u32(j) folded for each j
  });

  test("a loop longer than maxUnroll stays a loop", () => {
    const k = simplify(specialized(LOOP), 2);
    expect(k.body.some((s) => s.k === "for")).toBe(true);
  });

  test("folding wraps and rounds as the generated code does", () => {
    const add = (a: number, b: number, ty: Scalar): Expr => ({ k: "bin", op: "+", a: lit(a, ty), b: lit(b, ty), ty, span: NO_SPAN });
    expect(fold(add(0x7fffffff, 1, "i32"))).toMatchObject({ k: "lit", v: -0x80000000 });
    expect(fold(add(0xffffffff, 2, "u32"))).toMatchObject({ k: "lit", v: 1 });
    expect(fold(add(0.1, 0.2, "f32"))).toMatchObject({ k: "lit", v: Math.fround(Math.fround(0.1) + Math.fround(0.2)) });
  });

  test("a choice with a constant condition folds to the chosen operand; an inexact intrinsic does not fold", () => {
    const a: Expr = { k: "var", name: "a", ty: "f32", span: NO_SPAN };
    const b: Expr = { k: "var", name: "b", ty: "f32", span: NO_SPAN };
    const choice: Expr = { k: "call", fn: MADE.choice, kind: "intrinsic", args: [lit(false, "bool"), a, b], T: "f32", ty: "f32", span: NO_SPAN };
    expect(fold(choice)).toBe(b);
    const e: Expr = { k: "call", fn: "exp", kind: "intrinsic", args: [lit(1, "f32")], ty: "f32", span: NO_SPAN };
    expect(fold(e)).toMatchObject({ k: "call", fn: "exp" });
  });
});

describe("tiles", () => {
  const FORWARD = `
/** @kernel @block 4 */
export function k(b: u32, x: Buf<f32>, w: Buf<f32>, out: Buf<f32>): void {
  storeRows(out, 2, 0, matmulNT(loadRows(x, 3, 0, 3), loadTile(w, 0, 2, 3)));
}`;

  test("the buffers a tile program writes, as written and as lowered", () => {
    const program = simplify(specialized(FORWARD), 64);
    expect([...writtenBuffers(program.body, true).keys()]).toEqual(["out"]);
    expect([...writtenBuffers(lowerTiles(program).body).keys()]).toEqual(["out"]);
  });

  test("tile operations become prelude calls on tile storage; a read-only matrix is read in place", () => {
    const k = lowerTiles(simplify(specialized(FORWARD), 64));
    expect(calls(k.body)).toEqual(["loadRows", "matmulNT", "tileView", "storeRows"]); // (the view is an argument of the product)
    expect(k.body.filter((s) => s.k === "array" && s.tile).length).toBeGreaterThan(0);
    expect(stmts(k.body).some((s) => s.k === "let" && s.tile)).toBe(false);
    // Bounds-checked: the matrix is copied (its range checked), not viewed.
    expect(calls(lowerTiles(simplify(specialized(FORWARD), 64), true).body)).toEqual(["loadRows", "loadTile", "matmulNT", "storeRows"]);
  });

  test("an accumulated product nothing else reads fuses into one operation, and the buffer is listed", () => {
    const src = `
/** @kernel @block 4 */
export function k(b: u32, x: Buf<f32>, d: Buf<f32>, grad: Buf<f32>): void {
  accumulate(grad, 0, matmulTN(loadRows(d, 2, 0, 2), loadRows(x, 3, 0, 3)));
}`;
    const k = lowerTiles(simplify(specialized(src), 64));
    expect(calls(k.body)).toEqual(["loadRows", "loadRows", Object.keys(INTERNAL_TILE_OPS).find((n) => n !== "tileView")!]);
    expect(k.block!.accumulates).toEqual(["grad"]);
  });

  test("a tile operation outside a block kernel is refused", () => {
    const src = `
/** @kernel */
export function k(i: u32, x: Buf<f32>, out: Buf<f32>): void {
  storeRows(out, 3, 0, loadRows(x, 3, 0, 3));
}`;
    expect(code(() => lowerTiles(simplify(specialized(src), 64)))).toBe("NGP1040");
  });
});

describe("tidy", () => {
  test("identities go, a declaration moves to its first value, a copy is read through", () => {
    const src = `
/** @kernel */
export function k(i: u32, x: Buf<f32>, out: Buf<f32>): void {
  let s = 0.0;
  s = x[i + 0] * 1.0;
  const t = s;
  out[i] = t;
}`;
    const k = tidy(simplify(specialized(src), 64));
    expect(k.body).toHaveLength(2);
    expect(k.body[0]).toMatchObject({ k: "let", name: "s", mutable: false, init: { k: "index", index: { k: "var", name: "i" } } });
    expect(k.body[1]).toMatchObject({ k: "assign", value: { k: "var", name: "s" } });
  });
});

describe("adjoints", () => {
  const SQUARE = `
/** @kernel */
export function k(i: u32, x: Buf<f32>, out: Buf<f32>): void {
  out[i] = x[i] * x[i];
}`;
  const spec = { name: "kGrad", wrt: ["x"], span: NO_SPAN };

  test("the adjoint reads the output's adjoint and adds into the differentiated buffer's gradient", () => {
    const k = deriveAdjoint(tidied(SQUARE), spec);
    expect(k.name).toBe("kGrad");
    expect(k.params.map((p) => p.name)).toEqual(["x", "d_out", "d_x"]);
    const adds = exprs(k.body).filter((e) => e.k === "call" && e.fn === MADE.gradientAdd) as Extract<Expr, { k: "call" }>[];
    expect(adds.map((e) => (e.args[0] as { name: string }).name)).toEqual(["d_x"]);
    expect(exprs(k.body).some((e) => e.k === "index" && e.base.k === "var" && e.base.name === "d_out")).toBe(true);
    expect([...writtenBuffers(k.body).keys()]).toEqual(["d_x"]);
  });

  test("differentiating a buffer the kernel writes is refused", () => {
    expect(code(() => deriveAdjoint(tidied(SQUARE), { ...spec, wrt: ["out"] }))).toBe("NGP1052");
  });

  test("a block kernel's adjoint: loads of the differentiated buffer accumulate, stores read the output's adjoint", () => {
    const src = `
/** @kernel @block 4 */
export function k(b: u32, x: Buf<f32>, w: Buf<f32>, out: Buf<f32>): void {
  storeRows(out, 2, 0, matmulNT(loadRows(x, 3, 0, 3), loadTile(w, 0, 2, 3)));
}`;
    const k = deriveTileAdjoint(simplify(specialized(src), 64), { name: "kGrad", wrt: ["w"], span: NO_SPAN });
    expect(k.params.map((p) => p.name)).toEqual(["x", "w", "d_out", "d_w"]);
    const reads = exprs(k.body).filter((e) => e.k === "call" && e.args[0]?.k === "var" && ["d_out", "d_w"].includes(e.args[0].name)) as Extract<Expr, { k: "call" }>[];
    expect(reads.map((e) => `${e.fn}(${(e.args[0] as { name: string }).name})`)).toEqual(["loadRows(d_out)", "accumulate(d_w)"]);
    // The tiles phase lowers it like any block kernel.
    expect(lowerTiles(k).block!.accumulates).toEqual(["d_w"]);
  });

  test("differentiating a buffer a block kernel writes is refused at the write, as for any kernel", () => {
    const src = `
/** @kernel @block 4 */
export function k(b: u32, x: Buf<f32>, out: Buf<f32>): void {
  const t = loadRows(x, 2, 0, 2);
  storeRows(x, 2, 0, t);
}`;
    expect(reported(() => deriveTileAdjoint(simplify(specialized(src), 64), { name: "kGrad", wrt: ["x"], span: NO_SPAN }))).toBe("NGP1052 at 5:3");
  });
});

describe("schedule (CPU)", () => {
  test("a split kernel becomes one pass per iteration, each with the prologue", () => {
    const src = `
/** @kernel @schedule split */
export function k(i: u32, x: Buf<f32>, out: Buf<f32>): void {
  const base = i * 3;
  for (let l = 0; l < 3; l++) {
    out[base + u32(l)] = exp(x[base + u32(l)]);
  }
}`;
    const k = schedule(tidied(src));
    expect(k.passes).toHaveLength(3);
    for (const p of k.passes!) {
      expect(p.stmts[0]).toMatchObject({ k: "let", name: "base" });
      expect(p.lanes).toBe(true);
      expect(p.prefetch).toBeUndefined(); // no access at an index read from a buffer
    }
  });

  test("a prefetch variant prefetches each table line once: one per corner, its features sharing it", () => {
    // Each corner's index `e` is declared in the corner's own block, its features read t[e] and
    // t[e + 1u] in blocks of their own: one prefetch per corner (not one per feature, nor one for
    // both corners, whose `e` differ).
    const src = `
/** @kernel @schedule split */
export function k(i: u32, idx: Buf<u32>, t: Buf<f32>, out: Buf<f32>): void {
  for (let l = 0; l < 2; l++) {
    let acc = 0.0;
    for (let c = 0; c < 2; c++) {
      const e = ((idx[i] + u32(c)) % 200000) * 2;
      for (let f = 0; f < 2; f++) {
        const v = t[e + u32(f)];
        acc += v;
      }
    }
    out[i * 2 + u32(l)] = acc;
  }
}`;
    const k = schedule(tidied(src));
    for (const p of k.passes!) {
      const prefetches = exprs(p.prefetch!).filter((e) => e.k === "call" && e.fn === MADE.prefetch);
      expect(prefetches).toHaveLength(2);
    }
  });

  test("an owner pass prefetches its rows a cache line or more apart; a split pass and narrow rows do not", () => {
    // Per level l, each point reads x[i * 2] (8 bytes a point: the hardware prefetchers' stream)
    // and dy[i * 32 + l * 2] (rows 128 bytes apart: one line a point) and adds to out[i * 2]:
    // the owner schedule's passes prefetch dy only, the split schedule's nothing.
    const src = (schedule: string) => `
/** @kernel @schedule ${schedule} */
export function k(i: u32, x: Buf<f32>, dy: Buf<f32>, out: Buf<f32>): void {
  for (let l = 0; l < 2; l++) {
    const row = i * 32 + u32(l) * 2;
    out[i * 2 + u32(l)] = x[i * 2] * dy[row] + dy[row + 1];
  }
}`;
    const prefetched = (p: { prefetch?: Stmt[] }) => exprs(p.prefetch ?? []).flatMap((e) => (e.k === "call" && e.fn === MADE.prefetch ? [(e.args[0] as { name: string }).name] : []));
    expect(schedule(tidied(src("owner"))).passes!.map(prefetched)).toEqual([["dy"], ["dy"]]);
    expect(schedule(tidied(src("split"))).passes!.map(prefetched)).toEqual([[], []]);
  });

  test("a lanes kernel with a branch left at run time is refused; an unscheduled kernel is left alone", () => {
    const src = `
/** @kernel @schedule lanes */
export function k(i: u32, x: Buf<f32>, out: Buf<f32>): void {
  if (x[i] > 0.0) {
    out[i] = 1.0;
  }
}`;
    expect(code(() => schedule(tidied(src)))).toBe("NGP1034");
    const plain = tidied(`
/** @kernel */
export function k(i: u32, x: Buf<f32>, out: Buf<f32>): void {
  out[i] = x[i];
}`);
    expect(schedule(plain)).toBe(plain);
  });
});

describe("emit", () => {
  const at = (name: string, ty?: Scalar): Expr => ({ k: "var", name, ...(ty ? { ty } : {}), span: NO_SPAN } as Expr);
  /** out[i] += a * x[i], atomically: a hand-written kernel, as the phases before the emitters leave one. */
  const AXPY: SpecializedKernel = {
    name: "axpy",
    index: { name: "i", ty: "u32" },
    params: [
      { name: "a", ty: { k: "scalar", s: "f32" }, span: NO_SPAN },
      { name: "x", ty: { k: "buf", elem: "f32" }, span: NO_SPAN },
      { name: "out", ty: { k: "buf", elem: "f32" }, span: NO_SPAN },
    ],
    body: [{
      k: "expr", span: NO_SPAN,
      e: { k: "call", fn: MADE.gradientAdd, kind: "intrinsic", T: "f32", span: NO_SPAN, args: [
        at("out"), at("i", "u32"),
        { k: "bin", op: "*", a: at("a", "f32"), b: { k: "index", base: at("x"), index: at("i", "u32"), ty: "f32", span: NO_SPAN }, ty: "f32", span: NO_SPAN },
      ] },
    }],
    span: NO_SPAN,
  };

  test("JS: the kernel runs over [0, n) with C's f32 rounding, and says which buffers it writes", () => {
    const m = emitJs([AXPY]);
    expect(m.kernels[0]!.params.map((p) => `${p.name}${"writes" in p && p.writes ? " (written)" : ""}`)).toEqual(["a", "x", "out (written)"]);
    const run = new Function(`${m.source.replace(/^export /gm, "")}\nreturn axpy;`)() as (n: number, a: number, x: Float32Array, out: Float32Array) => void;
    const x = Float32Array.of(0.1, 0.2, 0.3);
    const out = Float32Array.of(1, 1, 1, 7);
    run(3, Math.fround(0.7), x, out);
    expect([...out]).toEqual([...x].map((v) => Math.fround(1 + Math.fround(Math.fround(0.7) * v))).concat(7));
  });

  test("C: a read-only buffer is const, the atomic is the target's, and a checked one is addressed through ngp_at", () => {
    const cpu = emitCpu([AXPY]).source;
    expect(cpu).toContain("const float* __restrict__ x");
    expect(cpu).toContain("float* __restrict__ out");
    expect(cpu).not.toContain("const float* __restrict__ out");
    expect(cpu).toContain("ngp_atomic_add(&out[i], a * x[i]);");
    expect(emitCuda([AXPY]).source).toContain("atomicAdd(&out[i], a * x[i]);");
    expect(emitCpu([AXPY], { boundsChecks: true }).source).toMatch(/ngp_atomic_add\(&ngp_at\(out, \(int64_t\)\(i\), ngp_len_out, 2u, ngp_thread\)\[0\], a \* \(\*ngp_at\(x, /);
    expect(emitJs([AXPY], { boundsChecks: true }).source).toContain('out[__chk(i, out, "out")] += Math.fround(a * x[__chk(i, x, "x")]);');
  });

  test("a bounds-checked build runs unscheduled: the pipeline drops the schedule, on every target", () => {
    const src = `
/** @kernel @schedule split */
export function k(i: u32, x: Buf<f32>, out: Buf<f32>): void {
  for (let l = 0; l < 2; l++) {
    out[i * 2 + u32(l)] = exp(x[i * 2 + u32(l)]);
  }
}`;
    expect(compileFile(FILE, "cpu", { text: HEAD + src }).source).toContain("k_pass1(");
    expect(compileFile(FILE, "cpu", { text: HEAD + src, boundsChecks: true }).source).not.toContain("k_pass");
    // The CPU emitter runs a scheduled kernel only as the schedule phase's passes.
    expect(() => emitCpu([{ ...tidied(src), schedule: "split" }])).toThrow(/unscheduled/);
  });
});

describe("shared IR utilities", () => {
  test("dead-code elimination drops what nobody reads", () => {
    const k = simplify(specialized(`
/** @kernel */
export function k(i: u32, x: Buf<f32>, out: Buf<f32>): void {
  const unused = x[i] * 2.0;
  const used = x[i] + 1.0;
  out[i] = used;
}`), 64);
    // A store is a result when its buffer is read afterwards (live).
    expect(deadCodeElimination(k.body, new Set(["out"])).map((s) => (s.k === "let" ? s.name : s.k))).toEqual(["used", "assign"]);
  });
});

describe("the pipeline", () => {
  test("compile.ts's header names each phase's file, and compile.ts calls each of them", () => {
    const text = readFileSync(resolve(import.meta.dir, "../../codegen/compile.ts"), "utf8");
    const header = text.slice(0, text.indexOf("\nimport "));
    const files = [...header.matchAll(/^\/\/   [a-z ]+\s{2,}([\w/]+\.ts)/gm)].map((m) => m[1]!);
    expect(files.length).toBeGreaterThanOrEqual(10);
    for (const f of files) expect(text).toContain(`from "./${f}"`);
  });
});

describe("intrinsic properties", () => {
  test("the compiler names no intrinsic or special form outside its table (codegen/forms.ts)", () => {
    const names = [...Object.keys(INTRINSICS), ...Object.keys(INTERNAL_TILE_OPS), ...Object.keys(FORMS)].filter((n) => !["f32", "i32", "u32", "tiles"].includes(n)); // (also names of types)
    const dir = resolve(import.meta.dir, "../../codegen");
    const files = readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith(".ts") && f !== "forms.ts");
    const found = files.flatMap((f) => {
      const text = readFileSync(join(dir, f), "utf8");
      return names.filter((n) => text.includes(`"${n}"`)).map((n) => `${f}: "${n}"`);
    });
    expect(found).toEqual([]);
  });

  // The table cannot take an entry from a test (it is the module's constant), so this checks the
  // promise the other way: whatever an entry's spellings call is defined by its helpers' entries,
  // and no emitter defines any of it.
  test("every helper a spelling calls is defined by the entry's helpers (and theirs by those they need), not by an emitter", () => {
    const TARGETS = ["cpu", "cuda", "js"] as const;
    // Generated helpers are `ngp_*` in C (a call or a template's), `__*` in JS.
    const called = (code: string, js: boolean) => new Set([...code.matchAll(js ? /\b(__\w+)\(/g : /\b(ngp_\w+)(?:<[^<>;()]*>)?\(/g)].map((m) => m[1]!));
    // A definition starts a line (or an emitter's template string).
    const defines = (code: string, name: string, js: boolean) =>
      new RegExp(js ? `(?:^|\`)const ${name} = ` : `(?:^|\`)(template <[^>]*>\\s*)?NGP_FN [^;=\\n]*\\b${name}\\(`, "m").test(code);
    const undefinedCalls: string[] = [];
    const entries = Object.entries({ ...INTRINSICS, ...INTERNAL_TILE_OPS }) as [string, Intrinsic][];
    for (const t of TARGETS)
      for (const [name, e] of entries) {
        const spellings = [...(e.T ?? [undefined]).map((T) => spell(e, t, T)), ...(e.serial ? [spell(e, t, undefined, true)] : [])];
        const code = helperDefinitions([e], t).join("\n");
        for (const fn of called(spellings.join(" "), t === "js")) if (!defines(code, fn, t === "js")) undefinedCalls.push(`${name} (${t}): ${fn}`);
      }
    for (const t of TARGETS)
      for (const [name, h] of Object.entries(HELPERS) as [string, Helper][]) {
        const own = t === "js" ? h.js : (h[t] ?? h.c);
        const code = helperDefinitions([{ helpers: [name] } as unknown as Intrinsic], t).join("\n");
        // The CPU helpers use the vector macros of the CPU's tile prelude.
        for (const fn of called(own ?? "", t === "js")) if (!defines(code, fn, t === "js") && !CPU_TILES.includes(`#define ${fn} `)) undefinedCalls.push(`helper ${name} (${t}): ${fn}`);
      }
    expect(undefinedCalls).toEqual([]);
    // Each helper needs only helpers before it (so that a module defines them first).
    const order = Object.keys(HELPERS);
    const notBefore = (Object.entries(HELPERS) as [string, Helper][]).flatMap(([name, h]) =>
      (h.needs ?? []).filter((n) => !(order.includes(n) && order.indexOf(n) < order.indexOf(name))).map((n) => `${name} needs ${n}`));
    expect(notBefore).toEqual([]);
    // The emitters define none of the helpers.
    const dir = resolve(import.meta.dir, "../../codegen/emit");
    const names = Object.values(HELPERS as Record<string, Helper>).flatMap((h) => [h.c, h.cpu, h.cuda, h.js].flatMap((c) => [...(c ?? "").matchAll(/^(?:template <[^>]*>\s*)?(?:NGP_FN [^;=\n(]*\b|const )((?:ngp|_)_?\w+)[ (]/gm)].map((m) => m[1]!)));
    expect(names).toContain("ngp_tile_mm");
    expect(names).toContain("__f2i32");
    const emitted = readdirSync(dir).flatMap((f) => names.filter((n) => defines(readFileSync(join(dir, f), "utf8"), n, false) || defines(readFileSync(join(dir, f), "utf8"), n, true)).map((n) => `${f}: ${n}`));
    expect(emitted).toEqual([]);
  });

  test("a module defines the helpers of the intrinsics it calls, and no others", () => {
    const src = `
/** @kernel */
export function k(i: u32, x: Buf<f32>, out: Buf<f32>): void {
  out[i] = min(x[i], 1.0);
}`;
    const cpu = compileFile(FILE, "cpu", { text: HEAD + src }).source;
    expect(cpu).toContain("NGP_FN T ngp_min(T a, T b)");
    for (const other of ["ngp_atomic_add", "ngp_clz", "ngp_f2int_rz", "ngp_tile_mm"]) expect(cpu).not.toContain(other);
    const js = compileFile(FILE, "js", { text: HEAD + src }).source;
    expect(js).toContain("const __min = ");
    for (const other of ["__fma", "__popc", "__f2i32", "__tile_mm"]) expect(js).not.toContain(other);
  });

  test("an intrinsic that adds to an element writes that buffer", () => {
    for (const [name, e] of Object.entries(INTRINSICS) as [string, Intrinsic][])
      if (e.effect?.k === "add") expect(`${name} writes ${e.writes}`).toBe(`${name} writes ${e.effect.buf}`);
  });
});

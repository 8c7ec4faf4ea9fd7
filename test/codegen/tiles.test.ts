// The tile operations (dsl/tiles.ts) one at a time, through the block kernels of
// test/fixtures/tiles_ops.ts, on fresh random inputs: the CPU backend against float64 references
// written here (a tolerance relative to the sum of |terms|; tileMap exactly, its f32 arithmetic
// emulated), and the CPU and JS backends against each other bit for bit. Three configurations:
// shapes that are no multiple of 16 (13 rows · 7 · 21), shapes on the vectorized path (32 · 24 · 48)
// and an output narrower than a vector (20 · 17 · 3). Batches end in a partial block, and some have
// more blocks than the 16 slots of partial sums that accumulate() uses.
import { beforeAll, describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { loadKernels, type KernelModule } from "../../modules/load.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { cacheDir, freshSeed, rng, uniformF32 } from "../util.ts";

const FILE = resolve(import.meta.dir, "../fixtures/tiles_ops.ts");
const CPU = findCxx().tool !== undefined;
const fr = Math.fround;

interface Cfg {
  rows: number;
  k: number;
  c: number;
  strideIn: number;
  colIn: number;
  strideOut: number;
  colOut: number;
  accOffset: number;
  gain: number;
}

const CONFIGS: { name: string; cfg: Cfg; ns: number[] }[] = [
  { name: "13x7x21 (no multiple of 16)", cfg: { rows: 13, k: 7, c: 21, strideIn: 25, colIn: 3, strideOut: 23, colOut: 1, accOffset: 3, gain: 0.25 }, ns: [13 * 18 + 5, 13 * 2, 6] },
  { name: "32x24x48 (vectorized)", cfg: { rows: 32, k: 24, c: 48, strideIn: 48, colIn: 0, strideOut: 50, colOut: 2, accOffset: 0, gain: -1.5 }, ns: [32 * 3 + 7, 1] },
  { name: "20x17x3 (narrow output)", cfg: { rows: 20, k: 17, c: 3, strideIn: 5, colIn: 2, strideOut: 3, colOut: 0, accOffset: 1, gain: 2 }, ns: [20 * 20 + 7, 19] },
];

/** The bits of an f32 array, for bit-identical comparisons (+0 and -0 differ, NaNs compare). */
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

/** Every value within tol * scale[i] (+ a tiny absolute slack) of the float64 reference. */
function expectClose(what: string, got: Float32Array, want: Float64Array, scale: Float64Array, tol = 1e-5): void {
  expect(got.length).toBe(want.length);
  let worst = { excess: 0, at: -1 };
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    const bound = tol * scale[i]! + 1e-30;
    if (!(err <= bound) && (worst.at < 0 || err / bound > worst.excess)) worst = { excess: err / bound, at: i };
  }
  if (worst.at >= 0) throw new Error(`${what}: [${worst.at}] = ${got[worst.at]}, reference ${want[worst.at]} (error ${worst.excess.toFixed(2)} x the bound ${tol} * ${scale[worst.at]})`);
}

type Inputs = ReturnType<typeof makeInputs>;
function makeInputs(cfg: Cfg, n: number, r: () => number) {
  const blocks = Math.ceil(n / cfg.rows);
  const b = uniformF32(r, cfg.k * cfg.c, -1, 1);
  const bt = new Float32Array(cfg.c * cfg.k);
  for (let t = 0; t < cfg.k; t++) for (let j = 0; j < cfg.c; j++) bt[j * cfg.k + t] = b[t * cfg.c + j]!;
  return {
    n,
    blocks,
    src: uniformF32(r, n * cfg.strideIn, -1, 1),
    dstInit: uniformF32(r, n * cfg.strideOut, -1, 1),
    a: uniformF32(r, n * cfg.k, -1, 1),
    b,
    bt,
    at: uniformF32(r, blocks * cfg.k * cfg.rows, -1, 1),
    bRows: uniformF32(r, n * cfg.c, -1, 1),
    gradInit: uniformF32(r, cfg.accOffset + cfg.k * cfg.c + 2, -1, 1),
    x: uniformF32(r, n * cfg.c, -2, 2),
    colv: uniformF32(r, cfg.c, -1, 1),
    rowv: uniformF32(r, n, -1, 1),
    s: fr(r() * 4 - 2),
  };
}

/** One run of every kernel of the fixture on one backend; outputs as host arrays. */
function runAll(mod: KernelModule, cfg: Cfg, inp: Inputs) {
  const { n } = inp;
  const up = (d: Float32Array) => mod.upload("f32", d);
  const k = mod.kernels;
  const dst = up(inp.dstInit);
  k.copyRows!(n, up(inp.src), dst);
  const mm = mod.alloc("f32", n * cfg.c);
  k.mm!(n, up(inp.a), up(inp.b), mm);
  const mmNT = mod.alloc("f32", n * cfg.c);
  k.mmNT!(n, up(inp.a), up(inp.bt), mmNT);
  const mmTN = mod.alloc("f32", n * cfg.c);
  k.mmTN!(n, up(inp.at), up(inp.b), mmTN);
  const grad = up(inp.gradInit);
  k.accTN!(n, up(inp.a), up(inp.bRows), grad);
  const mapped = mod.alloc("f32", n * cfg.c);
  const sq = mod.alloc("f32", n * cfg.c);
  k.mapBroadcast!(n, up(inp.x), up(inp.colv), up(inp.rowv), inp.s, mapped, sq);
  const rowSums = mod.alloc("f32", n);
  const colSums = mod.alloc("f32", cfg.c);
  const total = mod.alloc("f32", 1);
  k.sums!(n, up(inp.x), rowSums, colSums, total);
  // Launched twice: accumulate() adds to what the buffer holds.
  k.sums!(n, up(inp.x), rowSums, colSums, total);
  const count = mod.alloc("f32", 1);
  const padded = mod.alloc("f32", cfg.c);
  k.mask!(n, up(inp.x), count, padded);
  const out = {
    copy: dst, mm, mmNT, mmTN, grad, mapped, sq, rowSums, colSums, total, count, padded,
  };
  return Object.fromEntries(Object.entries(out).map(([key, buf]) => [key, buf.download() as Float32Array])) as Record<keyof typeof out, Float32Array>;
}

/** sum_t terms(t) in float64, with the sum of |terms| as the error scale. */
function dot(len: number, term: (t: number) => number): [number, number] {
  let s = 0;
  let abs = 0;
  for (let t = 0; t < len; t++) {
    const v = term(t);
    s += v;
    abs += Math.abs(v);
  }
  return [s, abs];
}

function matrix(rowsN: number, cols: number, f: (i: number, j: number) => [number, number]) {
  const want = new Float64Array(rowsN * cols);
  const scale = new Float64Array(rowsN * cols);
  for (let i = 0; i < rowsN; i++)
    for (let j = 0; j < cols; j++) [want[i * cols + j], scale[i * cols + j]] = f(i, j);
  return { want, scale };
}

for (const { name, cfg, ns } of CONFIGS) {
  describe(`tiles ${name}`, () => {
    let cpu: KernelModule | undefined;
    let js: KernelModule;
    beforeAll(async () => {
      js = await loadKernels(FILE, { backend: "js", config: { ...cfg }, cacheDir });
      if (CPU) cpu = await loadKernels(FILE, { backend: "cpu", config: { ...cfg }, cacheDir });
    });

    for (const n of ns) {
      const blocks = Math.ceil(n / cfg.rows);
      describe(`n = ${n} (${blocks} block${blocks > 1 ? "s" : ""}, last ${n - (blocks - 1) * cfg.rows} of ${cfg.rows} rows)`, () => {
        let inp: Inputs;
        let got: ReturnType<typeof runAll>;
        let gotJs: ReturnType<typeof runAll>;
        beforeAll(() => {
          inp = makeInputs(cfg, n, rng(freshSeed(`tiles ${name} n=${n}`)));
          gotJs = runAll(js, cfg, inp);
          got = cpu ? runAll(cpu, cfg, inp) : gotJs;
        });
        const { k, c, rows } = cfg;

        test("loadRows/storeRows: strided rows with column offsets; rows past the batch neither read nor written", () => {
          const want = Float32Array.from(inp.dstInit);
          for (let i = 0; i < n; i++)
            for (let j = 0; j < c; j++) want[i * cfg.strideOut + cfg.colOut + j] = inp.src[i * cfg.strideIn + cfg.colIn + j]!;
          expect(bits(got.copy)).toEqual(bits(want));
        });

        test("matmul: a · b", () => {
          const { want, scale } = matrix(n, c, (i, j) => dot(k, (t) => inp.a[i * k + t]! * inp.b[t * c + j]!));
          expectClose("matmul", got.mm, want, scale);
        });

        test("matmulNT: a · bᵀ", () => {
          const { want, scale } = matrix(n, c, (i, j) => dot(k, (t) => inp.a[i * k + t]! * inp.bt[j * k + t]!));
          expectClose("matmulNT", got.mmNT, want, scale);
          // bt is bᵀ: the same products summed in the same order, so matmul and matmulNT agree bit for bit.
          expect(bits(got.mmNT)).toEqual(bits(got.mm));
        });

        test("matmulTN: aᵀ · b, with a block-dependent offset of loadTile", () => {
          const { want, scale } = matrix(n, c, (i, j) => {
            const blk = Math.floor(i / rows), r = i % rows;
            return dot(k, (t) => inp.at[blk * k * rows + t * rows + r]! * inp.b[t * c + j]!);
          });
          expectClose("matmulTN", got.mmTN, want, scale);
        });

        test("accumulate(matmulTN(rows, rows)): the weight gradient summed over every block", () => {
          const want = Float64Array.from(inp.gradInit);
          const scale = Float64Array.from(inp.gradInit, Math.abs);
          for (let t = 0; t < k; t++)
            for (let j = 0; j < c; j++) {
              const [s, abs] = dot(n, (i) => inp.a[i * k + t]! * inp.bRows[i * c + j]!);
              want[cfg.accOffset + t * c + j]! += s;
              scale[cfg.accOffset + t * c + j]! += abs;
            }
          expectClose("accumulate", got.grad, want, scale);
          // Values outside [offset, offset + k * c) are untouched.
          for (let i = 0; i < inp.gradInit.length; i++)
            if (i < cfg.accOffset || i >= cfg.accOffset + k * c) expect(got.grad[i]).toBe(inp.gradInit[i]!);
        });

        test("tileMap: a 1×C and an R×1 tile broadcast, a run-time and a compile-time scalar (exact f32)", () => {
          const want = new Float32Array(n * c);
          for (let i = 0; i < n; i++)
            for (let j = 0; j < c; j++) want[i * c + j] = fr(fr(fr(inp.x[i * c + j]! * inp.colv[j]!) + fr(inp.rowv[i]! * inp.s)) - fr(cfg.gain));
          expect(bits(got.mapped)).toEqual(bits(want));
          expect(bits(got.sq)).toEqual(bits(want.map((v) => fr(v * v))));
        });

        test("tileSum on axis 1 (rows) and axis 0 (columns, accumulated over blocks, twice)", () => {
          const rs = matrix(n, 1, (i) => dot(c, (j) => inp.x[i * c + j]!));
          expectClose("tileSum axis 1", got.rowSums, rs.want, rs.scale);
          const cs = matrix(1, c, (_, j) => dot(n, (i) => inp.x[i * c + j]!));
          expectClose("tileSum axis 0", got.colSums, cs.want.map((v) => 2 * v), cs.scale.map((v) => 2 * v));
          const tot = dot(n * c, (e) => inp.x[e]!);
          expectClose("total", got.total, Float64Array.of(2 * tot[0]), Float64Array.of(2 * tot[1]));
        });

        test("rowMask: 1 inside the batch, 0 past its end", () => {
          expect(got.count[0]).toBe(n);
          const pastEnd = blocks * rows - n;
          const cs = matrix(1, c, (_, j) => dot(n, (i) => inp.x[i * c + j]!));
          expectClose("masked column sums", got.padded, cs.want.map((v) => v - pastEnd), cs.scale.map((v) => v + pastEnd));
        });

        test.skipIf(!CPU)("CPU and JS agree bit for bit on every output", () => {
          for (const key of Object.keys(gotJs) as (keyof typeof gotJs)[]) expect({ key, bits: bits(got[key]) }).toEqual({ key, bits: bits(gotJs[key]) });
        });
      });
    }
  });
}

test("an empty batch (n = 0) leaves a buffer that blocks accumulate into unchanged", async () => {
  const cfg = CONFIGS[0]!.cfg;
  for (const backend of ["js", ...(CPU ? ["cpu" as const] : [])] as const) {
    const mod = await loadKernels(FILE, { backend, config: { ...cfg }, cacheDir });
    const grad = mod.upload("f32", new Float32Array(cfg.accOffset + cfg.k * cfg.c + 2).fill(1));
    mod.kernels.accTN!(0, mod.alloc("f32", cfg.k), mod.alloc("f32", cfg.c), grad);
    expect(Array.from(grad.download()).every((v) => v === 1)).toBe(true);
  }
});

test("tile loads, stores and accumulations are bounds-checked: the same report on CPU and JS, nothing written", async () => {
  const cfg = CONFIGS[0]!.cfg;
  const n = 30;
  const reports: string[][] = [];
  for (const backend of ["js", ...(CPU ? ["cpu" as const] : [])] as const) {
    const mod = await loadKernels(FILE, { backend, config: { ...cfg }, cacheDir }); // checked: loadKernels' default
    const got: string[] = [];
    const dst = mod.alloc("f32", 5);
    for (const run of [
      () => mod.kernels.copyRows!(n, mod.alloc("f32", 10), mod.alloc("f32", n * cfg.strideOut)),
      () => mod.kernels.copyRows!(n, mod.alloc("f32", n * cfg.strideIn), dst),
      () => mod.kernels.accTN!(n, mod.alloc("f32", n * cfg.k), mod.alloc("f32", n * cfg.c), mod.alloc("f32", 2)),
    ]) {
      let message = "no error";
      try {
        run();
      } catch (e) {
        message = (e as Error).message;
      }
      got.push(message);
    }
    expect(got[0]).toBe("kernel copyRows failed: index 10 is outside the buffer src of 10 elements (thread 0; bounds check)");
    expect(got[1]).toBe("kernel copyRows failed: index 5 is outside the buffer dst of 5 elements (thread 0; bounds check)");
    expect(got[2]).toBe("kernel accTN failed: index 3 is outside the buffer grad of 2 elements (thread 0; bounds check)");
    expect(Array.from(dst.download())).toEqual([0, 0, 0, 0, 0]); // the store of block 0 was not performed
    reports.push(got);
  }
  if (reports.length === 2) expect(reports[1]).toEqual(reports[0]!);
});

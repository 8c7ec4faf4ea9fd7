// Variants of the encoding (the @replaceable parts of dsl/kernels/lookup.ts) and the three worked
// examples in examples/variants/: each one's forward against a float64 reference written here, its gradients
// (derived by the compiler) against finite differences with `gradcheck`, and a short training run
// that learns; a variant's mistakes reported at its own file:line:col, all at once; the commands
// (`compile`, `gradcheck`, `train --encoding`) as child processes.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { gradcheck } from "../../cli/gradcheck.ts";
import { compileFile } from "../../codegen/compile.ts";
import { DiagnosticError } from "../../codegen/diagnostics.ts";
import { readVariant } from "../../codegen/parse.ts";
import { ConfigError, GRID_KERNELS, HashGrid, checkVariant, type HashGridOptionsInput } from "../../modules/hashgrid.ts";
import { Optimizer } from "../../modules/optimizer.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { parseTrainConfig } from "../../train/config.ts";
import { createField } from "../../train/field.ts";
import { train } from "../../train/trainer.ts";
import { cacheDir, freshSeed, rng, ROOT, runBun, uniformF32, withEnv, TEST_TIMEOUT } from "../util.ts";

const EXAMPLE = (name: string) => join(ROOT, "examples/variants", `${name}.ts`);
const BACKEND = findCxx().tool ? "cpu" : "js";
const dir = mkdtempSync(join(tmpdir(), "ngpk-variants-"));
/** pcg_hash.ts with its part misspelled: a helper that replaces nothing. */
const misspelled = readFileSync(EXAMPLE("pcg_hash"), "utf8").replace("export function spatialHash(", "export function spatialhash(");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// ---- float64 references of the examples ---------------------------------------------------------

const PRIMES = [1, 2654435761, 805459861, 3674653429];
const coherent = (c: number[]) => c.reduce((h, v, d) => (h ^ Math.imul(v, PRIMES[d]!)) >>> 0, 0);
function pcg(v: number): number {
  const state = (Math.imul(v, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}
const pcgHash = (c: number[]) => c.reduce((h, v) => pcg((h + v) >>> 0), 0);
const clamp01 = (v: number) => Math.min(Math.max(0, v), 1);

/** The default lookup (linear), with the slot function `slot(level, coords)`. */
function defaultLevel(grid: HashGrid, params: Float32Array, p: number[], l: number, slot: (l: number, c: number[]) => number): number[] {
  const { dims, featuresPerLevel: F } = grid.settings;
  const lv = grid.levels[l]!;
  const pos = p.map((x, d) => clamp01(x) * lv.scale[d]! + 0.5);
  const cell = pos.map(Math.floor);
  const acc = new Array(F).fill(0);
  for (let c = 0; c < 1 << dims; c++) {
    const coords = cell.map((v, d) => v + ((c >> d) & 1));
    const w = pos.reduce((a, x, d) => a * ((c >> d) & 1 ? x - cell[d]! : 1 - (x - cell[d]!)), 1);
    const e = lv.offset + slot(l, coords);
    for (let f = 0; f < F; f++) acc[f] += w * params[e * F + f]!;
  }
  return acc;
}

function denseOrHash(grid: HashGrid, hash: (c: number[]) => number) {
  return (l: number, c: number[]) => {
    const lv = grid.levels[l]!;
    if (lv.hashed) return hash(c) % lv.size;
    let idx = 0;
    let stride = 1;
    for (let d = 0; d < c.length && stride <= lv.size; d++) (idx += c[d]! * stride), (stride *= lv.resolution[d]!);
    return idx % lv.size;
  };
}

const AXES = [0, 1, 2, 0, 1, 3, 1, 2, 3, 0, 2, 3];

const REFERENCES: Record<string, { options: HashGridOptionsInput; encode: (g: HashGrid, params: Float32Array, p: number[]) => number[] }> = {
  pcg_hash: {
    options: { dims: 2, levels: 4, log2HashmapSize: 10, baseResolution: 8, perLevelScale: 2 },
    encode: (g, params, p) => g.levels.flatMap((_, l) => defaultLevel(g, params, p, l, denseOrHash(g, pcgHash))),
  },
  triangle_blend: {
    options: { dims: 2, levels: 4, log2HashmapSize: 10, baseResolution: 8, perLevelScale: 2 },
    encode: (g, params, p) =>
      g.levels.flatMap((lv, l) =>
        defaultLevel(g, params, p, l, denseOrHash(g, coherent)).map((v, f) => {
          const d = f % g.settings.dims;
          const t = p[d]! * lv.scale[d]! * 0.5;
          return v + 0.25 * Math.abs(2 * (t - Math.floor(t)) - 1);
        }),
      ),
  },
  spacetime: {
    options: { dims: 4, levels: 8, log2HashmapSize: 10, baseResolution: 4, perLevelScale: 2 },
    encode: (g, params, p) =>
      g.levels.flatMap((lv, l) => {
        const [grid, level] = [l % 4, Math.floor(l / 4)];
        const axes = AXES.slice(grid * 3, grid * 3 + 3);
        const pos = axes.map((d) => clamp01(p[d]!) * g.levels[level]!.scale[d]! + 0.5);
        const cell = pos.map(Math.floor);
        const acc = new Array(g.settings.featuresPerLevel).fill(0);
        for (let c = 0; c < 8; c++) {
          const coords = cell.map((v, a) => v + ((c >> a) & 1));
          const w = pos.reduce((m, x, a) => m * ((c >> a) & 1 ? x - cell[a]! : 1 - (x - cell[a]!)), 1);
          const e = lv.offset + (coherent(coords) % lv.size);
          acc.forEach((_, f) => (acc[f] += w * params[e * acc.length + f]!));
        }
        return acc;
      }),
  },
};

describe("the worked examples", () => {
  for (const [name, ref] of Object.entries(REFERENCES)) {
    test(`${name}: the forward matches its float64 reference; the gradients match finite differences`, async () => {
      const seed = freshSeed(`variant ${name}`);
      const grid = await HashGrid.create({ ...ref.options, variant: EXAMPLE(name) }, { backend: "js", cacheDir });
      const r = rng(seed);
      const params = uniformF32(r, grid.paramCount, -1, 1);
      grid.params.upload(params);
      const n = 50;
      const D = grid.settings.dims;
      const x = uniformF32(r, n * D, 0, 1);
      const y = grid.forward(x).download();
      let worst = 0;
      for (let i = 0; i < n; i++) {
        const want = ref.encode(grid, params, Array.from(x.subarray(i * D, i * D + D)));
        want.forEach((v, k) => (worst = Math.max(worst, Math.abs(v - y[i * grid.outputDim + k]!))));
      }
      expect(worst).toBeLessThan(1e-5);
      grid.close();
      const report = await gradcheck({ grid: { ...ref.options, variant: EXAMPLE(name) }, points: 16, seed });
      expect(report.params.checked).toBeGreaterThan(50);
      expect(report.inputs.checked).toBeGreaterThan(16 * D * 0.6);
      expect(report.ok).toBe(true);
    }, TEST_TIMEOUT);
  }

  test("gradcheck finds a wrong gradient and says where", async () => {
    const report = await gradcheck({
      grid: { ...REFERENCES.pcg_hash!.options, variant: EXAMPLE("pcg_hash") },
      tamper: (grad, dx) => {
        grad[grad.findIndex((v) => v !== 0)] *= 1.5;
        dx[3] = dx[3]! + 10;
      },
    });
    expect(report.ok).toBe(false);
    expect(report.params.bad.length).toBe(1);
    expect(report.params.bad[0]!.what).toMatch(/^parameter \d+ \(level \d\)$/);
    expect(report.inputs.bad.map((b) => b.what)).toEqual(["point 1 axis 1"]);
  }, 60_000);

  test("pcg_hash and triangle_blend train a photograph: the PSNR rises well above the untrained field's", async () => {
    const image = join(dir, "photo.png");
    await sharp(join(ROOT, "data/astronaut.png")).resize(64, 48, { fit: "cover" }).png().toFile(image);
    await withEnv({ NGPK_CACHE_DIR: cacheDir }, async () => {
      for (const name of ["pcg_hash", "triangle_blend"]) {
        const run = (steps: number) =>
          train({ image, steps, batch: 2048, evalEvery: 0, encoding: { levels: 4, log2HashmapSize: 10, finestResolution: 64, variant: EXAMPLE(name) }, network: { width: 16 }, ema: { enabled: false }, backend: BACKEND, out: join(dir, `${name}-${steps}`) });
        const [before, after] = [await run(1), await run(60)];
        expect(after.psnr, name).toBeGreaterThan(before.psnr + 5);
      }
    });
  }, 240_000);

  test("spacetime fits a 4D field (x, y, z, t): the loss falls tenfold", async () => {
    const seed = freshSeed("spacetime fit");
    const load = { backend: BACKEND as "cpu" | "js", cacheDir };
    // The grid (16 levels, a 2^12 table, growing 2x) and the network (16 wide, 1 hidden layer, l2)
    // of test/train/points.test.ts's space-time run, built as the trainer builds them: the same kernels.
    const cfg = parseTrainConfig({ encoding: { levels: 16, log2HashmapSize: 12, baseResolution: 4, perLevelScale: 2, variant: EXAMPLE("spacetime") }, network: { width: 16, hiddenLayers: 1 }, loss: "l2", seed });
    const { encoding, mlp } = await createField(cfg, 1, load, 4);
    const grid = encoding.grids[0]!;
    expect(grid.settings).toMatchObject({ ...REFERENCES.spacetime!.options, levels: 16, featuresPerLevel: 2, log2HashmapSize: 12 });
    const opt = await Optimizer.create([{ name: "encoding", params: grid.params as never, grad: grid.grad }, { name: "network", params: mlp.params, grad: mlp.grad }], { lr: 1e-2 }, load);
    const field = (p: Float32Array, i: number) => Math.sin(6 * p[4 * i]!) * Math.cos(5 * p[4 * i + 1]!) + p[4 * i + 2]! * Math.sin(4 * p[4 * i + 3]!);
    const r = rng(seed);
    const n = 4096;
    const enc = grid.alloc(n * grid.outputDim);
    const dEnc = grid.alloc(n * grid.outputDim);
    const losses: number[] = [];
    for (let step = 0; step < 150; step++) {
      const x = uniformF32(r, n * 4, 0, 1);
      const target = Float32Array.from({ length: n }, (_, i) => field(x, i));
      grid.forward(x, enc);
      losses.push(mlp.trainStep(enc, target, { inputGrad: dEnc }));
      grid.backward(dEnc, { accumulate: true });
      opt.update();
    }
    const early = losses.slice(0, 5).reduce((a, b) => a + b) / 5;
    const late = losses.slice(-5).reduce((a, b) => a + b) / 5;
    expect(late).toBeLessThan(early / 10);
    for (const m of [encoding, mlp, opt]) m.close();
  }, 240_000);
});

describe("the parts", () => {
  test("are the functions tagged @replaceable, in any kernel file: a variant replaces them wherever they are called, and nothing else", () => {
    const kernels = join(dir, "tagged.ts");
    writeFileSync(
      kernels,
      `import { type Buf, type f32, type u32 } from "ngp-kernels/dsl";
/** @replaceable */
export function shade(v: f32): f32 {
  return v + 1.0;
}
export function helper(v: f32): f32 {
  return v * 2.0;
}
/** @kernel */
export function run(i: u32, x: Buf<f32>, out: Buf<f32>): void {
  out[i] = helper(shade(x[i]));
}
`,
    );
    const variant = join(dir, "tagged_variant.ts");
    writeFileSync(variant, `import { type f32 } from "ngp-kernels/dsl";\nexport function shade(v: f32): f32 {\n  return v * 7.0;\n}\nexport function helper(v: f32): f32 {\n  return v * 5.0;\n}\n`);
    expect(readVariant(variant, kernels).parts).toEqual(["shade"]);
    const js = compileFile(kernels, "js", { variant }).source;
    const body = js.slice(js.indexOf("function run_body"));
    expect(body).toMatch(/ \* 7\)/); // the variant's shade
    expect(body).toMatch(/ \* 2\)/); // the kernel file's own helper: not tagged, not replaced
    expect(body).not.toMatch(/ \* 5\)/);
  });
});

describe("a variant's mistakes", () => {
  test("are reported at the variant's own file:line:col, every independent one in one run", async () => {
    const file = join(dir, "bad_variant.ts");
    writeFileSync(
      file,
      `import { type i32, type u32 } from "ngp-kernels/dsl";
export function spatialHash(coords: u32[], dims: i32): u32 {
  let h: u32 = 0;
  for (let d = 0; d < dims; d++) {
    h = h ^ coords[d] * 3.5;
  }
  const z = undefinedThing + 1;
  return h;
}
`,
    );
    let error: unknown;
    try {
      await HashGrid.create({ dims: 2, variant: file }, { backend: "js", cacheDir });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DiagnosticError);
    const ds = (error as DiagnosticError).diagnostics;
    expect(ds.map((d) => [d.code, d.span.file, d.span.line, d.span.col])).toEqual([
      ["NGP1009", file, 5, 13],
      ["NGP1018", file, 7, 13],
    ]);
  });

  /** The diagnostics readVariant throws for `text`, as [code, line, col, message, hint]. */
  const refusal = (name: string, text: string) => {
    const file = join(dir, name);
    writeFileSync(file, text);
    try {
      readVariant(file, GRID_KERNELS);
    } catch (e) {
      expect(e).toBeInstanceOf(DiagnosticError);
      return (e as DiagnosticError).diagnostics.map((d) => [d.code, d.span.file === file, d.span.line, d.span.col, d.message, d.hint]);
    }
    throw new Error(`${name} was accepted`);
  };

  test("a misspelled part (which would replace nothing) is NGP1026 at its name, suggesting the part", async () => {
    const line = misspelled.split("\n").findIndex((l) => l.startsWith("export function spatialhash(")) + 1;
    const [d, ...more] = refusal("misspelled.ts", misspelled);
    expect(more).toEqual([]);
    expect(d!.slice(0, 4)).toEqual(["NGP1026", true, line, 17]);
    expect(d![4]).toContain("'spatialhash' is not a part of the encoding");
    expect(d![5]).toStartWith("did you mean spatialHash?");
    // The grid (what train and gradcheck build) refuses it too, before compiling anything.
    await expect(HashGrid.create({ dims: 2, variant: join(dir, "misspelled.ts") }, { backend: "js", cacheDir })).rejects.toThrow(/NGP1026[\s\S]*did you mean spatialHash/);
  });

  test("a file replacing no part (a kernel file, or helpers only) is NGP1026", () => {
    const [kernels] = refusal("saxpy.ts", readFileSync(join(ROOT, "dsl/examples/saxpy.ts"), "utf8").replace(/"\.\.\/index\.ts"/, '"ngp-kernels/dsl"'));
    expect(kernels!.slice(0, 4)).toEqual(["NGP1026", true, 5, 17]);
    expect(kernels![4]).toContain("declares kernels (saxpy) and replaces none of the encoding's parts (spatialHash, interpolationWeight, cornerSlot, encodeLevel)");
    const [helpers] = refusal("helpers.ts", `import { type u32 } from "ngp-kernels/dsl";\nexport function twice(v: u32): u32 {\n  return v * 2;\n}\n`);
    expect(helpers!.slice(0, 5)).toEqual(["NGP1026", true, 1, 1, "no such kernel or encoding part: the file declares no kernel and replaces none of the encoding's parts (spatialHash, interpolationWeight, cornerSlot, encodeLevel)"]);
  });

  test("a bad requires is NGP1059 at the field", () => {
    const head = `import { type i32, type u32 } from "ngp-kernels/dsl";\nexport function spatialHash(coords: u32[], dims: i32): u32 {\n  return coords[0];\n}\n`;
    const [typo] = refusal("requires_typo.ts", `${head}export const requires = { dims: 4, levelMultipleOf: 4 };\n`);
    expect(typo!.slice(0, 5)).toEqual(["NGP1059", true, 5, 36, "bad `requires` of a variant: unknown field 'levelMultipleOf' (did you mean levelsMultipleOf?)"]);
    const [range] = refusal("requires_range.ts", `${head}export const requires = { dims: 9 };\n`);
    expect(range!.slice(0, 5)).toEqual(["NGP1059", true, 5, 27, "bad `requires` of a variant: dims: 9 (allowed: an integer literal from 1 to 8)"]);
  });

  test("the shipped examples declare what they need, and the settings are checked against it naming the flag", async () => {
    expect(readVariant(EXAMPLE("spacetime"), GRID_KERNELS).requires).toEqual({ dims: 4, levelsMultipleOf: 4 });
    expect(readVariant(EXAMPLE("pcg_hash"), GRID_KERNELS)).toMatchObject({ parts: ["spatialHash"], requires: {} });
    expect(readVariant(EXAMPLE("triangle_blend"), GRID_KERNELS)).toMatchObject({ parts: ["encodeLevel"], requires: {} });
    const st = EXAMPLE("spacetime");
    const flags = { dims: "--dims", levels: "--levels" };
    await expect(checkVariant({ variant: st, dims: 2, levels: 8 }, flags)).rejects.toThrow(new ConfigError("examples/variants/spacetime.ts needs --dims 4 (got 2)"));
    await expect(checkVariant({ variant: st, dims: 4, levels: 6 }, flags)).rejects.toThrow(new ConfigError("examples/variants/spacetime.ts needs --levels a multiple of 4 (got 6)"));
    await expect(checkVariant({ variant: st, dims: 4, levels: 8 }, flags)).resolves.toBeUndefined();
    await expect(checkVariant({ variant: EXAMPLE("pcg_hash"), dims: 3, levels: 5 }, flags)).resolves.toBeUndefined();
  });

  test("a variant that is not a file is refused naming the field", async () => {
    await expect(HashGrid.create({ dims: 2, variant: join(dir, "missing.ts") }, { backend: "js" })).rejects.toThrow(/hashGrid\.variant: ".*missing\.ts" is not a kernel file/);
  });
});

describe("the commands", () => {
  const run = (script: string, ...args: string[]) => runBun(script, args);
  test("bun run compile <variant> prints the grid's C++ and CUDA built with it", async () => {
    const r = await run("cli/compile.ts", "examples/variants/pcg_hash.ts");
    expect(r.code).toBe(0);
    expect(r.out).toContain("in the hash grid (C++): gridForward, gridForwardParamGrad, gridForwardInputGrad");
    expect(r.out).toContain("in the hash grid (CUDA)");
    expect(r.out).toContain("747796405u");
  }, 60_000);
  test("gradcheck of the space-time example says it needs --dims 4 (one line, status 2), and passes with it", async () => {
    const bare = await run("cli/gradcheck.ts", "--encoding", "examples/variants/spacetime.ts");
    expect([bare.code, bare.err, bare.out]).toEqual([2, "error: examples/variants/spacetime.ts needs --dims 4 (got 2)\n", ""]);
    const levels = await run("cli/gradcheck.ts", "--encoding", "examples/variants/spacetime.ts", "--dims", "4", "--levels", "6");
    expect([levels.code, levels.err]).toEqual([2, "error: examples/variants/spacetime.ts needs --levels a multiple of 4 (got 6)\n"]);
    const ok = await run("cli/gradcheck.ts", "--encoding", "examples/variants/spacetime.ts", "--dims", "4");
    expect(ok.code).toBe(0);
    expect(ok.out).toContain("OK: the gradients agree with finite differences");
    // compile: --config's dims are checked; without them, the grid is built with the dims the variant needs.
    const three = await run("cli/compile.ts", "examples/variants/spacetime.ts", "--target", "js", "--config", '{"dims": 3}');
    expect([three.code, three.err]).toEqual([2, "error: examples/variants/spacetime.ts needs --config's dims 4 (got 3)\n"]);
    const compiled = await run("cli/compile.ts", "examples/variants/spacetime.ts", "--target", "js");
    expect(compiled.code).toBe(0);
    expect(compiled.out).toContain("x[(((Math.imul(i, 4) >>> 0) + 3) >>> 0)]");
  }, TEST_TIMEOUT);

  test("train and sweep refuse the space-time example on a photograph before anything runs", async () => {
    const out = join(dir, "spacetime-image");
    const r = await run("cli/train.ts", "--steps", "3", "--levels", "4", "--encoding", "examples/variants/spacetime.ts", "--out", out);
    expect([r.code, r.err]).toEqual([2, "error: examples/variants/spacetime.ts needs --points with --dims 4 (got 2)\n"]);
    const s = await run("cli/sweep.ts", "--budgets", "4096", "--levels", "4", "--steps", "2", "--encoding", "examples/variants/spacetime.ts", "--out", out);
    expect([s.code, s.err]).toEqual([2, "error: examples/variants/spacetime.ts needs dims 4 (got 2)\n"]);
    expect(existsSync(out) ? readdirSync(out) : []).toEqual([]);
  }, 60_000);

  test("train, gradcheck, sweep and compile refuse a misspelled part (NGP1026), and train and gradcheck a kernel file, status 2", async () => {
    const file = join(dir, "misspelled_cli.ts");
    writeFileSync(file, misspelled);
    const out = join(dir, "misspelled-out");
    const T = ["--steps", "3", "--batch", "1024", "--levels", "4", "--log2-table", "12", "--finest", "256", "--width", "16", "--out", out];
    for (const [cmd, ...args] of [["cli/train.ts", ...T], ["cli/gradcheck.ts"], ["cli/sweep.ts", "--budgets", "4096", "--levels", "4", "--steps", "2", "--out", out]]) {
      const r = await run(cmd!, ...args, "--encoding", file);
      expect([cmd, r.code]).toEqual([cmd, 2]);
      expect(r.err).toStartWith("error[NGP1026]: no such kernel or encoding part: 'spatialhash' is not a part of the encoding\n");
      expect(r.err).toContain("= hint: did you mean spatialHash?");
      expect(r.err).not.toMatch(/^\s+at /m);
      expect(r.out).not.toContain("OK");
    }
    const compile = await run("cli/compile.ts", file);
    expect(compile.code).toBe(1);
    expect(compile.err).toContain("did you mean spatialHash?");
    for (const [cmd, ...args] of [["cli/train.ts", ...T], ["cli/gradcheck.ts"]]) {
      const r = await run(cmd!, ...args, "--encoding", "dsl/examples/saxpy.ts");
      expect([cmd, r.code]).toEqual([cmd, 2]);
      expect(r.err).toContain("dsl/examples/saxpy.ts:5:17");
      expect(r.err).toContain("declares kernels (saxpy) and replaces none of the encoding's parts");
    }
    expect(existsSync(out) ? readdirSync(out) : []).toEqual([]);
  }, TEST_TIMEOUT);

  test("bun run gradcheck: 0 when the gradients agree, 2 for a missing file", async () => {
    const ok = await run("cli/gradcheck.ts", "--encoding", "examples/variants/triangle_blend.ts");
    expect(ok.code).toBe(0);
    expect(ok.out).toContain("OK: the gradients agree with finite differences");
    const missing = await run("cli/gradcheck.ts", "--encoding", "nope.ts");
    expect(missing.code).toBe(2);
    expect(missing.err).toContain('--encoding: "nope.ts" is not a kernel file');
  }, 60_000);
});

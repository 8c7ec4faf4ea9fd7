// The diagnostics of the tile operations (NGP1040 .. NGP1046): the fixtures test/fixtures/errors/tile_*.ts
// (which test/errors.test.ts also runs, with every other fixture) checked here the same way, on
// every target they name, and the codes they must cover; then in-memory variations that show what
// only specialization decides (a shape that matches under one configuration and not another) and
// shapes that are no compile-time constant.
//
// A fixture's first line says what the compiler must report, as in test/errors.test.ts:
//   // expect: NGP1041 at 17:24[, ...] [targets cpu cuda js] [mentions "text"] [config {json}]
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { compileFile } from "../codegen/compile.ts";
import { CODES, DiagnosticError, formatDiagnostic, type Diagnostic } from "../codegen/diagnostics.ts";
import type { ConfigValue } from "../codegen/specialize.ts";
import type { Target } from "../runtime/abi.ts";

const ROOT = resolve(import.meta.dir, "..");
const FIXTURES = join(ROOT, "test", "fixtures", "errors");
const TARGETS: Target[] = ["cpu", "cuda", "js"];
const TILE_CODES = ["NGP1040", "NGP1041", "NGP1042", "NGP1043", "NGP1044", "NGP1045", "NGP1046"];

interface Expectation {
  code: string;
  line: number;
  col: number;
}
interface Fixture {
  name: string;
  file: string;
  text: string;
  expect: Expectation[];
  targets: Target[];
  mentions?: string;
  config?: ConfigValue;
}

const HEADER = /^\/\/ expect: (.+?)(?: targets ([a-z ]+?))?(?: mentions "([^"]*)")?(?: config (\{.*\}))?\s*$/;
const EXPECTATION = /^(NGP\d{4}) at (\d+):(\d+)$/;

function readFixture(name: string): Fixture {
  const file = join(FIXTURES, name);
  const text = readFileSync(file, "utf8");
  const header = text.split("\n", 1)[0]!;
  const m = HEADER.exec(header);
  if (!m) throw new Error(`${name}: the first line must be '// expect: NGPxxxx at line:col ...', got '${header}'`);
  const expectations = m[1]!.split(/,\s*/).map((part) => {
    const e = EXPECTATION.exec(part.trim());
    if (!e || !(e[1]! in CODES)) throw new Error(`${name}: cannot read expectation '${part}'`);
    return { code: e[1]!, line: Number(e[2]), col: Number(e[3]) };
  });
  const targets = (m[2]?.split(" ") ?? ["cpu"]) as Target[];
  return { name, file, text, expect: expectations, targets, mentions: m[3], config: m[4] ? (JSON.parse(m[4]) as ConfigValue) : undefined };
}

const fixtures = readdirSync(FIXTURES)
  .filter((f) => f.startsWith("tile_") && f.endsWith(".ts"))
  .sort()
  .map(readFixture);

function diagnosticsOf(file: string, target: Target, opts: { config?: ConfigValue; text?: string } = {}): { error: DiagnosticError; list: Diagnostic[] } {
  let thrown: unknown;
  try {
    compileFile(file, target, opts);
  } catch (e) {
    thrown = e;
  }
  if (thrown === undefined) throw new Error(`${file} compiled for ${target} without a diagnostic`);
  if (!(thrown instanceof DiagnosticError)) throw new Error(`${file}: the compiler crashed instead of reporting a diagnostic: ${(thrown as Error)?.stack ?? thrown}`);
  return { error: thrown, list: thrown.diagnostics };
}

/** One diagnostic against its expectation, and its rendering (source line, caret under the column, hint). */
function checkDiagnostic(fx: Fixture, d: Diagnostic, want: Expectation): void {
  expect(`${d.code} at ${d.span.line}:${d.span.col}`).toBe(`${want.code} at ${want.line}:${want.col}`);
  expect(d.span.file).toBe(fx.file);
  const lines = fx.text.split("\n");
  const lineStart = lines.slice(0, want.line - 1).reduce((n, l) => n + l.length + 1, 0);
  expect(d.span.start).toBe(lineStart + want.col - 1);
  expect(d.span.end).toBeGreaterThan(d.span.start);
  expect(d.message.startsWith(CODES[d.code].title)).toBe(true);
  expect(d.hint.trim().length).toBeGreaterThan(0);
  const text = formatDiagnostic(d, ROOT);
  const out = text.split("\n");
  expect(out[0]).toBe(`error[${d.code}]: ${d.message}`);
  expect(text).toContain(`test/fixtures/errors/${fx.name}:${want.line}:${want.col}`);
  const source = lines[want.line - 1]!;
  const at = out.indexOf(`${want.line} | ${source}`);
  expect(at).toBeGreaterThan(0);
  const caret = /^( *) \| ( *)(\^+)$/.exec(out[at + 1] ?? "");
  expect(caret).not.toBeNull();
  expect(caret![2]!.length).toBe(want.col - 1);
  expect(caret![2]!.length + caret![3]!.length).toBeLessThanOrEqual(source.length);
  expect(out.slice(at + 2).some((l) => /^\s*= hint:\s*\S/.test(l))).toBe(true);
}

describe("tile diagnostic fixtures", () => {
  test("every tile code NGP1040 .. NGP1046 has a fixture, and is in the CODES table", () => {
    const covered = new Set(fixtures.flatMap((f) => f.expect.map((e) => e.code)));
    for (const code of TILE_CODES) {
      expect(code in CODES).toBe(true);
      expect({ code, covered: covered.has(code) }).toEqual({ code, covered: true });
    }
  });

  for (const fx of fixtures) {
    for (const target of fx.targets) {
      const wanted = fx.expect.map((e) => `${e.code} at ${e.line}:${e.col}`);
      test(`${fx.name} (${target}) -> ${wanted.join(", ")}`, () => {
        const { error, list } = diagnosticsOf(fx.file, target, { config: fx.config });
        expect(list.map((d) => `${d.code} at ${d.span.line}:${d.span.col}`)).toEqual(wanted);
        list.forEach((d, i) => checkDiagnostic(fx, d, fx.expect[i]!));
        if (fx.mentions !== undefined) expect(list[0]!.message).toContain(fx.mentions);
        expect(error.message).toEndWith(`\n\n${list.length} error${list.length === 1 ? "" : "s"}`);
      });
    }
  }
});

// Variations compiled from in-memory text at a path inside the fixture folder (no such file exists,
// so the imports resolve).
describe("tile diagnostics that depend on the configuration or on constants", () => {
  const HEAD =
    `import { type Buf, type Const, type f32, type i32, type u32 } from "../../../dsl/index.ts";\n` +
    `import { accumulate, loadRows, loadTile, matmul, matmulNT, matmulTN, storeRows, tileSum } from "../../../dsl/tiles.ts";\n`;
  const file = (name: string) => join(FIXTURES, `__tile_${name}.ts`);
  const compiles = (name: string, body: string, config?: ConfigValue) => compileFile(file(name), "cpu", { text: HEAD + body, config });
  const rejects = (name: string, body: string, config?: ConfigValue) => diagnosticsOf(file(name), "cpu", { text: HEAD + body, config }).list;

  const MM = `export interface Cfg { rows: i32; k: i32; n: i32 }
/**
 * @kernel
 * @block rows
 */
export function mm(block: u32, cfg: Const<Cfg>, x: Buf<f32>, w: Buf<f32>, out: Buf<f32>): void {
  storeRows(out, cfg.n, 0, matmulNT(loadRows(x, cfg.k, 0, cfg.k), loadTile(w, 0, cfg.n, 6)));
}
`;

  test("a shape is checked once specialized: matmulNT matches for k = 6, not for k = 5 (NGP1041 naming both shapes)", () => {
    expect(compiles("mm_ok", MM, { rows: 8, k: 6, n: 3 }).kernels.map((k) => k.name)).toEqual(["mm"]);
    const list = rejects("mm_bad", MM, { rows: 8, k: 5, n: 3 });
    expect(list.map((d) => `${d.code} at ${d.span.line}:${d.span.col}`)).toEqual(["NGP1041 at 9:28"]);
    expect(list[0]!.message).toContain("8×5");
    expect(list[0]!.message).toContain("3×6");
  });

  test("matmulTN's inner dimension is the rows of both operands", () => {
    const body = `/**
 * @kernel
 * @block 16
 */
export function g(block: u32, a: Buf<f32>, w: Buf<f32>, grad: Buf<f32>): void {
  accumulate(grad, 0, matmulTN(loadRows(a, 4, 0, 4), loadTile(w, 0, 15, 2)));
}
`;
    const list = rejects("tn_bad", body);
    expect(list.map((d) => d.code)).toEqual(["NGP1041"]);
    expect(list[0]!.message).toContain("16 vs 15");
  });

  test("a shape that is not a compile-time constant (a run-time parameter) is refused", () => {
    const body = `/**
 * @kernel
 * @block 16
 */
export function load(block: u32, w: Buf<f32>, out: Buf<f32>, cols: i32): void {
  storeRows(out, 4, 0, loadRows(w, 4, 0, cols));
}
`;
    const list = rejects("runtime_shape", body);
    expect(list).toHaveLength(1);
    expect(list[0]!.code).toBe("NGP1011");
    expect(list[0]!.span.line).toBe(8);
  });

  test("tileSum's axis must be 0 or 1", () => {
    const body = `/**
 * @kernel
 * @block 16
 */
export function s(block: u32, x: Buf<f32>, total: Buf<f32>): void {
  accumulate(total, 0, tileSum(loadRows(x, 4, 0, 4), 2));
}
`;
    const list = rejects("axis", body);
    expect(list.map((d) => d.code)).toEqual(["NGP1041"]);
    expect(list[0]!.message).toContain("axis");
  });

  test("@block naming a configuration field that is not a valid row count is refused at specialization", () => {
    const list = rejects("rows_zero", MM, { rows: 0, k: 6, n: 3 });
    expect(list).toHaveLength(1);
    expect(list[0]!.message).toContain("@block rows");
  });

  test("a matmul whose result is unused is still shape-checked", () => {
    const body = `/**
 * @kernel
 * @block 16
 */
export function k(block: u32, x: Buf<f32>, out: Buf<f32>): void {
  const t = loadRows(x, 4, 0, 4);
  const unused = matmul(t, t);
  storeRows(out, 4, 0, t);
}
`;
    const list = rejects("unused", body);
    expect(list.map((d) => `${d.code} at ${d.span.line}`)).toEqual(["NGP1041 at 9"]);
  });
});

// The diagnostics of the tile operations (NGP1040 .. NGP1046): the codes their fixtures
// (test/fixtures/errors/tile_*.ts, run by test/codegen/diagnostics.test.ts) must cover, then in-memory variations that
// show what only specialization decides (a shape that matches under one configuration and not
// another) and shapes that are no compile-time constant.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { compileFile } from "../../codegen/compile.ts";
import { CODES } from "../../codegen/diagnostics.ts";
import type { ConfigValue } from "../../codegen/specialize.ts";
import { FIXTURES, diagnosticsOf, fixtures } from "../error_fixtures.ts";

const TILE_CODES = ["NGP1040", "NGP1041", "NGP1042", "NGP1043", "NGP1044", "NGP1045", "NGP1046"];

test("every tile code NGP1040 .. NGP1046 has a fixture (test/codegen/diagnostics.test.ts runs them), and is in the CODES table", () => {
  const covered = new Set(fixtures.filter((f) => f.name.startsWith("tile_")).flatMap((f) => f.expect.map((e) => e.code)));
  for (const code of TILE_CODES) {
    expect(code in CODES).toBe(true);
    expect({ code, covered: covered.has(code) }).toEqual({ code, covered: true });
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

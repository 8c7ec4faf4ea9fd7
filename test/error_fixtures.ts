// The error fixtures (test/fixtures/errors/*.ts) and how they are checked, shared by
// test/codegen/diagnostics.test.ts (every fixture) and test/codegen/tile_diagnostics.test.ts (the tile codes' coverage and variations).
//
// Every file in test/fixtures/errors/ is a small kernel that is valid except for one mistake (or,
// for the multi-diagnostic fixtures, a few independent ones). Its first
// line says what the compiler must report:
//
//   // expect: NGP1001 at 6:13[, NGP1015 at 7:24 ...] [targets cpu js] [mentions "text"] [config {json}]
//
//   - `CODE at line:col`: all the diagnostics, in source order (1-based; col is the first character
//     of the node the compiler points at). The list is exact: every independent mistake is
//     reported, and nothing that only follows from one (a rejected declaration, an unknown name).
//   - `targets`: the targets to compile for (default: cpu). The error must not depend on it.
//   - `mentions`: text the first diagnostic's message must contain (e.g. the config field's name).
//   - `config`: the Const<> configuration passed to compileFile (JSON, must end the line).
//
// Adding a fixture adds a test.
import { expect } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { compileFile } from "../codegen/compile.ts";
import { CODES, DiagnosticError, formatDiagnostic, type Diagnostic } from "../codegen/diagnostics.ts";
import type { ConfigValue } from "../codegen/specialize.ts";
import type { Target } from "../dsl/abi.ts";
import { ROOT } from "./util.ts";

export const FIXTURES = join(ROOT, "test", "fixtures", "errors");
export const EXAMPLES = join(ROOT, "dsl", "examples");
export const TARGETS: Target[] = ["cpu", "cuda", "js"];

export interface Expectation {
  code: string;
  line: number;
  col: number;
}

export interface Fixture {
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

export function readFixture(name: string): Fixture {
  const file = join(FIXTURES, name);
  const text = readFileSync(file, "utf8");
  const header = text.split("\n", 1)[0]!;
  const m = HEADER.exec(header);
  if (!m) throw new Error(`${name}: the first line must be '// expect: NGPxxxx at line:col ...', got '${header}'`);
  const expectations = m[1]!.split(/,\s*/).map((part) => {
    const e = EXPECTATION.exec(part.trim());
    if (!e) throw new Error(`${name}: cannot read expectation '${part}' (want 'NGPxxxx at line:col')`);
    if (!(e[1]! in CODES)) throw new Error(`${name}: ${e[1]} is not in the CODES table`);
    return { code: e[1]!, line: Number(e[2]), col: Number(e[3]) };
  });
  const targets = (m[2]?.split(" ") ?? ["cpu"]) as Target[];
  for (const t of targets) if (!TARGETS.includes(t)) throw new Error(`${name}: unknown target '${t}'`);
  return { name, file, text, expect: expectations, targets, mentions: m[3], config: m[4] ? (JSON.parse(m[4]) as ConfigValue) : undefined };
}

export const fixtures = readdirSync(FIXTURES)
  .filter((f) => f.endsWith(".ts"))
  .sort()
  .map(readFixture);

/** Compile and return the diagnostics; fail the test if the compiler accepts the file or crashes. */
export function diagnosticsOf(file: string, target: Target, opts: { config?: ConfigValue; text?: string } = {}): { error: DiagnosticError; list: Diagnostic[] } {
  let thrown: unknown;
  try {
    compileFile(file, target, opts);
  } catch (e) {
    thrown = e;
  }
  if (thrown === undefined) throw new Error(`${basename(file)} compiled for ${target} without a diagnostic`);
  if (!(thrown instanceof DiagnosticError)) throw new Error(`${basename(file)}: the compiler crashed instead of reporting a diagnostic: ${(thrown as Error)?.stack ?? thrown}`);
  expect(thrown.diagnostics.length).toBeGreaterThan(0);
  return { error: thrown, list: thrown.diagnostics };
}

/** Check one diagnostic against its expectation, and the rendering of its code frame. */
export function checkDiagnostic(fx: Fixture, d: Diagnostic, want: Expectation): void {
  expect(`${d.code} at ${d.span.line}:${d.span.col}`).toBe(`${want.code} at ${want.line}:${want.col}`);
  expect(d.span.file).toBe(fx.file);
  // The offsets agree with line:col.
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
  // The source line, then a caret line under the reported column.
  const source = lines[want.line - 1]!;
  const at = out.indexOf(`${want.line} | ${source}`);
  expect(at).toBeGreaterThan(0);
  const gutter = " ".repeat(String(want.line).length);
  const caret = /^( *) \| ( *)(\^+)$/.exec(out[at + 1] ?? "");
  expect(caret).not.toBeNull();
  expect(caret![1]).toBe(gutter);
  expect(caret![2]!.length).toBe(want.col - 1);
  expect(caret![2]!.length + caret![3]!.length).toBeLessThanOrEqual(source.length);
  const hint = out.slice(at + 2).find((l) => l.trimStart().startsWith("= hint:"));
  expect(hint).toBeDefined();
  expect(hint!.replace(/^\s*= hint:/, "").trim().length).toBeGreaterThan(0);
}


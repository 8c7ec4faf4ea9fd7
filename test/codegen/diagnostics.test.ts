// The error-fixture suite (the fixtures' format: test/error_fixtures.ts): every file in
// test/fixtures/errors/ is a small kernel that is valid
// except for one mistake (or, for the multi-diagnostic fixtures, a few independent ones). Its first
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
// Adding a fixture adds a test. The suite also checks that the valid examples in dsl/examples
// compile for every target without diagnostics.
import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { compileFile } from "../../codegen/compile.ts";
import { DiagnosticError, type Diagnostic } from "../../codegen/diagnostics.ts";
import type { ConfigValue } from "../../codegen/specialize.ts";
import { EXAMPLES, FIXTURES, TARGETS, checkDiagnostic, diagnosticsOf, fixtures } from "../error_fixtures.ts";

describe("error fixtures", () => {
  for (const fx of fixtures) {
    for (const target of fx.targets) {
      const wanted = fx.expect.map((e) => `${e.code} at ${e.line}:${e.col}`);
      test(`${fx.name} (${target}) -> ${wanted.join(", ")}`, () => {
        const { error, list } = diagnosticsOf(fx.file, target, { config: fx.config });
        expect(list.map((d) => `${d.code} at ${d.span.line}:${d.span.col}`)).toEqual(wanted);
        list.forEach((d, i) => checkDiagnostic(fx, d, fx.expect[i]!));
        if (fx.mentions !== undefined) expect(list[0]!.message).toContain(fx.mentions);
        // The thrown error's own text is the formatted diagnostics, then their count.
        for (const e of fx.expect) expect(error.message).toContain(`${fx.name}:${e.line}:${e.col}`);
        expect(error.message).toContain(`error[${fx.expect[0]!.code}]`);
        expect(error.message).toEndWith(`\n\n${list.length} error${list.length === 1 ? "" : "s"}`);
      });
    }
  }

  test("the fixtures cover at least 15 distinct codes", () => {
    const codes = new Set(fixtures.flatMap((f) => f.expect.map((e) => e.code)));
    expect(codes.size).toBeGreaterThanOrEqual(15);
  });

  test("a configuration error names the offending field", () => {
    const cfgFixtures = fixtures.filter((f) => f.expect[0]!.code === "NGP1022" && f.config !== undefined);
    expect(cfgFixtures.length).toBeGreaterThan(0);
    for (const f of cfgFixtures) expect(f.mentions).toBeDefined();
  });
});

describe("multiple diagnostics", () => {
  const multi = fixtures.filter((f) => f.expect.length > 1);

  test("there is a fixture with independent mistakes in different statements", () => {
    expect(multi.length).toBeGreaterThan(0);
    for (const f of multi) expect(new Set(f.expect.map((e) => e.line)).size).toBe(f.expect.length);
  });

  // Checked like every fixture above; named here for what each one guards.
  test("an unknown name hides no independent type error, in its kernel or another", () => {
    const fx = fixtures.find((f) => f.name === "unknown_name_and_type_errors.ts")!;
    expect(diagnosticsOf(fx.file, "cpu").list.map((d) => d.code)).toEqual(["NGP1024", "NGP1018", "NGP1009"]);
  });

  test("a typo used several times gives one diagnostic", () => {
    const fx = fixtures.find((f) => f.name === "typo_no_cascade.ts")!;
    const { error, list } = diagnosticsOf(fx.file, "cpu");
    expect(list).toHaveLength(1);
    expect(error.message).toEndWith("\n\n1 error");
  });
});

describe("valid examples compile without diagnostics", () => {
  const CONFIGS: Record<string, ConfigValue> = {
    "polynomial.ts": { degree: 3, coefficients: [1, 0.5, 0.25, 0.125], clampInput: true },
    "smoothstep.ts": { smooth: true },
    "local_arrays.ts": { width: 5, weights: [0.1, 0.2, 0.4, 0.2, 0.1] },
  };
  const examples = readdirSync(EXAMPLES).filter((f) => f.endsWith(".ts")).sort();

  test("there are examples", () => {
    expect(examples.length).toBeGreaterThan(0);
  });

  for (const name of examples) {
    for (const target of TARGETS) {
      test(`${name} (${target})`, () => {
        let mod;
        try {
          mod = compileFile(join(EXAMPLES, name), target, { config: CONFIGS[name] });
        } catch (e) {
          throw new Error(`${name} does not compile for ${target}:\n${e instanceof DiagnosticError ? e.message : (e as Error).stack}`);
        }
        expect(mod.target).toBe(target);
        expect(mod.source.length).toBeGreaterThan(0);
        expect(mod.kernels.length).toBeGreaterThan(0);
        for (const k of mod.kernels) expect(mod.source).toContain(k.name);
      });
    }
  }
});

// Regressions: inputs the compiler once accepted (or misreported) although it must reject them.
// Each is a minimal reproduction, compiled from in-memory text at a path inside the fixture folder
// (no such file exists, so the imports resolve).
describe("regressions", () => {
  const HEADER_IMPORT = `import { type Buf, type f32, type i32, type u32, type bool, sqrt } from "../../../dsl/index.ts";\n`;
  const repro = (name: string, body: string, check?: (list: Diagnostic[]) => void) =>
    test(name, () => {
      const file = join(FIXTURES, `__bug_${name.replace(/\W+/g, "_")}.ts`);
      const { list } = diagnosticsOf(file, "cpu", { text: HEADER_IMPORT + body });
      check?.(list);
    });

  repro(
    "a TypeScript syntax error is reported as a syntax error, not as unknown name ''",
    `/** @kernel */\nexport function k(i: u32, out: Buf<f32>): void {\n  out[i] = ;\n}\n`,
    (list) => expect(list[0]!.message).not.toContain("''"),
  );
  repro("a TypeScript syntax error (stray closing brace) is not ignored", `/** @kernel */\nexport function k(i: u32, out: Buf<f32>): void {\n  out[i] = 1.0;\n}}\n`);
  repro(
    "a decimal literal in an i32 module constant is rejected (C emits 1, folding uses 1.5)",
    `const K: i32 = 1.5;\n/** @kernel */\nexport function k(i: u32, out: Buf<f32>): void {\n  out[i] = f32(K) * 2.0;\n}\n`,
    (list) => expect(list[0]!.span.line).toBe(2),
  );
  repro("Buf<bool> is rejected (not an ABI element type)", `/** @kernel */\nexport function k(i: u32, m: Buf<bool>, out: Buf<bool>): void {\n  out[i] = !m[i];\n}\n`);
  repro("a kernel named like a C library function (round) is rejected", `/** @kernel */\nexport function round(i: u32, x: Buf<f32>, out: Buf<f32>): void {\n  out[i] = x[i];\n}\n`);
  repro(
    "a local named like a C library function (sqrtf) is rejected or renamed",
    `/** @kernel */\nexport function k(i: u32, x: Buf<f32>, out: Buf<f32>): void {\n  const sqrtf = x[i] * 2.0;\n  out[i] = sqrt(x[i]) + sqrtf;\n}\n`,
  );
  repro(
    "a syntax error is reported alone: the rest of TypeScript's recovered tree is not checked",
    `/** @kernel */\nexport function k(i: u32, out: Buf<f32>): void {\n  out[i] = ;\n  out[i] = gain;\n}\n`,
    (list) => expect(list.map((d) => d.code)).toEqual(["NGP1000"]),
  );
  repro("a destructured parameter is rejected", `/** @kernel */\nexport function k(i: u32, { length }: Buf<f32>, out: Buf<f32>): void {\n  out[i] = 1.0;\n}\n`);
});

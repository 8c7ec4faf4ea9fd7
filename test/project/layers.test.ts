// The house's layers (docs/architecture.md): every .ts file's imports, static (`import ... from`,
// `export ... from`) and dynamic (`await import("...")`), type-only ones included, read with a
// regular expression; no file may import against the table below, and no files may import each
// other in a circle.
import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { ROOT } from "../util.ts";


/**
 * Each layer (a folder, or a file) and what its files may import besides their own layer's. The
 * longest matching name wins. The same table, as a picture, heads docs/architecture.md.
 */
const MAY_IMPORT: Record<string, string[]> = {
  // The kernel language and the contracts every layer shares (abi.ts, errors.ts): nothing.
  "dsl/": [],
  // The compiler: the language. Not the runtime, nor anything built on it.
  "codegen/": ["dsl/"],
  // Builds, caches, loads and calls emitted modules: the ABI and the errors only, not the compiler.
  "runtime/": ["dsl/abi.ts", "dsl/errors.ts"],
  // loadKernels (load.ts, compile then open) and the modules built on it: the three below.
  "modules/": ["codegen/", "runtime/", "dsl/"],
  // The trainer: kernels through the modules; no compiler of its own.
  "train/": ["modules/", "runtime/", "dsl/"],
  // The commands and their shared flag table and input layer.
  "cli/": ["train/", "modules/", "codegen/", "runtime/", "dsl/"],
  // Benchmarks and maintainer scripts: commands too, with cli/'s flag handling.
  "bench/": ["cli/", "train/", "modules/", "codegen/", "runtime/", "dsl/"],
  "scripts/": ["cli/", "train/", "modules/", "codegen/", "runtime/", "dsl/"],
  // Kernel files written as a user would (encoding variants).
  "examples/": ["dsl/"],
  // The package's entry point: the library, no command.
  "index.ts": ["train/", "modules/", "codegen/", "runtime/", "dsl/"],
  "test/": ["*"],
};


const STATIC = /^[ \t]*(?:import|export)\b[^"'`;]*?\bfrom\s*["']([^"']+)["']|^[ \t]*import\s*["']([^"']+)["']/gm;
const DYNAMIC = /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g;

/** The project's .ts files (not node_modules, not the generated code), relative to the root. */
function sources(): string[] {
  return [...new Bun.Glob("**/*.ts").scanSync({ cwd: ROOT })].filter((f) => !f.startsWith("node_modules/") && !f.startsWith("generated/") && !f.includes("/node_modules/")).sort();
}

/** What `spec`, imported by `file`, names: a project file relative to the root, or undefined (a package). */
function target(file: string, spec: string): string | undefined {
  let path: string;
  if (spec === "ngp-kernels" || spec === "ngp-kernels/dsl") path = spec === "ngp-kernels" ? "index.ts" : "dsl/index.ts";
  else if (spec.startsWith("ngp-kernels/")) path = spec.slice("ngp-kernels/".length);
  else if (spec.startsWith(".")) path = relative(ROOT, resolve(ROOT, dirname(file), spec));
  else return undefined;
  for (const candidate of [path, `${path}.ts`, join(path, "index.ts")]) if (candidate.endsWith(".ts") && existsSync(join(ROOT, candidate))) return candidate;
  return path.endsWith(".ts") ? path : undefined; // a missing .ts file still names its layer (an error fixture's)
}

/** Each file's imports of project files: comments dropped (their examples are not imports). */
function imports(file: string): string[] {
  const text = readFileSync(join(ROOT, file), "utf8")
    .split("\n")
    .filter((line) => !/^\s*(\/\/|\*|\/\*)/.test(line))
    .join("\n");
  const specs = [...text.matchAll(STATIC)].map((m) => m[1] ?? m[2]!).concat([...text.matchAll(DYNAMIC)].map((m) => m[1]!));
  return [...new Set(specs.map((s) => target(file, s)).filter((t): t is string => t !== undefined && t !== file))];
}

function layerOf(file: string): string | undefined {
  return Object.keys(MAY_IMPORT)
    .filter((l) => file === l || (l.endsWith("/") && file.startsWith(l)))
    .sort((a, b) => b.length - a.length)[0];
}

const graph = new Map(sources().map((f) => [f, imports(f)]));

test("every file belongs to a layer, and imports only its own layer and those the table allows", () => {
  const problems: string[] = [];
  for (const [file, deps] of graph) {
    const layer = layerOf(file);
    if (!layer) {
      problems.push(`${file}: in no layer of test/project/layers.test.ts MAY_IMPORT`);
      continue;
    }
    const allowed = MAY_IMPORT[layer]!;
    for (const dep of deps) {
      if (allowed.includes("*") || layerOf(dep) === layer) continue;
      if (!allowed.some((a) => dep === a || (a.endsWith("/") && dep.startsWith(a)))) problems.push(`${file} imports ${dep} (${layer} may import ${allowed.join(", ") || "nothing outside itself"})`);
    }
  }
  expect(problems).toEqual([]);
});

test("no files import each other in a circle", () => {
  // Tarjan's strongly connected components: every component of more than one file is a circle.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const circles: string[][] = [];
  let next = 0;
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      on.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1) circles.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  expect(circles.sort()).toEqual([]);
});

test("bun run params loads neither the compiler nor the runtime (static imports that are not type-only)", () => {
  const loaded = new Set<string>();
  const visit = (file: string) => {
    if (loaded.has(file)) return;
    loaded.add(file);
    const text = readFileSync(join(ROOT, file), "utf8");
    for (const m of text.matchAll(/^[ \t]*import\s+(?!type\b)[^"'`;]*?\bfrom\s*["']([^"']+)["']/gm)) {
      const dep = target(file, m[1]!);
      if (dep && existsSync(join(ROOT, dep))) visit(dep);
    }
  };
  visit("cli/params.ts");
  // codegen/diagnostics.ts is the codes table (and `nearest`), which every command's error path uses.
  expect([...loaded].filter((f) => (f.startsWith("codegen/") && f !== "codegen/diagnostics.ts") || f.startsWith("runtime/") || f === "modules/load.ts")).toEqual([]);
});

test("the trainer knows no data source: of train/data/ it loads open.ts only (the configuration's source; the others' types at most), and tests no source's class", () => {
  const text = readFileSync(join(ROOT, "train/trainer.ts"), "utf8");
  const loaded = [...text.matchAll(/^[ \t]*import\s+(?!type\b)[^"'`;]*?\bfrom\s*["']([^"']+)["']/gm)].map((m) => target("train/trainer.ts", m[1]!));
  expect(loaded.filter((f) => f?.startsWith("train/data/")).sort()).toEqual(["train/data/open.ts"]);
  expect(text).not.toMatch(/instanceof \w*(Source|Image|Points?)\b/);
});

test("the seeded generator (mulberry32) is written once, in modules/random.ts", () => {
  const copies = [...graph.keys()].filter((f) => f !== "test/project/layers.test.ts" && /0x6d2b79f5/i.test(readFileSync(join(ROOT, f), "utf8")));
  expect(copies.sort()).toEqual(["modules/random.ts"]);
});

test("the reader sees imports of every form", () => {
  expect(imports("modules/load.ts")).toContain("codegen/compile.ts"); // `await import(...)`, and `import type`
  expect(imports("dsl/index.ts")).toEqual(expect.arrayContaining(["dsl/types.ts", "dsl/intrinsics.ts", "dsl/tiles.ts"])); // `export ... from`
  expect(imports("examples/variants/triangle_blend.ts")).toEqual(expect.arrayContaining(["dsl/index.ts", "dsl/kernels/lookup.ts"])); // "ngp-kernels/..."
});

// Kernels are ordinary TypeScript: everything in dsl/ type-checks with the project's tsconfig,
// so editors help kernel authors (and a kernel that TypeScript rejects is a bug in the example).
import { expect, test } from "bun:test";
import { resolve } from "node:path";
import { Project } from "ts-morph";

const ROOT = resolve(import.meta.dir, "..");

test("dsl/ type-checks under tsconfig.json", () => {
  const project = new Project({ tsConfigFilePath: resolve(ROOT, "tsconfig.json"), skipAddingFilesFromTsConfig: true });
  project.addSourceFilesAtPaths(resolve(ROOT, "dsl/**/*.ts"));
  const problems = project.getPreEmitDiagnostics().map((d) => project.formatDiagnosticsWithColorAndContext([d]));
  expect(problems).toEqual([]);
}, 60_000);

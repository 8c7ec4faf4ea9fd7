// The whole project type-checks under tsconfig.json (strict): the compiler, the runtime, the
// tests, and the kernels, which are ordinary TypeScript so that editors help kernel authors.
// (Error fixtures that TypeScript itself rejects carry // @ts-nocheck.)
import { expect, test } from "bun:test";
import { resolve } from "node:path";
import { Project } from "ts-morph";

test("the project type-checks under tsconfig.json", () => {
  const project = new Project({ tsConfigFilePath: resolve(import.meta.dir, "../../tsconfig.json") });
  const problems = project.getPreEmitDiagnostics().map((d) => project.formatDiagnosticsWithColorAndContext([d]));
  expect(problems).toEqual([]);
});

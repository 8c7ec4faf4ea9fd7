// Snapshots of what the compiler writes: generated/ holds the CUDA, C++ and JS of every shipped
// configuration (committed, reviewed like code). A compiler change that alters any of them fails
// here until `bun run codegen` rewrites generated/ and the diff is reviewed.
import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { generatedFiles } from "../codegen/generate.ts";
import { ROOT } from "../codegen/shipped.ts";

for (const { path, text } of generatedFiles()) {
  test(`${path} matches the compiler's output`, () => {
    const abs = resolve(ROOT, path);
    if (!existsSync(abs)) throw new Error(`${path} is missing: run bun run codegen`);
    // toBe shows a line diff on failure.
    expect(text).toBe(readFileSync(abs, "utf8"));
  });
}

// Snapshots of what the compiler writes: generated/ holds the CUDA, C++ and JS of every shipped
// configuration (committed, reviewed like code). A compiler change that alters any of them fails
// here until `bun run codegen` rewrites generated/ and the diff is reviewed.
import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { generatedFiles } from "../../scripts/generate.ts";
import { ROOT } from "../../modules/shipped.ts";

for (const { path, text } of generatedFiles()) {
  test(`${path} matches the compiler's output`, () => {
    const abs = resolve(ROOT, path);
    if (!existsSync(abs)) throw new Error(`${path} is missing: run bun run codegen`);
    // toBe shows a line diff on failure.
    expect(text).toBe(readFileSync(abs, "utf8"));
  });
}

// What the schedule's prefetch variants cover, read off the shipped 2D grid (coarse levels dense
// and small, the finest hashed into 2^19 entries): the table lines of the hashed levels are
// prefetched ahead, in the forward (gathers) and in the backward (scatter-adds), never those of a
// table that stays in cache, and a prefetch variant writes nothing.
test("prefetch variants: the large tables' gathers and scatters, nothing else", () => {
  const cpp = generatedFiles().find((f) => f.path.endsWith("hashgrid_2d.cpp"))!.text;
  const fn = (name: string) => cpp.match(new RegExp(`NGP_FN void ${name}\\(.*?\\n}\\n`, "s"))?.[0];
  for (const kernel of ["gridForward", "gridBackward"]) {
    expect(fn(`${kernel}_pass0_prefetch`)).toBeUndefined(); // level 0: a 16 x 16 dense table
    const finest = fn(`${kernel}_pass15_prefetch`)!;
    expect(finest).toContain("__builtin_prefetch(&");
    expect(finest).not.toMatch(/\b(out|grad)\[[^\]]*\]\s*(\+?=)/);
    expect(cpp).toContain(`${kernel}_pass15_prefetch(ngp_g + 64,`);
  }
});

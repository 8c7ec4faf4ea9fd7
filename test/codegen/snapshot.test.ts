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
// table that stays in cache, each line once; the backward (owner schedule: a level walks every
// point) also prefetches its rows of dy at every level; a prefetch variant writes nothing.
test("prefetch variants: the large tables' gathers and scatters, the backward's dy rows, nothing else", () => {
  const cpp = generatedFiles().find((f) => f.path.endsWith("hashgrid_2d.cpp"))!.text;
  const fn = (name: string) => cpp.match(new RegExp(`NGP_FN void ${name}\\(.*?\\n}\\n`, "s"))?.[0];
  const prefetched = (body: string) => [...body.matchAll(/__builtin_prefetch\(&(\w+)\[/g)].map((m) => m[1]);
  expect(fn("gridForward_pass0_prefetch")).toBeUndefined(); // level 0: a 16 x 16 dense table
  expect(prefetched(fn("gridBackward_pass0_prefetch")!)).toEqual(["dy"]); // its dy rows only
  expect(prefetched(fn("gridForward_pass15_prefetch")!)).toEqual(["params", "params", "params", "params"]); // one per corner
  expect(prefetched(fn("gridBackward_pass15_prefetch")!).sort()).toEqual(["dy", "grad", "grad", "grad", "grad"]);
  for (const kernel of ["gridForward", "gridBackward"]) {
    expect(fn(`${kernel}_pass15_prefetch`)!).not.toMatch(/\b(out|grad)\[[^\]]*\]\s*(\+?=)/);
    expect(cpp).toContain(`${kernel}_pass15_prefetch(ngp_g + 64,`);
  }
});

// A prefetch variant runs ahead of its pass (the lines of point i + 16 while point i runs), so it
// must write nothing, in every generated CPU module: no atomic add, no store to a buffer it was
// given writable (a loop or branch that writes, such as the probed backward's slot loop adding
// logit gradients, is left out of the variant, not copied into it).
test("no prefetch variant writes: no atomic add, no store to a writable buffer, in every generated CPU module", () => {
  let variants = 0;
  for (const { path, text } of generatedFiles().filter((f) => f.path.endsWith(".cpp"))) {
    for (const m of text.matchAll(/NGP_FN void (\w+_prefetch)\(([^)]*)\) \{\n(.*?)\n\}\n/gs)) {
      variants++;
      const [, name, params, body] = m as unknown as [string, string, string, string];
      const writable = [...params.matchAll(/(?:^|, )(?!const )[\w ]+\* __restrict__ (\w+)/g)].map((p) => p[1]);
      expect({ at: `${path} ${name}`, atomics: body.includes("ngp_atomic_add(") }).toEqual({ at: `${path} ${name}`, atomics: false });
      const stores = writable.filter((b) => new RegExp(`\\b${b}\\[[^\\]]*\\]\\s*([-+*|&^]?=)(?!=)`).test(body));
      expect({ at: `${path} ${name}`, stores }).toEqual({ at: `${path} ${name}`, stores: [] });
    }
  }
  expect(variants).toBeGreaterThan(20);
});

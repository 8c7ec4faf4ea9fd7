// docs/diagnostics.md is generated from the codes table (codegen/diagnostics.ts) and must not drift from it.
import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { CODES } from "../../codegen/diagnostics.ts";
import { DOC_PATH, diagnosticsDoc, REGENERATE } from "../../scripts/diagnostics_doc.ts";

test("docs/diagnostics.md is the codes table as it is now", () => {
  const doc = existsSync(DOC_PATH) ? readFileSync(DOC_PATH, "utf8") : undefined;
  if (doc !== diagnosticsDoc()) {
    throw new Error(`docs/diagnostics.md is missing or differs from the codes table in codegen/diagnostics.ts: run \`${REGENERATE}\``);
  }
});

test("docs/diagnostics.md lists every code once, with its title", () => {
  const doc = diagnosticsDoc();
  for (const [code, { title }] of Object.entries(CODES)) {
    expect(doc.split(`| ${code} |`).length).toBe(2);
    // Titles are plain words, with at most a code span: they appear verbatim.
    if (!/[*_<>[\]|\\]/.test(title.replace(/`[^`]*`/g, ""))) expect(doc).toContain(`| ${code} | ${title} |`);
  }
});

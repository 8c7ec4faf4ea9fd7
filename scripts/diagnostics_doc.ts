// `bun scripts/diagnostics_doc.ts`: writes docs/diagnostics.md, the list of diagnostic codes, from the
// codes table (CODES in codegen/diagnostics.ts). test/project/diagnostics_doc.test.ts fails when the file
// and the table differ.
import { writeFileSync } from "node:fs";
import { CODES } from "../codegen/diagnostics.ts";

export const DOC_PATH = new URL("../docs/diagnostics.md", import.meta.url).pathname;
export const REGENERATE = "bun scripts/diagnostics_doc.ts";

/** Markdown for a table cell: code spans kept, other Markdown characters escaped, pipes escaped everywhere. */
function cell(text: string): string {
  return text
    .split(/(`[^`]*`)/)
    .map((part, i) => (i % 2 === 1 ? part : part.replace(/[\\*_<>[\]]/g, "\\$&")))
    .join("")
    .replace(/\|/g, "\\|");
}

/** The text of docs/diagnostics.md for the codes table as it is now. */
export function diagnosticsDoc(): string {
  const rows = Object.entries(CODES)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([code, { title, hint }]) => `| ${code} | ${cell(title)} | ${cell(hint)} |`);
  return [
    "# Diagnostics",
    "",
    `<!-- Generated from the codes table in codegen/diagnostics.ts by \`${REGENERATE}\`: do not edit. -->`,
    "",
    "Every error the compiler reports on a kernel has a code from this table, its message, the TypeScript",
    "position, the source line and a hint (the default hint below, or a more precise one). How they are",
    "reported: [the language](language.md#diagnostics).",
    "",
    "| code | error | hint |",
    "|---|---|---|",
    ...rows,
    "",
  ].join("\n");
}

if (import.meta.main) {
  writeFileSync(DOC_PATH, diagnosticsDoc());
  console.log(`wrote ${DOC_PATH}`);
}

// The README and docs/*.md link to each other, to their images and to headings: every relative link
// must name a file that exists and, after `#`, a heading of that file (GitHub's anchor for it).
import { expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { ROOT } from "../util.ts";

const PAGES = ["README.md", ...readdirSync(join(ROOT, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];

/** The text outside fenced code blocks. */
function prose(text: string): string {
  return text.replace(/^```[^\n]*\n[\s\S]*?^```$/gm, "");
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function anchor(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, "").replace(/ /g, "-");
}

function anchors(file: string): Set<string> {
  const text = prose(readFileSync(file, "utf8"));
  return new Set([...text.matchAll(/^#{1,6} (.*)$/gm)].map((m) => anchor(m[1]!)));
}

test.each(PAGES)("%s: every relative link and image names an existing file and heading", (page) => {
  const file = join(ROOT, page);
  const text = prose(readFileSync(file, "utf8"));
  const targets = [...text.matchAll(/\]\(([^)\s]+)\)/g), ...text.matchAll(/<img src="([^"]+)"/g)].map((m) => m[1]!);
  const broken: string[] = [];
  for (const target of targets) {
    if (/^[a-z]+:/.test(target)) continue; // https:, mailto:
    const [path, hash] = target.split("#") as [string, string | undefined];
    const dest = path === "" ? file : resolve(dirname(file), path);
    if (!existsSync(dest)) broken.push(`${target}: no file ${relative(ROOT, dest)}`);
    else if (hash !== undefined && !anchors(dest).has(hash)) broken.push(`${target}: no heading #${hash} in ${relative(ROOT, dest)}`);
  }
  expect(broken).toEqual([]);
});

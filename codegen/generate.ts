// `bun run codegen [--check]`: (re)write generated/ for every shipped configuration, or with
// --check only report files that differ from what the compiler writes now (exit status 1).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { Target } from "../runtime/abi.ts";
import { compileFile } from "./compile.ts";
import { ROOT, SHIPPED } from "./shipped.ts";

export const EXTENSIONS: Record<Target, string> = { cpu: "cpp", cuda: "cu", js: "js" };

/** Every generated file: its path under generated/ and the text the compiler writes now. */
export function generatedFiles(): { path: string; text: string }[] {
  return SHIPPED.flatMap((s) =>
    (Object.keys(EXTENSIONS) as Target[]).map((target) => ({
      path: `generated/${s.name}.${EXTENSIONS[target]}`,
      text: compileFile(resolve(ROOT, s.file), target, { config: s.config, kernels: s.kernels }).source,
    })),
  );
}

if (import.meta.main) {
  const check = process.argv.includes("--check");
  const stale: string[] = [];
  for (const { path, text } of generatedFiles()) {
    const abs = resolve(ROOT, path);
    const old = existsSync(abs) ? readFileSync(abs, "utf8") : undefined;
    if (old === text) continue;
    stale.push(path);
    if (!check) {
      mkdirSync(dirname(abs), { recursive: true });
      writeFileSync(abs, text);
    }
  }
  if (check && stale.length) {
    console.error(`generated/ is out of date (run bun run codegen):\n  ${stale.join("\n  ")}`);
    process.exit(1);
  }
  console.log(check ? "generated/ is up to date" : `${stale.length} file(s) written`);
}

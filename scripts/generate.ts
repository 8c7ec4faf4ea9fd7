// `bun run codegen [--check]`: (re)write generated/ for every shipped configuration, or with
// --check only report files that differ from what the compiler writes now (exit status 1).
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { Target } from "../dsl/abi.ts";
import { UsageError } from "../dsl/errors.ts";
import { readInputFile } from "../runtime/files.ts";
import { compileFile } from "../codegen/compile.ts";
import { ROOT, SHIPPED } from "../modules/shipped.ts";

export const EXTENSIONS: Record<Target, string> = { cpu: "cpp", cuda: "cu", js: "js" };

/** Every generated file: its path under generated/ and the text the compiler writes now. */
export function generatedFiles(): { path: string; text: string }[] {
  return SHIPPED.flatMap((s) => {
    const file = resolve(ROOT, s.file);
    const text = readInputFile(file, "kernel file");
    return (s.targets ?? (Object.keys(EXTENSIONS) as Target[])).map((target) => ({
      path: `generated/${s.name}.${EXTENSIONS[target]}`,
      text: compileFile(file, target, { text, config: s.config, kernels: s.kernels }).source,
    }));
  });
}

function main(argv: string[]): number {
  const usage = "usage: bun run codegen [--check]";
  let args;
  try {
    args = parseArgs({ args: argv, options: { check: { type: "boolean", default: false }, help: { type: "boolean", short: "h", default: false } } }).values;
  } catch (e) {
    return console.error(`${(e as Error).message}\n\n${usage}`), 2;
  }
  if (args.help) return console.log(usage), 0;
  const check = args.check;
  const stale: string[] = [];
  try {
    for (const { path, text } of generatedFiles()) {
      const abs = resolve(ROOT, path);
      const old = existsSync(abs) ? readInputFile(abs, "generated file") : undefined;
      if (old === text) continue;
      stale.push(path);
      if (!check) {
        mkdirSync(dirname(abs), { recursive: true });
        writeFileSync(abs, text);
      }
    }
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    return console.error(`error: ${e.message}`), 2;
  }
  if (check && stale.length) return console.error(`generated/ is out of date (run bun run codegen):\n  ${stale.join("\n  ")}`), 1;
  console.log(check ? "generated/ is up to date" : `${stale.length} file(s) written`);
  return 0;
}

if (import.meta.main) process.exit(main(process.argv.slice(2)));

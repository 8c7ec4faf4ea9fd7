// `bun run compile <file.ts> --target cuda|cpu|js [--config <json or file>] [--kernel name]`
// Prints the generated source, or the diagnostics and exit status 1.
import { existsSync } from "node:fs";
import { UsageError } from "../dsl/errors.ts";
import { readInputFile } from "../runtime/files.ts";
import { compileFile } from "../codegen/compile.ts";
import { readVariant } from "../codegen/parse.ts";
import type { ConfigValue } from "../codegen/specialize.ts";
import { GRID_KERNELS, checkVariant, gridConfig, gridKernels, parseHashGridOptions } from "../modules/hashgrid.ts";
import { parseFlags } from "./flags.ts";
import { runCommand } from "./run.ts";

const USAGE = `usage: bun run compile <file.ts> [--target cpu|cuda|js] [--config <json or file>] [--kernel <name>]...

Compiles the @kernel functions of a kernel-language file and prints the generated source. A
variant of the encoding (a file exporting spatialHash, interpolationWeight, cornerSlot or
encodeLevel, see dsl/kernels/lookup.ts) prints the hash grid's kernels built with it: the forward
and the gradients the compiler derives, as C++ and CUDA (or --target's), for the HashGrid options
given as --config (default: the grid of 16 levels in 2D, or in the dims the variant requires).
  --target   cpu (C++/OpenMP, default), cuda (CUDA C++) or js (exact-semantics JavaScript)
  --config   the Const<> configuration, as JSON text or the path of a JSON file
  --kernel   compile only this kernel (repeatable)
  --bounds-checks  check every buffer index at run time (what loadKernels does by default)
  --signature  print the kernel signatures (JSON) instead of the source`;

/** --config: JSON text, or the path of a JSON file when something exists at that path. */
function parseConfig(arg: string): ConfigValue {
  const isFile = existsSync(arg);
  const json = isFile ? readInputFile(arg, "--config file") : arg;
  try {
    return JSON.parse(json);
  } catch (e) {
    throw new UsageError(`${isFile ? `--config file ${arg} is not valid JSON` : "--config is neither a JSON file nor valid JSON"}: ${(e as Error).message}`);
  }
}

async function main(argv: string[]): Promise<number> {
  const options = {
    target: { type: "string" },
    config: { type: "string" },
    kernel: { type: "string", multiple: true },
    signature: { type: "boolean", default: false },
    "bounds-checks": { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  } as const;
  const parsed = parseFlags(argv, options, { positionals: true, usage: `\n${USAGE}` });
  const positionals = parsed.positionals;
  const values = parsed.values as { target?: string; config?: string; kernel?: string[]; signature: boolean; "bounds-checks": boolean; help: boolean };
  if (values.help) return console.log(USAGE), 0;
  if (positionals.length !== 1) return console.error(USAGE), 2;
  const file = positionals[0]!;
  const target = values.target ?? "cpu";
  if (target !== "cpu" && target !== "cuda" && target !== "js") return console.error(`error: --target must be cpu, cuda or js (got '${target}')`), 2;
  const text = readInputFile(file, "input file");
  const config = values.config === undefined ? undefined : parseConfig(values.config);
  // No kernel of its own: a variant of the encoding (readVariant refuses it if it replaces no part).
  if (!/@kernel\b/.test(text)) return await printVariant(file, values.target === undefined ? ["cpu", "cuda"] : [target], config, values.kernel);
  const mod = compileFile(file, target, { text, config, kernels: values.kernel, boundsChecks: values["bounds-checks"] });
  process.stdout.write(values.signature ? JSON.stringify(mod.kernels, null, 2) + "\n" : mod.source);
  return 0;
}

/**
 * The grid's kernels built with the variant (the HashGrid options in `config`; dims by default
 * the ones the variant needs, else 2), per target.
 */
async function printVariant(file: string, targets: ("cpu" | "cuda" | "js")[], config: ConfigValue | undefined, kernels: string[] | undefined): Promise<number> {
  const settings = parseHashGridOptions({ dims: readVariant(file, GRID_KERNELS).requires.dims ?? 2, ...(config ?? {}), variant: file });
  await checkVariant(settings, { dims: "--config's dims", levels: "--config's levels" });
  const chosen = gridKernels(settings);
  const names = kernels ?? [chosen.forward, chosen.paramGrad, chosen.inputGrad];
  for (const t of targets) {
    const mod = compileFile(GRID_KERNELS, t, { config: gridConfig(settings), kernels: names, variant: file });
    process.stdout.write(`// ---- ${file} in the hash grid (${t === "cpu" ? "C++" : t === "cuda" ? "CUDA" : "JavaScript"}): ${names.join(", ")}\n${mod.source}`);
  }
  return 0;
}

// drain: exitCode, not exit(): a large source written to a pipe is still being flushed.
await runCommand(main, { diagnosticStatus: 1, drain: true });

// `bun run compile <file.ts> --target cuda|cpu|js [--config <json or file>] [--kernel name]`
// Prints the generated source, or the diagnostics and exit status 1.
import { existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { compileFile } from "./compile.ts";
import { DiagnosticError, formatDiagnostic } from "./diagnostics.ts";

const USAGE = `usage: bun run compile <file.ts> [--target cpu|cuda|js] [--config <json or file>] [--kernel <name>]...

Compiles the @kernel functions of a kernel-language file and prints the generated source.
  --target   cpu (C++/OpenMP, default), cuda (CUDA C++) or js (exact-semantics JavaScript)
  --config   the Const<> configuration, as JSON text or the path of a JSON file
  --kernel   compile only this kernel (repeatable)
  --bounds-checks  check every buffer index at run time (what loadKernels does by default)
  --signature  print the kernel signatures (JSON) instead of the source`;

function main(argv: string[]): number {
  let args;
  try {
    args = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        target: { type: "string", default: "cpu" },
        config: { type: "string" },
        kernel: { type: "string", multiple: true },
        signature: { type: "boolean", default: false },
        "bounds-checks": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = args;
  if (values.help) return console.log(USAGE), 0;
  if (positionals.length !== 1) return console.error(USAGE), 2;
  const file = positionals[0]!;
  if (!existsSync(file)) return console.error(`error: no such file: ${file}`), 2;
  const target = values.target;
  if (target !== "cpu" && target !== "cuda" && target !== "js") return console.error(`error: --target must be cpu, cuda or js (got '${target}')`), 2;
  let config;
  if (values.config !== undefined) {
    const text = existsSync(values.config) ? readFileSync(values.config, "utf8") : values.config;
    try {
      config = JSON.parse(text);
    } catch (e) {
      return console.error(`error: --config is neither a JSON file nor valid JSON: ${(e as Error).message}`), 2;
    }
  }
  try {
    const mod = compileFile(file, target, { config, kernels: values.kernel, boundsChecks: values["bounds-checks"] });
    process.stdout.write(values.signature ? JSON.stringify(mod.kernels, null, 2) + "\n" : mod.source);
    return 0;
  } catch (e) {
    if (!(e instanceof DiagnosticError)) throw e;
    console.error(e.diagnostics.map((d) => formatDiagnostic(d)).join("\n\n"));
    console.error(`\n${e.diagnostics.length} error${e.diagnostics.length > 1 ? "s" : ""}`);
    return 1;
  }
}

process.exit(main(process.argv.slice(2)));

// The pipeline: parse -> check -> specialize -> emit. One call per (file, config, target).
import type { EmittedModule, Target } from "../runtime/abi.ts";
import { checkProgram } from "./check.ts";
import { DiagnosticSink, fail } from "./diagnostics.ts";
import { emitCpu } from "./emit/cpu.ts";
import { emitCuda } from "./emit/cuda.ts";
import { emitJs } from "./emit/js.ts";
import { parseProgram } from "./parse.ts";
import { specialize, type ConfigValue, type SpecializeOptions } from "./specialize.ts";

export interface CompileOptions extends SpecializeOptions {
  /** Compile only these kernels (default: every `@kernel` in the file). */
  kernels?: string[];
  /** The compile-time configuration bound to each kernel's Const<> parameter. */
  config?: ConfigValue;
  /** Source text to compile instead of reading the file. */
  text?: string;
}

const EMITTERS = { cpu: emitCpu, cuda: emitCuda, js: emitJs } as const;

export function compileFile(file: string, target: Target, opts: CompileOptions = {}): EmittedModule {
  // The front end reports every independent mistake at once; specializing needs a correct program.
  const sink = new DiagnosticSink();
  const program = parseProgram(file, sink, { text: opts.text });
  checkProgram(program, sink);
  sink.throwIfAny();
  // File-level diagnostics point at the top of the file.
  const top = { file: program.file, start: 0, end: 1, line: 1, col: 1 };
  const available = program.kernels.map((k) => k.name).join(", ") || "none";
  const kernels = opts.kernels
    ? opts.kernels.map((name) => program.kernels.find((k) => k.name === name) ?? fail("NGP1026", top, `'${name}' (kernels in this file: ${available})`))
    : program.kernels;
  if (kernels.length === 0) fail("NGP1026", top, "the file declares no kernel");
  // JS engines stop optimizing very large functions: unroll less there (the result is the same).
  const maxUnroll = opts.maxUnroll ?? (target === "js" ? 8 : 64);
  return EMITTERS[target](kernels.map((k) => specialize(program, k, opts.config, { ...opts, maxUnroll })), { boundsChecks: opts.boundsChecks });
}

// The pipeline: parse -> check -> specialize -> emit. One call per (file, config, target).
import type { EmittedModule, Target } from "../dsl/abi.ts";
import { checkProgram } from "./check.ts";
import { DiagnosticSink, fail } from "./diagnostics.ts";
import { emitCpu } from "./emit/cpu.ts";
import { emitCuda } from "./emit/cuda.ts";
import { emitJs } from "./emit/js.ts";
import { parseProgram } from "./parse.ts";
import { deriveAdjoint, deriveTileAdjoint } from "./adjoint.ts";
import { specialize, type ConfigValue, type SpecializeOptions } from "./specialize.ts";

export interface CompileOptions extends SpecializeOptions {
  /** Compile only these kernels (default: every `@kernel` in the file). */
  kernels?: string[];
  /** The compile-time configuration bound to each kernel's Const<> parameter. */
  config?: ConfigValue;
  /** Source text to compile instead of reading the file. */
  text?: string;
  /** A variant of the hash-grid encoding: its functions replace the `@replaceable` ones (dsl/kernels/lookup.ts). */
  variant?: string;
}

const EMITTERS = { cpu: emitCpu, cuda: emitCuda, js: emitJs } as const;
/** Loops a derived kernel's source may unroll (the adjoint needs straight-line code: 2^8 corners of an 8-D cell, say). */
const ADJOINT_UNROLL = 4096;

export function compileFile(file: string, target: Target, opts: CompileOptions = {}): EmittedModule {
  // The front end reports every independent mistake at once; specializing needs a correct program.
  const sink = new DiagnosticSink();
  const program = parseProgram(file, sink, { text: opts.text, variant: opts.variant });
  checkProgram(program, sink);
  sink.throwIfAny();
  // File-level diagnostics point at the top of the file.
  const top = { file: program.file, start: 0, end: 1, line: 1, col: 1 };
  // Kernels derived by automatic differentiation (`@adjoint` tags) are kernels of the file too.
  const derived = program.kernels.flatMap((k) => (k.adjoints ?? []).map((a) => ({ ...a, from: k })));
  const available = [...program.kernels.map((k) => k.name), ...derived.map((d) => d.name)].join(", ") || "none";
  const names = opts.kernels ?? [...program.kernels.map((k) => k.name), ...derived.map((d) => d.name)];
  if (names.length === 0) fail("NGP1026", top, "the file declares no kernel");
  // JS engines stop optimizing very large functions: unroll less there (the result is the same).
  const maxUnroll = opts.maxUnroll ?? (target === "js" ? 8 : 64);
  const specialized = names.map((name) => {
    const kernel = program.kernels.find((k) => k.name === name);
    if (kernel) return specialize(program, kernel, opts.config, { ...opts, maxUnroll });
    const d = derived.find((x) => x.name === name) ?? fail("NGP1026", top, `'${name}' (kernels in this file: ${available})`);
    // The adjoint needs straight-line code: unroll as on the native targets, JS included. A block
    // kernel's adjoint is taken of its tile program, before the tiles phase lowers it.
    const unrolled = { ...opts, maxUnroll: opts.maxUnroll ?? ADJOINT_UNROLL, derivatives: true };
    if (d.from.block !== undefined) return specialize(program, d.from, opts.config, { ...unrolled, tileProgram: (k) => ({ ...k, ...deriveTileAdjoint(k, d), name: d.name }) });
    return deriveAdjoint(specialize(program, d.from, opts.config, unrolled), d);
  });
  return EMITTERS[target](specialized, { boundsChecks: opts.boundsChecks });
}

// The compiler's pipeline, one call per (file, configuration, target). Its phases, in order:
//
//   parse         parse.ts         TypeScript source -> IR, names resolved (dsl, helpers, constants)
//   check         check.ts         types inferred and checked; every independent mistake reported
//   then for each kernel (a derived one starts from the kernel it is derived from):
//   specialize    specialize.ts    helpers inlined, the configuration bound
//   simplify      simplify.ts      constants folded (fold.ts) and propagated, dead branches removed,
//                                  loops over constant bounds unrolled
//   derivatives   specialize.ts    helpers' declared derivatives (@grad) dropped, except in an adjoint
//   tile adjoint  adjoint_tile.ts  a block kernel's adjoint (@adjoint), of its tile program
//   tiles         tiles.ts         tile operations lowered to local arrays, prelude calls and loops
//   tidy          tidy.ts          the code made to read as a person would write it
//   adjoint       adjoint.ts       a kernel's adjoint (@adjoint), of its straight-line code; tidied again
//   schedule      schedule.ts      (CPU) @schedule split/owner cut into passes, each in lane form or
//                                  not and with its prefetch variant; @schedule lanes checked;
//                                  a bounds-checked build (any target) runs unscheduled
//   emit          emit/cpu.ts, emit/cuda.ts, emit/js.ts
//
// From specialize to schedule each phase takes a kernel and returns one (ir.ts SpecializedKernel);
// the IR and the utilities the phases share are in ir.ts, the facts about intrinsics in their
// tables (dsl/intrinsics.ts, codegen/forms.ts).
import type { EmittedModule, Target } from "../dsl/abi.ts";
import { deriveAdjoint, type AdjointSpec } from "./adjoint.ts";
import { deriveTileAdjoint } from "./adjoint_tile.ts";
import { checkProgram } from "./check.ts";
import { DiagnosticSink, fail } from "./diagnostics.ts";
import { emitCpu } from "./emit/cpu.ts";
import { emitCuda } from "./emit/cuda.ts";
import { emitJs } from "./emit/js.ts";
import type { Func, Program, SpecializedKernel } from "./ir.ts";
import { parseProgram } from "./parse.ts";
import { schedule } from "./schedule.ts";
import { simplify } from "./simplify.ts";
import { specialize, withoutDerivatives, type ConfigValue } from "./specialize.ts";
import { tidy } from "./tidy.ts";
import { lowerTiles } from "./tiles.ts";

export interface CompileOptions {
  /** Compile only these kernels (default: every `@kernel` in the file). */
  kernels?: string[];
  /** The compile-time configuration bound to each kernel's Const<> parameter. */
  config?: ConfigValue;
  /** Source text to compile instead of reading the file. */
  text?: string;
  /** A variant of the hash-grid encoding: its functions replace the `@replaceable` ones (dsl/kernels/lookup.ts). */
  variant?: string;
  /** Loops with constant bounds and at most this many iterations are unrolled. */
  maxUnroll?: number;
  /** Check every buffer index at run time; an out-of-bounds access is reported, not performed. */
  boundsChecks?: boolean;
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
  const kernels = names.map((name) => {
    const kernel = program.kernels.find((k) => k.name === name);
    if (kernel) return compileKernel(program, kernel, undefined, target, opts);
    const d = derived.find((x) => x.name === name) ?? fail("NGP1026", top, `'${name}' (kernels in this file: ${available})`);
    return compileKernel(program, d.from, d, target, opts);
  });
  // The CPU runs scheduled kernels as passes. Checked kernels run unscheduled, one body per thread
  // as on CUDA: the owner schedule runs one point's passes concurrently and prefetch variants run a
  // pass's loads early, so a point's first bad access would not be the one recorded.
  const scheduled = opts.boundsChecks ? kernels.map((k) => ({ ...k, schedule: undefined })) : target === "cpu" ? kernels.map(schedule) : kernels;
  return EMITTERS[target](scheduled, { boundsChecks: opts.boundsChecks });
}

/** One kernel through the phases from specialization on; `adjoint`: the kernel derived from `source`. */
function compileKernel(program: Program, source: Func, adjoint: AdjointSpec | undefined, target: Target, opts: CompileOptions): SpecializedKernel {
  // The adjoint needs straight-line code: unroll as on the native targets, JS included. JS engines
  // stop optimizing very large functions: a kernel unrolls less there (the result is the same).
  const maxUnroll = opts.maxUnroll ?? (adjoint ? ADJOINT_UNROLL : target === "js" ? 8 : 64);
  let k = specialize(program, source, opts.config);
  k = simplify(k, maxUnroll);
  if (!adjoint) k = withoutDerivatives(k);
  // A block kernel's adjoint is taken of its tile program, before the tiles phase lowers it.
  if (adjoint && k.block) k = deriveTileAdjoint(k, adjoint);
  k = lowerTiles(k, opts.boundsChecks);
  k = tidy(k);
  if (adjoint && !k.block) k = tidy(deriveAdjoint(k, adjoint));
  return k;
}

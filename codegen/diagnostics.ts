// Diagnostics are data: a code from the table below, a message, the source span, and a hint.
// Every phase reports through `DiagnosticError`; the CLI and the runtime format them with a code
// frame pointing at the TypeScript line.
import { readFileSync } from "node:fs";
import { relative } from "node:path";
import { ExpectedError } from "../dsl/errors.ts";

/** A source position. `start`/`end` are offsets into the file text; line and col are 1-based. */
export interface Span {
  file: string;
  start: number;
  end: number;
  line: number;
  col: number;
}

/** The span of code the compiler writes itself (no source position). */
export const NO_SPAN: Span = { file: "", start: 0, end: 0, line: 0, col: 0 };

/** The diagnostics table: one entry per code, with the default hint. */
export const CODES = {
  NGP1000: { title: "syntax error", hint: "the file must be valid TypeScript" },
  NGP1001: { title: "conditional (ternary) expressions are not supported", hint: "use select(cond, a, b)" },
  NGP1002: { title: "nullish coalescing (??) and optional chaining are not supported", hint: "kernel values are never null; use select() for a choice" },
  NGP1003: { title: "strings are not supported in kernels", hint: "kernels compute on numbers only; log from the host side" },
  NGP1004: { title: "object and array literals are not supported in kernels", hint: "use scalars, buffers, or localArray<T>(size)" },
  NGP1005: { title: "classes are not supported in kernel files", hint: "write kernels and helpers as plain functions" },
  NGP1006: { title: "closures (arrow functions, function expressions, nested functions) are not supported", hint: "move the function to the top level and pass the values it needs as parameters" },
  NGP1007: { title: "recursion is not supported", hint: "kernels run on GPUs with tiny stacks; rewrite the recursion as a loop" },
  NGP1008: { title: "a kernel cannot return a value", hint: "write results into an output buffer; use a helper function to compute values" },
  NGP1009: { title: "implicit mix of numeric types", hint: "convert explicitly with f32(x), i32(x) or u32(x); write decimals as 1.0 for f32" },
  NGP1010: { title: "unknown function", hint: "call an intrinsic (see dsl/intrinsics.ts) or a function declared in a kernel file" },
  NGP1011: { title: "not a compile-time constant", hint: "use a literal, a module constant, or a Const<> config field" },
  NGP1012: { title: "`any` is not allowed in kernels", hint: "annotate with f32, i32, u32, bool, Buf<T> or Const<T>" },
  NGP1013: { title: "break/continue inside a loop that is unrolled", hint: "loops with compile-time bounds are unrolled; guard the body with `if` instead" },
  NGP1014: { title: "assignment to a compile-time constant", hint: "config fields and `const` bindings are immutable; copy into a `let` first" },
  NGP1015: { title: "unsupported operator", hint: "see the operator list in docs/language.md" },
  NGP1016: { title: "unsupported statement", hint: "kernels may use let/const, if/else, for, return, break, continue and calls" },
  NGP1017: { title: "unsupported type", hint: "use f32, i32, u32, bool, Buf<f32|i32|u32|f16>, Const<Config> or T[] from localArray" },
  NGP1018: { title: "unknown name", hint: "declare it, import it from the dsl, or pass it as a parameter" },
  NGP1019: { title: "type mismatch", hint: "convert explicitly with f32(x), i32(x) or u32(x)" },
  NGP1020: { title: "a helper must return exactly once, at its end", hint: "helpers are inlined: compute into a `let` and return it at the end (or in both arms of a final if/else)" },
  NGP1021: { title: "wrong arguments", hint: "check the signature of the function being called" },
  NGP1022: { title: "invalid configuration value", hint: "pass a config object whose fields match the Const<> type" },
  NGP1023: { title: "integer literal out of range", hint: "i32 literals lie in [-2^31, 2^31); write u32(4294967295) for large unsigned constants" },
  NGP1024: { title: "invalid indexing", hint: "index buffers, local arrays and config arrays with an i32 or u32" },
  NGP1025: { title: "invalid kernel signature", hint: "a kernel is `/** @kernel */ export function name(i: u32, ...params): void` with i the thread index" },
  NGP1026: { title: "no such kernel or encoding part", hint: "mark kernels with a /** @kernel */ comment" },
  NGP1027: { title: "mutable module-level state is not supported", hint: "use `const` for module constants, buffers for state" },
  NGP1028: { title: "unsupported import", hint: "import the language from the dsl folder and helpers from other kernel files" },
  NGP1029: { title: "a variable must be initialized", hint: "write `let x: f32 = 0.0;`" },
  NGP1034: { title: "the schedule does not apply to this kernel", hint: "@schedule split|owner needs a body that is one loop with constant bounds, after constant declarations; @schedule lanes a body without loops or branches that remain after specialization" },
  NGP1033: { title: "unsupported expression", hint: "kernels use numbers, buffers, local arrays, calls and operators only" },
  NGP1031: { title: "loop is not of a supported form", hint: "write `for (let i = a; i < b; i++)` (or <=, >, >=, ++, --, += k, -= k)" },
  NGP1032: { title: "unroll limit exceeded", hint: "raise maxUnroll, or make a bound a runtime value so the loop stays a loop" },
  NGP1030: { title: "reserved name", hint: "rename it: names starting with ngp_, tbl_ or __, and C++ keywords, are reserved for generated code" },
  NGP1040: { title: "tile operations need a block kernel", hint: "mark the kernel `/** @kernel @block <rows> */` (rows: a literal or a Const<> field)" },
  NGP1041: { title: "tile shapes do not match", hint: "check the operands' shapes: matmul(a, b) needs a's columns = b's rows; matmulNT and matmulTN transpose b or a" },
  NGP1042: { title: "tile operation in a loop or branch that remains at run time", hint: "tile operations run in straight-line code: loop over Const fields (the loop unrolls) and branch on constants" },
  NGP1043: { title: "tile not assigned, or a tile list indexed at run time", hint: "assign every tile (and every element of a tiles() list, with a constant index) before reading it" },
  NGP1044: { title: "a tile cannot be used here", hint: "tiles live inside a block kernel: pass them to tile operations and helpers, never as kernel parameters, buffer elements or scalar values" },
  NGP1045: { title: "a buffer accumulated into is also used otherwise", hint: "accumulate() adds per-block partial sums at the end of the launch: give the gradient a buffer of its own" },
  NGP1046: { title: "a block kernel writes a buffer outside the tile operations", hint: "write outputs with storeRows() or accumulate(): on CUDA every thread of a block runs the scalar statements" },
  NGP1051: { title: "bad @adjoint tag", hint: "write @adjoint <name> <buffer>[,<buffer>...] [owner] [outputs], naming f32 (or f16) buffer parameters of the kernel" },
  NGP1052: { title: "a differentiated buffer is written", hint: "the adjoint needs the values read from it: give the output a buffer of its own" },
  NGP1053: { title: "cannot differentiate: a local array indexed at run time", hint: "index local arrays with constants (counters of loops over Const fields, which unroll)" },
  NGP1054: { title: "cannot differentiate this statement", hint: "the adjoint follows lets, assignments, buffer reads and writes, atomicAdd and intrinsic calls" },
  NGP1055: { title: "cannot differentiate: a loop or branch that remains at run time", hint: "loop over Const fields (the loop unrolls) and choose values with select(cond, a, b)" },
  NGP1058: { title: "bad @grad tag", hint: "write @grad <helper> on a helper returning f32; the helper takes the same parameters, then adj: f32, then a Buf<f32> gradient per buffer parameter, and returns void" },
  NGP1057: { title: "cannot differentiate: an output read back", hint: "keep the value in a variable or a local array: the adjoint does not follow values through memory" },
  NGP1059: { title: "bad `requires` of a variant", hint: "declare what the variant needs as `export const requires = { dims: 4, levelsMultipleOf: 4 };` (integer literals, either field optional)" },
  NGP1056: { title: "an intrinsic without a derivative rule", hint: "add a `grad` rule to its entry in dsl/intrinsics.ts, or keep it out of the differentiated values" },
} as const;

export type Code = keyof typeof CODES;

export interface Diagnostic {
  code: Code;
  message: string;
  span: Span;
  hint: string;
}

export function diag(code: Code, span: Span, detail?: string, hint?: string): Diagnostic {
  const title = CODES[code].title;
  return { code, span, message: detail ? `${title}: ${detail}` : title, hint: hint ?? CODES[code].hint };
}

/**
 * Thrown by every compiler phase; carries one or more diagnostics, in source order (by file, in the
 * order files were first reported, then by position). `fatal` ones (syntax errors) end the compile
 * at once: the rest of the tree is TypeScript's guess, so anything reported about it would be noise.
 */
export class DiagnosticError extends ExpectedError {
  readonly diagnostics: Diagnostic[];
  constructor(diagnostics: Diagnostic[], readonly fatal = false) {
    // The same diagnostic twice (a config type read by two kernels, say) is shown once.
    const unique = [...new Map(diagnostics.map((d) => [`${d.span.file}:${d.span.start}:${d.code}:${d.message}`, d])).values()];
    const files = [...new Set(unique.map((d) => d.span.file))];
    const sorted = unique.sort((a, b) => files.indexOf(a.span.file) - files.indexOf(b.span.file) || a.span.start - b.span.start);
    const n = sorted.length;
    super(`${sorted.map((d) => formatDiagnostic(d)).join("\n\n")}\n\n${n} error${n === 1 ? "" : "s"}`);
    this.name = "DiagnosticError";
    this.diagnostics = sorted;
  }
  /** The diagnostics as the compiler prints them, and their count (the message). */
  override report(): string {
    return this.message;
  }
}

/** The name of `names` nearest `name` (case aside, at most `within` edits), for "did you mean" hints. */
export function nearest(name: string, names: Iterable<string>, within = 2): string | undefined {
  let best: string | undefined;
  let bestCost = within + 1;
  for (const n of names) {
    const cost = editDistance(name.toLowerCase(), n.toLowerCase());
    if (cost < bestCost) [best, bestCost] = [n, cost];
  }
  return best;
}

/** Levenshtein distance. */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}

export function fail(code: Code, span: Span, detail?: string, hint?: string): never {
  throw new DiagnosticError([diag(code, span, detail, hint)]);
}

/** Collects diagnostics so a phase can report all of them, then throw once. */
export class DiagnosticSink {
  readonly list: Diagnostic[] = [];
  report(code: Code, span: Span, detail?: string, hint?: string): void {
    this.list.push(diag(code, span, detail, hint));
  }
  /** Run `fn`, turning a thrown (non-fatal) DiagnosticError into reported diagnostics; undefined if it threw. */
  guard<T>(fn: () => T): T | undefined {
    try {
      return fn();
    } catch (e) {
      if (!(e instanceof DiagnosticError) || e.fatal) throw e;
      this.list.push(...e.diagnostics);
      return undefined;
    }
  }
  throwIfAny(): void {
    if (this.list.length > 0) throw new DiagnosticError(this.list);
  }
}

const sourceCache = new Map<string, string>();
/** While `recordSources` runs: the texts registered (the files a compile read). */
let recording: Map<string, string> | undefined;
/** Register in-memory source text (for files that do not exist on disk). */
export function registerSource(file: string, text: string): void {
  sourceCache.set(file, text);
  recording?.set(file, text);
}

/** `run`'s result and the source texts registered while it ran (every file a parse read). */
export function recordSources<T>(run: () => T): { result: T; sources: Map<string, string> } {
  const outer = recording;
  const sources = (recording = new Map<string, string>());
  try {
    return { result: run(), sources };
  } finally {
    recording = outer;
    for (const [file, text] of sources) outer?.set(file, text);
  }
}
function sourceText(file: string): string | undefined {
  if (!sourceCache.has(file)) {
    try {
      sourceCache.set(file, readFileSync(file, "utf8"));
    } catch {
      return undefined;
    }
  }
  return sourceCache.get(file);
}

/**
 * Rust-style rendering:
 *   error[NGP1001]: conditional (ternary) expressions are not supported
 *     --> dsl/examples/bad.ts:12:15
 *      |
 *   12 |   const y = c ? a : b;
 *      |             ^^^^^^^^^
 *      = hint: use select(cond, a, b)
 */
export function formatDiagnostic(d: Diagnostic, cwd = process.cwd()): string {
  const { span } = d;
  const shown = span.file.startsWith("/") ? relative(cwd, span.file) : span.file;
  const out = [`error[${d.code}]: ${d.message}`, `  --> ${shown}:${span.line}:${span.col}`];
  const text = sourceText(span.file);
  if (text !== undefined) {
    const lineStart = span.start - (span.col - 1);
    const lineEndIdx = text.indexOf("\n", lineStart);
    const line = text.slice(lineStart, lineEndIdx < 0 ? undefined : lineEndIdx);
    const width = Math.max(1, Math.min(span.end, lineStart + line.length) - span.start);
    const gutter = " ".repeat(String(span.line).length);
    out.push(`${gutter} |`, `${span.line} | ${line}`, `${gutter} | ${" ".repeat(span.col - 1)}${"^".repeat(width)}`);
    out.push(`${gutter} = hint: ${d.hint}`);
  } else {
    out.push(`  = hint: ${d.hint}`);
  }
  return out.join("\n");
}

// The C-style emitter shared by the CPU and CUDA targets. It renders the kernel *body* (one
// function per kernel, called once per thread index) identically for both; a target supplies
// only its small delta: includes, qualifiers, the f16 type, atomics (via the intrinsic table)
// and the launch wrapper. What runs on the CPU here is therefore what nvcc compiles.
import { spell } from "../../dsl/intrinsics.ts";
import { addedElement, intrinsic, intrinsicOf, writtenBuffers } from "../forms.ts";
import { typeOf, type Expr, type ParamElem, type Scalar, type SpecializedKernel, type Stmt } from "../ir.ts";
import { BATCH_VAR } from "../tiles.ts";
import { C_TILE_CHECKS } from "./tile_prelude.ts";
import { BIN_PRECEDENCE, StatementPrinter, banner, collectTables, f32Literal, fillSpelling, intrinsicHelpers, kernelSignature } from "./common.ts";
import { NGP_ERR_OUT_OF_BOUNDS, type EmittedModule, type Target } from "../../dsl/abi.ts";

export interface CTarget {
  name: Exclude<Target, "js">;
  /**
   * Bounds-checked mode: the fault record `uint64_t ngp_fault_rec[2]` (see CHECKED_PRELUDE) and
   * its atomics `ngp_load_u64` and `ngp_min_u64`, `ngp_dummy` (16 bytes that an out-of-bounds
   * access reads or writes instead), and the NGP_COLD qualifier of the out-of-line fault path.
   */
  checkedState: string;
  /**
   * Entry-point code in bounds-checked mode: set the record to all ones before the launch; after
   * it, copy the record into the host's `ngp_fault_host` (or return a launch error).
   */
  checkedLaunch: { before: string; after: string };
  /** Includes and the definition of the NGP_FN qualifier used by prelude helpers and bodies. */
  head: string;
  /**
   * The tile operations (codegen/emit/tile_prelude.ts), in modules with a block kernel, with the
   * macros of the shared body: NGP_TILE (a tile's storage), NGP_TID and NGP_NTHREADS (this
   * thread among the block's), NGP_SYNC() (the block's barrier).
   */
  tiles: string;
  /** Qualifier of constant tables. */
  tableQualifier: string;
  /** The storage type of f16 buffer elements. */
  f16Type: string;
  loadF16(x: string): string;
  storeF16(x: string): string;
  /**
   * The kernel's code: its body function(s), rendered with `body`, any device wrapper, and the
   * statements of the `extern "C"` entry point that run them over [0, n) (`launch`), whose
   * status (0 or an error code) is the expression `status`. The base writes the entry point.
   */
  kernel(k: SpecializedKernel, params: CParam[], body: BodyRenderer): { code: string; launch: string; status: string };
  /** Extra host functions after the kernels (CUDA: memory and error entry points). */
  tail?: string;
}

/**
 * Renders a body function `NGP_FN void <name>(index, params...) { stmts }`. With `lanes`, the
 * function instead runs `lanes` consecutive indices from `ngp_i0` at once (lane form: every
 * per-thread value an array over the lanes, every statement a loop over them, which the C++
 * compiler vectorizes; straight-line code only, see schedule.ts nonLaneStatement).
 */
export type BodyRenderer = (name: string, stmts: Stmt[], opts?: { plainAtomics?: boolean; lanes?: number }) => string;

/** One runtime parameter of a kernel. */
export interface CParam {
  name: string;
  /** The declaration in the entry point's signature, e.g. `const float* x`. */
  decl: string;
  buffer: boolean;
  /** Its declarations in a body function's signature (a checked buffer brings its length). */
  body: string[];
  /** What the launcher passes a body function for it. */
  args: string[];
}

/**
 * The operators' helpers every C target needs (the intrinsics' own come from their table entries);
 * NGP_FN is `static inline` (CPU) or `__device__` inline (CUDA).
 */
const PRELUDE = `// Integer division and remainder never trap: x / 0 == 0 and INT_MIN / -1 == INT_MIN, as in JS.
NGP_FN int32_t ngp_div(int32_t a, int32_t b) { return b == 0 ? 0 : b == -1 ? (int32_t)(0u - (uint32_t)a) : a / b; }
NGP_FN int32_t ngp_mod(int32_t a, int32_t b) { return (b == 0 || b == -1) ? 0 : a % b; }
NGP_FN uint32_t ngp_udiv(uint32_t a, uint32_t b) { return b == 0 ? 0u : a / b; }
NGP_FN uint32_t ngp_umod(uint32_t a, uint32_t b) { return b == 0 ? 0u : a % b; }`;

const C_SCALAR: Record<Scalar, string> = { f32: "float", i32: "int32_t", u32: "uint32_t", bool: "bool" };
const C_OPS: Record<string, string> = { "===": "==", "!==": "!=", ">>>": ">>" };

export interface EmitOptions {
  /** Check every buffer index; an out-of-bounds access is reported (NGP_ERR_OUT_OF_BOUNDS), not performed. */
  boundsChecks?: boolean;
}

/**
 * Bounds-checked access: the element's address, or, outside the buffer, the dummy and a record of
 * the fault. The record is the same on CPU and CUDA, and names what the JS backend (threads in
 * order, stopping at the first bad access) reports: the first bad access of the lowest thread.
 */
const CHECKED_PRELUDE = `// ngp_fault_rec holds two minima over keys that both start with the thread index, so that both
// describe one access however the threads interleave (all ones: no fault):
//   [0] = thread << 32 | parameter << 1 | (index < 0),  [1] = thread << 32 | (uint32_t)index.
// A thread records only its first bad access: at a later one it finds its own index there (or a
// lower one, which wins anyway).
NGP_COLD void ngp_fault(int64_t thread, uint32_t param, int64_t i) {
  if ((ngp_load_u64(&ngp_fault_rec[0]) >> 32) <= (uint64_t)thread) return;
  const uint64_t t = (uint64_t)thread << 32;
  ngp_min_u64(&ngp_fault_rec[0], t | param << 1 | (uint64_t)(i < 0));
  ngp_min_u64(&ngp_fault_rec[1], t | (uint32_t)i);
}
template <class T> NGP_FN T* ngp_at(T* p, int64_t i, int64_t len, uint32_t param, int64_t thread) {
  if ((uint64_t)i >= (uint64_t)len) { ngp_fault(thread, param, i); return (T*)ngp_dummy; }
  return p + i;
}
// The record of the last launch, read by the runtime after a launch returns NGP_ERR_OUT_OF_BOUNDS.
static uint64_t ngp_fault_host[2];
extern "C" void ngp_bounds_fault(uint64_t* out) { out[0] = ngp_fault_host[0]; out[1] = ngp_fault_host[1]; }`;

export function emitC(kernels: SpecializedKernel[], target: CTarget, opts: EmitOptions = {}): EmittedModule {
  const checked = opts.boundsChecks ?? false;
  const tiles = kernels.some((k) => k.block) ? [target.tiles] : [];
  const checks = checked ? [target.checkedState, CHECKED_PRELUDE, ...(tiles.length ? [C_TILE_CHECKS] : [])] : [];
  const out: string[] = [banner("//", target.name), target.head, PRELUDE, ...tiles, ...intrinsicHelpers(kernels, target.name), ...checks, ""];
  for (const t of collectTables(kernels)) {
    const vals = t.values.map((v) => literal(v, t.elem)).join(", ");
    out.push(`${target.tableQualifier} ${C_SCALAR[t.elem]} tbl_${t.id}[${t.values.length}] = {${vals}};`);
  }
  for (const k of kernels) {
    const written = writtenBuffers(k.body);
    const params: CParam[] = k.params.map((p) => {
      if (p.ty.k === "buf") {
        const ty = p.ty.elem === "f16" ? target.f16Type : C_SCALAR[p.ty.elem as Scalar];
        // __restrict__: the runtime refuses overlapping buffers where one of them is written.
        const decl = `${written.has(p.name) ? "" : "const "}${ty}* __restrict__ ${p.name}`;
        const len = `ngp_len_${p.name}`;
        return { name: p.name, decl, buffer: true, body: checked ? [decl, `int64_t ${len}`] : [decl], args: checked ? [p.name, len] : [p.name] };
      }
      const decl = `${C_SCALAR[(p.ty as { s: Scalar }).s]} ${p.name}`;
      return { name: p.name, decl, buffer: false, body: [decl], args: [p.name] };
    });
    const body: BodyRenderer = (name, stmts, bodyOpts = {}) => {
      const printer = new CPrinter(target, k, bodyOpts.plainAtomics ?? false, checked, bodyOpts.lanes);
      const index = bodyOpts.lanes ? "int64_t ngp_i0" : `${C_SCALAR[k.index.ty]} ${k.index.name}`;
      const sig = [index, ...(k.block ? [`int64_t ${BATCH_VAR}`] : []), ...params.flatMap((p) => p.body)].join(", ");
      // The fault record needs the thread index, which the kernel may assign to: keep a copy.
      const thread = checked ? [`  const int64_t ngp_thread = (int64_t)${k.index.name};`] : [];
      return [`NGP_FN void ${name}(${sig}) {`, ...thread, ...printer.block(stmts, 1), "}"].join("\n");
    };
    const { code, launch, status } = target.kernel(k, params, body);
    const launchStatus = status === "0" ? "" : `  const int32_t ngp_status = ${status};\n  if (ngp_status != 0) return ngp_status;\n`;
    const finish = checked
      ? `${launchStatus}  ${target.checkedLaunch.after}\n  return ngp_fault_host[0] == ~(uint64_t)0 ? 0 : ${NGP_ERR_OUT_OF_BOUNDS};`
      : `  return ${status};`;
    out.push("", code, "", `extern "C" int32_t ${k.name}(${entryParams(params)}) {`, ...(checked ? [`  ${target.checkedLaunch.before}`] : []), launch, finish, "}");
  }
  if (target.tail) out.push("", target.tail);
  return { target: target.name, source: out.join("\n") + "\n", kernels: kernels.map(kernelSignature) };
}

/**
 * The argument list of the exported entry point: the item count, then per buffer pointer + length.
 * Generated names use the `ngp_` prefix, which kernel authors cannot declare.
 */
export function entryParams(params: CParam[]): string {
  return ["int64_t ngp_n", ...params.flatMap((p) => (p.buffer ? [p.decl, `int64_t ngp_len_${p.name}`] : [p.decl]))].join(", ");
}

export function literal(v: number | boolean, ty: Scalar): string {
  if (typeof v === "boolean") return v ? "true" : "false";
  if (ty === "f32") {
    if (Number.isNaN(v)) return "NAN";
    if (!Number.isFinite(v)) return v > 0 ? "INFINITY" : "(-INFINITY)";
    return `${f32Literal(v)}f`;
  }
  if (ty === "u32") return `${v >>> 0}u`;
  return v === -0x80000000 ? "(-2147483647 - 1)" : String(v | 0);
}

class CPrinter extends StatementPrinter {
  private readonly bufElem = new Map<string, ParamElem>();
  /** Position of each parameter: how the fault record names a buffer. */
  private readonly paramIndex = new Map<string, number>();
  /** In lane form: the per-thread names (locals and local arrays), stored as arrays over lanes. */
  private readonly laneNames = new Set<string>();
  private readonly index: { name: string; ty: string };
  constructor(
    private readonly target: CTarget,
    kernel: SpecializedKernel,
    /** Atomics as plain read-modify-write: the caller guarantees one writer (owner schedule). */
    private readonly plainAtomics: boolean,
    /** Check buffer indices (ngp_at). */
    private readonly checked: boolean,
    /** Render in lane form with this many lanes. */
    private readonly lanes?: number,
  ) {
    super();
    kernel.params.forEach((p, n) => {
      this.paramIndex.set(p.name, n);
      if (p.ty.k === "buf") this.bufElem.set(p.name, p.ty.elem);
    });
    this.index = { name: kernel.index.name, ty: C_SCALAR[kernel.index.ty] };
  }

  /**
   * The loop over the lanes that a statement in lane form becomes. `omp simd` keeps the C++
   * compiler from unrolling it into scalar code before it vectorizes it; but it promises that the
   * lanes do not interfere, which a statement writing buffer elements cannot promise (two lanes
   * may add into one gradient entry), so such a statement gets a plain loop, lanes in order.
   */
  private laneLoop(s: Stmt): string {
    const writesBuffer =
      (s.k === "assign" && s.target.k === "index" && s.target.base.k === "var" && this.bufElem.has(s.target.base.name)) ||
      (s.k === "expr" && intrinsicOf(s.e)?.writes !== undefined);
    return `${writesBuffer ? "" : '_Pragma("omp simd") '}for (int ngp_l = 0; ngp_l < ${this.lanes}; ++ngp_l) `;
  }

  protected override stmt(s: Stmt, depth: number): string[] {
    if (!this.lanes || s.k === "block") return super.stmt(s, depth);
    const pad = "  ".repeat(depth);
    switch (s.k) {
      case "let":
        this.laneNames.add(s.name);
        return [`${pad}${C_SCALAR[s.ty!]} ${s.name}[${this.lanes}];`, `${pad}${this.laneLoop(s)}${s.name}[ngp_l] = ${this.expr(s.init)};`];
      case "array":
        this.laneNames.add(s.name);
        return [`${pad}${C_SCALAR[s.elem]} ${s.name}[${(s.size as { v: number }).v}][${this.lanes}] = {};`];
      case "assign":
        return [`${pad}${this.laneLoop(s)}${this.assign(s)};`];
      case "expr":
        return [`${pad}${this.laneLoop(s)}${this.expr(s.e)};`];
      default:
        throw new Error(`internal: ${s.k} statement in lane form`);
    }
  }

  protected declare(s: Extract<Stmt, { k: "let" }>): string {
    return `${s.mutable ? "" : "const "}${C_SCALAR[s.ty!]} ${s.name} = ${this.expr(s.init)}`;
  }

  protected declareArray(s: Extract<Stmt, { k: "array" }>): string {
    // A tile is written whole before it is read: no initialization (and none is allowed in shared memory).
    if (s.tile) return `NGP_TILE ${C_SCALAR[s.elem]} ${s.name}[${(s.size as { v: number }).v}]`;
    return `${C_SCALAR[s.elem]} ${s.name}[${(s.size as { v: number }).v}] = {}`;
  }

  /** A loop the block's threads share (tileMap) ends at a barrier (none on the CPU: one thread). */
  protected override afterLoop(s: Extract<Stmt, { k: "for" }>): string[] {
    return s.coop ? ["NGP_SYNC();"] : [];
  }

  protected forHeader(s: Extract<Stmt, { k: "for" }>): string {
    if (s.coop) return `for (int32_t ${s.v} = NGP_TID; ${s.v} < ${this.expr(s.end)}; ${s.v} += NGP_NTHREADS)`;
    const step = s.step.k === "lit" && typeof s.step.v === "number" && s.step.v < 0
      ? (s.step.v === -1 ? `--${s.v}` : `${s.v} -= ${literal(-s.step.v, s.vty!)}`)
      : s.step.k === "lit" && s.step.v === 1 ? `++${s.v}` : `${s.v} += ${this.expr(s.step)}`;
    return `for (${C_SCALAR[s.vty!]} ${s.v} = ${this.expr(s.start)}; ${s.v} ${s.cmp} ${this.expr(s.end)}; ${step})`;
  }

  private f16Target(target: Expr): boolean {
    return target.k === "index" && target.base.k === "var" && this.bufElem.get(target.base.name) === "f16";
  }

  protected assign(s: Extract<Stmt, { k: "assign" }>): string {
    const { target } = s;
    const ty = typeOf(target)!;
    const lhs = target.k === "index" ? this.element(target.base, target.index) : this.expr(target);
    const rhs = s.op === "=" ? this.expr(s.value) : this.binary(s.op.slice(0, -1), target, s.value, ty)[0];
    if (this.f16Target(target)) return `${lhs} = ${this.target.storeF16(rhs)}`;
    if (["+=", "-=", "*=", "&=", "|=", "^="].includes(s.op)) return `${lhs} ${s.op} ${this.expr(s.value)}`;
    return `${lhs} = ${rhs}`;
  }

  expr(e: Expr, parentPrec = 99): string {
    switch (e.k) {
      case "lit":
        return literal(e.v, e.ty);
      case "var":
        if (this.lanes && e.name === this.index.name) return `((${this.index.ty})(ngp_i0 + ngp_l))`;
        return this.laneNames.has(e.name) ? `${e.name}[ngp_l]` : e.name;
      case "table":
        return `tbl_${e.id}`;
      case "index": {
        const idx = this.element(e.base, e.index);
        return e.base.k === "var" && this.bufElem.get(e.base.name) === "f16" ? this.target.loadF16(idx) : idx;
      }
      case "un": {
        const inner = this.expr(e.a, 2);
        return `${e.op}${inner}`;
      }
      case "bin": {
        const [s, isCall] = this.binary(e.op, e.a, e.b, typeOf(e.a) ?? "i32");
        return isCall || BIN_PRECEDENCE[e.op]! < parentPrec ? s : `(${s})`;
      }
      case "call": {
        const intr = intrinsic(e.fn)!;
        const spelling = spell(intr, this.target.name, e.T, this.plainAtomics);
        // An element added to in a checked buffer is addressed through ngp_at (`$0[$1]` becomes `ngp_at(...)[0]`).
        const added = addedElement(e);
        const through = added && this.isCheckedBuffer(added.buf) ? new Map<Expr, string>([[added.buf, this.checkedPointer(added.buf, added.index)], [added.index, "0"]]) : undefined;
        const args = e.args.map((a) => through?.get(a) ?? this.expr(a));
        const check = this.checked ? intr.tile?.check : undefined;
        if (check) {
          // The operation runs only when its whole range is inside the buffer (every thread of a
          // CUDA block computes the same answer, so the barriers inside stay uniform).
          const [b, R, C, ...rest] = check.args.map((i) => args[i]!);
          const ok = `ngp_tile_${check.kind}_ok<${R}, ${C}>(${[`ngp_len_${b}`, ...rest, `${this.paramIndex.get(b!)}u`, "ngp_thread"].join(", ")})`;
          return `(${ok} ? ${fillSpelling(spelling, args)} : (void)0)`;
        }
        return fillSpelling(spelling, args);
      }
      case "field":
        throw new Error("internal: unbound configuration field reached the emitter");
      case "fnref":
        throw new Error("internal: a function reference reached the emitter");
    }
  }

  /** `base[index]`; a local array in lane form is `base[index][lane]`; a checked buffer goes through ngp_at. */
  private element(base: Expr, index: Expr): string {
    if (base.k === "var" && this.laneNames.has(base.name)) return `${base.name}[${this.expr(index)}][ngp_l]`;
    if (this.isCheckedBuffer(base)) return `(*${this.checkedPointer(base, index)})`;
    return `${this.expr(base)}[${this.expr(index)}]`;
  }

  private isCheckedBuffer(base: Expr): base is Extract<Expr, { k: "var" }> {
    return this.checked && base.k === "var" && this.bufElem.has(base.name);
  }

  private checkedPointer(base: Extract<Expr, { k: "var" }>, index: Expr): string {
    return `ngp_at(${base.name}, (int64_t)(${this.expr(index)}), ngp_len_${base.name}, ${this.paramIndex.get(base.name)}u, ngp_thread)`;
  }

  /**
   * `a op b` at operand type `ty`, and whether it rendered as a call (needing no parentheses).
   * Integer division and remainder go through trap-free helpers unless the divisor is a safe literal.
   */
  private binary(op: string, a: Expr, b: Expr, ty: Scalar): [string, boolean] {
    const prec = BIN_PRECEDENCE[op]!;
    const divisorSafe = b.k === "lit" && b.v !== 0 && b.v !== -1;
    if ((op === "/" || op === "%") && ty !== "f32" && !divisorSafe) {
      const fn = ({ "i32/": "ngp_div", "i32%": "ngp_mod", "u32/": "ngp_udiv", "u32%": "ngp_umod" } as Record<string, string>)[`${ty}${op}`];
      return [`${fn}(${this.expr(a)}, ${this.expr(b)})`, true];
    }
    if (op === "%" && ty === "f32") return [`fmodf(${this.expr(a)}, ${this.expr(b)})`, true];
    const lhs = this.expr(a, prec + 1);
    if (op === "<<" || op === ">>" || op === ">>>") {
      // Shift amounts are taken modulo 32 on every backend (JS semantics; C would be undefined).
      const amount = b.k === "lit" ? literal((b.v as number) & 31, "i32") : `(${this.expr(b, 11)} & 31)`;
      return [`${lhs} ${C_OPS[op] ?? op} ${amount}`, false];
    }
    return [`${lhs} ${C_OPS[op] ?? op} ${this.expr(b, prec)}`, false];
  }
}

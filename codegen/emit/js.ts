// The JavaScript emitter: the reference backend. Every operation is spelled with exact C
// semantics: f32 results through Math.fround, i32 through `| 0` and Math.imul, u32 through
// `>>> 0`, shifts modulo 32, trap-free integer division. Buffers are TypedArrays (f16 buffers are
// Float16Array, which rounds on store like a C conversion).
import { spell } from "../../dsl/intrinsics.ts";
import { addedElement, intrinsic } from "../forms.ts";
import type { EmittedModule } from "../../dsl/abi.ts";
import { typeOf, type Expr, type Scalar, type SpecializedKernel, type Stmt } from "../ir.ts";
import { BATCH_VAR } from "../tiles.ts";
import { JS_TILE_CHECKS, JS_TILES, SLOTS } from "./tile_prelude.ts";
import type { EmitOptions } from "./c_base.ts";
import { BIN_PRECEDENCE, StatementPrinter, banner, collectTables, fillSpelling, intrinsicHelpers, kernelSignature } from "./common.ts";

/** The operators' helpers (the intrinsics' own come from their table entries). */
const PRELUDE = `const __idiv = (a, b) => (b === 0 ? 0 : (a / b) | 0);
const __imod = (a, b) => (b === 0 ? 0 : (a % b) | 0);
const __udiv = (a, b) => (b === 0 ? 0 : (a / b) >>> 0);
const __umod = (a, b) => (b === 0 ? 0 : (a % b) >>> 0);`;

const ARRAY_CTOR: Record<Scalar, string> = { f32: "Float32Array", i32: "Int32Array", u32: "Uint32Array", bool: "Array" };

export function emitJs(kernels: SpecializedKernel[], opts: EmitOptions = {}): EmittedModule {
  const tiles = kernels.some((k) => k.block) ? [JS_TILES] : [];
  const checks = opts.boundsChecks ? [CHECKED_PRELUDE, ...(tiles.length ? [JS_TILE_CHECKS] : [])] : [];
  const out: string[] = [banner("//", "js"), PRELUDE, ...tiles, ...intrinsicHelpers(kernels, "js"), ...checks, ""];
  for (const t of collectTables(kernels)) out.push(`const tbl_${t.id} = ${t.elem === "bool" ? "" : `new ${ARRAY_CTOR[t.elem]}`}([${t.values.join(", ")}]);`);
  for (const k of kernels) {
    const p = new JsPrinter(opts.boundsChecks ? new Set(k.params.filter((x) => x.ty.k === "buf").map((x) => x.name)) : new Set());
    const params = k.params.map((x) => x.name);
    const batch = k.block ? [BATCH_VAR] : [];
    out.push("", `function ${k.name}_body(${[k.index.name, ...batch, ...params].join(", ")}) {`, ...p.block(k.body, 1), "}");
    if (k.block) {
      out.push(`export function ${k.name}(${["ngp_n", ...params].join(", ")}) {`, ...blockLoop(k, k.block), "}");
      continue;
    }
    const call = `${k.name}_body(${["ngp_i", ...params].join(", ")});`;
    const loop = opts.boundsChecks ? checkedLoop(call) : [`  for (let ngp_i = 0; ngp_i < ngp_n; ngp_i++) ${call}`];
    out.push(`export function ${k.name}(${["ngp_n", ...params].join(", ")}) {`, ...loop, "}");
  }
  return { target: "js", source: out.join("\n") + "\n", kernels: kernels.map(kernelSignature) };
}

/** Wrap a raw JS result to type `ty`: the one place where C's rounding and wrapping are applied. */
function wrap(s: string, ty: Scalar): string {
  if (ty === "f32") return `Math.fround(${s})`;
  // `s` may be `a ^ b`, which binds looser than `>>>`: parenthesize unless it is a single name or call.
  const inner = /^[\w.]+$|^[\w.]+\([^()]*\)$/.test(s) ? s : `(${s})`;
  if (ty === "i32") return `(${inner} | 0)`;
  if (ty === "u32") return `(${inner} >>> 0)`;
  return `(${s})`;
}

/**
 * Bounds-checked mode: an index outside the buffer throws, which stops the kernel at the first bad
 * access of the lowest thread that makes one (threads run in order). The error carries `ngpFault`
 * (buffer, index, thread), from which the runtime reports it as the native backends do.
 */
const CHECKED_PRELUDE = `const __chk = (i, buf, name) => {
  if (i >= 0 && i < buf.length) return i;
  const e = new RangeError(\`index \${i} is outside the buffer \${name} of \${buf.length} elements\`);
  e.ngpFault = { buffer: name, index: i, length: buf.length };
  throw e;
};`;

/** A block kernel's launch, as the CPU's (tile_prelude.ts): slots of blocks with partial sums. */
function blockLoop(k: SpecializedKernel, block: NonNullable<SpecializedKernel["block"]>): string[] {
  const acc = new Set(block.accumulates);
  const args = ["ngp_b", BATCH_VAR, ...k.params.map((p) => (acc.has(p.name) ? `ngp_part_${p.name}.subarray(ngp_s * ${p.name}.length, (ngp_s + 1) * ${p.name}.length)` : p.name))];
  return [
    "  if (!(ngp_n > 0)) return;",
    `  const ngp_blocks = Math.ceil(ngp_n / ${block.rows});`,
    `  const ngp_slots = Math.min(ngp_blocks, ${SLOTS});`,
    ...[...acc].map((p) => `  const ngp_part_${p} = new Float32Array(ngp_slots * ${p}.length);`),
    // Blocks run in order, so a bounds fault is the first of the lowest block, as on the CPU.
    "  let ngp_b = 0;",
    "  try {",
    "    for (let ngp_s = 0; ngp_s < ngp_slots; ngp_s++)",
    "      for (ngp_b = Math.floor((ngp_s * ngp_blocks) / ngp_slots); ngp_b < Math.floor(((ngp_s + 1) * ngp_blocks) / ngp_slots); ngp_b++)",
    `        ${k.name}_body(${args.join(", ")});`,
    "  } catch (e) {",
    "    if (e?.ngpFault) e.ngpFault.thread = ngp_b;",
    "    throw e;",
    "  }",
    ...[...acc].map((p) => `  __reduce_slots(${p}, ngp_part_${p}, ngp_slots);`),
  ];
}

/** The loop over the threads, noting in a bounds fault which thread made it. */
function checkedLoop(call: string): string[] {
  return ["  let ngp_i = 0;", "  try {", `    for (; ngp_i < ngp_n; ngp_i++) ${call}`, "  } catch (e) {", "    if (e?.ngpFault) e.ngpFault.thread = ngp_i;", "    throw e;", "  }"];
}

class JsPrinter extends StatementPrinter {
  /** `checked`: the buffer parameters whose indices are checked. */
  constructor(private readonly checked: Set<string>) {
    super();
  }

  /** `base[index]`, with the index checked for a checked buffer. */
  private element(base: Expr, index: Expr): string {
    return `${this.expr(base)}[${this.index(base, index)}]`;
  }

  /** An index into `base`: checked for a checked buffer. */
  private index(base: Expr, index: Expr): string {
    const i = this.expr(index);
    return base.k === "var" && this.checked.has(base.name) ? `__chk(${i}, ${base.name}, "${base.name}")` : i;
  }

  protected declare(s: Extract<Stmt, { k: "let" }>): string {
    return `${s.mutable ? "let" : "const"} ${s.name} = ${this.expr(s.init)}`;
  }

  protected declareArray(s: Extract<Stmt, { k: "array" }>): string {
    const n = (s.size as { v: number }).v;
    return `const ${s.name} = ${s.elem === "bool" ? `new Array(${n}).fill(false)` : `new ${ARRAY_CTOR[s.elem]}(${n})`}`;
  }

  protected assign(s: Extract<Stmt, { k: "assign" }>): string {
    const t = s.target;
    const lhs = t.k === "index" ? this.element(t.base, t.index) : this.expr(t);
    // Compound assignments are spelled out, so that the result is rounded/wrapped like `a op b`.
    return `${lhs} = ${s.op === "=" ? this.expr(s.value) : this.binary(s.op.slice(0, -1), t, s.value, typeOf(t)!)}`;
  }

  protected forHeader(s: Extract<Stmt, { k: "for" }>): string {
    const next = this.binary("+", { k: "var", name: s.v, ty: s.vty, span: s.span }, s.step, s.vty!);
    return `for (let ${s.v} = ${this.expr(s.start)}; ${s.v} ${s.cmp} ${this.expr(s.end)}; ${s.v} = ${next})`;
  }

  expr(e: Expr, parentPrec = 99): string {
    switch (e.k) {
      case "lit":
        return typeof e.v === "number" && e.v < 0 ? `(${e.v})` : String(e.v);
      case "var":
        return e.name;
      case "table":
        return `tbl_${e.id}`;
      case "index":
        return this.element(e.base, e.index);
      case "un": {
        const inner = this.expr(e.a, 2);
        if (e.op === "!") return `!${inner}`;
        return e.ty === "f32" ? `(-${inner})` : wrap(`${e.op}${inner}`, e.ty!);
      }
      case "bin": {
        const s = this.binary(e.op, e.a, e.b, typeOf(e.a) ?? "i32");
        const wrapped = /^(Math\.\w+|__\w+)\(.*\)$|^\(.*\)$/.test(s);
        return wrapped || BIN_PRECEDENCE[e.op]! < parentPrec ? s : `(${s})`;
      }
      case "call": {
        const intr = intrinsic(e.fn)!;
        // An element added to in a checked buffer: its index is checked.
        const added = addedElement(e);
        const args = e.args.map((a) => (a === added?.index ? this.index(added.buf, a) : this.expr(a)));
        const check = intr.tile?.check;
        if (check && this.checked.size) {
          const [b, R, C, ...rest] = check.args.map((i) => args[i]!);
          return `(__tile_${check.kind}_ok(${[R, C, b, ...rest, `"${b}"`].join(", ")}), ${fillSpelling(spell(intr, "js", e.T), args)})`;
        }
        const text = fillSpelling(spell(intr, "js", e.T), args);
        // Intrinsics that compute in double round once to f32, like their C counterparts.
        return e.ty === "f32" && !intr.jsF32 ? wrap(text, "f32") : text;
      }
      case "field":
        throw new Error("internal: unbound configuration field reached the emitter");
      case "fnref":
        throw new Error("internal: a function reference reached the emitter");
    }
  }

  /** `a op b` at operand type `ty`, with the result rounded or wrapped as C would. */
  private binary(op: string, a: Expr, b: Expr, ty: Scalar): string {
    const prec = BIN_PRECEDENCE[op]!;
    const x = this.expr(a, prec + 1);
    const y = this.expr(b, prec);
    if (ty === "bool" || ["<", "<=", ">", ">=", "===", "!==", "&&", "||"].includes(op)) return `${x} ${op} ${y}`;
    if (ty === "f32") return wrap(`${x} ${op} ${y}`, ty);
    const xs = this.expr(a, 99);
    const ys = this.expr(b, 99);
    if (op === "*") return wrap(`Math.imul(${xs}, ${ys})`, ty);
    if (op === "/" || op === "%") return `${ty === "u32" ? "__u" : "__i"}${op === "/" ? "div" : "mod"}(${xs}, ${ys})`;
    if (op === ">>" && ty === "u32") return `(${x} >>> ${y})`;
    return wrap(`${x} ${op} ${y}`, ty);
  }
}

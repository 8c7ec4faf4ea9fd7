// Constant folding, with the exact semantics of each operation on each type (f32 rounding, i32 and
// u32 wrap-around, shifts modulo 32, trap-free integer division) and of the intrinsics whose
// backends agree bit for bit (`exact`). The simplifier (simplify.ts) folds every expression it
// rewrites; the adjoint and the emitters rely on the values being those the generated code computes.
import { fail } from "./diagnostics.ts";
import { intrinsicOf } from "./forms.ts";
import { mapExpr, type Expr, type Scalar } from "./ir.ts";

/** Wrap/round a folded value to its type, exactly as the generated code would. */
export function normalize(v: number, ty: Scalar): number {
  if (ty === "i32") return v | 0;
  if (ty === "u32") return v >>> 0;
  if (ty === "f32") return Math.fround(v);
  return v;
}

/** Constant-fold `e` bottom-up with the exact semantics of each operation. */
export function fold(e: Expr): Expr {
  return mapExpr(e, (x) => {
    // select() with a constant condition is the chosen operand, whatever the others are.
    if (x.k === "call" && intrinsicOf(x)?.chooses && x.args[0]!.k === "lit") return x.args[x.args[0]!.v ? 1 : 2]!;
    const v = foldNode(x);
    return v === undefined ? x : { k: "lit", v, ty: x.k === "lit" ? x.ty : (x as { ty: Scalar }).ty, span: x.span };
  });
}

function litValue(e: Expr): number | boolean | undefined {
  return e.k === "lit" ? e.v : undefined;
}

function foldNode(e: Expr): number | boolean | undefined {
  switch (e.k) {
    case "index": {
      const i = litValue(e.index);
      if (e.base.k === "table" && typeof i === "number") {
        if (i < 0 || i >= e.base.values.length) fail("NGP1024", e.index.span, `index ${i} is outside the table '${e.base.id}' of length ${e.base.values.length}`);
        return e.base.values[i];
      }
      return undefined;
    }
    case "un": {
      const a = litValue(e.a);
      if (a === undefined) return undefined;
      if (e.op === "!") return !a;
      if (e.op === "~") return normalize(~(a as number), e.ty!);
      return normalize(-(a as number), e.ty!);
    }
    case "bin": {
      const a = litValue(e.a);
      const b = litValue(e.b);
      if (a === undefined || b === undefined) return undefined;
      return foldBinary(e.op, a, b, e.a.k === "lit" ? e.a.ty : "i32", e.ty!);
    }
    case "call": {
      const args = e.args.map(litValue);
      if (args.some((a) => a === undefined)) return undefined;
      const intr = intrinsicOf(e);
      if (!intr?.exact || !intr.pure) return undefined;
      return normalize((intr.impl as (...a: unknown[]) => number)(...args, e.T), e.ty!);
    }
    default:
      return undefined;
  }
}

function foldBinary(op: string, a: number | boolean, b: number | boolean, operand: Scalar, ty: Scalar): number | boolean | undefined {
  if (op === "&&") return (a as boolean) && (b as boolean);
  if (op === "||") return (a as boolean) || (b as boolean);
  if (op === "===") return a === b;
  if (op === "!==") return a !== b;
  const x = a as number;
  const y = b as number;
  switch (op) {
    case "<": return x < y;
    case "<=": return x <= y;
    case ">": return x > y;
    case ">=": return x >= y;
    case "+": return normalize(x + y, ty);
    case "-": return normalize(x - y, ty);
    case "*": return ty === "f32" ? Math.fround(x * y) : normalize(Math.imul(x, y), ty);
    case "/":
      if (ty === "f32") return Math.fround(x / y);
      return y === 0 ? 0 : normalize(Math.trunc(x / y), ty);
    case "%":
      if (ty === "f32") return Math.fround(x % y);
      return y === 0 ? 0 : normalize(x % y, ty);
    case "&": return normalize(x & y, ty);
    case "|": return normalize(x | y, ty);
    case "^": return normalize(x ^ y, ty);
    case "<<": return normalize(x << (y & 31), ty);
    case ">>": return operand === "u32" ? x >>> (y & 31) : x >> (y & 31);
    case ">>>": return x >>> (y & 31);
  }
  return undefined;
}

// The one intrinsic table of the kernel language.
//
// Every built-in function a kernel may call is an entry here, with every fact the compiler needs
// about it as a field (the compiler tests no intrinsic by its name):
//   - its signature (checked by codegen/check.ts),
//   - its spelling in C (shared by the CPU and CUDA emitters unless `cpu`/`cuda` override it) and
//     in the exact-semantics JavaScript backend (`$0`, `$1`, ... are the arguments), and whether
//     the JS spelling already gives an f32 (`jsF32`; otherwise the JS emitter rounds it),
//   - `impl`, the JS twin that lets a kernel file also run as plain TypeScript,
//   - `pure`, `exact`: whether the compiler may remove it or fold it at compile time,
//   - what it does to memory: `writes` (the buffer it writes), `effect` (the element it adds to or
//     touches) and `serial` (its spelling where one thread is the only writer),
//   - `chooses`: its first argument picks one of the others (select),
//   - `grad`, its reverse-mode derivative (codegen/adjoint.ts) for intrinsics with f32 arguments,
//   - `tile`, for the tile operations of block kernels (dsl/tiles.ts),
//   - `helpers`, the functions its spellings call (`ngp_*` in C, `__*` in JS), as keys of HELPERS
//     below, where each is defined per target; a module defines those of the intrinsics it calls.
// Adding an intrinsic means adding one entry (and entries for new helpers); no emitter changes
// are needed.
import { TILE_HELPERS } from "./tile_helpers.ts";
import { TILE_INTRINSICS, type TileOp } from "./tiles.ts";
import { f32 as toF32, i32 as toI32, u32 as toU32, type Buf, type f32, type Scalar, type u32 } from "./types.ts";

/**
 * A parameter: a fixed type, the generic `T`, a buffer of `T` or of f32, any integer index, any
 * number, a tile, a helper function (tileMap), or `...`: any further tiles and scalars.
 */
export type ParamSpec = Scalar | "T" | "Buf<T>" | "Buf<f32>" | "int" | "num" | "Tile" | "fn" | "...";
/** A spelling: one template, or one per instantiation of `T`. */
export type Spelling = string | Partial<Record<Scalar, string>>;

/**
 * What a call does to buffer memory:
 *   add   buf[index] += value (atomically across threads), as positions among its arguments: a
 *         scatter the bounds checks, the CPU schedule and the adjoint follow;
 *   hint  no effect on any result (a prefetch: the adjoint drops it, the bounds checks let it be).
 */
export type Effect = { k: "add"; buf: number; index: number; value: number } | { k: "hint" };

export interface Intrinsic {
  doc: string;
  params: readonly ParamSpec[];
  ret: Scalar | "T" | "void" | "Tile" | "Tiles";
  /** Allowed instantiations of `T` (when the signature mentions it). */
  T?: Scalar[];
  c: Spelling;
  cpu?: Spelling;
  cuda?: Spelling;
  js: Spelling;
  /**
   * The JS spelling's value is already an f32 (a rounding helper, or an f32 argument passed
   * through: every f32 value of the JS code is one, literals, scalar arguments as the runtime
   * passes them, buffer elements and rounded results); without it, the JS emitter rounds an f32
   * result once with Math.fround, like C.
   */
  jsF32?: boolean;
  /** The C spelling when the caller guarantees a single writer (the CPU's owner schedule): no atomics. */
  serial?: Spelling;
  /** What the call does to buffer memory (see Effect). */
  effect?: Effect;
  /**
   * The first argument (bool) chooses the second (true) or the third (false) as the value: a
   * helper call in an operand runs only when chosen, and a constant choice folds to the operand.
   */
  chooses?: boolean;
  /** No side effects: may be evaluated speculatively, hoisted, or removed if unused. */
  pure: boolean;
  /** The backends agree bit for bit (C and JS), so compile-time folding with `impl` is sound. */
  exact: boolean;
  /** The JS twin. When folding, the compiler passes the instantiation of `T` after the arguments. */
  impl: (...args: never[]) => unknown;
  /** The index, among the spelling's arguments, of the buffer this intrinsic writes. */
  writes?: number;
  /** A tile operation (dsl/tiles.ts): only in block kernels; its shape rule and lowering. */
  tile?: TileOp;
  /**
   * The reverse-mode derivative: given the adjoint `a` of the result `r`, what each argument's
   * adjoint receives (null: nothing, e.g. a condition or a function that is piecewise constant).
   */
  grad?: Grad;
  /** The helpers its spellings call (keys of HELPERS), on whichever targets define them. */
  helpers?: readonly HelperName[];
}

/**
 * A helper function that spellings call: its definition on each target that needs it, `c` for the
 * CPU and CUDA unless `cpu` or `cuda` gives its own (as spellings do); none where the target's
 * spelling calls a builtin instead. C definitions are qualified NGP_FN (the emitters' head).
 */
export interface Helper {
  c?: string;
  cpu?: string;
  cuda?: string;
  js?: string;
  /** The helpers its definitions call (keys of entries earlier in the table, so defined before it). */
  needs?: readonly string[];
}

/** Builds the expressions of derivative rules (the compiler supplies its IR; see codegen/adjoint.ts). */
export interface DerivBuilder<E> {
  lit(v: number): E;
  add(a: E, b: E): E;
  sub(a: E, b: E): E;
  mul(a: E, b: E): E;
  div(a: E, b: E): E;
  neg(a: E): E;
  lt(a: E, b: E): E;
  le(a: E, b: E): E;
  not(a: E): E;
  select(c: E, a: E, b: E): E;
  /** An f32 intrinsic of this table. */
  call(fn: string, ...args: E[]): E;
}
export type Grad = <E>(b: DerivBuilder<E>, a: E, r: E, ...args: E[]) => (E | null)[];

/** A function that is constant between jumps: derivative 0 (almost everywhere). */
export const piecewiseConstant: Grad = () => [null];

const F = Math.fround;
const f32Bits = new Float32Array(1);
const u32Bits = new Uint32Array(f32Bits.buffer);

function minImpl<T extends number>(a: T, b: T): T {
  return b < a ? b : a;
}
function maxImpl<T extends number>(a: T, b: T): T {
  return a < b ? b : a;
}
function popcountImpl(x: u32): u32 {
  let n = 0;
  for (let v = x >>> 0; v !== 0; v >>>= 1) n += v & 1;
  return n;
}

/**
 * f32 fma with one rounding. a*b of two f32 is exact in double; a*b + c is rounded once to double
 * (its error recovered exactly by TwoSum) and then to f32. Rounding twice differs from rounding
 * once only when the double sum sits exactly halfway between two f32 and the error is not zero:
 * then the error's sign picks the neighbour.
 */
function fmaImpl(a: f32, b: f32, c: f32): f32 {
  const p = a * b;
  const s = p + c;
  const bb = s - p;
  const err = p - (s - bb) + (c - bb);
  const r = F(s);
  if (err === 0 || r === s || !Number.isFinite(s)) return r;
  const other = F(2 * s - r); // the f32 on the other side of s
  if ((r + other) / 2 !== s) return r; // s is not a midpoint: one rounding of s is exact
  return err > 0 === other > r ? other : r;
}

/**
 * The helpers, in the order a module defines them (each after those it needs). A module defines
 * the helpers of the intrinsics it calls, and those they need, once each (helperDefinitions).
 */
export const HELPERS = {
  minMax: {
    c: `template <class T> NGP_FN T ngp_min(T a, T b) { return b < a ? b : a; }
template <class T> NGP_FN T ngp_max(T a, T b) { return a < b ? b : a; }`,
    js: `const __min = (a, b) => (b < a ? b : a);
const __max = (a, b) => (a < b ? b : a);`,
  },
  abs: { c: "NGP_FN int32_t ngp_abs(int32_t x) { return x < 0 ? (int32_t)(0u - (uint32_t)x) : x; }" },
  // CUDA converts with its own __float2int_rz and __float2uint_rz.
  floatToInt: {
    cpu: `// f32 -> integer conversions saturate, NaN -> 0 (CUDA's __float2int_rz semantics; C is undefined).
NGP_FN int32_t ngp_f2int_rz(float x) { return x != x ? 0 : x >= 2147483648.0f ? 2147483647 : x <= -2147483648.0f ? (-2147483647 - 1) : (int32_t)x; }
NGP_FN uint32_t ngp_f2uint_rz(float x) { return x != x || x <= 0.0f ? 0u : x >= 4294967296.0f ? 4294967295u : (uint32_t)x; }`,
    js: `const __f2i32 = (x) => (x !== x ? 0 : x >= 2147483648 ? 2147483647 : x <= -2147483648 ? -2147483648 : Math.trunc(x));
const __f2u32 = (x) => (x !== x || x <= 0 ? 0 : x >= 4294967296 ? 4294967295 : Math.trunc(x));`,
  },
  // CUDA has __float_as_uint and __uint_as_float.
  bits: {
    cpu: `NGP_FN uint32_t ngp_f32_bits(float x) { uint32_t u; std::memcpy(&u, &x, 4); return u; }
NGP_FN float ngp_bits_f32(uint32_t u) { float x; std::memcpy(&x, &u, 4); return x; }`,
    js: `const __f32buf = new Float32Array(1);
const __u32buf = new Uint32Array(__f32buf.buffer);
const __f32bits = (x) => ((__f32buf[0] = x), __u32buf[0]);
const __bitsf32 = (u) => ((__u32buf[0] = u), __f32buf[0]);`,
  },
  clz: { cpu: "NGP_FN uint32_t ngp_clz(uint32_t x) { return x == 0 ? 32u : (uint32_t)__builtin_clz(x); }" },
  popcount: { js: "const __popc = (x) => { let n = 0; for (let v = x >>> 0; v !== 0; v >>>= 1) n += v & 1; return n; };" },
  // The JS twin itself, with Math.fround for F.
  fma: { js: `const __fma = ${fmaImpl.toString().replace(/\bF\(/g, "Math.fround(")};` },
  atomicAdd: { cpu: "template <class T> NGP_FN void ngp_atomic_add(T* p, T v) { std::atomic_ref<T>(*p).fetch_add(v, std::memory_order_relaxed); }" },
  ...TILE_HELPERS,
} satisfies Record<string, Helper>;

export type HelperName = keyof typeof HELPERS;

/**
 * The definitions on `target` of the helpers that `entries` call and of those they need, once each
 * and in the table's order.
 */
export function helperDefinitions(entries: Iterable<Intrinsic>, target: "cpu" | "cuda" | "js"): string[] {
  const used = new Set<string>();
  const use = (h: string): void => void (used.has(h) || (used.add(h), (HELPERS as Record<string, Helper>)[h]!.needs?.forEach(use)));
  for (const e of entries) e.helpers?.forEach(use);
  return Object.entries(HELPERS as Record<string, Helper>).flatMap(([name, h]) => {
    const code = target === "js" ? h.js : (h[target] ?? h.c);
    return used.has(name) && code !== undefined ? [code] : [];
  });
}

const NUM: Scalar[] = ["f32", "i32", "u32"];

export const INTRINSICS = {
  f32: {
    doc: "conversion to f32 (rounds to nearest)", params: ["T"], ret: "f32", T: NUM,
    c: { f32: "($0)", i32: "((float)($0))", u32: "((float)($0))" }, js: { f32: "($0)", i32: "Math.fround($0)", u32: "Math.fround($0)" }, jsF32: true,
    pure: true, exact: true, impl: toF32,
    // An f32 argument passes its adjoint through; an integer one has none.
    grad: (_b, a) => [a],
  },
  i32: {
    doc: "conversion to i32 (from f32: truncating, saturating, NaN -> 0; from u32: same bits)", params: ["T"], ret: "i32", T: NUM,
    c: { f32: "ngp_f2int_rz($0)", i32: "($0)", u32: "((int32_t)($0))" }, cuda: { f32: "__float2int_rz($0)", i32: "($0)", u32: "((int32_t)($0))" },
    js: { f32: "__f2i32($0)", i32: "($0)", u32: "(($0) | 0)" }, helpers: ["floatToInt"], pure: true, exact: true, impl: toI32 as (x: number, from?: Scalar) => number,
  },
  u32: {
    doc: "conversion to u32 (from f32: truncating, saturating, NaN -> 0; from i32: same bits)", params: ["T"], ret: "u32", T: NUM,
    c: { f32: "ngp_f2uint_rz($0)", i32: "((uint32_t)($0))", u32: "($0)" }, cuda: { f32: "__float2uint_rz($0)", i32: "((uint32_t)($0))", u32: "($0)" },
    js: { f32: "__f2u32($0)", i32: "(($0) >>> 0)", u32: "($0)" }, helpers: ["floatToInt"], pure: true, exact: true, impl: toU32 as (x: number, from?: Scalar) => number,
  },
  floor: { doc: "largest integer value not greater than x", params: ["f32"], ret: "f32", c: "floorf($0)", js: "Math.floor($0)", pure: true, exact: true, impl: (x: f32): f32 => Math.floor(x), grad: piecewiseConstant },
  ceil: { doc: "smallest integer value not less than x", params: ["f32"], ret: "f32", c: "ceilf($0)", js: "Math.ceil($0)", pure: true, exact: true, impl: (x: f32): f32 => Math.ceil(x), grad: piecewiseConstant },
  trunc: { doc: "x rounded toward zero", params: ["f32"], ret: "f32", c: "truncf($0)", js: "Math.trunc($0)", pure: true, exact: true, impl: (x: f32): f32 => Math.trunc(x), grad: piecewiseConstant },
  abs: {
    doc: "absolute value", params: ["T"], ret: "T", T: ["f32", "i32"],
    c: { f32: "fabsf($0)", i32: "ngp_abs($0)" }, js: { f32: "Math.abs($0)", i32: "(Math.abs($0) | 0)" }, helpers: ["abs"],
    pure: true, exact: true, impl: <T extends number>(x: T): T => Math.abs(x) as T,
    // sign(x) · a, with sign(0) = 0 (L1's gradient at a prediction equal to its target).
    grad: (b, a, _r, x) => [b.select(b.lt(x!, b.lit(0)), b.neg(a), b.select(b.lt(b.lit(0), x!), a, b.lit(0)))],
  },
  min: {
    doc: "the smaller of a and b (a if either is NaN)", params: ["T", "T"], ret: "T", T: NUM, c: "ngp_min($0, $1)", js: "__min($0, $1)", jsF32: true, helpers: ["minMax"], pure: true, exact: true, impl: minImpl,
    grad: (b, a, _r, x, y) => [b.select(b.lt(y!, x!), b.lit(0), a), b.select(b.lt(y!, x!), a, b.lit(0))],
  },
  max: {
    doc: "the larger of a and b (a if either is NaN)", params: ["T", "T"], ret: "T", T: NUM, c: "ngp_max($0, $1)", js: "__max($0, $1)", jsF32: true, helpers: ["minMax"], pure: true, exact: true, impl: maxImpl,
    // At a tie the second operand takes the adjoint, so that max(0, x) passes it at x = 0 (a
    // clamp to [0, 1] then keeps the gradient on the closed interval); with a NaN, the first.
    grad: (b, a, _r, x, y) => [b.select(b.le(x!, y!), b.lit(0), a), b.select(b.le(x!, y!), a, b.lit(0))],
  },
  clamp: {
    doc: "min(max(x, lo), hi)", params: ["T", "T", "T"], ret: "T", T: NUM, c: "ngp_min(ngp_max($0, $1), $2)", js: "__min(__max($0, $1), $2)", jsF32: true, helpers: ["minMax"],
    pure: true, exact: true, impl: <T extends number>(x: T, lo: T, hi: T): T => minImpl(maxImpl(x, lo), hi),
    // min(m, hi) with m = max(x, lo): hi when hi < m, else m (x unless x < lo).
    grad: (b, a, _r, x, lo, hi) => {
      const m = b.call("max", x!, lo!);
      const toM = b.select(b.lt(hi!, m), b.lit(0), a);
      return [b.select(b.lt(x!, lo!), b.lit(0), toM), b.select(b.lt(x!, lo!), toM, b.lit(0)), b.select(b.lt(hi!, m), a, b.lit(0))];
    },
  },
  detach: {
    doc: "x, as a constant for automatic differentiation: its derivative is 0 (a stop-gradient, for losses whose gradient holds a factor fixed)",
    params: ["f32"], ret: "f32", c: "($0)", js: "($0)", jsF32: true, pure: true, exact: true, impl: (x: f32): f32 => x, grad: piecewiseConstant,
  },
  select: {
    doc: "c ? a : b, evaluated without branching on the condition's side effects", params: ["bool", "T", "T"], ret: "T", T: ["f32", "i32", "u32", "bool"],
    c: "(($0) ? ($1) : ($2))", js: "(($0) ? ($1) : ($2))", jsF32: true, pure: true, exact: true, chooses: true,
    impl: <T>(c: boolean, a: T, b: T): T => (c ? a : b),
    grad: (b, a, _r, c) => [null, b.select(c!, a, b.lit(0)), b.select(c!, b.lit(0), a)],
  },
  fma: {
    doc: "a * b + c with one rounding", params: ["f32", "f32", "f32"], ret: "f32",
    c: "fmaf($0, $1, $2)", js: "__fma($0, $1, $2)", jsF32: true, helpers: ["fma"], pure: true, exact: true, impl: fmaImpl,
    grad: (b, a, _r, x, y) => [b.mul(a, y!), b.mul(a, x!), a],
  },
  sqrt: { doc: "square root", params: ["f32"], ret: "f32", c: "sqrtf($0)", js: "Math.sqrt($0)", pure: true, exact: true, impl: (x: f32): f32 => F(Math.sqrt(x)), grad: (b, a, r) => [b.div(b.mul(a, b.lit(0.5)), r)] },
  rsqrt: {
    doc: "1 / sqrt(x) (CUDA: the fast approximate rsqrtf)", params: ["f32"], ret: "f32",
    c: "(1.0f / sqrtf($0))", cuda: "rsqrtf($0)", js: "(1 / Math.fround(Math.sqrt($0)))", pure: true, exact: false,
    impl: (x: f32): f32 => F(1 / F(Math.sqrt(x))),
    grad: (b, a, r) => [b.mul(a, b.mul(b.lit(-0.5), b.mul(r, b.mul(r, r))))],
  },
  exp: { doc: "e^x", params: ["f32"], ret: "f32", c: "expf($0)", js: "Math.exp($0)", pure: true, exact: false, impl: (x: f32): f32 => F(Math.exp(x)), grad: (b, a, r) => [b.mul(a, r)] },
  exp2: { doc: "2^x", params: ["f32"], ret: "f32", c: "exp2f($0)", js: "Math.pow(2, $0)", pure: true, exact: false, impl: (x: f32): f32 => F(2 ** x), grad: (b, a, r) => [b.mul(a, b.mul(r, b.lit(Math.LN2)))] },
  log: { doc: "natural logarithm", params: ["f32"], ret: "f32", c: "logf($0)", js: "Math.log($0)", pure: true, exact: false, impl: (x: f32): f32 => F(Math.log(x)), grad: (b, a, _r, x) => [b.div(a, x!)] },
  log2: { doc: "base-2 logarithm", params: ["f32"], ret: "f32", c: "log2f($0)", js: "Math.log2($0)", pure: true, exact: false, impl: (x: f32): f32 => F(Math.log2(x)), grad: (b, a, _r, x) => [b.div(a, b.mul(x!, b.lit(Math.LN2)))] },
  pow: { doc: "x^y", params: ["f32", "f32"], ret: "f32", c: "powf($0, $1)", js: "Math.pow($0, $1)", pure: true, exact: false, impl: (x: f32, y: f32): f32 => F(x ** y), grad: (b, a, r, x, y) => [b.mul(a, b.mul(y!, b.call("pow", x!, b.sub(y!, b.lit(1))))), b.mul(a, b.mul(r, b.call("log", x!)))] },
  sin: { doc: "sine", params: ["f32"], ret: "f32", c: "sinf($0)", js: "Math.sin($0)", pure: true, exact: false, impl: (x: f32): f32 => F(Math.sin(x)), grad: (b, a, _r, x) => [b.mul(a, b.call("cos", x!))] },
  cos: { doc: "cosine", params: ["f32"], ret: "f32", c: "cosf($0)", js: "Math.cos($0)", pure: true, exact: false, impl: (x: f32): f32 => F(Math.cos(x)), grad: (b, a, _r, x) => [b.neg(b.mul(a, b.call("sin", x!)))] },
  tanh: { doc: "hyperbolic tangent", params: ["f32"], ret: "f32", c: "tanhf($0)", js: "Math.tanh($0)", pure: true, exact: false, impl: (x: f32): f32 => F(Math.tanh(x)), grad: (b, a, r) => [b.mul(a, b.sub(b.lit(1), b.mul(r, r)))] },
  floatBitsToUint: {
    doc: "the IEEE bits of an f32", params: ["f32"], ret: "u32", c: "ngp_f32_bits($0)", cuda: "__float_as_uint($0)", js: "__f32bits($0)", helpers: ["bits"],
    pure: true, exact: true, impl: (x: f32): u32 => ((f32Bits[0] = x), u32Bits[0]!),
  },
  uintBitsToFloat: {
    doc: "the f32 with the given IEEE bits", params: ["u32"], ret: "f32", c: "ngp_bits_f32($0)", cuda: "__uint_as_float($0)", js: "__bitsf32($0)", jsF32: true, helpers: ["bits"],
    pure: true, exact: true, impl: (x: u32): f32 => ((u32Bits[0] = x), f32Bits[0]!),
  },
  clz: {
    doc: "count of leading zero bits (32 for 0)", params: ["u32"], ret: "u32", c: "ngp_clz($0)", cuda: "((uint32_t)__clz((int)($0)))", js: "Math.clz32($0)", helpers: ["clz"],
    pure: true, exact: true, impl: (x: u32): u32 => Math.clz32(x),
  },
  popcount: {
    doc: "count of set bits", params: ["u32"], ret: "u32", c: "((uint32_t)__builtin_popcount($0))", cuda: "((uint32_t)__popc($0))", js: "__popc($0)", helpers: ["popcount"],
    pure: true, exact: true, impl: popcountImpl,
  },
  atomicAdd: {
    doc: "buf[index] += value, atomically across threads (f32 or u32)", params: ["Buf<T>", "int", "T"], ret: "void", T: ["f32", "u32"],
    c: "ngp_atomic_add(&$0[$1], $2)", cuda: "atomicAdd(&$0[$1], $2)", js: "$0[$1] += $2", serial: "$0[$1] += $2", helpers: ["atomicAdd"],
    pure: false, exact: true, writes: 0, effect: { k: "add", buf: 0, index: 1, value: 2 },
    impl: <T extends number>(buf: Buf<T>, index: number, value: T): void => {
      buf[index] = (buf[index]! + value) as T;
    },
  },
  prefetch: {
    doc: "hint that buf[index] will be read soon (no effect on results; a no-op on CUDA and JS)", params: ["Buf<T>", "int"], ret: "void", T: ["f32", "i32", "u32"],
    c: "__builtin_prefetch(&$0[$1])", cuda: "((void)0)", js: "void 0", pure: false, exact: true, effect: { k: "hint" },
    impl: <T extends number>(_buf: Buf<T>, _index: number): void => {},
  },
  ...TILE_INTRINSICS,
} satisfies Record<string, Intrinsic>;

export type IntrinsicName = keyof typeof INTRINSICS;

export function lookupIntrinsic(name: string): Intrinsic | undefined {
  return Object.hasOwn(INTRINSICS, name) ? (INTRINSICS as Record<string, Intrinsic>)[name] : undefined;
}

/** The spelling of `intrinsic` for a target, instantiated at `T` (if generic); `serial`: with a single writer. */
export function spell(intrinsic: Intrinsic, target: "cpu" | "cuda" | "js", T: Scalar | undefined, serial = false): string {
  const s = serial && intrinsic.serial !== undefined ? intrinsic.serial : target === "js" ? intrinsic.js : (intrinsic[target] ?? intrinsic.c);
  if (typeof s === "string") return s;
  const t = T ?? "f32";
  const out = s[t];
  if (out === undefined) throw new Error(`internal: intrinsic has no ${target} spelling for ${t}`);
  return out;
}

// The JS twins, exported under their kernel-language names.
export const floor = INTRINSICS.floor.impl;
export const ceil = INTRINSICS.ceil.impl;
export const trunc = INTRINSICS.trunc.impl;
export const abs = INTRINSICS.abs.impl;
export const min = INTRINSICS.min.impl;
export const max = INTRINSICS.max.impl;
export const clamp = INTRINSICS.clamp.impl;
export const select = INTRINSICS.select.impl;
export const detach = INTRINSICS.detach.impl;
export const fma = INTRINSICS.fma.impl;
export const sqrt = INTRINSICS.sqrt.impl;
export const rsqrt = INTRINSICS.rsqrt.impl;
export const exp = INTRINSICS.exp.impl;
export const exp2 = INTRINSICS.exp2.impl;
export const log = INTRINSICS.log.impl;
export const log2 = INTRINSICS.log2.impl;
export const pow = INTRINSICS.pow.impl;
export const sin = INTRINSICS.sin.impl;
export const cos = INTRINSICS.cos.impl;
export const tanh = INTRINSICS.tanh.impl;
export const floatBitsToUint = INTRINSICS.floatBitsToUint.impl;
export const uintBitsToFloat = INTRINSICS.uintBitsToFloat.impl;
export const clz = INTRINSICS.clz.impl;
export const popcount = INTRINSICS.popcount.impl;
export const atomicAdd = INTRINSICS.atomicAdd.impl;
export const prefetch = INTRINSICS.prefetch.impl;

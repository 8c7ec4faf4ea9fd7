// The hand-written C++ hash grid (bench/hashgrid_hand.cpp), built with the project's CPU flags
// through the build cache and loaded with bun:ffi, plus the tiny-cuda-nn level tables.
//
//   await loadHand();                       // builds (or finds in the cache) and loads the library
//   await loadHand({ isa: "avx2" });        // the same source built with -mno-avx512f (the AVX2 path)
//   const cfg = gridTables(2, 16, 2, 19, 16, Math.exp(Math.log(2048 / 16) / 15));
//   handForward(cfg, n, x, params, out);    // out: [n][levels * features]
//   handBackward(cfg, n, x, dy, grad);      // grad += ...; the caller zeroes grad
//
// Every wrapper checks its arguments before the native call: bun:ffi itself checks nothing, and a
// short array would be read or written past its end.

import { gridConfig, gridLevels, parseHashGridOptions } from "../modules/hashgrid.ts";
import { dlopen } from "bun:ffi";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { buildCached, type BuildResult } from "../runtime/cache.ts";
import { validateSharedLibrary } from "../runtime/elf.ts";
import { CPU_FLAGS, findCxx } from "../runtime/toolchain.ts";

export const HAND_SOURCE_PATH = join(import.meta.dir, "hashgrid_hand.cpp");
/** Part of the cache key: bump when the build of the hand-written code changes meaning. */
export const HAND_COMPILER_VERSION = "bench-hand-1";

/** A hash-grid configuration in the form the kernels take (tiny-cuda-nn's tables, per level). */
export interface HandGridConfig {
  dims: number;
  levels: number;
  features: number;
  /** [l * dims + d] */
  scale: Float32Array;
  /** [l * dims + d]: dense strides (0 for an axis tiny-cuda-nn leaves out of the index). */
  stride: Uint32Array;
  /** [l]: entries of level l's table. */
  size: Uint32Array;
  /** [l]: first entry of level l. */
  offset: Uint32Array;
  /** [l]: 1 if level l is hashed, else 0. */
  hashed: Uint32Array;
}

/** gridTables' result: the kernel configuration plus what the caller needs to size buffers. */
export interface GridTables extends HandGridConfig {
  /** [l]: grid resolution (vertices per axis) of level l. */
  resolution: Uint32Array;
  /** Table entries over all levels. */
  entries: number;
  /** Parameters (entries * features). */
  paramCount: number;
}

/**
 * The per-level tables of a hash grid (tiny-cuda-nn's, as modules/hashgrid.ts derives them for
 * the generated kernels), in the typed arrays the hand-written kernels take.
 */
export function gridTables(
  dims: number,
  levels: number,
  features: number,
  log2T: number,
  baseRes: number,
  perLevelScale: number,
): GridTables {
  const settings = parseHashGridOptions({ dims, levels, featuresPerLevel: features, log2HashmapSize: log2T, baseResolution: baseRes, perLevelScale });
  const lv = gridLevels(settings);
  const cfg = gridConfig(settings, lv);
  const entries = lv[lv.length - 1]!.offset + lv[lv.length - 1]!.size;
  return {
    dims, levels, features,
    scale: Float32Array.from(cfg.scale),
    stride: Uint32Array.from(cfg.stride),
    size: Uint32Array.from(cfg.size),
    offset: Uint32Array.from(cfg.offset),
    hashed: Uint32Array.from(cfg.hashed, Number),
    resolution: Uint32Array.from(lv, (l) => l.resolution[0]!),
    entries,
    paramCount: entries * features,
  };
}

type Native = (
  D: number, L: number, F: number,
  scale: Float32Array, stride: Uint32Array, size: Uint32Array, offset: Uint32Array, hashed: Uint32Array,
  n: number, x: Float32Array, a: Float32Array, b: Float32Array,
) => number;

/**
 * Which build of the hand-written code: "native" (the project's CPU_FLAGS, -march=native: AVX-512
 * where the CPU has it, else AVX2), "avx2" (CPU_FLAGS plus -mno-avx512f: the AVX2 path even on an
 * AVX-512 machine), "scalar" (CPU_FLAGS plus -mno-avx2 -mno-avx512f: no vector path).
 */
export type HandIsa = "native" | "avx2" | "scalar";
export const HAND_ISAS: readonly HandIsa[] = ["native", "avx2", "scalar"];

/** The C++ flags of a build of the hand-written code. */
export function handFlags(isa: HandIsa): string[] {
  const extra = { native: [], avx2: ["-mno-avx512f"], scalar: ["-mno-avx512f", "-mno-avx2"] }[isa];
  if (!extra) throw new RangeError(`hand-written grid: isa must be one of ${HAND_ISAS.join(", ")}, got ${JSON.stringify(isa)}`);
  return [...CPU_FLAGS, ...extra];
}

export interface HandLib {
  path: string;
  build: BuildResult;
  /** The build asked for. */
  isa: HandIsa;
  /** True when the library uses vector kernels (false: the fast functions run the scalar code). */
  vectorized: boolean;
  /** Bits per vector of the fast functions: 512 (AVX-512), 256 (AVX2 + FMA) or 0 (scalar code). */
  vectorBits: 512 | 256 | 0;
  /** The vector path in words: "AVX-512 (16 lanes)", "AVX2+FMA (8 lanes)" or "scalar". */
  vectorPath: string;
  /** The raw native entry points: nothing is checked (a short array is overrun); prefer handForward etc. */
  forward: Native;
  backward: Native;
  forwardScalar: Native;
  backwardScalar: Native;
  /** Ablation knobs: pipeline depth (items of 16 points with AVX-512 (0..7), of 8 with AVX2 (0..15)) and the smallest prefetched table (bytes); -1 keeps a value. */
  setTuning(pipeline: number, prefetchMinBytes: number): void;
  close(): void;
}

/** One memoized library per build; "native" is the one handForward etc. use by default. */
const loaded = new Map<HandIsa, Promise<HandLib>>();
const libs = new Map<HandIsa, HandLib>();

export interface LoadOptions {
  cacheDir?: string;
  rebuild?: boolean;
  /** Which build (default "native"). */
  isa?: HandIsa;
}

/** Builds (or takes from the cache) and loads hashgrid_hand.cpp; memoized per isa (the first call's options win). Throws if it cannot be built. */
export function loadHand(options: LoadOptions = {}): Promise<HandLib> {
  const isa = options.isa ?? "native";
  handFlags(isa); // rejects an unknown isa before anything is memoized
  let p = loaded.get(isa);
  if (!p) {
    p = load(options, isa).then(
      (l) => (libs.set(isa, l), l),
      (error) => {
        loaded.delete(isa);
        throw error;
      },
    );
    loaded.set(isa, p);
  }
  return p;
}

async function load(options: LoadOptions, isa: HandIsa): Promise<HandLib> {
  const { tool, reason } = findCxx();
  if (!tool) throw new Error(`cannot build ${HAND_SOURCE_PATH}: no C++ compiler (${reason})`);
  const build = await buildCached({
    source: readFileSync(HAND_SOURCE_PATH, "utf8"),
    lang: "cpp",
    tool,
    flags: handFlags(isa),
    compilerVersion: HAND_COMPILER_VERSION,
    cacheDir: options.cacheDir,
    name: isa === "native" ? "hashgrid_hand" : `hashgrid_hand_${isa}`,
    rebuild: options.rebuild,
  });
  const problem = validateSharedLibrary(build.path);
  if (problem) throw new Error(`refusing to load ${build.path}: ${problem}`);
  const kernelArgs = ["i32", "i32", "i32", "ptr", "ptr", "ptr", "ptr", "ptr", "i64", "ptr", "ptr", "ptr"] as const;
  const kernel = { args: kernelArgs, returns: "i32" } as const;
  const handle = dlopen(build.path, {
    hand_grid_forward: kernel,
    hand_grid_backward: kernel,
    hand_grid_forward_scalar: kernel,
    hand_grid_backward_scalar: kernel,
    hand_grid_vectorized: { args: [], returns: "i32" },
    hand_grid_vector_bits: { args: [], returns: "i32" },
    hand_grid_set_tuning: { args: ["i32", "i64"], returns: "i32" },
  });
  const s = handle.symbols;
  const native = (f: unknown) => f as Native;
  let closed = false;
  const bits = s.hand_grid_vector_bits();
  if (bits !== 512 && bits !== 256 && bits !== 0) throw new Error(`${build.path}: hand_grid_vector_bits() returned ${bits}`);
  const lib: HandLib = {
    path: build.path,
    build,
    isa,
    vectorized: s.hand_grid_vectorized() === 1,
    vectorBits: bits,
    vectorPath: bits === 512 ? "AVX-512 (16 lanes)" : bits === 256 ? "AVX2+FMA (8 lanes)" : "scalar",
    forward: native(s.hand_grid_forward),
    backward: native(s.hand_grid_backward),
    forwardScalar: native(s.hand_grid_forward_scalar),
    backwardScalar: native(s.hand_grid_backward_scalar),
    setTuning(pipeline, prefetchMinBytes) {
      if (s.hand_grid_set_tuning(pipeline, prefetchMinBytes) !== 0) {
        throw new RangeError(`hand_grid_set_tuning(${pipeline}, ${prefetchMinBytes}): value out of range`);
      }
    },
    close() {
      if (closed) return;
      closed = true;
      if (libs.get(isa) === lib) {
        libs.delete(isa);
        loaded.delete(isa);
      }
      handle.close();
    },
  };
  return lib;
}

/** `lib` if given (a library from loadHand, any isa), else the loaded native build. */
function requireLib(lib?: HandLib): HandLib {
  if (lib) return lib;
  const native = libs.get("native");
  if (!native) throw new Error("the hand-written grid is not loaded: await loadHand() first");
  return native;
}

/** Checks cfg and the buffers against each other (the table is params or grad; rows is out or dy). */
function check(
  what: string,
  cfg: HandGridConfig,
  n: number,
  x: Float32Array,
  table: [name: string, array: Float32Array],
  rows: [name: string, array: Float32Array],
): void {
  const { dims: D, levels: L, features: F } = cfg;
  const fail = (msg: string): never => {
    throw new TypeError(`${what}: ${msg}`);
  };
  if (!Number.isInteger(D) || D < 1 || D > 8) fail(`dims must be 1..8, got ${D}`);
  if (!Number.isInteger(L) || L < 1) fail(`levels must be a positive integer, got ${L}`);
  if (![1, 2, 4, 8].includes(F)) fail(`features must be 1, 2, 4 or 8, got ${F}`);
  if (!Number.isSafeInteger(n) || n < 0) fail(`n must be a non-negative integer, got ${n}`);
  const arrays: [string, unknown, typeof Float32Array | typeof Uint32Array, number][] = [
    ["scale", cfg.scale, Float32Array, L * D],
    ["stride", cfg.stride, Uint32Array, L * D],
    ["size", cfg.size, Uint32Array, L],
    ["offset", cfg.offset, Uint32Array, L],
    ["hashed", cfg.hashed, Uint32Array, L],
    ["x", x, Float32Array, n * D],
    [rows[0], rows[1], Float32Array, n * L * F],
    [table[0], table[1], Float32Array, 0],
  ];
  for (const [name, arr, type, len] of arrays) {
    if (!(arr instanceof type)) fail(`${name} must be a ${type.name}`);
    const have = (arr as Float32Array).length;
    if (have < len) fail(`${name} has ${have} elements, needs ${len}`);
  }
  let entries = 0;
  for (let l = 0; l < L; l++) {
    if (cfg.size[l] === 0) fail(`size[${l}] is 0`);
    entries = Math.max(entries, cfg.offset[l]! + cfg.size[l]!);
  }
  if (table[1].length < entries * F) fail(`${table[0]} has ${table[1].length} elements, the tables need ${entries * F}`);
}

function call(what: string, fn: Native, cfg: HandGridConfig, n: number, x: Float32Array, a: Float32Array, b: Float32Array): void {
  if (n === 0) return; // an empty TypedArray may have no address; there is nothing to do anyway
  const status = fn(cfg.dims, cfg.levels, cfg.features, cfg.scale, cfg.stride, cfg.size, cfg.offset, cfg.hashed, n, x, a, b);
  if (status !== 0) throw new Error(`${what} failed with status ${status}`);
}

/** out[(i*L + l)*F + f] = the encoding of x[i] (vector kernels where available); `lib` picks a build (default: the native one). */
export function handForward(cfg: HandGridConfig, n: number, x: Float32Array, params: Float32Array, out: Float32Array, lib?: HandLib): void {
  check("handForward", cfg, n, x, ["params", params], ["out", out]);
  call("hand_grid_forward", requireLib(lib).forward, cfg, n, x, params, out);
}

/** grad += d(sum(out * dy))/d params; the caller zeroes grad. */
export function handBackward(cfg: HandGridConfig, n: number, x: Float32Array, dy: Float32Array, grad: Float32Array, lib?: HandLib): void {
  check("handBackward", cfg, n, x, ["grad", grad], ["dy", dy]);
  call("hand_grid_backward", requireLib(lib).backward, cfg, n, x, dy, grad);
}

/** handForward computed by the plain scalar code (the definition; bit-identical results). */
export function handForwardScalar(cfg: HandGridConfig, n: number, x: Float32Array, params: Float32Array, out: Float32Array, lib?: HandLib): void {
  check("handForwardScalar", cfg, n, x, ["params", params], ["out", out]);
  call("hand_grid_forward_scalar", requireLib(lib).forwardScalar, cfg, n, x, params, out);
}

/** handBackward computed by the plain scalar code. */
export function handBackwardScalar(cfg: HandGridConfig, n: number, x: Float32Array, dy: Float32Array, grad: Float32Array, lib?: HandLib): void {
  check("handBackwardScalar", cfg, n, x, ["grad", grad], ["dy", dy]);
  call("hand_grid_backward_scalar", requireLib(lib).backwardScalar, cfg, n, x, dy, grad);
}

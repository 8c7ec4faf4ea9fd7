// The hash-grid encoding's configuration, as pure arithmetic: the options and their validation, the
// per-level tables derived exactly as tiny-cuda-nn does (in 64-bit arithmetic), the parameter counts,
// the memory, learned probing's layout and the kernel configuration. It loads no kernels and imports
// no compiler, so that `bun run params` and the trainer's configuration need neither; the HashGrid
// module (hashgrid.ts) builds on it and re-exports it.
import { existsSync, statSync } from "node:fs";
import { totalmem } from "node:os";
import { z } from "zod";
import { ConfigError, parseOptions } from "./options.ts";

export { ConfigError };

/** Learned probing: the most slots per bucket, the most codebook rows per level. */
export const MAX_PROBE_RANGE = 64;
export const MAX_CODEBOOK = 2 ** 24;
/**
 * Defaults, chosen by bench:probing (see the README's "Learned hash probing"): without a
 * codebookSize, N_c = codebookPerEntry * 2^log2T rows per hashed level (at most MAX_CODEBOOK); the
 * gain over the plain grid grew with N_c relative to the table, about 0.5 dB per doubling.
 */
export const PROBING_DEFAULTS = { codebookPerEntry: 4, lr: 0.1 } as const;

/** N_c when the settings give none: PROBING_DEFAULTS.codebookPerEntry rows per table entry. */
export function defaultCodebookSize(log2HashmapSize: number): number {
  return Math.min(MAX_CODEBOOK, PROBING_DEFAULTS.codebookPerEntry * 2 ** log2HashmapSize);
}

/** A number, or one per axis (their count is checked against dims below). */
const perAxis = (n: z.ZodNumber) => z.union([n, z.array(n).min(1).max(8)]);

/** A per-axis setting's value on axis d (one number: every axis). */
const axis = (v: number | number[], d: number): number => (Array.isArray(v) ? v[d]! : v);

export const HashGridOptions = z
  .object({
    /** Input dimension, 1 to 8. */
    dims: z.number().int().min(1).max(8),
    /** Levels: as many as the table's u32 indices (MAX_PARAMS) and the machine's memory allow. */
    levels: z.number().int().min(1).default(16),
    featuresPerLevel: z.literal([1, 2, 4, 8]).default(2),
    log2HashmapSize: z.number().int().min(8).max(24).default(19),
    /** Coarsest resolution N_min, or one per axis. */
    baseResolution: perAxis(z.number().positive()).default(16),
    /** Growth factor b between levels, or one per axis (give this or finestResolution). */
    perLevelScale: perAxis(z.number().min(1)).optional(),
    /** Resolution of the finest level, or one per axis; b = (finest / base)^(1 / (levels - 1)). */
    finestResolution: perAxis(z.number().positive()).optional(),
    gridType: z.enum(["hash", "dense", "tiled"]).default("hash"),
    interpolation: z.enum(["nearest", "linear", "smoothstep"]).default("linear"),
    /** Parameter storage: f32, or f16 (half the memory; computed and accumulated in f32). */
    precision: z.enum(["f32", "f16"]).default("f32"),
    /** Seed of the uniform(-1e-4, 1e-4) initialization. */
    seed: z.number().int().default(1337),
    /**
     * Learned hash probing (Compact NGP) on the hashed levels: `range` N_p slots per bucket (a
     * power of two, 1 to 64; 1 is the plain grid) chosen by an index codebook of `codebookSize`
     * N_c rows of N_p logits per hashed level (default: defaultCodebookSize, 4 rows per entry).
     */
    probing: z
      .object({ range: z.number().default(1), codebookSize: z.number().optional() })
      .strict()
      .optional(),
    /**
     * A variant of the encoding: a kernel file replacing some of the @replaceable parts of dsl/kernels/lookup.ts (the spatial
     * hash, the interpolation weight, the index scheme or the whole per-level lookup); its
     * gradients are derived by the compiler.
     */
    variant: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((o, ctx) => {
    if (o.variant !== undefined && !(o.variant.endsWith(".ts") && existsSync(o.variant) && statSync(o.variant).isFile()))
      ctx.addIssue({ code: "custom", path: ["variant"], message: `${JSON.stringify(o.variant)} is not a kernel file (.ts) that exists` });
    if (o.probing) {
      const { range, codebookSize } = o.probing;
      if (!(Number.isInteger(range) && range >= 1 && range <= MAX_PROBE_RANGE && (range & (range - 1)) === 0))
        ctx.addIssue({ code: "custom", path: ["probing", "range"], message: `${range} is not allowed (allowed: a power of two from 1 to ${MAX_PROBE_RANGE})` });
      if (codebookSize !== undefined && !(Number.isInteger(codebookSize) && codebookSize >= 1 && codebookSize <= MAX_CODEBOOK))
        ctx.addIssue({ code: "custom", path: ["probing", "codebookSize"], message: `${codebookSize} is out of range (allowed: an integer from 1 to ${MAX_CODEBOOK} (2^24))` });
    }
    for (const key of ["baseResolution", "perLevelScale", "finestResolution"] as const) {
      const v = o[key];
      if (Array.isArray(v) && v.length !== o.dims) ctx.addIssue({ code: "custom", path: [key], message: `has ${v.length} values but dims is ${o.dims}` });
    }
    if (o.perLevelScale !== undefined && o.finestResolution !== undefined)
      ctx.addIssue({ code: "custom", path: ["perLevelScale"], message: "give perLevelScale or finestResolution, not both" });
    // Resolutions going down are a growth below 1, refused as perLevelScale < 1 is.
    const finest = o.finestResolution;
    const below = finest === undefined ? -1 : Array.from({ length: o.dims }, (_, d) => d).findIndex((d) => axis(finest, d) < axis(o.baseResolution, d));
    if (below >= 0)
      ctx.addIssue({ code: "custom", path: ["finestResolution"], message: `${axis(finest!, below)} is below the base resolution ${axis(o.baseResolution, below)}${Array.isArray(finest) || Array.isArray(o.baseResolution) ? ` on axis ${below}` : ""}: the resolutions would go down from level to level (allowed: at least the base resolution)` });
  });

/** What each option allows, as its error messages say (zod's own say only "Invalid input"). */
const ALLOWED: Record<string, string> = {
  dims: "an integer from 1 to 8",
  levels: "an integer >= 1 (as many as the indices and the memory allow)",
  featuresPerLevel: "1, 2, 4, 8",
  log2HashmapSize: "an integer from 8 to 24",
  baseResolution: "a number > 0, or one per axis",
  perLevelScale: "a number >= 1, or one per axis",
  finestResolution: "a number > 0, or one per axis",
  gridType: "hash, dense, tiled",
  interpolation: "nearest, linear, smoothstep",
  precision: "f32, f16",
  seed: "an integer of at most 2^53 in magnitude",
  probing: "{ range, codebookSize }",
  variant: "the path of a kernel file",
};

export type HashGridOptionsInput = z.input<typeof HashGridOptions>;
export type HashGridSettings = z.output<typeof HashGridOptions>;

/** One level of the encoding, as derived from the settings. */
export interface GridLevel {
  /** Per-axis resolution (vertices along the axis). */
  resolution: number[];
  /** Per-axis scale: the grid coordinate is x * scale + 0.5. */
  scale: number[];
  /** Table entries. */
  size: number;
  /** First entry of the level in the parameter array (entries, not floats). */
  offset: number;
  /** Hashed (more vertices than entries) or directly indexed. */
  hashed: boolean;
}

/** The configuration the kernels are specialized for (dsl/kernels/grid.ts GridConfig). */
export interface GridConfigValue {
  [field: string]: number | boolean | number[] | boolean[];
  dims: number;
  levels: number;
  features: number;
  interpolation: number;
  scale: number[];
  stride: number[];
  size: number[];
  offset: number[];
  hashed: boolean[];
  probeRange: number;
  codebookSize: number;
  probed: boolean[];
  rowOffset: number[];
  inputDims: number;
  axes: number[];
  outputStride: number;
  outputOffset: number;
}

/**
 * Where a grid sits in an encoding of several (modules/encoding.ts): values per input row, the
 * input axis of each of the grid's axes, values per output row and the first of them it writes.
 */
export interface GridPlacement {
  inputDims: number;
  axes: number[];
  outputStride: number;
  outputOffset: number;
}

/** A lone grid's placement: every axis in order, the whole output row. */
export function lonePlacement(s: HashGridSettings): GridPlacement {
  return { inputDims: s.dims, axes: Array.from({ length: s.dims }, (_, d) => d), outputStride: s.levels * s.featuresPerLevel, outputOffset: 0 };
}

/** Validate user settings; every problem names its field, the value given and what is allowed. */
export function parseHashGridOptions(input: unknown, where = "hashGrid"): HashGridSettings {
  const s = parseOptions(HashGridOptions, input, where, ALLOWED);
  // The default codebook resolved here, so that settings saved with a model keep its size.
  if (s.probing && s.probing.range > 1 && s.probing.codebookSize === undefined) s.probing.codebookSize = defaultCodebookSize(s.log2HashmapSize);
  return s;
}

/**
 * The most parameters a grid may have: its u32 indices ((entry) * features + f) address them, and
 * the optimizer's launches over them count items in i32 (runtime/ffi.ts), the tighter bound.
 * Levels are limited by this and by memory, not by a count of their own.
 */
export const MAX_PARAMS = 2 ** 31 - 1;
/**
 * Cells finer than f32 positions in [0, 1] can resolve (2^-24) cannot be told apart, and the
 * kernels' exact fraction arithmetic needs half-integer cell coordinates to be f32: at most 2^23.
 */
export const MAX_RESOLUTION = 2 ** 23;

const INTERPOLATION = { nearest: 0, linear: 1, smoothstep: 2 } as const;

function nextMultipleOf8(v: bigint): bigint {
  return ((v + 7n) / 8n) * 8n;
}

/** Per-level tables, exactly as tiny-cuda-nn derives them (vertex counts in 64-bit arithmetic). */
export function gridLevels(s: HashGridSettings): GridLevel[] {
  const growth = (d: number): number => {
    if (s.perLevelScale !== undefined) return axis(s.perLevelScale, d);
    if (s.finestResolution === undefined || s.levels === 1) return 2; // tiny-cuda-nn's default
    return Math.exp(Math.log(axis(s.finestResolution, d) / axis(s.baseResolution, d)) / (s.levels - 1));
  };
  const maxEntries = 2n ** BigInt(s.log2HashmapSize);
  const baseVertices = Array.from({ length: s.dims }, (_, d) => BigInt(Math.ceil(axis(s.baseResolution, d)))).reduce((a, b) => a * b, 1n);
  const levels: GridLevel[] = [];
  let offset = 0n;
  // Every level has at least 8 entries: a level count past the bound is refused before it is walked.
  if (s.levels * 8 * s.featuresPerLevel > MAX_PARAMS)
    throw new ConfigError(`hashGrid.levels: ${s.levels} levels of at least 8 entries would need more than ${MAX_PARAMS} (2^31 - 1) parameters; lower levels`);
  for (let l = 0; l < s.levels; l++) {
    // scale = 2^(l log2 b) * N_min - 1, in double, stored as f32; res = ceil(scale) + 1.
    const scale = Array.from({ length: s.dims }, (_, d) => Math.fround(2 ** (l * Math.log2(growth(d))) * axis(s.baseResolution, d) - 1));
    const resolution = scale.map((sc) => Math.ceil(sc) + 1);
    const bad = resolution.findIndex((r) => r > MAX_RESOLUTION || r < 1);
    if (bad >= 0) {
      const field = s.finestResolution !== undefined ? "finestResolution" : s.perLevelScale !== undefined ? "perLevelScale" : "baseResolution";
      throw new ConfigError(
        `hashGrid.${field}: level ${l} would have resolution ${resolution[bad]} on axis ${bad}, above ${MAX_RESOLUTION} (2^23), the finest grid f32 positions in [0, 1] can resolve; lower ${field} or levels`,
      );
    }
    const vertices = resolution.reduce((a, r) => a * BigInt(r), 1n);
    let size = nextMultipleOf8(vertices);
    if (s.gridType === "hash" && size > maxEntries) size = maxEntries;
    if (s.gridType === "tiled" && size > baseVertices) size = baseVertices;
    const hashed = s.gridType === "hash" && vertices > size;
    levels.push({ resolution, scale, size: Number(size), offset: Number(offset), hashed });
    offset += size;
    const params = offset * BigInt(s.featuresPerLevel);
    if (params > BigInt(MAX_PARAMS)) {
      const fields = s.gridType === "hash" ? "log2HashmapSize, levels or featuresPerLevel" : "gridType (use hash), finestResolution or levels";
      throw new ConfigError(`hashGrid: the grid would need ${params} parameters by level ${l}, more than ${MAX_PARAMS} (2^31 - 1); lower ${fields}`);
    }
  }
  const bytes = Number(offset) * s.featuresPerLevel * 4;
  // Parameters, gradient and optimizer state must fit at once.
  if (3 * bytes > totalmem())
    throw new ConfigError(`hashGrid: ${(bytes / 2 ** 30).toFixed(1)} GiB of parameters (x3 with gradient and optimizer state) do not fit in ${(totalmem() / 2 ** 30).toFixed(1)} GiB of memory; lower log2HashmapSize or levels`);
  return levels;
}

/** The encoding's parameters, given its levels: F * sum over levels of min(next8(res^D), 2^log2T). */
export function gridParamCount(s: HashGridSettings, levels: GridLevel[] = gridLevels(s)): number {
  const last = levels[levels.length - 1]!;
  return (last.offset + last.size) * s.featuresPerLevel;
}

/** Parameter count of a configuration (gridParamCount of its parsed settings). */
export function hashGridParamCount(input: HashGridOptionsInput): number {
  return gridParamCount(parseHashGridOptions(input));
}

/** The compile-time configuration of the grid kernels. */
export function gridConfig(s: HashGridSettings, levels: GridLevel[] = gridLevels(s), place: GridPlacement = lonePlacement(s)): GridConfigValue {
  const stride = levels.flatMap((lv) => {
    // tiny-cuda-nn adds an axis to the dense index only while its stride fits the table.
    let st = 1;
    return lv.resolution.map((r) => {
      const out = st <= lv.size ? st : 0;
      st = out === 0 ? Infinity : st * r;
      return out;
    });
  });
  const { probed, rowOffset, range, codebookSize } = probingLayout(s, levels);
  return {
    dims: s.dims,
    levels: s.levels,
    features: s.featuresPerLevel,
    interpolation: INTERPOLATION[s.interpolation],
    scale: levels.flatMap((lv) => lv.scale),
    stride: stride.map((v) => (v > 0xffffffff ? 0 : v)),
    size: levels.map((lv) => lv.size),
    offset: levels.map((lv) => lv.offset),
    hashed: levels.map((lv) => lv.hashed),
    probeRange: range,
    codebookSize,
    probed,
    rowOffset,
    ...place,
  };
}

/**
 * The kernels a grid runs: the forward, and the gradients the compiler derives from it
 * (dsl/kernels/grid.ts, `@adjoint`). Two cases keep the hand-written gradients (gridBackward,
 * gridInputGrad), unless the grid has a variant (whose gradients only the compiler knows):
 *   - learned probing: its derived backward (the straight-through estimator declared by
 *     lookup.ts's feature(), per feature and per slot) is correct (the tests compare it with the
 *     hand-written one) but too large for g++ at N_p = 16 (over 12 GB and 10 minutes to build);
 *   - more than 6 dimensions: the derived kernels unroll all 2^D corners of a cell, and from 128
 *     corners on their C++ takes minutes to build, where the hand-written ones keep a loop.
 */
export function gridKernels(s: HashGridSettings): { forward: string; paramGrad: string; inputGrad: string; slots: string; refresh: string; touched: string; touchedLevels: string; packTouched: string; derived: boolean } {
  const half = s.precision === "f16" ? "Half" : "";
  const derived = s.variant !== undefined || (s.dims <= MAX_DERIVED_DIMS && (s.probing?.range ?? 1) === 1);
  return {
    forward: `gridForward${half}`,
    paramGrad: derived ? `gridForward${half}ParamGrad` : `gridBackward${half}`,
    inputGrad: derived ? `gridForward${half}InputGrad` : `gridInputGrad${half}`,
    slots: "gridSlots",
    refresh: "gridRefreshProbes",
    touched: "gridTouched",
    touchedLevels: "gridTouchedLevels",
    packTouched: "gridPackTouched",
    derived,
  };
}

/** Above this many dimensions a grid without a variant runs the hand-written gradients (see gridKernels). */
export const MAX_DERIVED_DIMS = 6;

/** Sparse updates: the words of each level's part of the touched bitmap (a bit per entry, each level's from a word of its own). */
export function touchedWords(levels: GridLevel[]): number[] {
  return levels.map((lv) => Math.ceil(lv.size / 32));
}

/** Learned probing's layout: which levels are probed, and their codebook rows (N_c each, level after level). */
export interface ProbingLayout {
  range: number;
  codebookSize: number;
  probed: boolean[];
  rowOffset: number[];
  /** Codebook rows over all probed levels (0 without probing). */
  rows: number;
}

export function probingLayout(s: HashGridSettings, levels: GridLevel[] = gridLevels(s)): ProbingLayout {
  const range = s.probing?.range ?? 1;
  const codebookSize = s.probing?.codebookSize ?? defaultCodebookSize(s.log2HashmapSize);
  // A level is probed when it is hashed (its table is the full 2^log2T, a multiple of N_p).
  const probed = levels.map((lv) => lv.hashed && range > 1);
  let rows = 0;
  const rowOffset = probed.map((p) => {
    const at = rows;
    if (p) rows += codebookSize;
    return at;
  });
  return { range, codebookSize, probed, rowOffset, rows };
}

export interface GridMemory {
  /** Parameters in their precision, f32 gradient and Adam moments; logits likewise, and the probe table. */
  trainingBytes: number;
  /** Features in `featureBytes` per value and the packed probe indices. */
  inferenceBytes: number;
  /** Learned probing's argmax indices, packed at log2(N_p) bits per codebook row (whole bytes). */
  indexBytes: number;
}

/**
 * Memory of an encoding. Training: parameters in their precision, their f32 gradient and two f32
 * Adam moments, and with probing the logits (f32, with gradient, moments and softmax) and the
 * probe table (u32). Inference: the features in `featureBytes` per value and, per probed level,
 * its N_c argmax indices packed at log2(N_p) bits (rounded up to whole bytes).
 */
export function gridMemory(s: HashGridSettings, levels: GridLevel[] = gridLevels(s), featureBytes: 2 | 4 = s.precision === "f16" ? 2 : 4): GridMemory {
  const params = gridParamCount(s, levels);
  const p = probingLayout(s, levels);
  const logits = p.rows * p.range;
  const indexBytes = p.rows ? Math.ceil((p.rows * Math.log2(p.range)) / 8) : 0;
  return {
    trainingBytes: params * ((s.precision === "f16" ? 2 : 4) + 12) + (p.rows ? logits * 20 + p.rows * 4 : 0),
    inferenceBytes: params * featureBytes + indexBytes,
    indexBytes,
  };
}

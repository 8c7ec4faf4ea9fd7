// The multiresolution hash-grid encoding as a module: validates the user's settings, derives the
// per-level tables exactly as tiny-cuda-nn does (in 64-bit arithmetic), compiles the kernels of
// dsl/kernels/grid.ts for that configuration, and owns the parameters and their gradient.
import { existsSync, statSync } from "node:fs";
import { totalmem } from "node:os";
import { isAbsolute, relative, resolve } from "node:path";
import { z } from "zod";
import type { Backend } from "../runtime/backend.ts";
import type { DeviceBuffer } from "../runtime/buffer.ts";
import { loadKernels, type KernelModule } from "./load.ts";
import { hostOrDevice, seededUniform, type LoadSettings } from "./common.ts";
import { ConfigError, parseOptions } from "./options.ts";

export { ConfigError };

export const GRID_KERNELS = resolve(import.meta.dir, "../dsl/kernels/grid.ts");

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

export const HashGridOptions = z
  .object({
    /** Input dimension, 1 to 8. */
    dims: z.number().int().min(1).max(8),
    levels: z.number().int().min(1).max(64).default(16),
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
    const axis = (v: number | number[], d: number) => (Array.isArray(v) ? v[d] : v);
    const below = finest === undefined ? -1 : Array.from({ length: o.dims }, (_, d) => d).findIndex((d) => axis(finest, d)! < axis(o.baseResolution, d)!);
    if (below >= 0)
      ctx.addIssue({ code: "custom", path: ["finestResolution"], message: `${axis(finest!, below)} is below the base resolution ${axis(o.baseResolution, below)}${Array.isArray(finest) || Array.isArray(o.baseResolution) ? ` on axis ${below}` : ""}: the resolutions would go down from level to level (allowed: at least the base resolution)` });
  });

/** What each option allows, as its error messages say (zod's own say only "Invalid input"). */
const ALLOWED: Record<string, string> = {
  dims: "an integer from 1 to 8",
  levels: "an integer from 1 to 64",
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


/**
 * Reads the settings' variant (codegen/parse.ts readVariant: its parts, a misspelled or missing
 * one refused as NGP1026) and checks what it declares it needs against the settings, before
 * anything is compiled or launched. `flags`: how the command's user sets each field, for the
 * message ("examples/variants/spacetime.ts needs --dims 4 (got 2)").
 */
export async function checkVariant(s: { variant?: string; dims: number; levels: number }, flags: { dims: string; levels: string } = { dims: "dims", levels: "levels" }): Promise<void> {
  if (s.variant === undefined) return;
  parseHashGridOptions({ dims: s.dims, levels: s.levels, variant: s.variant }); // a file that exists, first
  // The compiler's front end (ts-morph) is loaded when a variant is read, not by every command that imports this file.
  const { readVariant } = await import("../codegen/parse.ts");
  const { requires } = readVariant(s.variant, GRID_KERNELS);
  const near = relative(process.cwd(), s.variant);
  const file = near.startsWith("..") || isAbsolute(near) ? s.variant : near;
  if (requires.dims !== undefined && s.dims !== requires.dims) throw new ConfigError(`${file} needs ${flags.dims} ${requires.dims} (got ${s.dims})`);
  const m = requires.levelsMultipleOf;
  if (m !== undefined && s.levels % m !== 0) throw new ConfigError(`${file} needs ${flags.levels} a multiple of ${m} (got ${s.levels})`);
}

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
}

/** Validate user settings; every problem names its field, the value given and what is allowed. */
export function parseHashGridOptions(input: unknown, where = "hashGrid"): HashGridSettings {
  const s = parseOptions(HashGridOptions, input, where, ALLOWED);
  // The default codebook resolved here, so that settings saved with a model keep its size.
  if (s.probing && s.probing.range > 1 && s.probing.codebookSize === undefined) s.probing.codebookSize = defaultCodebookSize(s.log2HashmapSize);
  return s;
}

/** The most parameters a grid may have: u32 entry indices times features must not overflow. */
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
  const axis = (v: number | number[], d: number) => (Array.isArray(v) ? v[d]! : v);
  const growth = (d: number): number => {
    if (s.perLevelScale !== undefined) return axis(s.perLevelScale, d);
    if (s.finestResolution === undefined || s.levels === 1) return 2; // tiny-cuda-nn's default
    return Math.exp(Math.log(axis(s.finestResolution, d) / axis(s.baseResolution, d)) / (s.levels - 1));
  };
  const maxEntries = 2n ** BigInt(s.log2HashmapSize);
  const baseVertices = Array.from({ length: s.dims }, (_, d) => BigInt(Math.ceil(axis(s.baseResolution, d)))).reduce((a, b) => a * b, 1n);
  const levels: GridLevel[] = [];
  let offset = 0n;
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

/** Parameter count of a configuration: F * sum over levels of min(next8(res^D), 2^log2T). */
export function hashGridParamCount(input: HashGridOptionsInput): number {
  const s = parseHashGridOptions(input);
  const levels = gridLevels(s);
  const last = levels[levels.length - 1]!;
  return (last.offset + last.size) * s.featuresPerLevel;
}

/** The compile-time configuration of the grid kernels. */
export function gridConfig(s: HashGridSettings, levels: GridLevel[] = gridLevels(s)): GridConfigValue {
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
export function gridKernels(s: HashGridSettings): { forward: string; paramGrad: string; inputGrad: string; slots: string; refresh: string; derived: boolean } {
  const half = s.precision === "f16" ? "Half" : "";
  const derived = s.variant !== undefined || (s.dims <= MAX_DERIVED_DIMS && (s.probing?.range ?? 1) === 1);
  return {
    forward: `gridForward${half}`,
    paramGrad: derived ? `gridForward${half}ParamGrad` : `gridBackward${half}`,
    inputGrad: derived ? `gridForward${half}InputGrad` : `gridInputGrad${half}`,
    slots: "gridSlots",
    refresh: "gridRefreshProbes",
    derived,
  };
}

/** Above this many dimensions a grid without a variant runs the hand-written gradients (see gridKernels). */
export const MAX_DERIVED_DIMS = 6;

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
  const last = levels[levels.length - 1]!;
  const params = (last.offset + last.size) * s.featuresPerLevel;
  const p = probingLayout(s, levels);
  const logits = p.rows * p.range;
  const indexBytes = p.rows ? Math.ceil((p.rows * Math.log2(p.range)) / 8) : 0;
  return {
    trainingBytes: params * ((s.precision === "f16" ? 2 : 4) + 12) + (p.rows ? logits * 20 + p.rows * 4 : 0),
    inferenceBytes: params * featureBytes + indexBytes,
    indexBytes,
  };
}

/** Per level: distinct grid vertices touched and the fraction of them sharing a slot with another. */
export interface LevelCollisions {
  level: number;
  hashed: boolean;
  vertices: number;
  collidingFraction: number;
}


/** The index of the largest of each row of `width` values (the first of equals). */
export function argmaxRows(values: Float32Array, width: number): Uint32Array {
  const out = new Uint32Array(values.length / width);
  for (let r = 0; r < out.length; r++) {
    let best = 0;
    for (let p = 1; p < width; p++) if (values[r * width + p]! > values[r * width + best]!) best = p;
    out[r] = best;
  }
  return out;
}

/** Uniform(-1e-4, 1e-4) values from a seeded generator (mulberry32), so runs are reproducible. */
export function initParams(out: Float32Array, seed: number): void {
  const next = seededUniform(seed);
  for (let i = 0; i < out.length; i++) out[i] = (next() * 2 - 1) * 1e-4;
}

export class HashGrid {
  /** Parameters, level after level, [entry][feature], in the configured precision. */
  readonly params: DeviceBuffer<"f32" | "f16">;
  /** Gradient of the loss with respect to params (written by backward). */
  readonly grad: DeviceBuffer<"f32">;
  readonly paramCount: number;
  /** Encoding width: levels * featuresPerLevel. */
  readonly outputDim: number;
  /** Learned probing's layout (rows 0 without probing). */
  readonly probing: ProbingLayout;
  /**
   * Learned probing: the index codebooks' logits, [row][N_p] (rows of all probed levels); their
   * gradient as the backward accumulates it, with respect to each row's softmax (d loss / d s_p:
   * the straight-through gradient of the soft lookup sum_p s_p E[bucket + p]), which the
   * optimizer step maps to the logits through the softmax's Jacobian once per row (give it
   * `probeRows`; logitGradient() computes that map here); `probe`, the argmax slot of each row,
   * which the forward reads; and `softmax`, the rows' softmax. The optimizer step refreshes probe
   * and softmax from the logits; after changing the logits otherwise, call refreshProbes.
   * Placeholders of one element without probing.
   */
  readonly logits: DeviceBuffer<"f32">;
  readonly logitGrad: DeviceBuffer<"f32">;
  readonly probe: DeviceBuffer<"u32">;
  readonly softmax: DeviceBuffer<"f32">;
  /** The kernels it runs (see gridKernels). */
  readonly kernels: ReturnType<typeof gridKernels>;
  #lastX: DeviceBuffer<"f32"> | undefined;
  #lastN = 0;

  private constructor(
    readonly settings: HashGridSettings,
    readonly levels: GridLevel[],
    readonly config: GridConfigValue,
    private readonly mod: KernelModule,
  ) {
    const last = levels[levels.length - 1]!;
    this.paramCount = (last.offset + last.size) * settings.featuresPerLevel;
    this.outputDim = settings.levels * settings.featuresPerLevel;
    const init = new Float32Array(this.paramCount);
    initParams(init, settings.seed);
    this.params = mod.upload(settings.precision, init);
    this.grad = mod.alloc("f32", this.paramCount);
    this.probing = probingLayout(settings, levels);
    this.kernels = gridKernels(settings);
    const logits = new Float32Array(Math.max(1, this.logitCount));
    // Small random logits: every row starts at a (seeded) random slot of its bucket.
    initParams(logits, settings.seed ^ 0x10c1);
    this.logits = mod.upload("f32", logits);
    this.logitGrad = mod.alloc("f32", logits.length);
    this.probe = mod.alloc("u32", Math.max(1, this.probing.rows));
    this.softmax = mod.alloc("f32", logits.length);
    this.refreshProbes();
  }

  /** The logits' rows as an Optimizer group's `rows`: the step keeps probe and softmax up to date. */
  get probeRows(): { width: number; argmax: DeviceBuffer<"u32">; softmax: DeviceBuffer<"f32"> } {
    return { width: this.probing.range, argmax: this.probe, softmax: this.softmax };
  }

  /**
   * d loss / d logits of the gradient accumulated in logitGrad: per row s_p (G_p - sum_q s_q G_q),
   * with s the rows' softmax (what the optimizer step applies, dsl/kernels/probe.ts logitGradRow),
   * computed here in float64 for inspection.
   */
  logitGradient(): Float64Array {
    const [g, s] = [this.logitGrad.download(), this.softmax.download()];
    const NP = this.probing.range;
    const out = new Float64Array(this.logitCount);
    for (let row = 0; row < this.probing.rows; row++) {
      let mean = 0;
      for (let p = 0; p < NP; p++) mean += s[row * NP + p]! * g[row * NP + p]!;
      for (let p = 0; p < NP; p++) out[row * NP + p] = s[row * NP + p]! * (g[row * NP + p]! - mean);
    }
    return out;
  }

  /** Logits of the index codebooks (0 without probing). */
  get logitCount(): number {
    return this.probing.rows * this.probing.range;
  }

  /** probe = the argmax (first of equals) and softmax = the softmax of each codebook row's logits. */
  refreshProbes(): void {
    if (this.probing.rows) this.mod.kernels.gridRefreshProbes!(this.probing.rows, this.logits, this.probe, this.softmax);
  }

  /** Memory of the encoding (see gridMemory). */
  memory(featureBytes: 2 | 4 = this.settings.precision === "f16" ? 2 : 4): GridMemory {
    return gridMemory(this.settings, this.levels, featureBytes);
  }

  /** Validate `options`, derive the levels, and compile (or load from cache) the kernels. */
  static async create(options: HashGridOptionsInput, load: LoadSettings = {}): Promise<HashGrid> {
    const settings = parseHashGridOptions(options);
    await checkVariant(settings);
    const levels = gridLevels(settings);
    const config = gridConfig(settings, levels);
    // Compile only the kernels this precision uses (each costs C++ build time).
    const half = settings.precision === "f16";
    const { derived: _, ...names } = gridKernels(settings);
    const kernels = Object.values(names);
    // Unchecked: every index is in range by construction (table offsets and sizes come from the
    // levels; forward and backward check the lengths of x, dy and out before each launch). A
    // variant's indices are the variant author's: checked.
    const mod = await loadKernels(GRID_KERNELS, {
      config, kernels, variant: settings.variant, backend: load.backend, cacheDir: load.cacheDir, log: load.log, boundsChecks: settings.variant !== undefined,
    });
    return new HashGrid(settings, levels, config, mod);
  }

  get backend(): Backend {
    return this.mod.backend;
  }

  /** A zeroed f32 buffer on this module's backend (e.g. for forward outputs reused across calls). */
  alloc(length: number): DeviceBuffer<"f32"> {
    return this.mod.alloc("f32", length);
  }

  close(): void {
    this.mod.close();
  }
  /** Why this backend was chosen. */
  get backendReason(): string {
    return this.mod.reason;
  }

  private points(x: Float32Array | DeviceBuffer<"f32">): { n: number; buf: DeviceBuffer<"f32"> } {
    const d = this.settings.dims;
    if (x.length % d !== 0) throw new RangeError(`HashGrid.forward: ${x.length} input values are not a whole number of ${d}-D points`);
    return { n: x.length / d, buf: hostOrDevice(this.mod, x) };
  }

  /** Encode points x ([n][dims], clamped to [0, 1], NaN as 0); returns [n][outputDim]. */
  forward(x: Float32Array | DeviceBuffer<"f32">, out?: DeviceBuffer<"f32">): DeviceBuffer<"f32"> {
    const { n, buf } = this.points(x);
    out ??= this.mod.alloc("f32", n * this.outputDim);
    if (out.length !== n * this.outputDim) throw new RangeError(`HashGrid.forward: out has ${out.length} values, expected ${n * this.outputDim}`);
    this.mod.kernels[this.kernels.forward]!(n, buf, this.params, this.probe, this.softmax, out);
    this.#lastX = buf;
    this.#lastN = n;
    return out;
  }

  /**
   * Gradients for dLdy ([n][outputDim], for the points of the last forward): writes `grad` and,
   * with probing, `logitGrad` (the gradient with respect to the rows' softmax, see there), both
   * overwritten unless `accumulate`, and with `inputs` returns dL/dx ([n][dims]) too.
   */
  backward(dLdy: Float32Array | DeviceBuffer<"f32">, opts: { inputs?: boolean; accumulate?: boolean } = {}): { params: DeviceBuffer<"f32">; inputs?: DeviceBuffer<"f32"> } {
    const x = this.#lastX;
    if (!x) throw new Error("HashGrid.backward: call forward first (backward uses its inputs)");
    const n = this.#lastN;
    if (dLdy.length !== n * this.outputDim) throw new RangeError(`HashGrid.backward: dLdy has ${dLdy.length} values, expected ${n * this.outputDim} (n = ${n})`);
    const dy = dLdy instanceof Float32Array ? this.mod.upload("f32", dLdy) : dLdy;
    if (!opts.accumulate) {
      this.grad.zero();
      this.logitGrad.zero();
    }
    const k = this.kernels;
    // Derived or hand-written: (x, params, probe, softmax, dy, grad, the logits' gradient w.r.t. the softmax).
    this.mod.kernels[k.paramGrad]!(n, x, this.params, this.probe, this.softmax, dy, this.grad, this.logitGrad);
    if (!opts.inputs) return { params: this.grad };
    const dx = this.mod.alloc("f32", n * this.settings.dims); // zeroed: the derived gradient adds to it
    if (k.derived) this.mod.kernels[k.inputGrad]!(n, x, this.params, this.probe, this.softmax, dy, dx);
    else this.mod.kernels[k.inputGrad]!(n, x, this.params, this.probe, dy, dx);
    return { params: this.grad, inputs: dx };
  }

  /** Per level, the fraction of distinct vertices touched by x that share a table slot. */
  collisionStats(x: Float32Array): LevelCollisions[] {
    const { n, buf } = this.points(x);
    const { dims, levels } = this.settings;
    const corners = 1 << dims;
    const cells = this.mod.alloc("u32", n * levels * dims);
    const slots = this.mod.alloc("u32", n * levels * corners);
    this.mod.kernels.gridSlots!(n, buf, this.probe, cells, slots);
    const [c, s] = [cells.download(), slots.download()];
    return this.levels.map((lv, l) => {
      const slotOf = new Map<string, number>();
      for (let i = 0; i < n; i++) {
        const cell = c.subarray((i * levels + l) * dims, (i * levels + l + 1) * dims);
        for (let k = 0; k < corners; k++) {
          const key = Array.from(cell, (v, d) => v + ((k >> d) & 1)).join(",");
          slotOf.set(key, s[(i * levels + l) * corners + k]!);
        }
      }
      const perSlot = new Map<number, number>();
      for (const slot of slotOf.values()) perSlot.set(slot, (perSlot.get(slot) ?? 0) + 1);
      let colliding = 0;
      for (const count of perSlot.values()) if (count > 1) colliding += count;
      return { level: l, hashed: lv.hashed, vertices: slotOf.size, collidingFraction: slotOf.size ? colliding / slotOf.size : 0 };
    });
  }
}

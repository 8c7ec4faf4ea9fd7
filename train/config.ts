// The training configuration: one zod schema for everything `train()` takes, from a YAML file,
// command-line flags or code. Defaults follow tiny-cuda-nn's image sample where it has one. Every
// error names the field (dotted path), the value given and what is allowed.
import { resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { readInputFile } from "../runtime/files.ts";
import { z } from "zod";
import { ACTIVATIONS, LOSSES } from "../modules/common.ts";
import { ConfigError } from "../modules/options.ts";
import { OptimizerOptions } from "../modules/optimizer.ts";
import { PROBING_DEFAULTS } from "../modules/hashgrid.ts";
import { ENCODING_PRESETS } from "../modules/encoding_config.ts";
import { ScheduleSpecSchema } from "./schedule.ts";

/** The photograph `bun run train` fits when given none (NASA, public domain; see data/README.md). */
export const DEFAULT_IMAGE = resolve(import.meta.dir, "../data/astronaut.png");

/** A grid's fields (HashGrid's options, as the trainer takes them): the encoding's, and each member grid's. */
const GRID_FIELDS = {
  /** Levels: as many as the grid's u32 indices and the machine's memory allow (modules/hashgrid_config.ts). */
  levels: z.number().int().min(1).optional(),
  featuresPerLevel: z.literal([1, 2, 4, 8]).optional(),
  log2HashmapSize: z.number().int().min(8).max(24).optional(),
  baseResolution: z.number().positive().optional(),
  finestResolution: z.number().positive().optional(),
  /**
   * Growth factor between levels; when given it replaces finestResolution (e.g. the
   * space-time variant, whose levels are 4 x those of its 3D grids).
   */
  perLevelScale: z.number().min(1).optional(),
  gridType: z.enum(["hash", "dense", "tiled"]).optional(),
  interpolation: z.enum(["nearest", "linear", "smoothstep"]).optional(),
  /** Storage of the encoding's parameters: f16 trains them through f32 master weights (mixed precision). */
  precision: z.enum(["f32", "f16"]).optional(),
  /** A variant of the encoding: a kernel file replacing parts of it (the functions tagged @replaceable in dsl/kernels/lookup.ts). */
  variant: z.string().min(1).transform((p) => resolve(p)).optional(),
};
const PROBING_FIELDS = {
  range: z.literal([1, 2, 4, 8, 16, 32, 64]).optional(),
  /** Index codebook rows per hashed level (default: 4 per table entry, modules/hashgrid.ts defaultCodebookSize). */
  codebookSize: z.number().int().min(1).max(2 ** 24).optional(),
};

const activation = z.enum(Object.keys(ACTIVATIONS) as [string, ...string[]]);
const positiveInt = (max: number) => z.number().int().min(1).max(max);

/** The most optimizer steps, and the step limit of a run given seconds and no steps (time alone stops it). */
export const MAX_STEPS = 1e9;

export const TrainConfigSchema = z
  .object({
    /** The image to fit (default: the bundled photograph). */
    image: z.string().min(1).default(DEFAULT_IMAGE),
    /** Train on the stored (sRGB) values, or convert them to linear light first. */
    colorspace: z.enum(["srgb", "linear"]).default("srgb"),
    /**
     * What the image's batches are: bilinear, continuous points with the image bilinearly
     * interpolated there (tiny-cuda-nn's; a field between the pixels, for rendering at other
     * sizes); pixel, pixel centres with their stored values (where the full-image PSNR is measured).
     */
    sampling: z.enum(["bilinear", "pixel"]).default("pixel"),
    /**
     * What an image's evaluations cover: full, every pixel; tiles, a fixed set of 256 x 256 tiles
     * (train/eval.ts evaluationTiles); auto, full up to LARGE_IMAGE pixels, tiles above.
     */
    evaluation: z.enum(["auto", "full", "tiles"]).default("auto"),
    /**
     * An image's reconstruction: png, reconstruction.png (held whole while encoded); deepzoom,
     * rendered band by band to disk and written as a DeepZoom pyramid with a viewer page, and
     * reconstruction.png, neither held whole; auto, png up to LARGE_IMAGE pixels, deepzoom above.
     */
    reconstruction: z.enum(["auto", "png", "deepzoom"]).default("auto"),
    encoding: z
      .object({
        /**
         * A named layout (ENCODING_PRESETS, modules/encoding_config.ts: earth4d): its fields are
         * the defaults of this section, which the fields given here (and flags) override.
         */
        preset: z.enum(Object.keys(ENCODING_PRESETS) as [string, ...string[]]).optional(),
        ...GRID_FIELDS,
        levels: GRID_FIELDS.levels.default(16),
        featuresPerLevel: GRID_FIELDS.featuresPerLevel.default(2),
        log2HashmapSize: GRID_FIELDS.log2HashmapSize.default(19),
        baseResolution: GRID_FIELDS.baseResolution.default(16),
        finestResolution: GRID_FIELDS.finestResolution.default(2048),
        gridType: GRID_FIELDS.gridType.default("hash"),
        interpolation: GRID_FIELDS.interpolation.default("linear"),
        precision: GRID_FIELDS.precision.default("f32"),
        /** Learning rate of the encoding (default: optimizer.lr). */
        lr: z.number().positive().optional(),
        /**
         * Learned hash probing (Compact NGP) on the hashed levels: N_p slots per bucket chosen by
         * an index codebook of N_c rows per level, whose logits train as their own group.
         */
        probing: z
          .object({
            range: PROBING_FIELDS.range.default(1),
            codebookSize: PROBING_FIELDS.codebookSize,
            /** Learning rate of the index logits. */
            lr: z.number().positive().default(PROBING_DEFAULTS.lr),
          })
          .strict()
          .prefault({}),
        /**
         * Several grids as one encoding (modules/encoding.ts): each over `axes` (indices of the
         * data's coordinates, e.g. [0, 1, 3]), with the fields above as its defaults; their
         * features are concatenated in this order. Absent: one grid over every axis.
         */
        grids: z
          .array(z.object({ axes: z.array(z.number()), ...GRID_FIELDS, probing: z.object(PROBING_FIELDS).strict().optional() }).strict())
          .optional(),
      })
      .strict()
      .prefault({}),
    network: z
      .object({
        width: z.literal([16, 32, 64, 128]).default(64),
        hiddenLayers: z.number().int().min(1).max(8).default(2),
        activation: activation.default("relu"),
        outputActivation: activation.default("none"),
        biases: z.boolean().default(false),
        /** Learning rate of the network (default: optimizer.lr). */
        lr: z.number().positive().optional(),
        /** L2 weight decay of the network (the encoding has none, as in tiny-cuda-nn). */
        weightDecay: z.number().min(0).default(0),
      })
      .strict()
      .prefault({}),
    loss: z.enum(Object.keys(LOSSES) as [string, ...string[]]).default("l2"),
    huberDelta: z.number().positive().default(1),
    /**
     * The Optimizer module's options (weight decay is per group: network.weightDecay). Without an
     * `lr`, the run decides one from its schedule's span (train/schedule.ts defaultLearningRate) and
     * records it (TrainResult.lr, the checkpoint).
     */
    optimizer: OptimizerOptions.omit({ weightDecay: true }).extend({ lr: OptimizerOptions.shape.lr.unwrap().optional() }).prefault({}),
    schedule: ScheduleSpecSchema.prefault({ kind: "onecycle" }),
    /**
     * An exponential moving average of the parameters (off by default): evaluation and outputs use
     * it where its held-out error is the lower (train/trainer.ts chooseWeights).
     */
    ema: z.object({ enabled: z.boolean().default(false), decay: z.number().min(0).lt(1).default(0.999) }).strict().prefault({}),
    /** Samples per micro-batch. */
    batch: positiveInt(1 << 24).default(1 << 16),
    /** Micro-batches per optimizer step (their gradients add; the loss is scaled by 1 / accumulate). */
    accumulate: positiveInt(1024).default(1),
    /**
     * Optimizer steps; with `seconds`, whichever ends first (`seconds` alone: MAX_STEPS, time governs,
     * and a cosine or onecycle schedule spans the steps estimated to fit: TrainResult.scheduleSpan).
     */
    steps: positiveInt(MAX_STEPS).default(1000),
    /** Wall-clock budget in seconds (checked before each micro-batch). */
    seconds: z.number().positive().optional(),
    /** Full-image PSNR every this many steps (0: only at the end). */
    evalEvery: z.number().int().min(0).default(250),
    /** A checkpoint every this many steps (0: only at the end and on interruption). */
    checkpointEvery: z.number().int().min(0).default(0),
    seed: z.number().int().min(0).max(2 ** 32 - 1).default(1337),
    backend: z.enum(["auto", "cuda", "cpu", "js"]).default("auto"),
    /** Where the outputs go. */
    out: z.string().min(1).default("out"),
    /**
     * Fit scattered N-D points (train/data/points.ts) instead of the image: a binary points file
     * (NGPKPNTS) or CSV, streamed from disk in shards that fit maxMemory.
     */
    points: z
      .object({
        file: z.string().min(1),
        /** Coordinate dimensions: CSV: the first `dims` columns (default: all but the last); binary: must match the header. */
        dims: z.number().int().min(1).max(8).optional(),
        /** Bytes the data may hold in memory: a number, or text with a unit ("512MB", "64MiB", "2G"). */
        maxMemory: z
          .union([z.number(), z.string()])
          .transform((v, ctx) => {
            const n = parseBytes(v);
            if (n === undefined || n < MIN_POINTS_MEMORY) {
              ctx.addIssue({ code: "custom", message: `is not a size of at least ${MIN_POINTS_MEMORY} bytes (a number of bytes, or e.g. 512MB, 64MiB, 2G)` });
              return z.NEVER;
            }
            return n;
          })
          .default(512e6),
        /** Every this-many-th block of records is held out for validation (which one: by the seed). */
        holdout: z.number().int().min(2).max(1e6).default(10),
        /** Records per block: the unit of the held-out split, of reading and of the shuffle's block order. */
        blockRecords: z.number().int().min(1).max(2 ** 20).default(4096),
      })
      .strict()
      .optional(),
  })
  .strict();

/** The smallest --max-memory (64 KiB). */
export const MIN_POINTS_MEMORY = 2 ** 16;

const UNITS: Record<string, number> = { "": 1, b: 1, k: 1e3, kb: 1e3, kib: 2 ** 10, m: 1e6, mb: 1e6, mib: 2 ** 20, g: 1e9, gb: 1e9, gib: 2 ** 30, t: 1e12, tb: 1e12, tib: 2 ** 40 };

/** A size in bytes: a number, or "512MB" (SI: KB, MB, GB, TB; binary: KiB, MiB, GiB, TiB; case-insensitive). */
export function parseBytes(v: number | string): number | undefined {
  if (typeof v === "number") return Number.isSafeInteger(v) && v > 0 ? v : undefined;
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*$/i.exec(v);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) return undefined;
  const n = Math.floor(Number(m[1]) * unit);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

export type TrainConfigInput = z.input<typeof TrainConfigSchema>;
export type TrainConfig = z.output<typeof TrainConfigSchema>;

/** Fields whose change makes a checkpoint unusable (the model's shape and the data). */
export const MODEL_FIELDS = [
  "encoding.levels", "encoding.featuresPerLevel", "encoding.log2HashmapSize", "encoding.baseResolution",
  "encoding.finestResolution", "encoding.perLevelScale", "encoding.gridType", "encoding.interpolation", "encoding.precision",
  "encoding.probing.range", "encoding.probing.codebookSize", "encoding.variant", "encoding.grids",
  "network.width", "network.hiddenLayers", "network.activation", "network.outputActivation", "network.biases",
  "optimizer.kind", "ema.enabled", "colorspace",
];

// (NaN and the infinities as themselves: JSON would write null)
const show = (v: unknown) => (typeof v === "string" ? JSON.stringify(v) : v === undefined ? "nothing" : typeof v === "number" ? String(v) : JSON.stringify(v) ?? String(v));

/** A zod issue as "<field>: <value> <problem>". */
function describe(i: z.core.$ZodIssue, input: unknown): string {
  const path = i.path.map(String);
  const value = i.path.reduce<unknown>((o, k) => (o as Record<PropertyKey, unknown> | undefined)?.[k], input);
  const at = path.join(".") || "config";
  if (i.code === "unrecognized_keys") return `${at}: unknown field${i.keys.length > 1 ? "s" : ""} ${i.keys.map(show).join(", ")}`;
  if (i.code === "invalid_value") return `${at}: ${show(value)} is not allowed (allowed: ${i.values.map(show).join(", ")})`;
  if (i.code === "invalid_union") return `${at}: ${show(value)} is not a valid schedule (kind: none, cosine, onecycle, plateau)`;
  if (i.code === "too_small" || i.code === "too_big") {
    const bound = i.code === "too_small" ? `${i.inclusive ? ">=" : ">"} ${i.minimum}` : `${i.inclusive ? "<=" : "<"} ${i.maximum}`;
    return `${at}: ${show(value)} is out of range (allowed: ${bound})`;
  }
  if (i.code === "invalid_type") return `${at}: ${show(value)} is not ${i.expected === "number" ? "a finite number" : `${/^[aeiou]/.test(i.expected) ? "an" : "a"} ${i.expected}`}`;
  return `${at}: ${show(value)}: ${i.message}`;
}

/** Validate a configuration; every problem names its field. */
export function parseTrainConfig(input: unknown): TrainConfig {
  // seconds and no steps: the time budget alone stops the run (a cosine or onecycle schedule spans
  // the steps estimated to fit it: the trainer decides them after a warm-up).
  const timed = isPlainObject(input) && input.seconds !== undefined && input.steps === undefined;
  const r = TrainConfigSchema.safeParse(withPreset(timed ? { ...input, steps: MAX_STEPS } : input));
  if (!r.success) throw new ConfigError(r.error.issues.map((i) => describe(i, input)).join("\n"));
  return r.data;
}

/** The encoding's preset's fields under those given (an unknown preset is left to the schema to refuse). */
function withPreset(input: unknown): unknown {
  const enc = isPlainObject(input) ? input.encoding : undefined;
  const preset = isPlainObject(enc) && typeof enc.preset === "string" && Object.hasOwn(ENCODING_PRESETS, enc.preset) ? ENCODING_PRESETS[enc.preset as keyof typeof ENCODING_PRESETS] : undefined;
  return preset ? { ...(input as object), encoding: mergeConfig(structuredClone(preset) as Record<string, unknown>, enc as Record<string, unknown>) } : input;
}

/** A YAML file's configuration (an object), naming the file when it cannot be read or parsed. */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readInputFile(path, "config file"); // a directory or a FIFO is refused, not read
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`config file ${path} is not valid YAML: ${(e as Error).message.split("\n")[0]}`);
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== "object" || Array.isArray(value)) throw new ConfigError(`config file ${path} must hold a mapping of settings, got ${show(value)}`);
  return value as Record<string, unknown>;
}

/**
 * `over` merged into `base`, nested objects field by field (flags override the YAML). A section of
 * `base` that is not a mapping stays, to be refused, rather than replaced by `over`'s fields.
 */
export function mergeConfig(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    const b = out[k];
    out[k] = !isPlainObject(v) || b === undefined ? v : isPlainObject(b) ? mergeConfig(b, v) : b;
  }
  return out;
}

/** The value at a dotted path ("encoding.levels") of a configuration. */
export function getPath(obj: unknown, path: string): unknown {
  return path.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], obj);
}

/**
 * A configuration error's lines about fields the YAML file at `path` set ("encoding.levels: ...",
 * "config: unknown field ...") prefixed with the file's path; lines about other fields as they are.
 */
export function namingFile(message: string, path: string | undefined, file: Record<string, unknown>): string {
  if (path === undefined) return message;
  return message
    .split("\n")
    .map((line) => {
      const field = /^([\w.]+):/.exec(line)?.[1];
      return field !== undefined && (field === "config" || getPath(file, field) !== undefined) ? `${path}: ${line}` : line;
    })
    .join("\n");
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

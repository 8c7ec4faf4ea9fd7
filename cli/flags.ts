// The command-line flags of train, sweep, params and gradcheck: one table (each option's one
// name, the configuration field it sets, its kind and help; the trainer's flags, which the other
// commands pick from, and the few of one command only), one parser (parseFlags: a renamed
// flag still works with a warning; an unknown one is named with the nearest known flag; a missing
// value names its flag), and the flags' values as a configuration (flagConfig: a number that is
// not one, or an integer that is not one, refused by name) whose errors are named by flag (byFlag).
import { parseArgs } from "node:util";
import { nearest } from "../codegen/diagnostics.ts";
import { UsageError } from "../dsl/errors.ts";

export type Kind = "int" | "number" | "string" | "bool";
export interface Flag {
  flag: string;
  /** Dotted path in the configuration (a module's option is its last part: encoding.levels is HashGrid's levels). */
  path: string;
  kind: Kind;
  help: string;
  /** Not the trainer's: a flag of this command only. */
  only?: "params";
  /** A boolean field the flag also sets to true (--ema N turns the average on). */
  enables?: string;
  /** A bool flag's value (default: false for a no- flag, else true). */
  value?: boolean;
}

/** Every flag, the configuration field it sets, and what it means. */
export const ALL_FLAGS: Flag[] = [
  { flag: "steps", path: "steps", kind: "int", help: "optimizer steps" },
  { flag: "seconds", path: "seconds", kind: "number", help: "wall-clock budget in seconds: alone, time stops the run (cosine, onecycle: over the steps estimated to fit after a warm-up); with --steps, whichever ends first" },
  { flag: "batch", path: "batch", kind: "int", help: "samples per micro-batch" },
  { flag: "accumulate", path: "accumulate", kind: "int", help: "micro-batches per optimizer step" },
  { flag: "encoding-preset", path: "encoding.preset", kind: "string", help: "a named encoding whose fields the other encoding flags override: earth4d (Earth4D: four 3D grids over x,y,z / x,y,t / y,z,t / x,z,t of 4D points; docs/encoding.md)" },
  { flag: "levels", path: "encoding.levels", kind: "int", help: "hash-grid levels (per grid)" },
  { flag: "features", path: "encoding.featuresPerLevel", kind: "int", help: "features per level (1, 2, 4, 8)" },
  { flag: "log2-table", path: "encoding.log2HashmapSize", kind: "int", help: "log2 of the table size per level" },
  { flag: "base", path: "encoding.baseResolution", kind: "number", help: "coarsest resolution" },
  { flag: "finest", path: "encoding.finestResolution", kind: "number", help: "finest resolution" },
  { flag: "per-level-scale", path: "encoding.perLevelScale", kind: "number", help: "growth factor between levels (replaces --finest; e.g. the space-time variant's)" },
  { flag: "grid-type", path: "encoding.gridType", kind: "string", help: "hash, dense or tiled" },
  { flag: "interpolation", path: "encoding.interpolation", kind: "string", help: "nearest, linear or smoothstep" },
  { flag: "precision", path: "encoding.precision", kind: "string", help: "the encoding's storage: f32, or f16 trained through f32 master weights" },
  { flag: "encoding-lr", path: "encoding.lr", kind: "number", help: "learning rate of the encoding (default: --lr)" },
  { flag: "encoding", path: "encoding.variant", kind: "string", help: "a variant of the encoding: a kernel file replacing parts of it (see docs/variants.md)" },
  { flag: "probing-range", path: "encoding.probing.range", kind: "int", help: "learned hash probing: slots per bucket N_p (1, 2, 4, ..., 64; 1: off)" },
  { flag: "codebook-size", path: "encoding.probing.codebookSize", kind: "int", help: "learned hash probing: index codebook rows N_c per hashed level [4 per table entry]" },
  { flag: "probing-lr", path: "encoding.probing.lr", kind: "number", help: "learned hash probing: learning rate of the index logits" },
  { flag: "width", path: "network.width", kind: "int", help: "hidden width (16, 32, 64, 128)" },
  { flag: "layers", path: "network.hiddenLayers", kind: "int", help: "hidden layers (1 to 8)" },
  { flag: "activation", path: "network.activation", kind: "string", help: "hidden activation" },
  { flag: "output-activation", path: "network.outputActivation", kind: "string", help: "output activation" },
  { flag: "biases", path: "network.biases", kind: "bool", help: "give the network biases" },
  { flag: "network-lr", path: "network.lr", kind: "number", help: "learning rate of the network (default: --lr)" },
  { flag: "weight-decay", path: "network.weightDecay", kind: "number", help: "L2 weight decay of the network" },
  { flag: "loss", path: "loss", kind: "string", help: "l2, relative_l2, l1 or huber" },
  { flag: "huber-delta", path: "huberDelta", kind: "number", help: "the Huber loss's delta" },
  { flag: "optimizer", path: "optimizer.kind", kind: "string", help: "adam or sgd" },
  { flag: "lr", path: "optimizer.lr", kind: "number", help: "base learning rate [1e-2; a photograph under cosine or onecycle: 2e-2 * (400 / steps)^1.3, at most 1.6e-2]" },
  { flag: "beta1", path: "optimizer.beta1", kind: "number", help: "Adam's beta1" },
  { flag: "beta2", path: "optimizer.beta2", kind: "number", help: "Adam's beta2" },
  { flag: "eps", path: "optimizer.eps", kind: "number", help: "Adam's epsilon" },
  { flag: "sparse-updates", path: "optimizer.sparse", kind: "bool", help: "update the encoding (Adam or SGD, the EMA, probing's logits) only where the step's batch touched it: lazy Adam, a step's cost follows the batch, not the table (see docs/training.md)" },
  { flag: "dense-updates", path: "optimizer.sparse", kind: "bool", value: false, help: "update every parameter each step (the default; PyTorch's Adam), e.g. over a --config with sparse updates" },
  { flag: "schedule", path: "schedule.kind", kind: "string", help: "none, cosine, onecycle or plateau" },
  { flag: "warmup", path: "schedule.warmupSteps", kind: "int", help: "cosine: linear warmup steps [0]" },
  { flag: "min-factor", path: "schedule.minFactor", kind: "number", help: "cosine/plateau: the lowest lr, as a factor of --lr [0.01 / 0.001]" },
  { flag: "pct-start", path: "schedule.pctStart", kind: "number", help: "onecycle: share of the steps rising to the maximum" },
  { flag: "patience", path: "schedule.patience", kind: "int", help: "plateau: evaluations without improvement before reducing [3]" },
  { flag: "factor", path: "schedule.factor", kind: "number", help: "plateau: the reduction factor [0.5]" },
  { flag: "ema", path: "ema.decay", kind: "number", enables: "ema.enabled", help: "keep a moving average of the parameters with this decay, e.g. 0.999 (evaluation and outputs use it where its held-out error is the lower; off by default: the default schedule anneals, and the raw weights end better)" },
  { flag: "no-ema", path: "ema.enabled", kind: "bool", help: "keep no moving average (e.g. over a --config that keeps one)" },
  { flag: "eval-every", path: "evalEvery", kind: "int", help: "full-image PSNR every N steps (0: at the end only)" },
  { flag: "checkpoint-every", path: "checkpointEvery", kind: "int", help: "a checkpoint every N steps (0: at the end and on Ctrl-C)" },
  { flag: "colorspace", path: "colorspace", kind: "string", help: "srgb (train on the stored values) or linear" },
  { flag: "sampling", path: "sampling", kind: "string", help: "bilinear (random points, the image interpolated there) or pixel (pixel centres and their stored values, each pixel once per epoch in a shuffled order)" },
  { flag: "eval", path: "evaluation", kind: "string", help: "image evaluations: full (every pixel), tiles (a fixed set of 256 x 256 tiles) or auto (tiles above 2^25 pixels)" },
  { flag: "reconstruction", path: "reconstruction", kind: "string", help: "image output: png (held whole), deepzoom (streamed: a DeepZoom pyramid, viewer.html, reconstruction.png) or auto (deepzoom above 2^25 pixels)" },
  { flag: "backend", path: "backend", kind: "string", help: "auto, cuda, cpu or js" },
  { flag: "out", path: "out", kind: "string", help: "output directory" },
  { flag: "seed", path: "seed", kind: "int", help: "random seed (same seed, same result on the CPU)" },
  { flag: "points", path: "points.file", kind: "string", help: "fit scattered N-D points instead of an image: a binary points file (NGPKPNTS) or CSV" },
  { flag: "dims", path: "points.dims", kind: "int", help: "points: coordinate dimensions (CSV: the first D columns; default all but the last; binary: checked against the header)" },
  { flag: "max-memory", path: "points.maxMemory", kind: "string", help: "points: memory the data may hold (e.g. 512MB, 64MiB, 2G) [512MB]" },
  { flag: "holdout", path: "points.holdout", kind: "int", help: "points: every N-th block is held out for validation [10]" },
  { flag: "block-records", path: "points.blockRecords", kind: "int", help: "points: records per block (read, shuffled and held out by blocks) [4096]" },
  { flag: "outputs", path: "network.outputs", kind: "int", help: "network outputs, 1 to 16 (3: an RGB image)", only: "params" },
  { flag: "solve", path: "solve.parameter", kind: "string", help: "the free parameter: log2T (--log2-table), levels, base or scale (--per-level-scale)", only: "params" },
  { flag: "budget", path: "solve.budget", kind: "string", help: "the parameter budget, e.g. 524288 or 2^19 (required by --solve)", only: "params" },
  { flag: "budget-of", path: "solve.budgetOf", kind: "string", help: "what the budget counts: total (encoding + network) or encoding", only: "params" },
];

/** The trainer's flags: train takes every one, sweep and gradcheck some (flagsNamed). */
export const FLAGS: Flag[] = ALL_FLAGS.filter((f) => f.only === undefined);

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split(".");
  let o = obj;
  for (const k of keys.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
  o[keys.at(-1)!] = value;
}

/** The configuration the flags ask for (only what they set); `flags`: the ones a command takes. */
export function flagConfig(values: Parsed["values"], flags: Flag[] = FLAGS): Record<string, unknown> {
  const cfg: Record<string, unknown> = {};
  for (const f of flags) {
    const v = values[f.flag];
    if (v === undefined) continue;
    if (f.enables) setPath(cfg, f.enables, true);
    if (f.kind === "bool") setPath(cfg, f.path, f.value ?? !f.flag.startsWith("no-"));
    else if (f.kind === "string") setPath(cfg, f.path, v);
    else {
      const n = Number(v);
      if (typeof v !== "string" || v.trim() === "" || !Number.isFinite(n)) throw new UsageError(`--${f.flag}: ${JSON.stringify(v)} is not a number`);
      if (f.kind === "int" && !Number.isInteger(n)) throw new UsageError(`--${f.flag}: ${v} is not an integer`);
      setPath(cfg, f.path, n);
    }
  }
  return cfg;
}

/** Rewrites "field.path: ..." config messages into "--flag: ..." where a flag set the field. */
export function byFlag(message: string, set: Set<string>, flags: Flag[] = FLAGS): string {
  return message
    .split("\n")
    .map((line) => {
      const unknown = /^schedule: unknown fields? (.*)$/.exec(line);
      if (unknown) {
        const named = flags.filter((x) => set.has(x.flag) && unknown[1]!.includes(`"${x.path.slice("schedule.".length)}"`)).map((x) => `--${x.flag}`);
        if (named.length) return `${named.join(", ")}: not a setting of this schedule (see --help for which schedule each belongs to)`;
      }
      const f = flags.find((x) => set.has(x.flag) && line.startsWith(`${x.path}:`));
      return f ? `--${f.flag}${line.slice(f.path.length)}` : line;
    })
    .join("\n");
}

/** The table's flags of these names, in this order (a command's subset). */
export function flagsNamed(names: string[]): Flag[] {
  return names.map((n) => {
    const f = ALL_FLAGS.find((x) => x.flag === n);
    if (!f) throw new Error(`no flag --${n} in cli/flags.ts`);
    return f;
  });
}

/** The growth between levels given twice (train, sweep). */
export const GROWTH_TWICE = "--per-level-scale and --finest: give one of them (the growth factor, or the finest resolution it is derived from)";

/** Old names, still accepted with a warning (where a command has the new name and not the old). */
export const RENAMED: Record<string, string> = { scale: "per-level-scale", type: "grid-type" };

export type Options = Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean; default?: string | boolean }>;

/** parseArgs's options for these flags (a bool is a switch, anything else takes a value). */
export function optionsOf(flags: Flag[]): Options {
  return Object.fromEntries(flags.map((f) => [f.flag, { type: f.kind === "bool" ? "boolean" : "string" }]));
}

/** The known flag nearest to `name` (a renamed one suggests its new name), if any is near. */
function nearestFlag(name: string, options: Options): string | undefined {
  const known = [...Object.keys(options), ...Object.keys(RENAMED).filter((old) => RENAMED[old]! in options)];
  const near = nearest(name, known, Math.max(2, Math.floor(name.length / 3)));
  return near !== undefined && !(near in options) ? RENAMED[near] : near;
}

export interface Parsed {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

/**
 * `argv` parsed against `options`, each problem a UsageError naming its flag (and followed by
 * `usage`): "unknown flag --scle; did you mean --scale?", "--steps needs a value". A renamed flag
 * (RENAMED) is read as its new name, with a warning on stderr.
 */
export function parseFlags(argv: string[], options: Options, opts: { positionals?: boolean; usage?: string } = {}): Parsed {
  const end = argv.indexOf("--");
  const args = argv.map((a, i) => {
    const m = /^--([^=]+)(=.*)?$/.exec(a);
    const renamed = m && (end < 0 || i < end) && !(m[1]! in options) ? RENAMED[m[1]!] : undefined;
    if (renamed === undefined || !(renamed in options)) return a;
    console.error(`warning: --${m![1]} is now --${renamed} (the old name will go)`);
    return `--${renamed}${m![2] ?? ""}`;
  });
  try {
    return parseArgs({ args, options, allowPositionals: opts.positionals ?? false, strict: true }) as Parsed;
  } catch (e) {
    const message = (e as Error).message;
    const unknown = /^Unknown option '(-{1,2})([^']*)'/.exec(message);
    const flag = /^Option '(-{1,2}[^' ]+)/.exec(message)?.[1];
    const positional = /^Unexpected argument '([^']*)'/.exec(message)?.[1];
    let problem = message.split("\n")[0]!;
    if (unknown) {
      const near = nearestFlag(unknown[2]!, options);
      problem = `unknown flag ${unknown[1]}${unknown[2]}${near ? `; did you mean --${near}?` : ""}`;
    } else if (flag && /does not take an argument/.test(message)) problem = `${flag} takes no value`;
    else if (flag) problem = `${flag} needs a value${/ambiguous/.test(message) ? ` (one that starts with a dash: ${flag}=-X)` : ""}`;
    else if (positional !== undefined) problem = `unexpected argument ${JSON.stringify(positional)}`;
    throw new UsageError(opts.usage ? `${problem}\n${opts.usage}` : problem);
  }
}

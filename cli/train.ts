// `bun run train [image] [flags]`: fit a neural field to a photograph (the bundled one by default),
// or with --points FILE to scattered N-D points (binary points file or CSV; train/points.ts).
// Flags override a YAML --config, which overrides the defaults; everything is validated by the
// trainer's schema (train/config.ts) and a bad value is reported by the flag the user typed.
// Ctrl-C (or SIGTERM) stops at the next micro-batch and writes a checkpoint; a second one exits.
import { parseArgs } from "node:util";
import cliProgress from "cli-progress";
import { CacheDirError } from "../runtime/cache.ts";
import { UsageError } from "../runtime/cli_input.ts";
import { DiagnosticError } from "../codegen/diagnostics.ts";
import { ConfigError } from "../modules/options.ts";
import { CheckpointError } from "../train/checkpoint.ts";
import { DEFAULT_IMAGE, TrainConfigSchema, mergeConfig, parseTrainConfig, readConfigFile } from "../train/config.ts";
import { ImageError } from "../train/image.ts";
import { PointsError, peakRss } from "../train/points.ts";
import { InterruptedError, OutDirError, TrainError, train, type StepInfo, type TrainResult } from "../train/trainer.ts";

type Kind = "int" | "number" | "string" | "bool";
export interface Flag {
  flag: string;
  /** Dotted path in the configuration. */
  path: string;
  kind: Kind;
  help: string;
}

/** Every flag, the configuration field it sets, and what it means. */
export const FLAGS: Flag[] = [
  { flag: "steps", path: "steps", kind: "int", help: "optimizer steps" },
  { flag: "seconds", path: "seconds", kind: "number", help: "wall-clock budget (whichever of --steps and --seconds ends first)" },
  { flag: "batch", path: "batch", kind: "int", help: "samples per micro-batch" },
  { flag: "accumulate", path: "accumulate", kind: "int", help: "micro-batches per optimizer step" },
  { flag: "levels", path: "encoding.levels", kind: "int", help: "hash-grid levels" },
  { flag: "features", path: "encoding.featuresPerLevel", kind: "int", help: "features per level (1, 2, 4, 8)" },
  { flag: "log2-table", path: "encoding.log2HashmapSize", kind: "int", help: "log2 of the table size per level" },
  { flag: "base", path: "encoding.baseResolution", kind: "number", help: "coarsest resolution" },
  { flag: "finest", path: "encoding.finestResolution", kind: "number", help: "finest resolution" },
  { flag: "per-level-scale", path: "encoding.perLevelScale", kind: "number", help: "growth factor between levels (replaces --finest; e.g. the space-time variant's)" },
  { flag: "grid-type", path: "encoding.gridType", kind: "string", help: "hash, dense or tiled" },
  { flag: "interpolation", path: "encoding.interpolation", kind: "string", help: "nearest, linear or smoothstep" },
  { flag: "precision", path: "encoding.precision", kind: "string", help: "the encoding's storage: f32, or f16 trained through f32 master weights" },
  { flag: "encoding-lr", path: "encoding.lr", kind: "number", help: "learning rate of the encoding (default: --lr)" },
  { flag: "encoding", path: "encoding.variant", kind: "string", help: "a variant of the encoding: a kernel file replacing parts of it (see README, \"Writing your own encoding\")" },
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
  { flag: "lr", path: "optimizer.lr", kind: "number", help: "base learning rate" },
  { flag: "beta1", path: "optimizer.beta1", kind: "number", help: "Adam's beta1" },
  { flag: "beta2", path: "optimizer.beta2", kind: "number", help: "Adam's beta2" },
  { flag: "eps", path: "optimizer.eps", kind: "number", help: "Adam's epsilon" },
  { flag: "schedule", path: "schedule.kind", kind: "string", help: "none, cosine, onecycle or plateau" },
  { flag: "warmup", path: "schedule.warmupSteps", kind: "int", help: "cosine: linear warmup steps [0]" },
  { flag: "min-factor", path: "schedule.minFactor", kind: "number", help: "cosine/plateau: the lowest lr, as a factor of --lr [0.01 / 0.001]" },
  { flag: "pct-start", path: "schedule.pctStart", kind: "number", help: "onecycle: share of the steps rising to the maximum [0.3]" },
  { flag: "patience", path: "schedule.patience", kind: "int", help: "plateau: evaluations without improvement before reducing [3]" },
  { flag: "factor", path: "schedule.factor", kind: "number", help: "plateau: the reduction factor [0.5]" },
  { flag: "ema", path: "ema.decay", kind: "number", help: "decay of the parameters' moving average (used for outputs)" },
  { flag: "no-ema", path: "ema.enabled", kind: "bool", help: "evaluate the raw parameters, keep no moving average" },
  { flag: "eval-every", path: "evalEvery", kind: "int", help: "full-image PSNR every N steps (0: at the end only)" },
  { flag: "checkpoint-every", path: "checkpointEvery", kind: "int", help: "a checkpoint every N steps (0: at the end and on Ctrl-C)" },
  { flag: "colorspace", path: "colorspace", kind: "string", help: "srgb (train on the stored values) or linear" },
  { flag: "backend", path: "backend", kind: "string", help: "auto, cuda, cpu or js" },
  { flag: "out", path: "out", kind: "string", help: "output directory" },
  { flag: "seed", path: "seed", kind: "int", help: "random seed (same seed, same result on the CPU)" },
  { flag: "points", path: "points.file", kind: "string", help: "fit scattered N-D points instead of an image: a binary points file (NGPKPNTS) or CSV" },
  { flag: "dims", path: "points.dims", kind: "int", help: "points: coordinate dimensions (CSV: the first D columns; default all but the last; binary: checked against the header)" },
  { flag: "max-memory", path: "points.maxMemory", kind: "string", help: "points: memory the data may hold (e.g. 512MB, 64MiB, 2G) [512MB]" },
  { flag: "holdout", path: "points.holdout", kind: "int", help: "points: every N-th block is held out for validation [10]" },
  { flag: "block-records", path: "points.blockRecords", kind: "int", help: "points: records per block (read, shuffled and held out by blocks) [4096]" },
];

const USAGE = "usage: bun run train [image | --points file.bin|file.csv] [--config file.yaml] [flags] [--resume checkpoint] [--json]";


function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split(".");
  let o = obj;
  for (const k of keys.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
  o[keys.at(-1)!] = value;
}

function getPath(obj: unknown, path: string): unknown {
  return path.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], obj);
}

/** The configuration the flags ask for (only what they set); `flags`: the ones a command takes. */
export function flagConfig(values: Record<string, string | boolean | undefined>, flags: Flag[] = FLAGS): Record<string, unknown> {
  const cfg: Record<string, unknown> = {};
  for (const f of flags) {
    const v = values[f.flag];
    if (v === undefined) continue;
    if (f.kind === "bool") setPath(cfg, f.path, f.flag.startsWith("no-") ? false : true);
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

function help(): string {
  const defaults = TrainConfigSchema.parse({});
  const lines = [
    USAGE, "", "Fits a neural field (hash grid -> MLP) to a photograph; with no image, the bundled one", `(${DEFAULT_IMAGE});`,
    "with --points, to scattered points in 1 to 8 dimensions, streamed from disk within --max-memory.", "", "options (default in brackets):",
  ];
  const pad = Math.max(...FLAGS.map((f) => f.flag.length)) + 12;
  const row = (name: string, text: string) => lines.push(`  ${name.padEnd(pad)} ${text}`);
  row("--config FILE", "YAML file of settings (the same fields as summary.json's config); flags override it");
  for (const f of FLAGS) {
    const arg = f.kind === "bool" ? "" : f.kind === "string" ? " NAME" : " N";
    const d = f.kind === "bool" ? undefined : getPath(defaults, f.path);
    row(`--${f.flag}${arg}`, `${f.help}${d === undefined ? "" : ` [${f.path === "image" ? "bundled" : d}]`}`);
  }
  row("--resume FILE", "continue from a checkpoint (same model; the steps and schedule continue)");
  row("--json", "print one JSON object as the last line (psnr, steps, seconds, steps_per_s, ...)");
  row("--help", "this text");
  lines.push("", "outputs in --out: reconstruction.png, metrics.csv, plot.png, summary.json, checkpoint.ngpk");
  lines.push("(points: validation.csv in place of reconstruction.png; metrics.csv's psnr is the held-out split's)");
  return lines.join("\n");
}

/** A progress bar on a terminal, else a line every few seconds. */
function progress(json: boolean): { step(i: StepInfo): void; stop(): void } {
  const stream = process.stderr;
  if (stream.isTTY && !json) {
    const bar = new cliProgress.SingleBar(
      { format: "{bar} {value}/{total} | loss {loss} | PSNR {psnr} | lr {lr} | {rate} steps/s | ETA {eta_formatted}", hideCursor: true, etaBuffer: 50, stream },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      step(i) {
        const payload = { loss: i.loss.toExponential(3), psnr: i.psnr === undefined ? "-" : i.psnr.toFixed(2), lr: i.lr.toExponential(2), rate: i.stepsPerSecond.toFixed(1) };
        if (!started) (bar.start(i.steps, i.step, payload), (started = true));
        else bar.update(i.step, payload);
      },
      stop: () => started && bar.stop(),
    };
  }
  let last = -Infinity; // the first step prints at once
  return {
    step(i) {
      const now = performance.now();
      if (now - last < 5000 && i.step !== i.steps) return;
      last = now;
      stream.write(`step ${i.step}/${i.steps}  loss ${i.loss.toExponential(3)}  PSNR ${i.psnr === undefined ? "-" : i.psnr.toFixed(2)}  lr ${i.lr.toExponential(2)}  ${i.stepsPerSecond.toFixed(1)} steps/s\n`);
    },
    stop: () => {},
  };
}

function report(r: TrainResult): string {
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  const on = r.points
    ? `validation loss ${r.points.validationLoss.toExponential(3)}, PSNR ${r.psnr.toFixed(2)} dB (relative to the value range) on ${r.points.heldOutRecords.toLocaleString("en")} held-out points`
    : `PSNR ${r.psnr.toFixed(2)} dB on the full ${r.image!.width}x${r.image!.height} image`;
  const head = r.stoppedBy === "interrupted"
    ? `interrupted after ${r.steps} steps in ${r.seconds.toFixed(1)} s (${r.stepsPerSecond.toFixed(1)} steps/s)${Number.isFinite(r.psnr) ? `; last PSNR ${r.psnr.toFixed(2)} dB` : ""}`
    : `${on} after ${r.steps} steps in ${r.seconds.toFixed(1)} s (${r.stepsPerSecond.toFixed(1)} steps/s; stopped by ${r.stoppedBy})`;
  const p = r.points;
  return [
    head,
    ...(p
      ? [`points: ${p.records.toLocaleString("en")} (${p.dims} coordinates, ${p.channels} value${p.channels === 1 ? "" : "s"}; ${p.heldOutRecords.toLocaleString("en")} held out), box ${JSON.stringify(p.box.min)}..${JSON.stringify(p.box.max)} (from the ${p.boxFrom}); data buffers ${mib(p.dataBytes)} of the ${mib(p.maxMemory)} allowed, peak memory ${mib(peakRss())}`]
      : []),
    `parameters: encoding ${r.paramsEncoding.toLocaleString("en")}, network ${r.paramsNetwork.toLocaleString("en")} (${mib(r.bytesParams)}; ${mib(r.bytesTraining)} with gradients, optimizer and EMA state; ${mib(r.bytesInference)} for inference, features in f16)`,
    `backend ${r.backendReason}`,
    `outputs: ${r.files.reconstruction && r.stoppedBy !== "interrupted" ? `${r.files.reconstruction}, ` : ""}${r.files.metrics}, ${r.files.plot}, ${r.files.summary}, ${r.files.checkpoint}${r.files.validation ? `, ${r.files.validation}` : ""}`,
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const options: Record<string, { type: "string" | "boolean" }> = { config: { type: "string" }, resume: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean" } };
  for (const f of FLAGS) options[f.flag] = { type: f.kind === "bool" ? "boolean" : "string" };
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: argv, options, allowPositionals: true }) as { values: Record<string, string | boolean | undefined>; positionals: string[] });
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n${USAGE} (--help lists the options)`);
    return 2;
  }
  if (values.help) return console.log(help()), 0;
  const json = values.json === true;
  const set = new Set(Object.keys(values).filter((k) => values[k] !== undefined));
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (sig: string) => {
    if (++interrupts > 1) process.exit(130);
    process.stderr.write(`\n${sig}: stopping after this micro-batch and writing a checkpoint (again to quit at once)\n`);
    controller.abort();
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  const bar = progress(json);
  try {
    if (positionals.length > 1) throw new UsageError(`one image at most, got ${positionals.length}: ${positionals.join(" ")}`);
    const file = typeof values.config === "string" ? readConfigFile(values.config) : {};
    const flags = flagConfig(values);
    if (positionals[0]) flags.image = positionals[0];
    const merged = mergeConfig(file, flags);
    const points = merged.points as Record<string, unknown> | undefined;
    if (points && merged.image !== undefined)
      throw new UsageError(`an image (${merged.image}) and --points (${points.file ?? "points settings"}) together: give one of them`);
    if (points && points.file === undefined) {
      const given = FLAGS.filter((f) => f.path.startsWith("points.") && set.has(f.flag)).map((f) => `--${f.flag}`);
      throw new UsageError(`${given.join(", ") || "points settings"} ${given.length === 1 ? "needs" : "need"} --points FILE`);
    }
    const schedule = merged.schedule as Record<string, unknown> | undefined;
    if (schedule && schedule.kind === undefined) {
      const given = FLAGS.filter((f) => f.path.startsWith("schedule.") && set.has(f.flag)).map((f) => `--${f.flag}`);
      throw new UsageError(`${given.join(", ") || "schedule settings"} ${given.length === 1 ? "needs" : "need"} a schedule: give --schedule cosine, onecycle or plateau`);
    }
    let cfg;
    try {
      cfg = parseTrainConfig(merged);
    } catch (e) {
      if (e instanceof ConfigError) throw new ConfigError(byFlag(e.message, set));
      throw e;
    }
    const result = await train(cfg, {
      signal: controller.signal,
      resume: typeof values.resume === "string" ? values.resume : undefined,
      log: (m) => (json ? undefined : process.stderr.write(`${m}\n`)),
      onStep: (i) => bar.step(i),
    });
    bar.stop();
    if (!json) console.log(report(result));
    if (result.stoppedBy === "interrupted" && !json) console.log(`interrupted: continue with --resume ${result.files.checkpoint}`);
    if (json) {
      console.log(JSON.stringify({
        psnr: result.psnr, steps: result.steps, seconds: result.seconds, steps_per_s: result.stepsPerSecond, stopped_by: result.stoppedBy,
        backend: result.backend, backend_reason: result.backendReason, params_encoding: result.paramsEncoding, params_network: result.paramsNetwork,
        bytes_params: result.bytesParams, bytes_training: result.bytesTraining, bytes_inference: result.bytesInference, out: cfg.out,
        ...(result.points ? { validation_loss: result.points.validationLoss, points: result.points } : {}),
        max_rss_bytes: peakRss(),
      }));
    }
    return result.stoppedBy === "interrupted" ? 130 : 0;
  } catch (e) {
    bar.stop();
    const expected = e instanceof UsageError || e instanceof ConfigError || e instanceof ImageError || e instanceof CheckpointError || e instanceof CacheDirError || e instanceof OutDirError || e instanceof PointsError;
    if (expected) return console.error(`error: ${(e as Error).message}`), 2;
    if (e instanceof DiagnosticError) return console.error(e.message), 2;
    if (e instanceof TrainError) return console.error(`error: ${e.message}`), 1;
    if (e instanceof InterruptedError) return console.error(e.message), 130;
    throw e;
  }
}

if (import.meta.main) process.exit(await main(process.argv.slice(2)));

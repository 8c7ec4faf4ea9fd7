// `bun run train [image] [flags]`: fit a neural field to a photograph (the bundled one by default),
// or with --points FILE to scattered N-D points (binary points file or CSV; train/data/points.ts).
// Flags override a YAML --config, which overrides the defaults; everything is validated by the
// trainer's schema (train/config.ts) and a bad value is reported by the flag the user typed.
// Ctrl-C (or SIGTERM) stops at the next micro-batch and writes a checkpoint; a second one exits.
// Under mpirun or srun the ranks train one model data-parallel (docs/distributed.md "Training
// across ranks"): rank 0 alone prints and writes; SIGUSR1 (which mpirun passes to every rank at
// once) stops every rank after the same step.
import cliProgress from "cli-progress";
import { backendRequest, type BackendRequest } from "../runtime/backend.ts";
import { openRanks } from "../runtime/mpi.ts";
import { ExpectedError, UsageError } from "../dsl/errors.ts";
import { ConfigError } from "../modules/options.ts";
import { DEFAULT_IMAGE, MAX_STEPS, TrainConfigSchema, getPath, mergeConfig, namingFile, parseTrainConfig, readConfigFile } from "../train/config.ts";
import { peakRss } from "../train/data/points.ts";
import { describeSpan, spansSteps, type ScheduleKind } from "../train/schedule.ts";
import { likeRankZero, reportedByRankZero, train, type StepInfo, type TrainResult } from "../train/trainer.ts";
import { FLAGS, GROWTH_TWICE, byFlag, flagConfig, optionsOf, parseFlags, type Options } from "./flags.ts";
import { runCommand } from "./run.ts";

const USAGE = "usage: bun run train [image | --points file.bin|file.csv] [--config file.yaml] [flags] [--resume checkpoint] [--json]";

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

/** "step 5/1000", or "step 5, 12/180 s" when time alone stops the run (steps unlimited). */
const stepOf = (i: StepInfo, seconds: number | undefined) =>
  i.steps >= MAX_STEPS && seconds !== undefined ? `step ${i.step}, ${Math.floor(i.seconds)}/${seconds} s` : `step ${i.step}/${i.steps}`;

/** A progress bar on a terminal (of seconds when time alone stops the run), else a line every few seconds. */
function progress(json: boolean, limit: () => number | undefined): { step(i: StepInfo): void; stop(): void } {
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
        const [value, total] = i.steps >= MAX_STEPS && limit() !== undefined ? [Math.min(Math.floor(i.seconds), limit()!), limit()!] : [i.step, i.steps];
        if (!started) (bar.start(total, value, payload), (started = true));
        else bar.update(value, payload);
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
      stream.write(`${stepOf(i, limit())}  loss ${i.loss.toExponential(3)}  PSNR ${i.psnr === undefined ? "-" : i.psnr.toFixed(2)}  lr ${i.lr.toExponential(2)}  ${i.stepsPerSecond.toFixed(1)} steps/s\n`);
    },
    stop: () => {},
  };
}

function report(r: TrainResult, kind: ScheduleKind, ema: boolean): string {
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  const on = r.points
    ? `validation loss ${r.points.validationLoss.toExponential(3)}, PSNR ${r.psnr.toFixed(2)} dB (relative to the value range) on ${r.points.heldOutRecords.toLocaleString("en")} held-out points`
    : `PSNR ${r.psnr.toFixed(2)} dB on the full ${r.image!.width}x${r.image!.height} image`;
  const head = r.stoppedBy === "interrupted"
    ? `interrupted after ${r.steps} steps in ${r.seconds.toFixed(1)} s (${r.stepsPerSecond.toFixed(1)} steps/s)${Number.isFinite(r.psnr) ? `; last PSNR ${r.psnr.toFixed(2)} dB` : ""}`
    : `${on} after ${r.steps} steps in ${r.seconds.toFixed(1)} s (${r.stepsPerSecond.toFixed(1)} steps/s; stopped by ${r.stoppedBy})`;
  const p = r.points;
  const span = r.scheduleSpan;
  return [
    head,
    ...(span?.from === "seconds" ? [`schedule: ${describeSpan(kind, span)} (--steps ${span.steps} reruns it)`] : []),
    ...(p
      ? [`points: ${p.records.toLocaleString("en")} (${p.dims} coordinates, ${p.channels} value${p.channels === 1 ? "" : "s"}; ${p.heldOutRecords.toLocaleString("en")} held out), box ${JSON.stringify(p.box.min)}..${JSON.stringify(p.box.max)} (from the ${p.boxFrom}); data buffers ${mib(p.dataBytes)} of the ${mib(p.maxMemory)} allowed, peak memory ${mib(peakRss())}`]
      : []),
    `parameters: encoding ${r.paramsEncoding.toLocaleString("en")}, network ${r.paramsNetwork.toLocaleString("en")} (${mib(r.bytesParams)}; ${mib(r.bytesTraining)} with gradients${ema ? ", optimizer state and the EMA" : " and optimizer state"}; ${mib(r.bytesInference)} for inference, features in f16)`,
    `backend ${r.backendReason}`,
    `outputs: ${r.files.reconstruction && r.stoppedBy !== "interrupted" ? `${r.files.reconstruction}, ` : ""}${r.files.metrics}, ${r.files.plot}, ${r.files.summary}, ${r.files.checkpoint}${r.files.validation ? `, ${r.files.validation}` : ""}`,
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const options: Options = { config: { type: "string" }, resume: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean" }, ...optionsOf(FLAGS) };
  const { values, positionals } = parseFlags(argv, options, { positionals: true, usage: `${USAGE} (--help lists the options)` });
  if (values.help) return console.log(help()), 0;
  // One process without a launcher (MPI not loaded); under mpirun or srun, this rank of the job.
  const ranks = await openRanks();
  const many = ranks.size > 1;
  const lead = ranks.rank === 0;
  const json = values.json === true;
  const quiet = json || !lead; // ranks other than 0 print their errors only
  const set = new Set(Object.keys(values).filter((k) => values[k] !== undefined));
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (sig: string) => {
    if (++interrupts > 1) process.exit(130);
    if (lead) process.stderr.write(`\n${sig}: stopping after this ${many ? `step on every rank` : "micro-batch"} and writing a checkpoint (again to quit at once)\n`);
    controller.abort();
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  // Open MPI's mpirun passes SIGUSR1 on to every rank at once; on SIGINT or SIGTERM it sends
  // SIGTERM to every rank odls_base_sigkill_timeout seconds later and SIGKILL as long after (docs/distributed.md).
  if (many) process.on("SIGUSR1", () => onSignal("SIGUSR1"));
  let seconds: number | undefined; // the time limit, once the configuration is read
  const bar = lead ? progress(json, () => seconds) : { step() {}, stop() {} };
  try {
    if (positionals.length > 1) throw new UsageError(`one image at most, got ${positionals.length}: ${positionals.join(" ")}`);
    const file = typeof values.config === "string" ? readConfigFile(values.config) : {};
    const flags = flagConfig(values);
    if (positionals[0]) flags.image = positionals[0];
    if (set.has("per-level-scale") && set.has("finest")) throw new UsageError(GROWTH_TWICE);
    const merged = mergeConfig(file, flags);
    // --finest replaces a growth factor from the file (which would otherwise replace it).
    if (set.has("finest")) delete (merged.encoding as Record<string, unknown>).perLevelScale;
    merged.backend = backendRequest(flags.backend as string | undefined, merged.backend as BackendRequest | undefined);
    const points = merged.points as Record<string, unknown> | undefined;
    const pointsFlags = FLAGS.filter((f) => f.path.startsWith("points.") && f.flag !== "points" && set.has(f.flag)).map((f) => `--${f.flag}`);
    const pointsSettings = `${pointsFlags.join(", ") || "points settings"} ${pointsFlags.length === 1 ? "needs" : "need"} --points FILE`;
    if (points && merged.image !== undefined)
      throw new UsageError(points.file === undefined ? `${pointsSettings}, not an image (${merged.image})` : `an image (${merged.image}) and --points (${points.file}) together: give one of them`);
    if (points && points.file === undefined) throw new UsageError(pointsSettings);
    const schedule = merged.schedule as Record<string, unknown> | undefined;
    if (schedule && schedule.kind === undefined) {
      const given = FLAGS.filter((f) => f.path.startsWith("schedule.") && set.has(f.flag)).map((f) => `--${f.flag}`);
      throw new UsageError(`${given.join(", ") || "schedule settings"} ${given.length === 1 ? "needs" : "need"} a schedule: give --schedule cosine, onecycle or plateau`);
    }
    // A configuration error (the trainer's, or the encoder's "hashGrid.field") named by the flag or file that set the field.
    const named = (e: unknown) =>
      e instanceof ConfigError ? new ConfigError(namingFile(byFlag(e.message.replace(/\bhashGrid\./g, "encoding."), set), values.config as string | undefined, file)) : e;
    let cfg;
    try {
      cfg = parseTrainConfig(merged);
    } catch (e) {
      throw named(e);
    }
    seconds = cfg.seconds;
    const kind = cfg.schedule.kind;
    const timed = cfg.seconds !== undefined && cfg.steps >= MAX_STEPS;
    if (!quiet && cfg.seconds !== undefined)
      process.stderr.write(
        `${!timed ? `stops at ${cfg.steps} steps or after ${cfg.seconds} s, whichever comes first` : !spansSteps(kind) ? `stops after ${cfg.seconds} s (--seconds; no step limit)` : `stops after ${cfg.seconds} s (--seconds): the ${kind} schedule spans the steps ${values.resume ? "the checkpoint's run decided" : "estimated to fit, after a warm-up measuring the steps per second"}`}\n`,
      );
    const result = await train(cfg, {
      signal: controller.signal,
      resume: typeof values.resume === "string" ? values.resume : undefined,
      log: (m) => (quiet ? undefined : process.stderr.write(`${m}\n`)),
      onStep: (i) => bar.step(i),
      ranks,
    }).catch((e) => Promise.reject(likeRankZero(e, named(e))));
    bar.stop();
    // Every rank gets here (the run's end is agreed): MPI_Finalize.
    ranks.close();
    if (!quiet) console.log(report(result, kind, cfg.ema.enabled));
    if (result.stoppedBy === "interrupted" && !quiet) console.log(`interrupted${many ? ` on ${ranks.size} ranks` : ""}: continue with --resume ${result.files.checkpoint}${many ? ` (with ${ranks.size} ranks)` : ""}`);
    if (json && lead) {
      console.log(JSON.stringify({
        psnr: result.psnr, steps: result.steps, seconds: result.seconds, steps_per_s: result.stepsPerSecond, stopped_by: result.stoppedBy, lr: result.lr,
        backend: result.backend, backend_reason: result.backendReason, params_encoding: result.paramsEncoding, params_network: result.paramsNetwork,
        bytes_params: result.bytesParams, bytes_training: result.bytesTraining, bytes_inference: result.bytesInference, out: cfg.out,
        ...(result.points ? { validation_loss: result.points.validationLoss, points: result.points } : {}),
        ...(result.scheduleSpan ? { schedule_span: result.scheduleSpan } : {}),
        ...(result.ranks ? { ranks: result.ranks } : {}),
        weights: result.weights,
        max_rss_bytes: peakRss(),
      }));
    }
    return result.stoppedBy === "interrupted" ? 130 : 0;
  } catch (e) {
    bar.stop();
    // Another rank than 0: silent where rank 0 reports the same error (an error every rank met,
    // or this rank's, which rank 0 repeats), else its error named by its rank. No MPI_Finalize:
    // a rank that fails alone leaves while others may wait in a collective, and the launcher ends them.
    if (!lead && e instanceof ExpectedError) {
      if (!reportedByRankZero(e)) console.error(`rank ${ranks.rank}/${ranks.size}: ${e.report()}`);
      return e.status;
    }
    throw e;
  }
}

if (import.meta.main) await runCommand(main);

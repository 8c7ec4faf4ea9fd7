// `bun bench/gigapixel.ts [--image PATH] [--seconds 300] [--out DIR] [--json]`: a time-limited training run
// on a gigapixel photograph (by default the 56718 x 21450 Kodak mosaic of scripts/mosaic.ts, built
// into the cache on first use) with its peak memory (VmHWM) against the budget of 8 bytes per
// pixel plus the model's training bytes, the PSNR over every pixel, and the time of each phase:
// decode, steps, the final render, the encoders (reconstruction.png and the DeepZoom pyramids,
// run one after another). gigapixelRun() is what `bun run bench:scale` calls.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildMosaic } from "../train/mosaic.ts";
import { findCxx } from "../runtime/toolchain.ts";
import type { TrainConfigInput } from "../train/config.ts";
import { ImageSource } from "../train/data/image.ts";
import { peakRss } from "../train/data/points.ts";
import { loadImage } from "../train/image.ts";
import { train } from "../train/trainer.ts";
import { benchArgs } from "./args.ts";
import { BusyMeter, busyText, cpuInfo } from "./machine.ts";

export interface GigapixelResult {
  image: string;
  pixels: number;
  /** VmHWM of this process at the end of the run. */
  peakRssBytes: number;
  /** VmHWM before the image was decoded (the runtime, the compiler). */
  baselineRssBytes: number;
  /** The model's bytes in training (parameters, gradients, optimizer state: TrainResult.bytesTraining). */
  modelBytes: number;
  /** (peak - baseline - model) / pixels: the target is at most 8. */
  bytesPerPixel: number;
  psnr: number;
  /** Wall time of the whole run: decode, training, render, encoders. */
  seconds: number;
  steps: number;
  /** Seconds of each phase; step: the mean seconds of a training step (evaluations included). */
  times: { decode: number; train: number; step: number; render: number; encodePng: number; encodeDeepZoom: number; encodeOriginal: number };
  /** The CPU, and the share of the machine's CPU time other processes took during the run. */
  cpu: string;
  othersShare: number | undefined;
  out: string;
}

/**
 * Trains on `image` for `seconds` (a time budget: the warm-up measures the step rate), renders the
 * reconstruction over every pixel and writes its outputs (DeepZoom above 2^25 pixels) into `out`
 * (default: a temporary directory, removed), and measures. `config` adds to the configuration.
 */
export async function gigapixelRun(image: string, seconds: number, opts: { out?: string; config?: TrainConfigInput; log?: (m: string) => void } = {}): Promise<GigapixelResult> {
  const out = opts.out ?? mkdtempSync(join(tmpdir(), "gigapixel-"));
  const log = opts.log ?? (() => {});
  const meter = new BusyMeter();
  meter.start();
  const t0 = performance.now();
  const baselineRssBytes = peakRss();
  let decode = 0;
  try {
    const r = await train(
      { ...opts.config, image, seconds, steps: undefined, out },
      {
        log,
        source: async (cfg) => {
          const t = performance.now();
          const img = await loadImage(cfg.image);
          decode = (performance.now() - t) / 1000;
          log(`decoded ${image} in ${decode.toFixed(1)} s`);
          return new ImageSource(img, cfg);
        },
        onStep: (s) => {
          if (s.step % 50 === 0) log(`step ${s.step}  loss ${s.loss.toExponential(3)}  ${s.stepsPerSecond.toFixed(2)} steps/s  ${s.seconds.toFixed(0)} s`);
        },
      },
    );
    meter.stop();
    const wall = (performance.now() - t0) / 1000;
    const peak = peakRss();
    const pixels = r.image!.width * r.image!.height;
    const s = r.image!.seconds ?? {};
    return {
      image,
      pixels,
      peakRssBytes: peak,
      baselineRssBytes,
      modelBytes: r.bytesTraining,
      bytesPerPixel: (peak - baselineRssBytes - r.bytesTraining) / pixels,
      psnr: r.psnr,
      seconds: wall,
      steps: r.steps,
      times: { decode, train: r.seconds, step: r.seconds / Math.max(1, r.steps), render: s.render ?? NaN, encodePng: s.png ?? NaN, encodeDeepZoom: s.deepzoom ?? NaN, encodeOriginal: s.original ?? NaN },
      cpu: cpuInfo(findCxx().tool?.path).model,
      othersShare: meter.share,
      out,
    };
  } finally {
    if (!opts.out) rmSync(out, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  const usage = "usage: bun bench/gigapixel.ts [--image PATH (default: the 56718 x 21450 Kodak mosaic, built on first use)] [--seconds 300] [--out DIR] [--json]";
  const args = benchArgs(usage, { image: { type: "string" }, seconds: { type: "string", default: "300" }, out: { type: "string" }, json: { type: "boolean", default: false } });
  if (typeof args === "number") return args;
  const seconds = Number(args.seconds);
  if (!(seconds > 0)) return console.error(`--seconds: ${JSON.stringify(args.seconds)} is not a positive number\n${usage}`), 2;
  const log = (m: string) => console.error(m);
  const image = args.image ?? (await buildMosaic({ log }));
  const r = await gigapixelRun(image, seconds, { out: args.out, log });
  const gb = (b: number) => `${(b / 1e9).toFixed(2)} GB`;
  console.log(`${r.image}: ${r.pixels} pixels (${(r.pixels / 1e9).toFixed(2)} Gpx) on ${r.cpu}; other processes took ${busyText(r.othersShare)} of the CPU time`);
  console.log(`  PSNR ${r.psnr.toFixed(2)} dB over every pixel after ${r.steps} steps in ${r.times.train.toFixed(0)} s of training`);
  console.log(`  decode ${r.times.decode.toFixed(1)} s, step ${(1000 * r.times.step).toFixed(0)} ms (mean, evaluations included), render ${r.times.render.toFixed(1)} s, encode ${(r.times.encodePng + r.times.encodeDeepZoom + r.times.encodeOriginal).toFixed(1)} s (png ${r.times.encodePng.toFixed(1)} s, pyramids ${r.times.encodeDeepZoom.toFixed(1)} s and ${r.times.encodeOriginal.toFixed(1)} s); ${r.seconds.toFixed(0)} s in all`);
  console.log(`  peak RSS ${gb(r.peakRssBytes)} = ${(r.peakRssBytes / r.pixels).toFixed(2)} B/px; less the runtime's ${gb(r.baselineRssBytes)} and the model's ${gb(r.modelBytes)}: ${r.bytesPerPixel.toFixed(2)} B/px (target: at most 8)`);
  if (args.json) console.log(JSON.stringify({ gigapixel_pixels: r.pixels, gigapixel_peak_rss_bytes: r.peakRssBytes, gigapixel_psnr: r.psnr, gigapixel_seconds: r.seconds, gigapixel_bytes_per_pixel: r.bytesPerPixel, gigapixel_times: r.times, cpu: r.cpu, others_share: r.othersShare }));
  return 0;
}

if (import.meta.main) process.exit(await main());

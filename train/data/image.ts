// The photograph as a data source of the trainer: micro-batches from the image sampler
// (train/sampler.ts), the PSNR over the whole image, and reconstruction.png at the end.
import { join } from "node:path";
import type { DeviceBuffer } from "../../runtime/buffer.ts";
import { checkMemory, MemoryError } from "../../runtime/memory.ts";
import { CheckpointError, trainedOn, type Checkpoint } from "../checkpoint.ts";
import type { TrainConfig } from "../config.ts";
import { evaluate } from "../eval.ts";
import { writeImage, type ImageData } from "../image.ts";
import { ImageSampler } from "../sampler.ts";
import { microSeed, type Batch, type DataSource, type EvaluateRequest, type SourceContext, type SourceEvaluation } from "./source.ts";

/** The file an image run writes beside the trainer's: the field rendered at the image's size. */
export const RECONSTRUCTION = "reconstruction.png";

/** Samples in the held-out batch at most (the batch size, if smaller). */
const HELD_OUT = 1 << 14;

/** The photograph as a data source: random continuous coordinates and the bilinearly interpolated pixels there, or random pixel centres and their values (cfg.sampling). */
export class ImageSource implements DataSource {
  readonly kind = "image";
  readonly dims = 2;
  #sampler: ImageSampler | undefined;
  #ctx: SourceContext | undefined;
  #heldOut: { coords: DeviceBuffer<"f32">; targets: DeviceBuffer<"f32">; values: Float32Array; n: number } | undefined;

  constructor(
    readonly image: ImageData,
    private readonly cfg: TrainConfig,
  ) {}

  get channels(): number {
    return this.image.channels;
  }

  /** The values the photograph holds: every pixel's every channel. */
  get values(): number {
    return this.image.width * this.image.height * this.image.channels;
  }

  async attach(ctx: SourceContext): Promise<void> {
    this.#ctx = ctx;
    this.#sampler = await ImageSampler.create(this.image, { backend: ctx.backend, colorspace: this.cfg.colorspace, sampling: this.cfg.sampling });
  }

  sample(n: number, micro: number): Batch {
    return this.#sampler!.sample(n, microSeed(this.cfg.seed, micro));
  }

  // A fixed batch, drawn once when something first reads its loss (the plateau schedule) or its
  // mean squared error (the choice of the EMA or the raw weights).
  #heldOutBatch() {
    const ctx = this.#ctx!;
    if (!this.#heldOut) {
      const n = Math.min(HELD_OUT, this.cfg.batch);
      const h = this.#sampler!.sample(n, microSeed(this.cfg.seed ^ 0x5eed, 0xffffffff));
      const values = h.targets.download();
      this.#heldOut = { coords: ctx.alloc(2 * n), targets: ctx.alloc(n * this.image.channels), values, n };
      this.#heldOut.coords.upload(h.coords.download());
      this.#heldOut.targets.upload(values);
    }
    return this.#heldOut;
  }

  #heldOutLoss(): number {
    const h = this.#heldOutBatch();
    return this.#ctx!.loss.evaluate(this.#ctx!.field(h.coords, h.n), h.targets).loss;
  }

  heldOutMse(): number {
    const h = this.#heldOutBatch();
    const pred = this.#ctx!.field(h.coords, h.n);
    let sum = 0;
    for (let i = 0; i < pred.length; i++) sum += (pred[i]! - h.values[i]!) ** 2;
    return sum / pred.length;
  }

  async evaluate(_step: number, opts: EvaluateRequest): Promise<SourceEvaluation | undefined> {
    const ctx = this.#ctx!;
    const render = opts.final && this.#reconstructionFits();
    const r = await evaluate(this.image, this.#sampler!, ctx.field, { colorspace: this.cfg.colorspace, render, signal: opts.signal });
    if (!r) return undefined;
    if (opts.final) return { psnr: r.psnr, heldOutLoss: NaN, pixels: r.pixels };
    return { psnr: r.psnr, heldOutLoss: opts.wantHeldOut ? this.#heldOutLoss() : NaN };
  }

  // The reconstruction is held whole for its PNG (the PSNR alone is computed tile by tile): when
  // it, and as much again for the encoder, does not fit in memory, it is not rendered.
  #reconstructionFits(): boolean {
    const { width, height, channels, bits } = this.image;
    const bytes = width * height * channels * (bits / 8);
    try {
      checkMemory(2 * bytes, `reconstruction.png (${width}x${height}, ${channels} channels)`, bytes);
      return true;
    } catch (e) {
      if (!(e instanceof MemoryError)) throw e;
      this.#ctx!.log(`${e.message}: not written (bun run render --checkpoint writes one at a smaller --width)`);
      return false;
    }
  }

  meta(): Record<string, unknown> {
    const { width, height, channels, bits } = this.image;
    return { image: { width, height, channels, bits } };
  }

  summaryFields(): Record<string, unknown> {
    const { path, width, height, channels, bits } = this.image;
    return { image: { path, width, height, channels, bits } };
  }

  async writeOutputs(out: string, final: SourceEvaluation | undefined): Promise<Record<string, string>> {
    if (!final?.pixels) return {};
    const reconstruction = join(out, RECONSTRUCTION);
    await writeImage(reconstruction, this.image, final.pixels);
    return { reconstruction };
  }

  checkResume(ck: Checkpoint, path: string): void {
    const image = this.image;
    const was = ck.meta.image as { width: number; height: number; channels: number } | undefined;
    if (!was || was.width !== image.width || was.height !== image.height || was.channels !== image.channels)
      throw new CheckpointError(`${path}: the checkpoint was trained on ${trainedOn(ck.meta)}, not on a ${image.width}x${image.height} image with ${image.channels} channels`);
  }

  close(): void {
    this.#sampler?.close();
    this.#sampler = undefined;
  }
}

// The photograph as a data source of the trainer: micro-batches from the image sampler
// (train/sampler.ts), the PSNR over the whole image or over a fixed set of tiles (a large image),
// and reconstruction.png at the end, held whole, or for a large image rendered band by band to
// disk and written as a DeepZoom pyramid beside the original's, with a page to view them.
import { createHash } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { DeviceBuffer } from "../../runtime/buffer.ts";
import { checkMemory, MemoryError } from "../../runtime/memory.ts";
import { CheckpointError, trainedOn, type Checkpoint } from "../checkpoint.ts";
import type { TrainConfig } from "../config.ts";
import { evaluate, evaluationTiles, EVAL_TILE, type Rect } from "../eval.ts";
import { describeImage, writeImage, type ImageData } from "../image.ts";
import { ImageSampler } from "../sampler.ts";
import { VipsWriter } from "../vips_file.ts";
import { DEEPZOOM_OUTPUTS, writeDeepZoom, type EncodeTimes } from "./deepzoom.ts";
import { microSeed, type Batch, type DataSource, type EvaluateRequest, type SourceContext, type SourceEvaluation } from "./source.ts";

/** The file an image run writes beside the trainer's: the field rendered at the image's size. */
export const RECONSTRUCTION = "reconstruction.png";
/** The files an image run writes: reconstruction.png, and for a large image its DeepZoom pyramids and viewer. */
export const IMAGE_OUTPUTS = [RECONSTRUCTION, ...DEEPZOOM_OUTPUTS];

/** Pixels above which an image is large: evaluation over tiles, the reconstruction as DeepZoom (auto). */
export const LARGE_IMAGE = 2 ** 25;
/** Tiles of a tiled evaluation: 64 of 256 x 256, 4.2 Mpx. */
const EVAL_TILES = 64;
/** Seconds between progress messages of a long render. */
const PROGRESS_SECONDS = 10;

/** Samples in the held-out batch at most (the batch size, if smaller). */
const HELD_OUT = 1 << 14;

/** The photograph as a data source: random continuous coordinates and the bilinearly interpolated pixels there, or random pixel centres and their values (cfg.sampling). */
export class ImageSource implements DataSource {
  readonly kind = "image";
  readonly dims = 2;
  #sampler: ImageSampler | undefined;
  #ctx: SourceContext | undefined;
  #heldOut: { coords: DeviceBuffer<"f32">; targets: DeviceBuffer<"f32">; values: Float32Array; n: number } | undefined;
  /** The tiles evaluations cover (undefined: every pixel). */
  readonly #tiles: Rect[] | undefined;
  readonly #deepzoom: boolean;
  /** The final render on disk (deepzoom), until writeOutputs. */
  #raw: string | undefined;
  /** Seconds: the final render, and the encoders of writeOutputs. */
  #times: { render?: number; encode?: EncodeTimes } = {};

  constructor(
    readonly image: ImageData,
    private readonly cfg: TrainConfig,
  ) {
    const { width, height } = image;
    const large = width * height > LARGE_IMAGE;
    const tiles = cfg.evaluation === "tiles" || (cfg.evaluation === "auto" && large);
    this.#tiles = tiles ? evaluationTiles(width, height, EVAL_TILES) : undefined;
    this.#deepzoom = cfg.reconstruction === "deepzoom" || (cfg.reconstruction === "auto" && large);
  }

  /** What the evaluations cover, for the log and summary.json. */
  #evaluationInfo() {
    const pixels = this.#tiles?.reduce((n, t) => n + t.width * t.height, 0) ?? this.image.width * this.image.height;
    return this.#tiles
      ? { mode: "tiles", tiles: this.#tiles.length, tileSize: EVAL_TILE, pixels, final: this.#deepzoom || this.#fitsPng() ? "full" : "tiles" }
      : { mode: "full", pixels, final: "full" };
  }

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
    const e = this.#evaluationInfo();
    ctx.log(
      e.mode === "tiles"
        ? `evaluation: tiles (${e.tiles} fixed tiles of ${EVAL_TILE} x ${EVAL_TILE}, ${e.pixels} of the ${describeImage(this.image)} image's ${this.image.width * this.image.height} pixels; the final PSNR over ${e.final === "full" ? "every pixel" : "the tiles"})`
        : `evaluation: full (every pixel of the ${describeImage(this.image)} image)`,
    );
  }

  sample(n: number, micro: number): Batch {
    const s = this.#sampler!;
    return s.shuffles(n) ? s.sampleShuffled(n, this.cfg.seed, micro * n) : s.sample(n, microSeed(this.cfg.seed, micro));
  }

  /** The pixels' digest (the ranks check they train on the same photograph). */
  fingerprint(): string {
    const h = createHash("sha256");
    for (const p of [this.image.packed, this.image.packedHi]) if (p) h.update(new Uint8Array(p.buffer, p.byteOffset, p.byteLength));
    return h.digest("hex");
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
    const common = { colorspace: this.cfg.colorspace, signal: opts.signal };
    if (!opts.final) {
      const r = await evaluate(this.image, this.#sampler!, ctx.field, { ...common, tiles: this.#tiles });
      if (!r) return undefined;
      return { psnr: r.psnr, heldOutLoss: opts.wantHeldOut ? this.#heldOutLoss() : NaN };
    }
    if (this.#deepzoom) return await this.#renderToDisk(common);
    const render = this.#fitsPng(true);
    const r = await evaluate(this.image, this.#sampler!, ctx.field, { ...common, render, tiles: render ? undefined : this.#tiles });
    if (!r) return undefined;
    return { psnr: r.psnr, heldOutLoss: NaN, pixels: r.pixels };
  }

  // The final render of a large image: band by band into a raw file in the out directory (nothing
  // held whole), its PSNR over every pixel on the way; progress every PROGRESS_SECONDS.
  async #renderToDisk(common: { colorspace: TrainConfig["colorspace"]; signal?: AbortSignal }): Promise<SourceEvaluation | undefined> {
    const { width, height, channels, bits } = this.image;
    // A VIPS file (sharp knows it by its content) named as the trainer's temporaries are, so that a
    // killed run's is removed by the next run into the directory.
    const raw = join(this.cfg.out, `.${RECONSTRUCTION}.${process.pid}.render.tmp`);
    const writer = new VipsWriter(raw, { width, height, channels, bits });
    this.#raw = raw;
    const t0 = performance.now();
    let said = t0;
    let r;
    try {
      r = await evaluate(this.image, this.#sampler!, this.#ctx!.field, {
        ...common,
        onRows: (_row0, samples) => writer.write(samples),
        progress: (done, total) => {
          const now = performance.now();
          if (now - said < PROGRESS_SECONDS * 1000 || done === total) return;
          said = now;
          this.#ctx!.log(`rendering the reconstruction: ${((100 * done) / total).toFixed(0)}% of ${total} pixels, ${((now - t0) / 1000).toFixed(0)} s`);
        },
      });
    } finally {
      try {
        writer.close();
      } catch (e) {
        if (r) throw e; // interrupted: fewer rows, as expected
      }
      if (!r) this.#dropRaw();
    }
    if (!r) return undefined;
    this.#times.render = (performance.now() - t0) / 1000;
    this.#ctx!.log(`rendered the reconstruction (${width * height} pixels) in ${this.#times.render.toFixed(1)} s: PSNR ${r.psnr.toFixed(2)} dB over every pixel`);
    return { psnr: r.psnr, heldOutLoss: NaN };
  }

  #dropRaw(): void {
    if (this.#raw) rmSync(this.#raw, { force: true });
    this.#raw = undefined;
  }

  // The reconstruction is held whole for its PNG (the PSNR alone is computed tile by tile): when
  // it, and as much again for the encoder, does not fit in memory, it is not rendered.
  #fitsPng(say = false): boolean {
    const { width, height, channels, bits } = this.image;
    const bytes = width * height * channels * (bits / 8);
    try {
      checkMemory(2 * bytes, `reconstruction.png (${width}x${height}, ${channels} channels)`, bytes);
      return true;
    } catch (e) {
      if (!(e instanceof MemoryError)) throw e;
      if (say) this.#ctx!.log(`${e.message}: not written (--reconstruction deepzoom streams it; bun run render --checkpoint writes one at a smaller --width)`);
      return false;
    }
  }

  meta(): Record<string, unknown> {
    const { width, height, channels, bits } = this.image;
    return { image: { width, height, channels, bits } };
  }

  summaryFields(): Record<string, unknown> {
    const { path, width, height, channels, bits } = this.image;
    const times = this.#times.render === undefined ? {} : { seconds: { render: this.#times.render, ...this.#times.encode } };
    return { image: { path, width, height, channels, bits, evaluation: this.#evaluationInfo(), ...times } };
  }

  async writeOutputs(out: string, final: SourceEvaluation | undefined): Promise<Record<string, string>> {
    if (this.#raw) {
      const raw = this.#raw;
      try {
        if (!final) return {};
        // The samples are not needed any more: freed before the encoders map the raw render, so
        // that the two are not held at once.
        this.#sampler?.close();
        this.#sampler = undefined;
        this.image.packed = new Uint32Array(0);
        delete this.image.packedHi;
        Bun.gc(true);
        const written = await writeDeepZoom(out, raw, this.image, this.#ctx!.log);
        this.#times.encode = written.seconds;
        return written.files;
      } finally {
        this.#dropRaw();
      }
    }
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
    this.#dropRaw();
    this.#sampler?.close();
    this.#sampler = undefined;
  }
}

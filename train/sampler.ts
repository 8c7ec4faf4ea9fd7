// Training batches from an image on the chosen backend: the packed samples go to the device once,
// and dsl/kernels/sample.ts draws random coordinates with their bilinearly interpolated targets
// (tiny-cuda-nn's image sample) or random pixel centres with their stored values, and the pixel
// centres of rows for evaluation.
import { resolve } from "node:path";
import type { BackendRequest } from "../runtime/backend.ts";
import type { DeviceBuffer } from "../runtime/buffer.ts";
import { loadKernels, type KernelModule } from "../modules/load.ts";
import { ImageError, PART_WORDS, describeImage, samplerLimitError, type ImageData } from "./image.ts";

export const SAMPLE_KERNELS = resolve(import.meta.dir, "../dsl/kernels/sample.ts");

/** Most points per sample() or pixelCenters() call (their coordinates, 2 per point, must fit one buffer). */
export const MAX_POINTS = 2 ** 28;

export type Colorspace = "srgb" | "linear";
/** bilinear: continuous points, the image bilinearly interpolated there; pixel: pixel centres, the stored values. */
export type Sampling = "bilinear" | "pixel";

export interface SamplerOptions {
  /** Backend: auto (default), cuda, cpu or js. */
  backend?: BackendRequest;
  /** Build cache directory (see loadKernels). */
  cacheDir?: string;
  /** Targets as stored (srgb, the default) or converted from sRGB to linear (color channels; alpha stays). */
  colorspace?: Colorspace;
  /** What sample() draws (default bilinear). */
  sampling?: Sampling;
  /** Build progress and warnings (see loadKernels). */
  log?: (message: string) => void;
}

/** The compile-time configuration of dsl/kernels/sample.ts for an image. */
export function imageConfig(image: Pick<ImageData, "width" | "height" | "channels" | "bits">, colorspace: Colorspace) {
  return { width: image.width, height: image.height, channels: image.channels, bits16: image.bits === 16, linear: colorspace === "linear", partWords: PART_WORDS };
}

function checkCount(what: string, n: number, max: number): void {
  if (!Number.isSafeInteger(n) || n < 1 || n > max) throw new RangeError(`ImageSampler.${what}: ${n} is not an integer from 1 to ${max}`);
}

/** A seed modulo 2^32. */
function u32(seed: number): number {
  return ((seed % 2 ** 32) + 2 ** 32) % 2 ** 32;
}

export class ImageSampler {
  /** The packed samples on the module's backend (on host backends, image.packed itself: no copy), and the words past PART_WORDS. */
  readonly #pixels: DeviceBuffer<"u32"> | Uint32Array;
  readonly #pixelsHi: DeviceBuffer<"u32"> | Uint32Array;
  #coords: DeviceBuffer<"f32"> | undefined;
  #targets: DeviceBuffer<"f32"> | undefined;
  /** Pixel-centre buffers by length (evaluation uses a full tile's and the last tile's). */
  #centers = new Map<number, DeviceBuffer<"f32">>();
  #closed = false;

  private constructor(
    readonly image: ImageData,
    readonly colorspace: Colorspace,
    readonly sampling: Sampling,
    private readonly mod: KernelModule,
  ) {
    // CUDA needs a copy on the device; host backends read the TypedArray in place, so a large
    // image is held once, not twice.
    const hi = image.packedHi ?? new Uint32Array(1);
    this.#pixels = mod.backend === "cuda" ? mod.upload("u32", image.packed) : image.packed;
    this.#pixelsHi = mod.backend === "cuda" ? mod.upload("u32", hi) : hi;
  }

  static async create(image: ImageData, opts: SamplerOptions = {}): Promise<ImageSampler> {
    const colorspace = opts.colorspace ?? "srgb";
    if (colorspace !== "srgb" && colorspace !== "linear") throw new RangeError(`ImageSampler: colorspace ${JSON.stringify(colorspace)} is not allowed (allowed: srgb, linear)`);
    const sampling = opts.sampling ?? "bilinear";
    if (sampling !== "bilinear" && sampling !== "pixel") throw new RangeError(`ImageSampler: sampling ${JSON.stringify(sampling)} is not allowed (allowed: bilinear, pixel)`);
    const limit = samplerLimitError(image.path, image);
    if (limit) throw limit;
    const words = Math.ceil((image.width * image.height * image.channels * image.bits) / 32);
    const held = image.packed.length + (image.packedHi?.length ?? 0);
    if (held < words || (image.packedHi && image.packed.length !== PART_WORDS)) throw new RangeError(`ImageSampler: ${image.path} has ${held} packed words, ${words} expected (the first ${PART_WORDS} in packed)`);
    // Unchecked: every index is inside the image (clamped corners) or the launch's own points.
    const mod = await loadKernels(SAMPLE_KERNELS, {
      config: imageConfig(image, colorspace),
      backend: opts.backend,
      cacheDir: opts.cacheDir,
      log: opts.log,
      boundsChecks: false,
    });
    return new ImageSampler(image, colorspace, sampling, mod);
  }

  get backend() {
    return this.mod.backend;
  }
  get backendReason(): string {
    return this.mod.reason;
  }
  get channels(): number {
    return this.image.channels;
  }

  /** Coordinates of the last sample() call: [n][2] (u, v) in [0, 1). */
  get coords(): DeviceBuffer<"f32"> {
    if (!this.#coords) throw new Error("ImageSampler.coords: call sample() first");
    return this.#coords;
  }

  /** Targets of the last sample() call: [n][channels]. */
  get targets(): DeviceBuffer<"f32"> {
    if (!this.#targets) throw new Error("ImageSampler.targets: call sample() first");
    return this.#targets;
  }

  private checkOpen(what: string): void {
    if (this.#closed) throw new Error(`ImageSampler.${what}: the sampler is closed`);
  }

  /**
   * n random points from a counter-based hash of (seed, point index): the same seed gives the same
   * batch on every backend. bilinear: points uniform over [0, 1)^2, targets the image bilinearly
   * interpolated there (pixel x covers [x, x + 1) / width); pixel: pixels uniform over the image,
   * their centres as pixelCenters() gives them, targets their stored values. The buffers are
   * reused by the next call with the same n: use them before sampling again. Seeds are taken
   * modulo 2^32.
   */
  sample(n: number, seed: number): { coords: DeviceBuffer<"f32">; targets: DeviceBuffer<"f32"> } {
    const { coords, targets } = this.#buffers("sample", n, seed);
    const kernel = this.sampling === "pixel" ? this.mod.kernels.samplePixels! : this.mod.kernels.sampleImage!;
    kernel(n, this.#pixels, this.#pixelsHi, u32(seed), coords, targets);
    return { coords, targets };
  }

  /** The batch buffers for n points (reused while n stays the same), after checking the call. */
  #buffers(what: string, n: number, seed: number): { coords: DeviceBuffer<"f32">; targets: DeviceBuffer<"f32"> } {
    this.checkOpen(what);
    checkCount(what, n, MAX_POINTS);
    if (!Number.isSafeInteger(seed)) throw new RangeError(`ImageSampler.${what}: seed ${seed} is not an integer`);
    if (this.#coords?.length !== 2 * n) {
      this.#coords?.dispose();
      this.#targets?.dispose();
      this.#coords = this.mod.alloc("f32", 2 * n);
      this.#targets = this.mod.alloc("f32", n * this.image.channels);
    }
    return { coords: this.#coords, targets: this.#targets! };
  }

  /**
   * Whether pixel sampling draws batches of n points from the shuffled stream (sampleShuffled):
   * pixel sampling, and positions of an epoch and a batch that fit u32 (width * height + n <= 2^32;
   * a larger image draws its pixels independently, with sample()).
   */
  shuffles(n: number): boolean {
    return this.sampling === "pixel" && this.image.width * this.image.height + n <= 2 ** 32;
  }

  /**
   * Pixel sampling's batch of n points from positions [position, position + n) of the run's
   * shuffled stream: epochs of width * height positions, each drawing every pixel once in an order
   * of its own, keyed by (seed, epoch) (dsl/kernels/sample.ts samplePixelsShuffled). The points
   * are pixel centres and the targets their stored values, as sample() gives them; the batches
   * that follow each other in the stream cover the image evenly, where independent draws leave
   * some pixels out of an epoch and repeat others.
   */
  sampleShuffled(n: number, seed: number, position: number): { coords: DeviceBuffer<"f32">; targets: DeviceBuffer<"f32"> } {
    if (!this.shuffles(n)) throw new RangeError(`ImageSampler.sampleShuffled: ${this.sampling} sampling of ${n} points from a ${this.image.width} x ${this.image.height} image does not shuffle`);
    if (!Number.isSafeInteger(position) || position < 0) throw new RangeError(`ImageSampler.sampleShuffled: position ${position} is not a non-negative integer below 2^53`);
    const pixels = this.image.width * this.image.height;
    const { coords, targets } = this.#buffers("sampleShuffled", n, seed);
    const mask = 2 ** (32 - Math.clz32(pixels - 1)) - 1; // 2^k - 1, the least 2^k >= pixels
    this.mod.kernels.samplePixelsShuffled!(n, this.#pixels, this.#pixelsHi, u32(seed), Math.floor(position / pixels) % 2 ** 32, position % pixels, mask, coords, targets);
    return { coords, targets };
  }

  /**
   * The centres ((x + 0.5) / width, (y + 0.5) / height) of the pixels of rows [row0, row0 + rows),
   * columns [x0, x0 + cols) (default: every column), row by row: [rows * cols][2]. The buffer is
   * reused by the next call of the same size.
   */
  pixelCenters(row0: number, rows: number, x0 = 0, cols = this.image.width): DeviceBuffer<"f32"> {
    this.checkOpen("pixelCenters");
    const { width, height } = this.image;
    if (!Number.isSafeInteger(row0) || row0 < 0 || row0 >= height) throw new RangeError(`ImageSampler.pixelCenters: row ${row0} is outside the image's ${height} rows`);
    if (!Number.isSafeInteger(x0) || x0 < 0 || x0 >= width) throw new RangeError(`ImageSampler.pixelCenters: column ${x0} is outside the image's ${width} columns`);
    checkCount("pixelCenters", rows, height - row0);
    checkCount("pixelCenters (cols)", cols, width - x0);
    const n = rows * cols;
    checkCount("pixelCenters (rows * cols)", n, MAX_POINTS);
    let out = this.#centers.get(n);
    if (!out) {
      if (this.#centers.size >= 2) {
        for (const b of this.#centers.values()) b.dispose();
        this.#centers.clear();
      }
      out = this.mod.alloc("f32", 2 * n);
      this.#centers.set(n, out);
    }
    this.mod.kernels.pixelCenters!(n, x0, row0, cols, out);
    return out;
  }

  /** Waits for queued device work (CUDA); a no-op on host backends. */
  synchronize(): void {
    this.mod.synchronize();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#coords?.dispose();
    this.#targets?.dispose();
    for (const b of this.#centers.values()) b.dispose();
    this.#centers.clear();
    if (!(this.#pixels instanceof Uint32Array)) this.#pixels.dispose();
    if (!(this.#pixelsHi instanceof Uint32Array)) this.#pixelsHi.dispose();
    this.mod.close();
  }
}

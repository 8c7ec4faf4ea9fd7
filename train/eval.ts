// Evaluation of a trained field on an image: the field is queried at every pixel centre, a band of
// rows at a time (memory stays bounded whatever the image's size), or at those of a fixed set of
// tiles (a gigapixel image), and compared with the image's own samples, decoded from `packed`
// exactly as the sampler decodes them. Between blocks it lets the event loop run, so that Ctrl-C
// (a signal handler) can stop it.
import type { DeviceBuffer } from "../runtime/buffer.ts";
import { seededUniform } from "../modules/random.ts";
import { sampleParts, sampleValue, type ImageData } from "./image.ts";
import type { Colorspace, ImageSampler } from "./sampler.ts";

/** The model's prediction at n points ([n][2] coordinates): n * channels values, in the trained colorspace. */
export type Field = (coords: DeviceBuffer<"f32">, n: number) => Float32Array;

export interface EvaluateOptions {
  /** Rows per tile (default: about 2^16 pixels per tile). */
  tileRows?: number;
  /** The colorspace the field was trained in (as the sampler's targets). */
  colorspace: Colorspace;
  /** Also return the reconstruction, quantized to the image's depth (sRGB), for writeImage. */
  render?: boolean;
  /** When aborted, the evaluation stops at the next tile and returns undefined. */
  signal?: AbortSignal;
  /** Evaluate these rectangles only (evaluationTiles) rather than the whole image; no render. */
  tiles?: Rect[];
  /** The whole image: each band of rendered rows (row-major samples from row row0), in order, instead of holding the reconstruction. */
  onRows?: (row0: number, samples: Uint8Array | Uint16Array) => void;
  /** Called after each block: pixels evaluated so far, of `total`. */
  progress?: (done: number, total: number) => void;
}

/**
 * For long loops: a check that lets the event loop run (signal handlers such as Ctrl-C's, timers)
 * when 50 ms have passed since it last did, and says whether `signal` is aborted.
 */
export function interruptible(signal: AbortSignal | undefined): () => Promise<boolean> {
  let yielded = performance.now();
  return async () => {
    if (performance.now() - yielded > 50) {
      await new Promise((go) => setImmediate(go));
      yielded = performance.now();
    }
    return signal?.aborted === true;
  };
}

export interface Evaluation {
  /** 10 log10(1 / mse) in dB: Infinity for an exact reconstruction. */
  psnr: number;
  /** Mean squared error over every sample of every pixel, values on [0, 1]. */
  mse: number;
  /** With render: the reconstruction, row-major samples at the image's depth. */
  pixels?: Uint8Array | Uint16Array;
}

const f = Math.fround;
const SRGB_THRESHOLD = f(0.04045);
const SRGB_SLOPE = f(12.92);
const SRGB_OFFSET = f(0.055);
const SRGB_SCALE = f(1.055);
const SRGB_GAMMA = f(2.4);

/** The kernel's srgbToLinear in f32, operation by operation (dsl/kernels/sample.ts). */
export function srgbToLinearF32(c: number): number {
  return c <= SRGB_THRESHOLD ? f(c / SRGB_SLOPE) : f(Math.pow(f(f(c + SRGB_OFFSET) / SRGB_SCALE), SRGB_GAMMA));
}

/** Linear to sRGB (the exact formula), for writing a linear reconstruction back out. */
export function linearToSrgb(c: number): number {
  return c <= 0.0031308 ? 12.92 * c : 1.055 * Math.pow(c, 1 / 2.4) - 0.055;
}

/** Channels holding color (alpha is never converted): as colorChannels in the kernel. */
export function colorChannels(channels: number): number {
  return channels === 2 || channels === 4 ? channels - 1 : channels;
}

/**
 * The sampler's value of every stored sample value: [0] for color channels, [1] for alpha
 * (table[v] = v / max in f32, made linear for color channels when trained linear).
 */
export function targetTables(bits: 8 | 16, colorspace: Colorspace): [Float32Array, Float32Array] {
  const max = bits === 16 ? 65535 : 255;
  const plain = new Float32Array(max + 1);
  for (let v = 0; v <= max; v++) plain[v] = v / max; // one rounding: f32(v) / f32(max) in f32
  if (colorspace === "srgb") return [plain, plain];
  return [plain.map(srgbToLinearF32), plain];
}

/**
 * A predicted sample as an image stores it: clamped to [0, 1] (NaN -> 0), converted back to sRGB
 * when trained in linear light (`toSrgb`: color channels only), rounded to the depth (`max`).
 */
export function storedSample(p: number, toSrgb: boolean, max: number): number {
  let q = p > 0 ? (p < 1 ? p : 1) : 0; // NaN -> 0
  if (toSrgb) q = Math.min(1, Math.max(0, linearToSrgb(q)));
  return Math.round(q * max);
}

/** Predictions ([n][channels]) quantized into `out` from sample `offset` on (see storedSample). */
export function quantize(pred: Float32Array, out: Uint8Array | Uint16Array, offset: number, opts: { channels: number; bits: 8 | 16; colorspace: Colorspace }): void {
  const max = opts.bits === 16 ? 65535 : 255;
  const colors = opts.colorspace === "linear" ? colorChannels(opts.channels) : 0;
  for (let k = 0; k < pred.length; k++) out[offset + k] = storedSample(pred[k]!, k % opts.channels < colors, max);
}

/** A rectangle of pixels: columns [x, x + width), rows [y, y + height). */
export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Side of the tiles a tiled evaluation draws (DeepZoom's tile size). */
export const EVAL_TILE = 256;

/**
 * A fixed set of `count` distinct tiles of the image's grid of size x size tiles (those of the last
 * column and row cropped), drawn by a seeded generator (partial Fisher-Yates), in raster order:
 * every tile when the grid has at most `count`.
 */
export function evaluationTiles(width: number, height: number, count: number, size = EVAL_TILE, seed = 0x7e57): Rect[] {
  const cols = Math.ceil(width / size);
  const total = cols * Math.ceil(height / size);
  const ids = Array.from({ length: total }, (_, k) => k);
  const take = Math.min(count, total);
  const next = seededUniform(seed);
  for (let k = 0; k < take; k++) {
    const j = k + Math.floor(next() * (total - k));
    [ids[k], ids[j]] = [ids[j]!, ids[k]!];
  }
  return ids
    .slice(0, take)
    .sort((a, b) => a - b)
    .map((k) => {
      const x = (k % cols) * size;
      const y = Math.floor(k / cols) * size;
      return { x, y, width: Math.min(size, width - x), height: Math.min(size, height - y) };
    });
}

/**
 * Renders the field over the image, or over `tiles`, in blocks and compares it with the image: MSE
 * over the samples evaluated and PSNR = 10 log10(1 / MSE) on [0, 1]. The whole image goes in bands
 * of rows; with `render` (held whole) or `onRows` (each band handed over as it is rendered) the
 * reconstruction clamped to [0, 1], converted back to sRGB when trained linear (color channels),
 * rounded to the image's depth. Undefined when `signal` was aborted before the last block.
 */
export async function evaluate(image: ImageData, sampler: ImageSampler, field: Field, opts: EvaluateOptions): Promise<Evaluation | undefined> {
  const { width, height, channels, bits } = image;
  if (opts.colorspace !== "srgb" && opts.colorspace !== "linear") throw new RangeError(`evaluate: colorspace ${JSON.stringify(opts.colorspace)} is not allowed (allowed: srgb, linear)`);
  const tileRows = opts.tileRows ?? Math.max(1, Math.floor(2 ** 16 / width));
  if (!Number.isSafeInteger(tileRows) || tileRows < 1) throw new RangeError(`evaluate: tileRows ${tileRows} is not a positive integer`);
  if (opts.tiles && (opts.render || opts.onRows)) throw new RangeError("evaluate: a tiled evaluation renders no reconstruction");
  const [colorTable, alphaTable] = targetTables(bits, opts.colorspace);
  const tables = Array.from({ length: channels }, (_, c) => (c < colorChannels(channels) ? colorTable : alphaTable));
  const max = bits === 16 ? 65535 : 255;
  const linear = opts.colorspace === "linear";
  const alloc = (n: number) => (bits === 16 ? new Uint16Array(n) : new Uint8Array(n));
  const out = opts.render ? alloc(width * height * channels) : undefined;
  const blocks: Rect[] = opts.tiles ?? [];
  if (!opts.tiles) for (let y = 0; y < height; y += tileRows) blocks.push({ x: 0, y, width, height: Math.min(tileRows, height - y) });
  const total = blocks.reduce((n, b) => n + b.width * b.height, 0);
  const [lo, hi] = sampleParts(image) as [Uint8Array | Uint16Array, (Uint8Array | Uint16Array)?];
  const colors = colorChannels(channels);

  const stopped = interruptible(opts.signal);
  let sum = 0;
  let done = 0;
  for (const b of blocks) {
    if (await stopped()) return undefined;
    const n = b.width * b.height;
    const coords = sampler.pixelCenters(b.y, b.height, b.x, b.width);
    const pred = field(coords, n);
    if (pred.length !== n * channels) {
      throw new RangeError(`evaluate: the field returned ${pred.length} values for ${n} points of ${channels} channels (${n * channels} expected)`);
    }
    const band = opts.onRows ? alloc(n * channels) : undefined;
    const rowSamples = b.width * channels;
    let tileSum = 0;
    for (let r = 0; r < b.height; r++) {
      const first = ((b.y + r) * width + b.x) * channels;
      // The row's samples in one part (a row may straddle the two only at 4 GiB: then sample by sample).
      const inLo = first + rowSamples <= lo.length;
      const part = inLo ? lo : hi;
      const base = inLo ? first : first - lo.length;
      const straddles = !inLo && base < 0;
      for (let k = 0, q = r * rowSamples, c = 0; k < rowSamples; k++, q++, c = c + 1 === channels ? 0 : c + 1) {
        const p = pred[q]!;
        const stored = straddles ? sampleValue(image, first + k) : part![base + k]!;
        const d = p - tables[c]![stored]!;
        tileSum += d * d;
        if (out || band) {
          // storedSample, with its plain case inline (NaN -> 0)
          const v = linear && c < colors ? storedSample(p, true, max) : p > 0 ? (p < 1 ? Math.round(p * max) : max) : 0;
          if (out) out[first + k] = v;
          if (band) band[q] = v;
        }
      }
    }
    if (band) opts.onRows!(b.y, band);
    sum += tileSum;
    done += n;
    opts.progress?.(done, total);
  }
  const mse = sum / (total * channels);
  const psnr = 10 * Math.log10(1 / mse);
  return out ? { psnr, mse, pixels: out } : { psnr, mse };
}

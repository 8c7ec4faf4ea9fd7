// Full-image evaluation of a trained field: the field is queried at every pixel centre, a tile of
// rows at a time (memory stays bounded whatever the image's size), and compared with the image's
// own samples, decoded from `packed` exactly as the sampler decodes them. Between tiles it lets
// the event loop run, so that Ctrl-C (a signal handler) can stop it.
import type { DeviceBuffer } from "../runtime/buffer.ts";
import { sampleValue, type ImageData } from "./image.ts";
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

/**
 * Renders the field over the whole image in tiles of rows and compares it with the image: MSE over
 * all samples and PSNR = 10 log10(1 / MSE) on [0, 1]. With `render`, the reconstruction clamped to
 * [0, 1], converted back to sRGB when trained linear (color channels), rounded to the image's depth.
 * Undefined when `signal` was aborted before the last tile.
 */
export async function evaluate(image: ImageData, sampler: ImageSampler, field: Field, opts: EvaluateOptions): Promise<Evaluation | undefined> {
  const { width, height, channels, bits } = image;
  if (opts.colorspace !== "srgb" && opts.colorspace !== "linear") throw new RangeError(`evaluate: colorspace ${JSON.stringify(opts.colorspace)} is not allowed (allowed: srgb, linear)`);
  const tileRows = opts.tileRows ?? Math.max(1, Math.floor(2 ** 16 / width));
  if (!Number.isSafeInteger(tileRows) || tileRows < 1) throw new RangeError(`evaluate: tileRows ${tileRows} is not a positive integer`);
  const [colorTable, alphaTable] = targetTables(bits, opts.colorspace);
  const tables = Array.from({ length: channels }, (_, c) => (c < colorChannels(channels) ? colorTable : alphaTable));
  const max = bits === 16 ? 65535 : 255;
  const linear = opts.colorspace === "linear";
  const out = opts.render ? (bits === 16 ? new Uint16Array(width * height * channels) : new Uint8Array(width * height * channels)) : undefined;

  const stopped = interruptible(opts.signal);
  let sum = 0;
  for (let row0 = 0; row0 < height; row0 += tileRows) {
    if (await stopped()) return undefined;
    const rows = Math.min(tileRows, height - row0);
    const n = rows * width;
    const coords = sampler.pixelCenters(row0, rows);
    const pred = field(coords, n);
    if (pred.length !== n * channels) {
      throw new RangeError(`evaluate: the field returned ${pred.length} values for ${n} points of ${channels} channels (${n * channels} expected)`);
    }
    const first = row0 * width * channels;
    let tileSum = 0;
    for (let k = 0; k < n * channels; k++) {
      const s = first + k;
      const c = k % channels;
      const stored = sampleValue(image, s);
      const p = pred[k]!;
      const d = p - tables[c]![stored]!;
      tileSum += d * d;
      if (out) out[s] = storedSample(p, linear && c < colorChannels(channels), max);
    }
    sum += tileSum;
  }
  const mse = sum / (width * height * channels);
  const psnr = 10 * Math.log10(1 / mse);
  return out ? { psnr, mse, pixels: out } : { psnr, mse };
}

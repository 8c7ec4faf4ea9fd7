// Images for training, kept at their native depth: decoded by sharp (libvips) into raw samples and
// stored densely, 8-bit samples four to a u32 and 16-bit samples two to a u32, never as f32.
// Every bad input is an ImageError naming the file and the problem.
import { closeSync, openSync, readSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import { basename, dirname, extname, join, resolve } from "node:path";
import sharp, { type Metadata } from "sharp";
import { ExpectedError } from "../dsl/errors.ts";
import { notRegularFile } from "../runtime/files.ts";
import { MAX_BUFFER_BYTES } from "../runtime/memory.ts";

export class ImageError extends ExpectedError {}

export interface ImageData {
  path: string;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
  bits: 8 | 16;
  /**
   * The samples in row-major order (y, x, channel): 8-bit samples four per u32 (sample s in byte s
   * & 3 of word s >> 2, little endian), 16-bit samples two per u32 (halfword s & 1 of word s >> 1).
   * Words past the last sample are 0. At most PART_WORDS words (one 4 GiB buffer): the rest are in
   * packedHi.
   */
  packed: Uint32Array;
  /** Words from PART_WORDS on, for images of more than 4 GiB of samples (packed then holds exactly PART_WORDS). */
  packedHi?: Uint32Array;
}

/** Words of packed samples per buffer: one buffer holds at most 4 GiB (MAX_BUFFER_BYTES). */
export const PART_WORDS = MAX_BUFFER_BYTES / 4;
/** Buffers the sampler reads the samples from (dsl/kernels/sample.ts: pixels and pixelsHi). */
const PARTS = 2;

/** The error for an image with more samples than the sampler addresses (two buffers of 4 GiB), naming the file; undefined if it fits. */
export function samplerLimitError(path: string, img: { width: number; height: number; channels: number; bits: number }): ImageError | undefined {
  const samples = img.width * img.height * img.channels;
  const max = (PARTS * PART_WORDS * 32) / img.bits;
  if (samples <= max) return undefined;
  return new ImageError(`${path}: a ${describeImage(img)} image has ${samples} samples, more than the ${max} (2^${Math.log2(max)}) the sampler addresses at ${img.bits} bits`);
}

/** Rows are decoded in strips of at most this many bytes (libvips streams them; memory stays packed + one strip). */
const STRIP_BYTES = 2 ** 30;

/** The default memory budget of loadImage: half of the free memory. */
export function defaultMaxBytes(): number {
  return Math.floor(os.freemem() / 2);
}

export function formatBytes(n: number): string {
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let u = 0;
  while (n >= 1000 && u < units.length - 1) (n /= 1000, u++);
  return u === 0 ? `${n} bytes` : `${n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)} ${units[u]}`;
}

const CHANNEL_NAMES = { 1: "grayscale", 2: "grayscale+alpha", 3: "RGB", 4: "RGBA" } as const;

export function describeImage(img: { width: number; height: number; channels: number; bits: number }): string {
  const kind = CHANNEL_NAMES[img.channels as 1 | 2 | 3 | 4] ?? `${img.channels}-channel`;
  return `${img.width} x ${img.height} ${kind} ${img.bits}-bit`;
}

/** A short reason from a sharp/libvips error: its first line, without libvips' trailing noise. */
function sharpReason(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  return message.split("\n")[0]!.replace(/[:\s]+$/, "").trim() || "unknown decoder error";
}

/** Width and height in a PNG header (IHDR), or undefined when the file does not start like a PNG. */
function pngHeaderSize(path: string): { width: number; height: number } | undefined {
  const head = Buffer.alloc(24);
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    if (readSync(fd, head, 0, 24, 0) < 24) return undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  if (!signature.every((b, k) => head[k] === b) || head.toString("latin1", 12, 16) !== "IHDR") return undefined;
  return { width: head.readUInt32BE(16), height: head.readUInt32BE(20) };
}

function decodeError(path: string, e: unknown): ImageError {
  const reason = sharpReason(e);
  if (/unsupported image format/i.test(reason)) return new ImageError(`${path}: not an image (unsupported format)`);
  const png = pngHeaderSize(path);
  if (png && (png.width === 0 || png.height === 0)) return new ImageError(`${path}: empty image (${png.width} x ${png.height} pixels)`);
  if (/corrupt header/i.test(reason)) return new ImageError(`${path}: truncated or corrupt image (its header cannot be read)`);
  if (/premature end|truncated|read error|unexpected end|end of file|short read|corrupt|invalid|bad /i.test(reason)) {
    return new ImageError(`${path}: truncated or corrupt image (${reason})`);
  }
  return new ImageError(`${path}: cannot be decoded (${reason})`);
}

/** How sharp must deliver the samples: the colourspace to ask for and the raw depth. */
interface Plan {
  channels: 1 | 2 | 3 | 4;
  bits: 8 | 16;
  colourspace: "b-w" | "grey16" | "srgb" | "rgb16";
  /** Bands sharp writes per pixel (8-bit grayscale+alpha comes out as RGBA: see decodeStrip). */
  rawChannels: number;
}

function plan(path: string, m: Metadata): Plan {
  const depth = m.depth ?? "uchar";
  if (depth !== "uchar" && depth !== "ushort") {
    throw new ImageError(`${path}: unsupported sample format ${depth} (8- and 16-bit images are supported)`);
  }
  const bits = depth === "ushort" ? 16 : 8;
  // CMYK is converted to sRGB by sharp; everything else keeps its bands.
  const channels = m.space === "cmyk" ? (m.hasAlpha ? 4 : 3) : (m.channels ?? 0);
  if (channels < 1 || channels > 4) {
    throw new ImageError(`${path}: ${channels} channels are not supported (grayscale, grayscale+alpha, RGB and RGBA are)`);
  }
  const grey = channels <= 2;
  const colourspace = grey ? (bits === 16 ? "grey16" : "b-w") : bits === 16 ? "rgb16" : "srgb";
  // sharp's raw output keeps only the first band of an 8-bit b-w image, so grayscale+alpha is
  // fetched as RGBA (R = G = B = the gray value, exactly) and bands 0 and 3 are kept.
  const rawChannels = channels === 2 && bits === 8 ? 4 : channels;
  return { channels: channels as 1 | 2 | 3 | 4, bits, colourspace: rawChannels === 4 && grey ? "srgb" : colourspace, rawChannels };
}

const inputOptions = { limitInputPixels: false, ignoreIcc: true, failOn: "warning" } as const;

/** Rows [top, top + rows) as raw samples (rawChannels per pixel) at the image's depth. */
async function decodeStrip(path: string, p: Plan, width: number, height: number, top: number, rows: number): Promise<Buffer> {
  let pipe = sharp(path, inputOptions);
  if (top !== 0 || rows !== height) pipe = pipe.extract({ left: 0, top, width, height: rows });
  const { data, info } = await pipe
    .toColourspace(p.colourspace)
    .raw({ depth: p.bits === 16 ? "ushort" : "uchar" })
    .toBuffer({ resolveWithObject: true });
  const expected = width * rows * p.rawChannels * (p.bits / 8);
  if (info.width !== width || info.height !== rows || info.channels !== p.rawChannels || data.length !== expected) {
    throw new ImageError(
      `${path}: the decoder returned ${info.width} x ${info.height} x ${info.channels} samples (${data.length} bytes) ` +
        `where ${width} x ${rows} x ${p.rawChannels} were expected`,
    );
  }
  return data;
}

export interface LoadImageOptions {
  /** Most bytes the packed samples plus one decoded strip may take (default: half of the free memory). */
  maxBytes?: number;
  /**
   * Bytes of rows decoded per call of the decoder (default 1 GiB). An image larger than this is
   * decoded strip by strip into the packed samples, which bounds the decoder's memory; each strip
   * decodes the file from its start again (PNG and JPEG are sequential).
   */
  stripBytes?: number;
}

/**
 * Decodes an image (PNG, JPEG and whatever else sharp reads: grayscale, grayscale+alpha, RGB, RGBA;
 * 8 or 16 bits per sample) into packed samples. The samples are the file's stored values (an
 * embedded ICC profile is not applied; CMYK is converted to sRGB). Images over libvips' default
 * pixel limit are read; the packed samples (plus one strip of rows while decoding) must fit in
 * `maxBytes` (default: half of the free memory).
 */
export async function loadImage(path: string, opts: LoadImageOptions = {}): Promise<ImageData> {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new ImageError(`${path}: no such file`);
    if (code === "ENOTDIR") throw new ImageError(`${path}: no such file (a parent is not a directory)`);
    if (code === "EACCES") throw new ImageError(`${path}: cannot be read (permission denied)`);
    throw new ImageError(`${path}: cannot be read (${(e as Error).message})`);
  }
  if (st.isDirectory()) throw new ImageError(`${path}: is a directory, not an image`);
  const special = notRegularFile(st);
  if (special) throw new ImageError(`${path}: ${special}, not an image`);
  if (st.size === 0) throw new ImageError(`${path}: empty file (0 bytes), not an image`);
  try {
    closeSync(openSync(path, "r"));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ImageError(`${path}: cannot be read (${code === "EACCES" ? "permission denied" : (e as Error).message})`);
  }

  let meta: Metadata;
  try {
    meta = await sharp(path, inputOptions).metadata();
  } catch (e) {
    throw decodeError(path, e);
  }
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  if (width === 0 || height === 0) throw new ImageError(`${path}: empty image (${width} x ${height} pixels)`);
  const p = plan(path, meta);
  const bytesPerSample = p.bits / 8;
  const samples = width * height * p.channels;
  const packedBytes = Math.ceil((samples * bytesPerSample) / 4) * 4;
  const rowBytes = width * p.rawChannels * bytesPerSample;
  const stripRows = Math.max(1, Math.min(height, Math.floor((opts.stripBytes ?? STRIP_BYTES) / rowBytes)));
  const stripBytes = stripRows * rowBytes;
  const what = `a ${describeImage({ width, height, channels: p.channels, bits: p.bits })} image`;
  const limit = samplerLimitError(path, { width, height, channels: p.channels, bits: p.bits });
  if (limit) throw limit;
  const maxBytes = opts.maxBytes ?? defaultMaxBytes();
  const needed = packedBytes + stripBytes;
  if (needed > maxBytes) {
    const limit = opts.maxBytes === undefined ? "half of the free memory" : "maxBytes";
    throw new ImageError(
      `${path}: ${what} is too large for memory: it needs ${formatBytes(needed)} (${formatBytes(packedBytes)} of samples ` +
        `and ${formatBytes(stripBytes)} while decoding), more than the ${formatBytes(maxBytes)} allowed (${limit})`,
    );
  }

  let packed: Uint32Array;
  let packedHi: Uint32Array | undefined;
  try {
    if (stripRows === height && p.rawChannels === p.channels && packedBytes <= MAX_BUFFER_BYTES) {
      // One strip holding exactly the samples: keep the decoder's buffer when it can be viewed as u32.
      const data = await decodeStrip(path, p, width, height, 0, height);
      if (data.byteOffset % 4 === 0 && data.length % 4 === 0) {
        packed = new Uint32Array(data.buffer, data.byteOffset, data.length / 4);
      } else {
        packed = new Uint32Array(packedBytes / 4);
        new Uint8Array(packed.buffer).set(data);
      }
    } else {
      packed = new Uint32Array(Math.min(packedBytes / 4, PART_WORDS));
      if (packedBytes / 4 > PART_WORDS) packedHi = new Uint32Array(packedBytes / 4 - PART_WORDS);
      const parts = [new Uint8Array(packed.buffer), ...(packedHi ? [new Uint8Array(packedHi.buffer)] : [])];
      /** Writes bytes at a byte offset of the samples, across the two parts. */
      const put = (data: Uint8Array, offset: number) => {
        const first = Math.max(0, Math.min(data.length, MAX_BUFFER_BYTES - offset));
        if (first > 0) parts[0]!.set(first === data.length ? data : data.subarray(0, first), offset);
        if (first < data.length) parts[1]!.set(data.subarray(first), offset + first - MAX_BUFFER_BYTES);
      };
      for (let top = 0; top < height; top += stripRows) {
        const rows = Math.min(stripRows, height - top);
        let data: Uint8Array = await decodeStrip(path, p, width, height, top, rows);
        if (p.rawChannels !== p.channels) {
          // 8-bit grayscale+alpha delivered as RGBA: keep bands 0 and 3 (in place).
          for (let k = 0, o = 0; k < data.length; k += 4, o += 2) {
            data[o] = data[k]!;
            data[o + 1] = data[k + 3]!;
          }
          data = data.subarray(0, data.length / 2);
        }
        put(data, top * width * p.channels * bytesPerSample);
        // The strip is garbage now: collected before the next is decoded, so that one is held at a time.
        data = new Uint8Array(0);
        Bun.gc(true);
      }
    }
  } catch (e) {
    if (e instanceof ImageError) throw e;
    if (e instanceof RangeError) throw new ImageError(`${path}: ${what} does not fit in memory (${e.message})`);
    throw decodeError(path, e);
  }
  return { path, width, height, channels: p.channels, bits: p.bits, packed, ...(packedHi ? { packedHi } : {}) };
}

/** Sample s (an integer up to 2^53) of a packed image: its stored integer value. */
export function sampleValue(img: Pick<ImageData, "bits" | "packed" | "packedHi">, s: number): number {
  const per = img.bits === 16 ? 2 : 4;
  const w = Math.floor(s / per);
  const word = w < PART_WORDS ? img.packed[w]! : img.packedHi![w - PART_WORDS]!;
  return (word >>> ((s - w * per) * img.bits)) & (img.bits === 16 ? 65535 : 255);
}

/** The samples as views of packed and packedHi (no copy): the first holds samples [0, its length), the second the rest. */
export function sampleParts(img: ImageData): (Uint8Array | Uint16Array)[] {
  const view = (words: Uint32Array, length: number) =>
    img.bits === 16 ? new Uint16Array(words.buffer as ArrayBuffer, words.byteOffset, length) : new Uint8Array(words.buffer as ArrayBuffer, words.byteOffset, length);
  const n = img.width * img.height * img.channels;
  const first = Math.min(n, (img.packed.byteLength * 8) / img.bits);
  return img.packedHi ? [view(img.packed, first), view(img.packedHi, n - first)] : [view(img.packed, first)];
}

/** The samples of an image as a Uint8Array (8-bit) or Uint16Array (16-bit) view of `packed` (no copy; not for an image with packedHi). */
export function samplesView(img: ImageData): Uint8Array | Uint16Array {
  if (img.packedHi) throw new RangeError(`samplesView: ${img.path} has more than 4 GiB of samples (two buffers)`);
  const n = img.width * img.height * img.channels;
  return img.bits === 16 ? new Uint16Array(img.packed.buffer, img.packed.byteOffset, n) : new Uint8Array(img.packed.buffer, img.packed.byteOffset, n);
}

/** The image formats writeImage writes, by the file's extension (none: PNG). */
const FORMATS = { ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".tif": "tiff", ".tiff": "tiff" } as const;
export type ImageFormat = (typeof FORMATS)[keyof typeof FORMATS];
/** Lossless but for JPEG (sharp's TIFF default would be JPEG-compressed, its WebP lossy). */
const OPTIONS: Record<ImageFormat, object> = { png: {}, jpeg: { quality: 95 }, webp: { lossless: true }, tiff: { compression: "deflate" } };

/**
 * The format the name of an image file asks for (PNG when it has no extension), or an ImageError
 * when it names none that is written, or one that cannot hold this image (JPEG and WebP: 8-bit
 * samples; JPEG: no alpha). Asked before the image is computed.
 */
export function imageFormat(path: string, img: { channels: number; bits: number }): ImageFormat {
  const ext = extname(path).toLowerCase();
  const format = ext === "" ? "png" : FORMATS[ext as keyof typeof FORMATS];
  const cannot = (why: string) => new ImageError(`cannot write ${path}: ${why}`);
  if (!format) throw cannot(`its extension ${JSON.stringify(ext)} names no image format that is written (allowed: ${Object.keys(FORMATS).join(", ")}; none: PNG)`);
  const name = { jpeg: "JPEG", webp: "WebP", png: "PNG", tiff: "TIFF" }[format];
  if ((format === "jpeg" || format === "webp") && img.bits === 16) throw cannot(`${name} holds 8-bit samples and the image is 16-bit: write .png or .tiff`);
  if (format === "jpeg" && img.channels % 2 === 0) throw cannot(`JPEG has no alpha channel and the image is ${CHANNEL_NAMES[img.channels as 2 | 4]}: write .png, .webp or .tiff`);
  return format;
}

/**
 * Writes samples (row-major, `channels` per pixel, 8 or 16 bits) in the format the file's name asks
 * for (imageFormat: PNG, JPEG, WebP, TIFF), atomically: into a temporary file in the same
 * directory, then renamed over `path`.
 */
export async function writeImage(
  path: string,
  img: { width: number; height: number; channels: number; bits: 8 | 16 },
  data: Uint8Array | Uint16Array,
): Promise<void> {
  const { width, height, channels, bits } = img;
  if (!(Number.isInteger(width) && width > 0 && Number.isInteger(height) && height > 0)) {
    throw new ImageError(`${path}: cannot write an image of ${width} x ${height} pixels`);
  }
  if (!(channels >= 1 && channels <= 4 && Number.isInteger(channels))) throw new ImageError(`${path}: cannot write ${channels} channels (1 to 4)`);
  if (bits !== 8 && bits !== 16) throw new ImageError(`${path}: cannot write ${bits}-bit samples (8 or 16)`);
  if ((bits === 16) !== data instanceof Uint16Array) {
    throw new ImageError(`${path}: ${bits}-bit samples must come as a ${bits === 16 ? "Uint16Array" : "Uint8Array"}`);
  }
  const expected = width * height * channels;
  if (data.length !== expected) throw new ImageError(`${path}: ${data.length} samples given for ${describeImage(img)} (${expected} expected)`);

  const format = imageFormat(path, img);
  const dir = dirname(resolve(path));
  try {
    const st = statSync(dir);
    if (!st.isDirectory()) throw new ImageError(`cannot write ${path}: ${dir} is not a directory`);
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError(`cannot write ${path}: directory ${dir} ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "does not exist" : `cannot be used (${(e as Error).message})`}`);
  }

  let png: Buffer;
  try {
    // sharp takes the raw depth from the array's type: a Uint16Array is read as 16-bit samples.
    png = await sharp(data, { raw: { width, height, channels: channels as 1 | 2 | 3 | 4 }, limitInputPixels: false })
      .toColourspace(channels <= 2 ? (bits === 16 ? "grey16" : "b-w") : bits === 16 ? "rgb16" : "srgb")
      .toFormat(format, OPTIONS[format])
      .toBuffer();
  } catch (e) {
    throw new ImageError(`cannot write ${path}: encoding the ${format.toUpperCase()} failed (${sharpReason(e)})`);
  }
  writeFileAtomic(path, png, "ImageError");
}

/** Writes bytes into a temporary file beside `path`, then renames it over `path`; failures name the directory. */
export function writeFileAtomic(path: string, data: string | Uint8Array, errorClass: "ImageError" | "Error" = "Error"): void {
  const dir = dirname(resolve(path));
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`);
  const fail = (e: unknown, what: string) => {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "EACCES" || code === "EPERM" ? "permission denied" : code === "EROFS" ? "read-only file system" : code === "ENOSPC" ? "no space left" : (e as Error).message;
    const message = `cannot write ${path}: ${what} ${dir} (${why})`;
    return errorClass === "ImageError" ? new ImageError(message) : new Error(message);
  };
  try {
    writeFileSync(tmp, data);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {}
    throw fail(e, "cannot create a file in directory");
  }
  try {
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {}
    throw fail(e, "cannot rename into directory");
  }
}

// Raw images on disk, written band by band: the VIPS format (libvips' own: a 64-byte header, then
// the samples in row-major order), which sharp reads with random access. An image larger than
// memory is written without being held (scripts/mosaic.ts, the reconstruction of a large image),
// then converted by sharp, which streams it (a DeepZoom pyramid, a tiled TIFF, a PNG).
import { closeSync, openSync, writeSync } from "node:fs";

export interface RawImageShape {
  width: number;
  height: number;
  channels: number;
  bits: 8 | 16;
}

/** libvips' header for a little-endian file (vips.c: magic, sizes, band format, interpretation, resolution). */
function header({ width, height, channels, bits }: RawImageShape): Buffer {
  const h = Buffer.alloc(64);
  h.writeUInt32BE(0xb6a6f208, 0); // VIPS_MAGIC_INTEL
  h.writeInt32LE(width, 4);
  h.writeInt32LE(height, 8);
  h.writeInt32LE(channels, 12);
  h.writeInt32LE(bits, 16);
  h.writeInt32LE(bits === 16 ? 2 : 0, 20); // VIPS_FORMAT_USHORT / UCHAR
  h.writeInt32LE(0, 24); // VIPS_CODING_NONE
  // VIPS_INTERPRETATION_GREY16, B_W, RGB16, sRGB
  h.writeInt32LE(channels <= 2 ? (bits === 16 ? 27 : 1) : bits === 16 ? 26 : 22, 28);
  h.writeFloatLE(1, 32);
  h.writeFloatLE(1, 36);
  return h;
}

/**
 * A VIPS file written row band by row band: write() takes whole rows of samples (row-major,
 * `channels` per pixel, little endian at 16 bits), close() checks that every row came.
 */
export class VipsWriter {
  #fd: number | undefined;
  #rows = 0;
  readonly #rowSamples: number;

  constructor(
    readonly path: string,
    readonly shape: RawImageShape,
  ) {
    this.#rowSamples = shape.width * shape.channels;
    this.#fd = openSync(path, "w");
    writeSync(this.#fd, header(shape));
  }

  /** Appends whole rows. */
  write(samples: Uint8Array | Uint16Array): void {
    if (this.#fd === undefined) throw new Error(`VipsWriter ${this.path}: closed`);
    if (samples.length % this.#rowSamples !== 0) throw new RangeError(`VipsWriter ${this.path}: ${samples.length} samples are not whole rows of ${this.#rowSamples}`);
    const bytes = new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength);
    for (let at = 0; at < bytes.length; ) at += writeSync(this.#fd, bytes, at, bytes.length - at);
    this.#rows += samples.length / this.#rowSamples;
  }

  close(): void {
    if (this.#fd === undefined) return;
    closeSync(this.#fd);
    this.#fd = undefined;
    if (this.#rows !== this.shape.height) throw new Error(`VipsWriter ${this.path}: ${this.#rows} rows written of ${this.shape.height}`);
  }
}

// Loading and writing images (train/image.ts): every layout (grayscale, grayscale+alpha, RGB, RGBA;
// 8 and 16 bits) decodes to exactly its samples, packed densely at native depth, from PNGs written
// by an independent encoder here and by sharp; writeImage round-trips; every bad input is an
// ImageError naming the file and the problem, never a decoder's stack trace.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateSync } from "node:zlib";
import sharp from "sharp";
import { ImageError, loadImage, samplesView, sampleValue, writeImage, type ImageData } from "../../train/image.ts";
import { freshSeed, rng } from "../util.ts";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "ngpk-image-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 255]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function pngChunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, "latin1");
  Buffer.from(data).copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}
/** A PNG written by hand (no filter, one IDAT): samples row-major, 1 to 4 channels, 8 or 16 bits. */
function encodePng(width: number, height: number, channels: number, bits: 8 | 16, samples: ArrayLike<number>): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = bits;
  ihdr[9] = [0, 0, 4, 2, 6][channels]!; // gray, gray+alpha, RGB, RGBA
  const stride = width * channels * (bits / 8);
  const raw = Buffer.alloc(height * (1 + stride));
  for (let y = 0; y < height; y++) {
    for (let k = 0; k < width * channels; k++) {
      const v = samples[y * width * channels + k]!;
      const o = y * (1 + stride) + 1 + k * (bits / 8);
      if (bits === 8) raw[o] = v;
      else raw.writeUInt16BE(v, o);
    }
  }
  const signature = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
  return Buffer.concat([signature, pngChunk("IHDR", ihdr), pngChunk("IDAT", deflateSync(raw)), pngChunk("IEND", new Uint8Array())]);
}

const NAMES = { 1: "grayscale", 2: "grayscale+alpha", 3: "RGB", 4: "RGBA" } as const;
const r = rng(freshSeed("image"));
const randomSamples = (n: number, bits: 8 | 16) => Array.from({ length: n }, () => Math.floor(r() * (bits === 16 ? 65536 : 256)));

function expectSamples(img: ImageData, want: number[]): void {
  const got = Array.from(samplesView(img));
  expect(got.length).toBe(want.length);
  const bad = got.findIndex((v, k) => v !== want[k]);
  if (bad >= 0) throw new Error(`sample ${bad}: ${got[bad]}, want ${want[bad]}`);
}

/** The packing itself: sample s at byte s (8-bit) or halfword s (16-bit) of the little-endian words, zeros after. */
function expectPacked(img: ImageData, want: number[]): void {
  const per = img.bits === 16 ? 2 : 4;
  expect(img.packed.length).toBe(Math.ceil(want.length / per));
  for (let w = 0; w < img.packed.length; w++) {
    let word = 0;
    for (let k = 0; k < per; k++) word += (want[w * per + k] ?? 0) * 2 ** (k * img.bits);
    if (img.packed[w] !== word) throw new Error(`word ${w}: ${img.packed[w]}, want ${word}`);
  }
  want.forEach((v, s) => {
    if (sampleValue(img, s) !== v) throw new Error(`sampleValue(${s}) = ${sampleValue(img, s)}, want ${v}`);
  });
}

describe("every layout decodes to exactly its samples, packed at native depth", () => {
  for (const bits of [8, 16] as const) {
    for (const channels of [1, 2, 3, 4] as const) {
      test(`${NAMES[channels]} ${bits}-bit PNG (independent encoder), whole and in strips of rows`, async () => {
        const [w, h] = [7, 5]; // 7 * 5 * channels samples: not a multiple of 4 for odd channel counts
        const samples = randomSamples(w * h * channels, bits);
        const path = join(dir, `hand_${channels}_${bits}.png`);
        writeFileSync(path, encodePng(w, h, channels, bits, samples));
        const img = await loadImage(path);
        expect({ path: img.path, width: img.width, height: img.height, channels: img.channels, bits: img.bits }).toEqual({ path, width: w, height: h, channels, bits });
        expectSamples(img, samples);
        expectPacked(img, samples);
        // Strips of 2 rows (the path of images over the strip size), same samples.
        const strips = await loadImage(path, { stripBytes: 2 * w * channels * (bits / 8) * (channels === 2 && bits === 8 ? 2 : 1) });
        expectSamples(strips, samples);
        expectPacked(strips, samples);
      });
    }
  }

  test("PNGs written by sharp (gray, gray+alpha, RGB, RGBA, 16-bit RGB): exact, and writeImage round-trips", async () => {
    const cases = [
      { channels: 1, bits: 8 },
      { channels: 2, bits: 8 },
      { channels: 3, bits: 8 },
      { channels: 4, bits: 8 },
      { channels: 3, bits: 16 },
      { channels: 2, bits: 16 },
    ] as const;
    for (const c of cases) {
      const [w, h] = [9, 6];
      const samples = randomSamples(w * h * c.channels, c.bits);
      const typed = c.bits === 16 ? Uint16Array.from(samples) : Uint8Array.from(samples);
      const space = c.channels <= 2 ? (c.bits === 16 ? "grey16" : "b-w") : c.bits === 16 ? "rgb16" : "srgb";
      const path = join(dir, `sharp_${c.channels}_${c.bits}.png`);
      await sharp(typed, { raw: { width: w, height: h, channels: c.channels } }).toColourspace(space).png().toFile(path);
      const img = await loadImage(path);
      expect([img.channels, img.bits]).toEqual([c.channels, c.bits]);
      expectSamples(img, samples);
      const out = join(dir, `written_${c.channels}_${c.bits}.png`);
      await writeImage(out, img, samplesView(img));
      const back = await loadImage(out);
      expect([back.width, back.height, back.channels, back.bits]).toEqual([w, h, c.channels, c.bits]);
      expectSamples(back, samples);
      const meta = await sharp(out).metadata();
      expect([meta.format, meta.channels, meta.depth]).toEqual(["png", c.channels, c.bits === 16 ? "ushort" : "uchar"]);
    }
  });

  test("JPEG: RGB and grayscale, 8-bit, close to the encoded image", async () => {
    const [w, h] = [32, 24];
    // A smooth gradient survives JPEG's quantization within a few levels.
    const rgb = Uint8Array.from({ length: w * h * 3 }, (_, k) => {
      const p = Math.floor(k / 3);
      return Math.round((255 * ((p % w) / w + Math.floor(p / w) / h + (k % 3) / 3)) / 3);
    });
    const path = join(dir, "photo.jpg");
    await sharp(rgb, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 95 }).toFile(path);
    const img = await loadImage(path);
    expect([img.width, img.height, img.channels, img.bits]).toEqual([w, h, 3, 8]);
    const got = samplesView(img);
    let err = 0;
    for (let k = 0; k < rgb.length; k++) err = Math.max(err, Math.abs(got[k]! - rgb[k]!));
    expect(err).toBeLessThanOrEqual(8);

    const gray = join(dir, "gray.jpg");
    await sharp(Uint8Array.from({ length: w * h }, (_, k) => (k * 3) % 256), { raw: { width: w, height: h, channels: 1 } }).toColourspace("b-w").jpeg().toFile(gray);
    const g = await loadImage(gray);
    expect([g.width, g.height, g.channels, g.bits]).toEqual([w, h, 1, 8]);
  });

  test("the shipped default image: data/astronaut.png, 512 x 512 RGB 8-bit", async () => {
    const img = await loadImage(join(import.meta.dir, "../../data/astronaut.png"));
    expect([img.width, img.height, img.channels, img.bits, img.packed.length]).toEqual([512, 512, 3, 8, (512 * 512 * 3) / 4]);
  });
});

describe("every bad input is an ImageError naming the file and the problem", () => {
  async function refusal(path: string, opts?: { maxBytes?: number }): Promise<string> {
    try {
      await loadImage(path, opts);
    } catch (e) {
      expect(e).toBeInstanceOf(ImageError);
      const message = (e as Error).message;
      expect(message.startsWith(`${path}: `)).toBe(true);
      expect(message).not.toMatch(/\n\s+at /); // no stack trace in the message
      return message;
    }
    throw new Error(`${path} was accepted`);
  }
  const valid = () => encodePng(16, 16, 3, 8, randomSamples(16 * 16 * 3, 8));

  test("a missing file", async () => {
    expect(await refusal(join(dir, "missing.png"))).toContain("no such file");
    expect(await refusal(join(dir, "no-such-dir", "x.png"))).toContain("no such file");
  });

  test("a directory", async () => {
    const d = join(dir, "folder.png");
    mkdirSync(d, { recursive: true });
    expect(await refusal(d)).toContain("is a directory");
  });

  test("a text file named .png, and an empty file", async () => {
    const text = join(dir, "notes.png");
    writeFileSync(text, "these are notes, not pixels\n");
    expect(await refusal(text)).toContain("not an image (unsupported format)");
    const empty = join(dir, "empty.png");
    writeFileSync(empty, "");
    expect(await refusal(empty)).toContain("empty file (0 bytes)");
  });

  test("a truncated PNG (a valid file cut in half), a corrupted one, a truncated JPEG", async () => {
    const png = valid();
    const cut = join(dir, "cut.png");
    writeFileSync(cut, png.subarray(0, png.length >> 1));
    expect(await refusal(cut)).toContain("truncated or corrupt image");
    const flipped = Buffer.from(png);
    for (let k = 60; k < 90; k++) flipped[k]! ^= 0x5a; // inside the compressed pixels
    const bad = join(dir, "flipped.png");
    writeFileSync(bad, flipped);
    expect(await refusal(bad)).toMatch(/truncated or corrupt image|cannot be decoded/);
    const jpg = await sharp(png).resize(64, 64).jpeg().toBuffer(); // large enough to be cut inside its pixels
    const cutJpg = join(dir, "cut.jpg");
    writeFileSync(cutJpg, jpg.subarray(0, jpg.length >> 1));
    expect(await refusal(cutJpg)).toContain("truncated or corrupt image");
  });

  test("a 0x0 image", async () => {
    const zero = join(dir, "zero.png");
    writeFileSync(zero, encodePng(0, 0, 3, 8, []));
    expect(await refusal(zero)).toContain("empty image (0 x 0 pixels)");
  });

  test("an image too large for the memory allowed, saying how much it needs", async () => {
    const path = join(dir, "big.png");
    writeFileSync(path, encodePng(64, 32, 4, 16, randomSamples(64 * 32 * 4, 16)));
    const message = await refusal(path, { maxBytes: 20_000 });
    expect(message).toContain("a 64 x 32 RGBA 16-bit image is too large for memory");
    expect(message).toContain("it needs 32.8 KB (16.4 KB of samples and 16.4 KB while decoding), more than the 20.0 KB allowed (maxBytes)");
    // The same image with room for it loads.
    expect((await loadImage(path, { maxBytes: 40_000 })).packed.length).toBe((64 * 32 * 4) / 2);
  });
});

describe("writeImage", () => {
  test("writes atomically: the PNG appears complete, no temporary file stays", async () => {
    const out = join(dir, "atomic");
    mkdirSync(out);
    const data = Uint8Array.from(randomSamples(5 * 4 * 3, 8));
    await writeImage(join(out, "a.png"), { width: 5, height: 4, channels: 3, bits: 8 }, data);
    await writeImage(join(out, "a.png"), { width: 5, height: 4, channels: 3, bits: 8 }, data); // over an existing file
    expect(readdirSync(out)).toEqual(["a.png"]);
    expect(Array.from(samplesView(await loadImage(join(out, "a.png"))))).toEqual(Array.from(data));
  });

  test("an unwritable or missing directory is an ImageError naming it", async () => {
    const data = new Uint8Array(3);
    const img = { width: 1, height: 1, channels: 3, bits: 8 } as const;
    const missing = join(dir, "nowhere");
    await expect(writeImage(join(missing, "x.png"), img, data)).rejects.toThrow(new ImageError(`cannot write ${join(missing, "x.png")}: directory ${missing} does not exist`));
    const file = join(dir, "plain.txt");
    writeFileSync(file, "x");
    await expect(writeImage(join(file, "x.png"), img, data)).rejects.toThrow(`${file} is not a directory`);
    if (process.platform === "linux") {
      // /proc accepts no new files, even for root.
      await expect(writeImage("/proc/x.png", img, data)).rejects.toThrow("cannot write /proc/x.png: cannot create a file in directory /proc");
    }
    if (process.getuid?.() !== 0) {
      const locked = join(dir, "locked");
      mkdirSync(locked, { mode: 0o500 });
      await expect(writeImage(join(locked, "x.png"), img, data)).rejects.toThrow(`cannot create a file in directory ${locked} (permission denied)`);
    }
  });

  test("sizes and depths are checked", async () => {
    const p = join(dir, "sizes.png");
    await expect(writeImage(p, { width: 2, height: 2, channels: 3, bits: 8 }, new Uint8Array(11))).rejects.toThrow(ImageError);
    await expect(writeImage(p, { width: 2, height: 2, channels: 3, bits: 16 }, new Uint8Array(12))).rejects.toThrow("Uint16Array");
    await expect(writeImage(p, { width: 2, height: 2, channels: 5, bits: 8 }, new Uint8Array(20))).rejects.toThrow("channels");
    expect(() => readFileSync(p)).toThrow();
  });
});

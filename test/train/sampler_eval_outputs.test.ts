// Training data from an image (dsl/kernels/sample.ts through train/sampler.ts): random coordinates
// (in [0, 1), 24-bit, deterministic per seed, spread uniformly) and their targets against a
// float64 bilinear reference of the decoded samples, for 8 and 16 bits, 1 to 4 channels, sRGB and
// linear; pixel sampling (pixel centres where evaluation and render put them, the stored values as
// evaluation decodes them, uniform over the pixels, and the shuffled stream: every pixel once per
// epoch); CPU and JS bit for bit; pixel centres. Then full-image evaluation (train/eval.ts) and the
// run's outputs (train/outputs.ts): metrics CSV, plot, JSON.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import type { DeviceBuffer } from "../../runtime/buffer.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { colorChannels as evalColorChannels, evaluate, evaluationTiles, targetTables, type Field } from "../../train/eval.ts";
import type { ImageData } from "../../train/image.ts";
import { MetricsLog, METRICS_HEADER, plotSpec, readMetrics, writeJsonAtomic, writePlot } from "../../train/outputs.ts";
import { imageConfig, ImageSampler } from "../../train/sampler.ts";
import { cacheDir, freshSeed, rng } from "../util.ts";

const CPU = findCxx().tool !== undefined;
const r = rng(freshSeed("sample"));

/** An image of random samples, packed as train/image.ts packs them. */
function makeImage(width: number, height: number, channels: 1 | 2 | 3 | 4, bits: 8 | 16): { image: ImageData; samples: number[] } {
  const samples = Array.from({ length: width * height * channels }, () => Math.floor(r() * (bits === 16 ? 65536 : 256)));
  const per = 32 / bits;
  const packed = new Uint32Array(Math.ceil(samples.length / per));
  samples.forEach((v, s) => (packed[Math.floor(s / per)] = (packed[Math.floor(s / per)]! + v * 2 ** ((s % per) * bits)) >>> 0));
  return { image: { path: `random-${width}x${height}x${channels}-${bits}.png`, width, height, channels, bits, packed }, samples };
}

const colorChannels = (channels: number) => (channels === 2 || channels === 4 ? channels - 1 : channels);
const srgbToLinear = (c: number) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);

/** The value of sample (x, y, c) in float64: stored / max, made linear for color channels. */
function decoded(img: ImageData, samples: number[], linear: boolean, x: number, y: number, c: number): number {
  const v = samples[(y * img.width + x) * img.channels + c]! / (img.bits === 16 ? 65535 : 255);
  return linear && c < colorChannels(img.channels) ? srgbToLinear(v) : v;
}

/**
 * The image at (u, v) in float64, bilinear with clamp-to-edge at pixel position (u * width - 0.5,
 * v * height - 0.5); that position is rounded to f32 once, as the kernel's fma rounds it.
 */
/** The four corners (x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1) of a bilinear sample in float64, and its weights. */
function corners(img: ImageData, samples: number[], linear: boolean, u: number, v: number, c: number) {
  const px = Math.fround(u * img.width - 0.5);
  const py = Math.fround(v * img.height - 0.5);
  const x0 = Math.floor(px);
  const y0 = Math.floor(py);
  const cx = (x: number) => Math.min(Math.max(x, 0), img.width - 1);
  const cy = (y: number) => Math.min(Math.max(y, 0), img.height - 1);
  const at = (x: number, y: number) => decoded(img, samples, linear, cx(x), cy(y), c);
  return { fx: px - x0, fy: py - y0, at: [at(x0, y0), at(x0 + 1, y0), at(x0, y0 + 1), at(x0 + 1, y0 + 1)] as const };
}

function bilinear(img: ImageData, samples: number[], linear: boolean, u: number, v: number, c: number): number {
  const { fx, fy, at } = corners(img, samples, linear, u, v, c);
  return (1 - fy) * ((1 - fx) * at[0] + fx * at[1]) + fy * ((1 - fx) * at[2] + fx * at[3]);
}

const host = (b: DeviceBuffer<"f32">) => b.download() as Float32Array;
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

function expectTargets(img: ImageData, samples: number[], linear: boolean, coords: Float32Array, targets: Float32Array): void {
  const n = coords.length / 2;
  expect(targets.length).toBe(n * img.channels);
  let worst = 0;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < img.channels; c++) {
      const want = bilinear(img, samples, linear, coords[2 * i]!, coords[2 * i + 1]!, c);
      const err = Math.abs(targets[i * img.channels + c]! - want);
      worst = Math.max(worst, err);
      if (!(err <= 1e-6)) throw new Error(`point ${i} (${coords[2 * i]}, ${coords[2 * i + 1]}) channel ${c}: ${targets[i * img.channels + c]}, want ${want}`);
    }
  }
  expect(worst).toBeLessThanOrEqual(1e-6);
}

function expectCoords(coords: Float32Array): void {
  for (const u of coords) {
    if (!(u >= 0 && u < 1 && Number.isInteger(u * 2 ** 24))) throw new Error(`coordinate ${u} is not a 24-bit value in [0, 1)`);
  }
}

describe("sampleImage on the JS backend: targets against a float64 bilinear reference", () => {
  for (const depth of [8, 16] as const) {
    for (const channels of [1, 2, 3, 4] as const) {
      for (const colorspace of ["srgb", "linear"] as const) {
        test(`${channels} channel(s), ${depth}-bit, ${colorspace}`, async () => {
          const { image, samples } = makeImage(7, 5, channels, depth);
          const s = await ImageSampler.create(image, { backend: "js", cacheDir, colorspace });
          try {
            const { coords, targets } = s.sample(600, 12345 + channels);
            const c = host(coords);
            expectCoords(c);
            expectTargets(image, samples, colorspace === "linear", c, host(targets));
          } finally {
            s.close();
          }
        });
      }
    }
  }
});

/**
 * Pixel sampling's points against the references: each coordinate the f32 centre of a pixel,
 * (x + 0.5) / size (what render computes in float64 and stores in f32, and pixelCenters writes),
 * and its targets that pixel's samples: within 1e-6 of the float64 decoding, and equal bit for bit
 * to the value evaluation compares the field with (targetTables) where `exact`. The pixels (x, y).
 */
function expectPixels(img: ImageData, samples: number[], linear: boolean, coords: Float32Array, targets: Float32Array, exact: boolean): [number, number][] {
  const n = coords.length / 2;
  const tables = targetTables(img.bits, linear ? "linear" : "srgb");
  const pixels: [number, number][] = [];
  for (let i = 0; i < n; i++) {
    const [u, v] = [coords[2 * i]!, coords[2 * i + 1]!];
    const x = Math.floor(u * img.width);
    const y = Math.floor(v * img.height);
    if (u !== Math.fround((x + 0.5) / img.width) || v !== Math.fround((y + 0.5) / img.height)) throw new Error(`point ${i} (${u}, ${v}) is not a pixel centre`);
    for (let c = 0; c < img.channels; c++) {
      const t = targets[i * img.channels + c]!;
      const want = decoded(img, samples, linear, x, y, c);
      const table = tables[c < evalColorChannels(img.channels) ? 0 : 1]![samples[(y * img.width + x) * img.channels + c]!]!;
      if (!(Math.abs(t - want) <= 1e-6) || (exact && t !== table)) throw new Error(`pixel (${x}, ${y}) channel ${c}: ${t}, want ${want} (evaluation's ${table})`);
    }
    pixels.push([x, y]);
  }
  return pixels;
}

describe("samplePixels on the JS backend: pixel centres and the stored values", () => {
  for (const depth of [8, 16] as const) {
    for (const channels of [1, 2, 3, 4] as const) {
      for (const colorspace of ["srgb", "linear"] as const) {
        test(`${channels} channel(s), ${depth}-bit, ${colorspace}: the targets are evaluation's values bit for bit`, async () => {
          const { image, samples } = makeImage(7, 5, channels, depth);
          const s = await ImageSampler.create(image, { backend: "js", cacheDir, colorspace, sampling: "pixel" });
          try {
            expect(s.sampling).toBe("pixel");
            const { coords, targets } = s.sample(600, 12345 + channels);
            expectPixels(image, samples, colorspace === "linear", host(coords), host(targets), true);
          } finally {
            s.close();
          }
        });
      }
    }
  }

  test("uniform over the pixels (chi-square of the counts, every pixel drawn); the pixel under the bilinear point of the same seed, wide images too", async () => {
    const { image, samples } = makeImage(13, 11, 3, 8);
    const s = await ImageSampler.create(image, { backend: "js", cacheDir, sampling: "pixel" });
    try {
      const n = 2 ** 16;
      const pixels = expectPixels(image, samples, false, host(s.sample(n, 99).coords), host(s.targets), true);
      const counts = new Array(13 * 11).fill(0);
      for (const [x, y] of pixels) counts[y * 13 + x]++;
      const expected = n / counts.length;
      const chi2 = counts.reduce((sum, k) => sum + (k - expected) ** 2 / expected, 0);
      expect(Math.min(...counts)).toBeGreaterThan(0);
      expect(chi2).toBeLessThan(220); // 142 degrees of freedom: mean 142, sd 16.9
      // Deterministic per seed, and the first points of a batch do not depend on its size.
      expect(bits(host(s.sample(10, 99).coords))).toEqual(bits(host(s.sample(n, 99).coords).slice(0, 20)));
    } finally {
      s.close();
    }
    // Pixel x is floor(h * width / 2^32) of the hash whose top 24 bits are the bilinear point's u:
    // floor(u * width) or the next pixel, where u * width is within width / 2^24 below a pixel's
    // edge (the 32-bit product in 16-bit halves, checked on widths past 2^16 too).
    for (const [w, h] of [[13, 11], [70001, 1], [1, 65537]]) {
      const img = makeImage(w, h, 1, 8).image;
      const pix = await ImageSampler.create(img, { backend: "js", cacheDir, sampling: "pixel" });
      const bil = await ImageSampler.create(img, { backend: "js", cacheDir });
      try {
        const p = host(pix.sample(4096, 5).coords);
        const b = host(bil.sample(4096, 5).coords);
        let next = 0;
        for (let k = 0; k < p.length; k++) {
          const size = k % 2 ? h : w;
          const got = Math.floor(p[k]! * size);
          const below = Math.floor(b[k]! * size);
          expect(p[k]).toBe(Math.fround((got + 0.5) / size));
          if (got !== below) {
            next++;
            expect(got).toBe(below + 1);
            expect(Math.floor(b[k]! * size + size / 2 ** 24)).toBe(got);
          }
        }
        expect(next).toBeLessThanOrEqual(Math.max(4, (4096 * (w + h)) / 2 ** 22));
      } finally {
        pix.close();
        bil.close();
      }
    }
  });

  test("an unknown sampling is refused", async () => {
    await expect(ImageSampler.create(makeImage(2, 2, 1, 8).image, { backend: "js", cacheDir, sampling: "nearest" as "pixel" })).rejects.toThrow(
      'ImageSampler: sampling "nearest" is not allowed (allowed: bilinear, pixel)',
    );
  });
});

describe("pixel sampling's shuffled stream (samplePixelsShuffled), on the JS backend", () => {
  /** The pixels (index y * width + x) at positions [from, from + count) of the stream, drawn in batches of n. */
  function stream(s: ImageSampler, seed: number, from: number, count: number, n: number): number[] {
    const { width, height } = s.image;
    const out: number[] = [];
    for (let pos = from; pos < from + count; pos += n) {
      const c = host(s.sampleShuffled(n, seed, pos).coords);
      for (let i = 0; i < n && pos + i < from + count; i++) out.push(Math.floor(c[2 * i + 1]! * height) * width + Math.floor(c[2 * i]! * width));
    }
    return out;
  }

  test("each epoch draws every pixel exactly once, whatever the batch's size and where it starts; the targets are the stored values", async () => {
    for (const [w, h] of [[1, 1], [7, 5], [64, 64], [70001, 1]] as const) {
      const { image, samples } = makeImage(w, h, 3, 8);
      const s = await ImageSampler.create(image, { backend: "js", cacheDir, sampling: "pixel" });
      try {
        const N = w * h;
        for (const n of [Math.max(1, Math.floor(N / 3)), N, Math.ceil(2.5 * N)]) {
          expect(s.shuffles(n)).toBe(true);
          // Epochs 1 to 3 (positions N to 4N), drawn from an unaligned start.
          const got = stream(s, 77, N - 1, 3 * N + 1, n).slice(1);
          for (let e = 0; e < 3; e++) expect(got.slice(e * N, (e + 1) * N).sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, k) => k));
          if (N > 1) expect(got.slice(0, N)).not.toEqual(got.slice(N, 2 * N)); // each epoch its own order
        }
        const batch = s.sampleShuffled(Math.min(N, 4096), 5, 3);
        expectPixels(image, samples, false, host(batch.coords), host(batch.targets), true);
      } finally {
        s.close();
      }
    }
  });

  test("a batch is its positions' slice of the stream: deterministic per seed, another seed another order", async () => {
    const s = await ImageSampler.create(makeImage(13, 11, 1, 8).image, { backend: "js", cacheDir, sampling: "pixel" });
    try {
      const whole = stream(s, 9, 100, 400, 400);
      expect(stream(s, 9, 100, 400, 7)).toEqual(whole);
      expect(stream(s, 9, 250, 50, 50)).toEqual(whole.slice(150, 200));
      expect(stream(s, 10, 100, 400, 400)).not.toEqual(whole);
    } finally {
      s.close();
    }
  });

  test("a batch spreads over the image (chi-square of the 8 x 8 blocks of a 768 x 512 image), in every epoch", async () => {
    const s = await ImageSampler.create(makeImage(768, 512, 1, 8).image, { backend: "js", cacheDir, sampling: "pixel" });
    try {
      const n = 2 ** 16;
      for (const from of [0, 5 * 2 ** 17, 1000 * 768 * 512 + 12345]) {
        const counts = new Array(64).fill(0);
        for (const p of stream(s, 1337, from, n, n)) counts[Math.floor(p / 768 / 64) * 8 + Math.floor((p % 768) / 96)]++;
        const chi2 = counts.reduce((sum, k) => sum + (k - n / 64) ** 2 / (n / 64), 0);
        expect(chi2).toBeLessThan(120); // independent draws: 63 degrees of freedom, mean 63, sd 11.2
      }
    } finally {
      s.close();
    }
  });

  test("bilinear sampling does not shuffle; a bad position is refused", async () => {
    const image = makeImage(4, 4, 1, 8).image;
    const b = await ImageSampler.create(image, { backend: "js", cacheDir });
    const p = await ImageSampler.create(image, { backend: "js", cacheDir, sampling: "pixel" });
    try {
      expect(b.shuffles(16)).toBe(false);
      expect(() => b.sampleShuffled(16, 1, 0)).toThrow("ImageSampler.sampleShuffled: bilinear sampling of 16 points from a 4 x 4 image does not shuffle");
      expect(() => p.sampleShuffled(16, 1, -1)).toThrow("ImageSampler.sampleShuffled: position -1 is not a non-negative integer below 2^53");
      expect(() => p.sampleShuffled(16, 1, 2 ** 53)).toThrow("position 9007199254740992");
    } finally {
      b.close();
      p.close();
    }
  });
});

describe("coordinates", () => {
  let s: ImageSampler;
  beforeAll(async () => {
    s = await ImageSampler.create(makeImage(7, 5, 3, 8).image, { backend: "js", cacheDir });
  });
  afterAll(() => s.close());

  test("deterministic for a seed, different for another; buffers reused while n stays the same", () => {
    const a = s.sample(1000, 7);
    const first = { coords: host(a.coords), targets: host(a.targets) };
    const b = s.sample(1000, 7);
    expect(b.coords).toBe(a.coords); // the same buffers
    expect(b.targets).toBe(a.targets);
    expect(s.coords).toBe(a.coords);
    expect(bits(host(b.coords))).toEqual(bits(first.coords));
    expect(bits(host(b.targets))).toEqual(bits(first.targets));
    const c = host(s.sample(1000, 8).coords);
    let same = 0;
    for (let k = 0; k < c.length; k++) same += c[k] === first.coords[k] ? 1 : 0;
    expect(same).toBeLessThan(10);
    const d = s.sample(10, 7);
    expect(d.coords).not.toBe(a.coords);
    expect(d.coords.length).toBe(20);
    // A batch's first points do not depend on its size.
    expect(bits(host(d.coords))).toEqual(bits(first.coords.slice(0, 20)));
    // Seeds are taken modulo 2^32.
    expect(bits(host(s.sample(10, 7 + 2 ** 32).coords))).toEqual(bits(first.coords.slice(0, 20)));
  });

  test("uniform over [0, 1)^2: means, 16 x 16 cell counts (chi-square), no repeated point", () => {
    const n = 2 ** 16;
    const c = host(s.sample(n, 99).coords);
    expectCoords(c);
    let mu = 0;
    let mv = 0;
    const cells = new Array(256).fill(0);
    const seen = new Set<number>();
    for (let i = 0; i < n; i++) {
      const u = c[2 * i]!;
      const v = c[2 * i + 1]!;
      mu += u / n;
      mv += v / n;
      cells[Math.floor(u * 16) * 16 + Math.floor(v * 16)]++;
      seen.add(u * 2 ** 24 * 2 ** 24 + v * 2 ** 24);
    }
    expect(Math.abs(mu - 0.5)).toBeLessThan(0.01); // sd of the mean: 0.29 / 256 = 0.0011
    expect(Math.abs(mv - 0.5)).toBeLessThan(0.01);
    const expected = n / 256;
    const chi2 = cells.reduce((sum, k) => sum + (k - expected) ** 2 / expected, 0);
    expect(chi2).toBeLessThan(350); // 255 degrees of freedom: mean 255, sd 22.6
    expect(seen.size).toBe(n);
  });

  test("bad arguments are refused; a closed sampler throws", async () => {
    expect(() => s.sample(0, 1)).toThrow("ImageSampler.sample: 0 is not an integer from 1 to");
    expect(() => s.sample(1.5, 1)).toThrow(RangeError);
    expect(() => s.sample(4, 0.5)).toThrow("seed 0.5 is not an integer");
    expect(() => s.pixelCenters(5, 1)).toThrow("row 5 is outside the image's 5 rows");
    expect(() => s.pixelCenters(3, 3)).toThrow(RangeError);
    await expect(ImageSampler.create(makeImage(2, 2, 1, 8).image, { backend: "js", cacheDir, colorspace: "rgb" as "srgb" })).rejects.toThrow("colorspace");
    const closed = await ImageSampler.create(makeImage(2, 2, 1, 8).image, { backend: "js", cacheDir });
    closed.close();
    expect(() => closed.sample(4, 1)).toThrow("closed");
  });
});

describe("pixelCenters", () => {
  test("((x + 0.5) / width, (y + 0.5) / height) of the rows from row0, row by row", async () => {
    const { image } = makeImage(7, 5, 1, 8);
    const s = await ImageSampler.create(image, { backend: "js", cacheDir });
    try {
      for (const [row0, rows] of [[0, 5], [2, 2], [4, 1]] as const) {
        const c = host(s.pixelCenters(row0, rows));
        expect(c.length).toBe(2 * rows * 7);
        for (let i = 0; i < rows * 7; i++) {
          expect(c[2 * i]).toBe(Math.fround(((i % 7) + 0.5) / 7));
          expect(c[2 * i + 1]).toBe(Math.fround((row0 + Math.floor(i / 7) + 0.5) / 5));
        }
      }
    } finally {
      s.close();
    }
  });
});

describe("CPU native backend", () => {
  // Two native builds: 8-bit RGB sRGB (everything exact), 16-bit RGBA linear (pow is the platform's).
  for (const c of [
    { channels: 3, depth: 8, colorspace: "srgb", exact: true },
    { channels: 4, depth: 16, colorspace: "linear", exact: false },
  ] as const) {
    test.skipIf(!CPU)(
      `${c.channels} channels, ${c.depth}-bit, ${c.colorspace}: CPU == JS ${c.exact ? "bit for bit" : "for coordinates and pixel centres, targets within 4 roundings (powf vs Math.pow)"}, both against the reference`,
      async () => {
        const { image, samples } = makeImage(13, 11, c.channels, c.depth);
        const cpu = await ImageSampler.create(image, { backend: "cpu", cacheDir, colorspace: c.colorspace });
        const js = await ImageSampler.create(image, { backend: "js", cacheDir, colorspace: c.colorspace });
        const cpuPixel = await ImageSampler.create(image, { backend: "cpu", cacheDir, colorspace: c.colorspace, sampling: "pixel" });
        const jsPixel = await ImageSampler.create(image, { backend: "js", cacheDir, colorspace: c.colorspace, sampling: "pixel" });
        try {
          expect(cpu.backend).toBe("cpu");
          const n = 5000; // over the CPU's parallel threshold
          // The same draw on both: coordinates bit for bit; targets bit for bit where exact, else
          // within `bound` (of the target's index, the coordinates and the JS value).
          const same = (x: ImageSampler, y: ImageSampler, bound: (k: number, coords: Float32Array, want: number) => number, draw = (s: ImageSampler) => s.sample(n, 2024)) => {
            const a = draw(x);
            const b = draw(y);
            const coords = host(a.coords);
            expect(bits(coords)).toEqual(bits(host(b.coords)));
            const [ta, tb] = [host(a.targets), host(b.targets)];
            if (c.exact) expect(bits(ta)).toEqual(bits(tb));
            else for (let k = 0; k < ta.length; k++) expect(Math.abs(ta[k]! - tb[k]!)).toBeLessThanOrEqual(bound(k, coords, tb[k]!));
            return { coords, targets: ta };
          };
          // A few f32 roundings of the largest corner: powf and Math.pow may differ in the last place
          // of each corner, and the interpolation's roundings of those differing corners differ by up
          // to half a place of its intermediates (at most the largest corner), so the bound scales
          // with the corners, not with the result (which can be far below them); near 0 the corners'
          // scale, 2^-8, bounds it.
          const { coords: ca, targets: ta } = same(cpu, js, (k, coords) => {
            const i = Math.floor(k / c.channels);
            const largest = Math.max(...corners(image, samples, c.colorspace === "linear", coords[2 * i]!, coords[2 * i + 1]!, k % c.channels).at);
            return 8 * 2 ** -24 * Math.max(largest, 2 ** -8);
          });
          expectTargets(image, samples, c.colorspace === "linear", ca, ta);
          expect(bits(host(cpu.pixelCenters(3, 8)))).toEqual(bits(host(js.pixelCenters(3, 8))));
          // Pixel sampling (the same module): within one place of the stored value (a value in
          // [2^e, 2^(e+1)) has places of 2^(e-23), at most 2^-23 of it).
          const place = (_k: number, _coords: Float32Array, want: number) => 2 ** -23 * Math.max(Math.abs(want), 2 ** -8);
          const { coords: pca, targets: pta } = same(cpuPixel, jsPixel, place);
          expectPixels(image, samples, c.colorspace === "linear", pca, pta, c.exact);
          // And its shuffled stream, from a position past many epochs (the batch spans 35 of them).
          const shuffled = same(cpuPixel, jsPixel, place, (s) => s.sampleShuffled(n, 2024, 143 * 1000 + 17));
          expectPixels(image, samples, c.colorspace === "linear", shuffled.coords, shuffled.targets, c.exact);
        } finally {
          for (const x of [cpu, js, cpuPixel, jsPixel]) x.close();
        }
      },
    );
  }
});

describe("evaluate", () => {
  test("tiles: a fixed, distinct set inside the image; covering the image, the PSNR equals the full one; onRows hands over the full render in bands", async () => {
    const { image, samples } = makeImage(37, 23, 3, 8);
    const s = await ImageSampler.create(image, { backend: "js", cacheDir });
    try {
      const t = evaluationTiles(37, 23, 5, 8);
      expect(t).toEqual(evaluationTiles(37, 23, 5, 8));
      expect(new Set(t.map((r) => `${r.x},${r.y}`)).size).toBe(5);
      for (const r of t) expect(r.x + r.width <= 37 && r.y + r.height <= 23 && r.width > 0 && r.height > 0).toBe(true);
      const all = evaluationTiles(37, 23, 1000, 8);
      expect(all.length).toBe(5 * 3);
      expect(all.reduce((n, r) => n + r.width * r.height, 0)).toBe(37 * 23);
      // A field off by a position-dependent amount: every pixel counts differently.
      const field: Field = (coords, n) => {
        const c = host(coords);
        return Float32Array.from({ length: n * 3 }, (_, k) => (c[2 * Math.floor(k / 3)]! * 0.7 + c[2 * Math.floor(k / 3) + 1]! * 0.2 + (k % 3) * 0.05) % 1);
      };
      const full = (await evaluate(image, s, field, { colorspace: "srgb", tileRows: 4, render: true }))!;
      const tiled = (await evaluate(image, s, field, { colorspace: "srgb", tiles: all }))!;
      expect(tiled.psnr).toBeCloseTo(full.psnr, 10);
      const some = (await evaluate(image, s, field, { colorspace: "srgb", tiles: t }))!;
      expect(some.psnr).not.toBeCloseTo(full.psnr, 6);
      const bands: number[] = [];
      const rendered = new Uint8Array(37 * 23 * 3);
      const streamed = (await evaluate(image, s, field, { colorspace: "srgb", tileRows: 4, onRows: (row0, px) => (bands.push(row0), rendered.set(px, row0 * 37 * 3)) }))!;
      expect(bands).toEqual([0, 4, 8, 12, 16, 20]);
      expect(streamed.psnr).toBe(full.psnr);
      expect(Array.from(rendered)).toEqual(Array.from(full.pixels!));
      expect(samples.length).toBe(37 * 23 * 3);
    } finally {
      s.close();
    }
  });

  /** A field that knows the image: the value of the pixel under each coordinate, in float64 (then f32). */
  function exactField(img: ImageData, samples: number[], linear: boolean): Field {
    return (coords, n) => {
      const c = host(coords);
      const out = new Float32Array(n * img.channels);
      for (let i = 0; i < n; i++) {
        const x = Math.floor(c[2 * i]! * img.width);
        const y = Math.floor(c[2 * i + 1]! * img.height);
        for (let ch = 0; ch < img.channels; ch++) out[i * img.channels + ch] = decoded(img, samples, linear, x, y, ch);
      }
      return out;
    };
  }

  for (const c of [
    { channels: 3, depth: 8, colorspace: "srgb" },
    { channels: 4, depth: 8, colorspace: "linear" },
    { channels: 1, depth: 16, colorspace: "srgb" },
    { channels: 2, depth: 16, colorspace: "linear" },
  ] as const) {
    test(`${c.channels} channel(s), ${c.depth}-bit, ${c.colorspace}: exact field, constant field, render`, async () => {
      const { image, samples } = makeImage(11, 7, c.channels, c.depth);
      const s = await ImageSampler.create(image, { backend: "js", cacheDir, colorspace: c.colorspace });
      const linear = c.colorspace === "linear";
      try {
        let calls = 0;
        const field = exactField(image, samples, linear);
        const counted: Field = (coords, n) => (calls++, field(coords, n));
        // Tiles of 3 rows: 3 + 3 + 1.
        const exact = (await evaluate(image, s, counted, { colorspace: c.colorspace, tileRows: 3, render: true }))!;
        expect(calls).toBe(3);
        expect(exact.psnr === Infinity || exact.psnr > 100).toBe(true);
        expect(exact.mse).toBeLessThan(1e-10);
        // Rendered back to the image's samples exactly (through linear -> sRGB when trained linear).
        expect(exact.pixels).toBeInstanceOf(c.depth === 16 ? Uint16Array : Uint8Array);
        expect(Array.from(exact.pixels!)).toEqual(samples);

        const constant: Field = (_coords, n) => new Float32Array(n * image.channels).fill(0.25);
        let sum = 0;
        for (let p = 0; p < image.width * image.height; p++) {
          for (let ch = 0; ch < image.channels; ch++) sum += (0.25 - decoded(image, samples, linear, p % image.width, Math.floor(p / image.width), ch)) ** 2;
        }
        const mse = sum / samples.length;
        const res = (await evaluate(image, s, constant, { colorspace: c.colorspace }))!;
        expect(res.pixels).toBeUndefined();
        expect(res.mse).toBeCloseTo(mse, 6);
        expect(res.psnr).toBeCloseTo(10 * Math.log10(1 / mse), 4);
      } finally {
        s.close();
      }
    });
  }

  test("an aborted signal stops it at the next tile: undefined, no further tile evaluated", async () => {
    const { image } = makeImage(4, 6, 1, 8);
    const s = await ImageSampler.create(image, { backend: "js", cacheDir });
    try {
      const stop = new AbortController();
      let calls = 0;
      const field: Field = (_coords, n) => (++calls === 2 && stop.abort(), new Float32Array(n));
      expect(await evaluate(image, s, field, { colorspace: "srgb", tileRows: 1, render: true, signal: stop.signal })).toBeUndefined();
      expect(calls).toBe(2);
      expect(await evaluate(image, s, field, { colorspace: "srgb", signal: stop.signal })).toBeUndefined();
      expect(calls).toBe(2);
    } finally {
      s.close();
    }
  });

  test("render clamps to [0, 1] and maps NaN to 0; a field of the wrong size is refused", async () => {
    const { image } = makeImage(4, 2, 1, 8);
    const s = await ImageSampler.create(image, { backend: "js", cacheDir });
    try {
      const values = [-1, 0, 0.5, 1, 2, NaN, 0.2, 0.8];
      const res = (await evaluate(image, s, () => Float32Array.from(values), { colorspace: "srgb", render: true }))!;
      expect(Array.from(res.pixels!)).toEqual([0, 0, 128, 255, 255, 0, 51, 204]);
      expect(res.psnr).toBeNaN();
      await expect(evaluate(image, s, () => new Float32Array(3), { colorspace: "srgb" })).rejects.toThrow("the field returned 3 values for 8 points of 1 channels");
    } finally {
      s.close();
    }
  });
});

describe("outputs", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "ngpk-outputs-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("MetricsLog: a header, one row per log(), psnr empty when not evaluated, flushed in batches and on close", () => {
    const path = join(dir, "metrics.csv");
    const log = new MetricsLog(path, { flushRows: 2, flushSeconds: 3600 });
    expect(readFileSync(path, "utf8")).toBe(`${METRICS_HEADER}\n`);
    log.log({ step: 1, loss: 0.5, lr: 0.01, seconds: 0.1234 });
    expect(readFileSync(path, "utf8")).toBe(`${METRICS_HEADER}\n`); // buffered
    log.log({ step: 2, loss: 0.25, lr: 0.01, psnr: 12.5, seconds: 0.2 });
    expect(readFileSync(path, "utf8")).toBe(`${METRICS_HEADER}\n1,0.5,0.01,,0.123\n2,0.25,0.01,12.5,0.200\n`);
    log.log({ step: 3, loss: NaN, lr: 0.005, psnr: Infinity, seconds: 1 });
    log.close();
    expect(readFileSync(path, "utf8").split("\n").slice(3)).toEqual(["3,nan,0.005,inf,1.000", ""]);
    expect(log.rows.length).toBe(3);
    expect(readMetrics(path)).toEqual([
      { step: 1, loss: 0.5, lr: 0.01, seconds: 0.123 },
      { step: 2, loss: 0.25, lr: 0.01, psnr: 12.5, seconds: 0.2 },
      { step: 3, loss: NaN, lr: 0.005, psnr: Infinity, seconds: 1 },
    ]);
    expect(() => log.log({ step: 4, loss: 1, lr: 1, seconds: 1 })).toThrow("closed");
  });

  test("MetricsLog append: continues a CSV, dropping rows after the resume step and a partial last line", () => {
    const path = join(dir, "resumed.csv");
    writeFileSync(path, `${METRICS_HEADER}\n1,0.5,0.01,,0.100\n2,0.4,0.01,10,0.200\n3,0.3,0.01,,0.300\n4,0.2`);
    const log = new MetricsLog(path, { append: true, resumeStep: 2 });
    expect(log.rows.map((row) => row.step)).toEqual([1, 2]);
    log.log({ step: 3, loss: 0.35, lr: 0.01, seconds: 0.31 });
    log.close();
    expect(readFileSync(path, "utf8")).toBe(`${METRICS_HEADER}\n1,0.5,0.01,,0.100\n2,0.4,0.01,10,0.200\n3,0.35,0.01,,0.310\n`);
    expect(() => new MetricsLog(join(dir, "missing-dir", "m.csv"))).toThrow(`cannot write the metrics ${join(dir, "missing-dir", "m.csv")}`);
  });

  test("writePlot: a PNG of loss (log scale) and PSNR against step, written atomically", async () => {
    const rows = Array.from({ length: 3000 }, (_, k) => ({ step: k + 1, loss: Math.exp(-k / 500) * (1.1 + Math.sin(k)), psnr: k % 500 === 0 ? 12 + k / 100 : undefined }));
    rows[5]!.loss = NaN; // skipped on the log axis
    const spec = plotSpec(rows) as { vconcat: { data: { values: unknown[] } }[] };
    expect(spec.vconcat[0]!.data.values.length).toBe(2000); // downsampled
    expect(spec.vconcat[1]!.data.values.length).toBe(6);
    const plotDir = join(dir, "plot");
    await Bun.write(join(plotDir, ".keep"), "");
    const path = join(plotDir, "plot.png");
    await writePlot(path, rows);
    const meta = await sharp(path).metadata();
    expect(meta.format).toBe("png");
    expect(meta.width!).toBeGreaterThan(600);
    expect(meta.height!).toBeGreaterThan(400);
    expect(readdirSync(plotDir).sort()).toEqual([".keep", "plot.png"]);
    await writePlot(join(dir, "empty.png"), []); // no rows yet: empty axes
    expect((await sharp(join(dir, "empty.png")).metadata()).format).toBe("png");
  });

  test("writeJsonAtomic", () => {
    const path = join(dir, "summary.json");
    writeJsonAtomic(path, { psnr: 31.5, steps: 100, inf: Infinity });
    expect(readFileSync(path, "utf8")).toBe('{\n  "psnr": 31.5,\n  "steps": 100,\n  "inf": null\n}\n');
    expect(() => writeJsonAtomic(join(dir, "nope", "s.json"), {})).toThrow(`cannot write ${join(dir, "nope", "s.json")}: cannot create a file in directory ${join(dir, "nope")}`);
  });
});

describe("64-bit sample indices", () => {
  // Pixels far past 2^32 samples: the word and lane of (y * width + x) * channels + c, against BigInt
  // (any image whose words fit u32).
  const cases = [
    { width: 56718, height: 21450, channels: 4 as const, bits: 8 as const },
    { width: 40000, height: 40000, channels: 4 as const, bits: 16 as const },
    { width: 2 ** 31 - 1, height: 7, channels: 1 as const, bits: 8 as const },
  ];
  for (const backend of ["js", ...(CPU ? ["cpu" as const] : [])] as const) {
    test(`sampleWord on ${backend}: word and lane of samples beyond 2^32 (BigInt reference)`, async () => {
      const { loadKernels } = await import("../../modules/load.ts");
      for (const img of cases) {
        const mod = await loadKernels(join(import.meta.dir, "../fixtures/sample_word.ts"), {
          config: { ...imageConfig(img, "srgb") },
          backend,
          cacheDir,
        });
        try {
          const n = 512;
          const xs = new Uint32Array(n), ys = new Uint32Array(n), cs = new Uint32Array(n);
          for (let i = 0; i < n; i++) {
            // Corners and random pixels, most of them in the rows past 2^32 samples.
            xs[i] = i < 4 ? (i & 1 ? img.width - 1 : 0) : Math.floor(r() * img.width);
            ys[i] = i < 4 ? (i & 2 ? img.height - 1 : 0) : img.height - 1 - Math.floor(r() * (i & 1 ? img.height : img.height / 10));
            cs[i] = Math.floor(r() * img.channels);
          }
          const out = mod.alloc("u32", 2 * n);
          mod.kernels.sampleWordAt!(n, mod.upload("u32", xs), mod.upload("u32", ys), mod.upload("u32", cs), out);
          const got = out.download();
          const per = BigInt(32 / img.bits);
          let beyond = 0;
          for (let i = 0; i < n; i++) {
            const s = (BigInt(ys[i]!) * BigInt(img.width) + BigInt(xs[i]!)) * BigInt(img.channels) + BigInt(cs[i]!);
            if (s >= 2n ** 32n) beyond++;
            expect([got[2 * i], got[2 * i + 1]]).toEqual([Number(s / per), Number(s % per)]);
          }
          expect(beyond).toBeGreaterThan(n / 4);
        } finally {
          mod.close();
        }
      }
    });
  }

  test("samples in two buffers: the kernel reads words past partWords from pixelsHi, as from one buffer", async () => {
    const { loadKernels } = await import("../../modules/load.ts");
    const { SAMPLE_KERNELS } = await import("../../train/sampler.ts");
    for (const [channels, bits] of [[3, 8], [4, 16]] as const) {
      const { image } = makeImage(13, 7, channels, bits);
      const load = (partWords: number) => loadKernels(SAMPLE_KERNELS, { config: { ...imageConfig(image, "srgb"), partWords }, backend: "js", cacheDir, boundsChecks: true });
      const [one, two] = [await load(2 ** 30), await load(17)];
      const n = 4096;
      const results = [one, two].map((mod, k) => {
        const t = mod.alloc("f32", n * channels);
        const lo = k === 0 ? image.packed : image.packed.slice(0, 17);
        const hi = k === 0 ? new Uint32Array(1) : image.packed.slice(17);
        for (const kernel of ["samplePixels", "sampleImage"] as const) mod.kernels[kernel]!(n, lo, hi, 99, mod.alloc("f32", 2 * n), t);
        return t.download();
      });
      expect(Array.from(results[1]!)).toEqual(Array.from(results[0]!));
      one.close();
      two.close();
    }
  });

  test("an image with more samples than the sampler addresses is refused, naming the file, before anything is allocated", async () => {
    const { samplerLimitError } = await import("../../train/image.ts");
    expect(samplerLimitError("tokyo.png", { width: 56718, height: 21450, channels: 4, bits: 8 })).toBeUndefined();
    expect(samplerLimitError("big.png", { width: 100000, height: 30000, channels: 3, bits: 8 })?.message).toBe(
      "big.png: a 100000 x 30000 RGB 8-bit image has 9000000000 samples, more than the 8589934592 (2^33) the sampler addresses at 8 bits",
    );
  });
});

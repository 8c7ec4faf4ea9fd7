// Training data for a neural field fitting an image: random continuous coordinates and the image
// bilinearly interpolated there (tiny-cuda-nn's image sample), or random pixel centres and the
// pixels' stored values (what a full-image PSNR measures), and the pixel centres of rows of the
// image for evaluation.
//
// The image stays at its native depth (train/image.ts): its samples in row-major order (y, x,
// channel), 8-bit samples four to a u32 (sample s in byte s & 3 of word s >> 2, little endian),
// 16-bit samples two to a u32 (halfword s & 1 of word s >> 1), the words in two buffers: words
// [0, partWords) in `pixels`, the rest in `pixelsHi` (one host buffer holds at most 4 GiB: an RGBA
// image of 56718 x 21450 has 4.9e9 samples). Sample indices are 64-bit, formed as (hi, lo) pairs of
// u32 (sampleWord), never passing through i32 or f32; the word index is u32 (up to 2^32 words).
import { type Buf, type Const, type bool, f32, i32, floor, fma, localArray, max, min, pow, clz, select, u32 } from "../index.ts";

export interface ImageConfig {
  width: i32;
  height: i32;
  /** Samples per pixel, 1 to 4. */
  channels: i32;
  /** 16-bit samples (two per u32) rather than 8-bit (four per u32). */
  bits16: bool;
  /** Convert each color sample from sRGB to linear before interpolating (alpha stays as it is). */
  linear: bool;
  /** Words in `pixels` (the rest are in `pixelsHi`): 2^30, one 4 GiB buffer. */
  partWords: i32;
}

/** Channels holding color (1 of grayscale+alpha, 3 of RGBA): alpha is not an sRGB value. */
function colorChannels(channels: i32): i32 {
  return select(channels === 2 || channels === 4, channels - 1, channels);
}

/** MurmurHash3's 32-bit finalizer: a bijection of u32 with full avalanche. */
export function fmix32(key: u32): u32 {
  let x: u32 = key;
  x ^= x >> 16;
  x *= 0x85ebca6b;
  x ^= x >> 13;
  x *= 0xc2b2ae35;
  x ^= x >> 16;
  return x;
}

/**
 * A counter-based hash of (seed, index, stream) from key = fmix32(index): for a fixed seed and
 * stream a bijection of the index (no two points of a batch share a value), and for different
 * seeds or streams unrelated sets.
 */
export function hashKey(key: u32, seed: u32, stream: u32): u32 {
  return fmix32(key ^ fmix32(seed ^ stream));
}

/** The top 24 bits of a hash as an f32 in [0, 1) (exact: 24-bit mantissa, a power-of-two scale). */
export function unitFloat(h: u32): f32 {
  return f32(h >> 8) / 16777216.0;
}

/** The exact sRGB transfer function, encoded value c in [0, 1] to linear. */
export function srgbToLinear(c: f32): f32 {
  return select(c <= 0.04045, c / 12.92, pow((c + 0.055) / 1.055, 2.4));
}

/**
 * The high 32 bits of the 64-bit product a * b, floor(a * b / 2^32), in u32 arithmetic on 16-bit
 * halves (every partial product and sum fits 32 bits): a uniform u32 a scaled to [0, b).
 */
export function mulHi(a: u32, b: u32): u32 {
  const aL: u32 = a & 0xffff;
  const aH: u32 = a >> 16;
  const bL: u32 = b & 0xffff;
  const bH: u32 = b >> 16;
  const lh: u32 = aL * bH;
  const hl: u32 = aH * bL;
  const mid: u32 = ((aL * bL) >> 16) + (lh & 0xffff) + (hl & 0xffff);
  return aH * bH + (lh >> 16) + (hl >> 16) + (mid >> 16);
}

/** The centre of pixel x of `size` on [0, 1]: (x + 0.5) / size, one rounding (x + 0.5 is exact). */
function centre(x: u32, size: i32): f32 {
  return (f32(x) + 0.5) / f32(size);
}

/**
 * The word holding sample c of pixel (x, y) and the sample's lane in it, from the 64-bit sample
 * index s = (y * width + x) * channels + c formed as (hi, lo) u32 halves: word = s >> 2 (8-bit) or
 * s >> 1 (16-bit), written to word[0], lane = s & 3 or s & 1 to word[1]. Exact for any pixel of
 * any image whose words fit u32 (2^34 8-bit samples).
 */
export function sampleWord(cfg: Const<ImageConfig>, x: u32, y: u32, c: u32, word: u32[]): void {
  const w = u32(cfg.width);
  const n = u32(cfg.channels);
  // p = y * w + x
  let lo: u32 = y * w;
  let hi: u32 = mulHi(y, w);
  lo = lo + x;
  hi = hi + select(lo < x, 1, 0);
  // s = p * n + c
  hi = hi * n + mulHi(lo, n);
  lo = lo * n;
  lo = lo + c;
  hi = hi + select(lo < c, 1, 0);
  if (cfg.bits16) {
    word[0] = (hi << 31) | (lo >> 1);
    word[1] = lo & 1;
  } else {
    word[0] = (hi << 30) | (lo >> 2);
    word[1] = lo & 3;
  }
}

/** Sample c of pixel (x, y), scaled to [0, 1] (and made linear with cfg.linear, unless alpha). */
function sampleAt(cfg: Const<ImageConfig>, pixels: Buf<u32>, pixelsHi: Buf<u32>, x: u32, y: u32, c: i32): f32 {
  const at = localArray<u32>(2);
  sampleWord(cfg, x, y, u32(c), at);
  const part = u32(cfg.partWords);
  let bits: u32 = 0;
  if (at[0] < part) {
    bits = pixels[at[0]];
  } else {
    bits = pixelsHi[at[0] - part];
  }
  let v: f32 = 0.0;
  if (cfg.bits16) {
    v = f32((bits >> (at[1] * 16)) & 65535) / 65535.0;
  } else {
    v = f32((bits >> (at[1] * 8)) & 255) / 255.0;
  }
  if (cfg.linear && c < colorChannels(cfg.channels)) {
    v = srgbToLinear(v);
  }
  return v;
}

/**
 * Thread i: a point (u, v) uniform in [0, 1)^2 from a hash of (seed, i), written to coords[2i],
 * coords[2i + 1], and targets[i * channels + c] = the image at pixel position (u * width - 0.5,
 * v * height - 0.5) (pixel x covers [x, x + 1) in units of pixels, its centre at x + 0.5),
 * bilinearly interpolated with clamp-to-edge (each corner decoded, and made linear with cfg.linear,
 * before interpolating).
 * @kernel
 */
export function sampleImage(i: u32, cfg: Const<ImageConfig>, pixels: Buf<u32>, pixelsHi: Buf<u32>, seed: u32, coords: Buf<f32>, targets: Buf<f32>): void {
  const key = fmix32(i);
  const u = unitFloat(hashKey(key, seed, 0x2545f491));
  const v = unitFloat(hashKey(key, seed, 0x9e3779b9));
  coords[i * 2] = u;
  coords[i * 2 + 1] = v;
  // One rounding of the exact u * width - 0.5; the fraction px - floor(px) is then exact.
  const px = fma(u, f32(cfg.width), -0.5);
  const py = fma(v, f32(cfg.height), -0.5);
  const fx0 = floor(px);
  const fy0 = floor(py);
  const fx = px - fx0;
  const fy = py - fy0;
  // px is in [-0.5, width - 0.5): the lower corner is -1 to width - 1, the upper 0 to width.
  const x0 = u32(max(i32(fx0), 0));
  const x1 = u32(min(i32(fx0) + 1, cfg.width - 1));
  const y0 = u32(max(i32(fy0), 0));
  const y1 = u32(min(i32(fy0) + 1, cfg.height - 1));
  for (let c = 0; c < cfg.channels; c++) {
    const a = sampleAt(cfg, pixels, pixelsHi, x0, y0, c);
    const b = sampleAt(cfg, pixels, pixelsHi, x1, y0, c);
    const d = sampleAt(cfg, pixels, pixelsHi, x0, y1, c);
    const e = sampleAt(cfg, pixels, pixelsHi, x1, y1, c);
    const top = fma(fx, b - a, a);
    const bottom = fma(fx, e - d, d);
    targets[i * u32(cfg.channels) + u32(c)] = fma(fy, bottom - top, top);
  }
}

/** Point i is pixel (x, y): its centre to coords[2i], coords[2i + 1], its stored samples to targets[i * channels + c]. */
function writePixel(i: u32, cfg: Const<ImageConfig>, pixels: Buf<u32>, pixelsHi: Buf<u32>, x: u32, y: u32, coords: Buf<f32>, targets: Buf<f32>): void {
  coords[i * 2] = centre(x, cfg.width);
  coords[i * 2 + 1] = centre(y, cfg.height);
  for (let c = 0; c < cfg.channels; c++) {
    targets[i * u32(cfg.channels) + u32(c)] = sampleAt(cfg, pixels, pixelsHi, x, y, c);
  }
}

/**
 * Thread i: pixel (x, y) uniform over the image from the hashes of (seed, i) that sampleImage
 * draws its point from (x = floor(h * width / 2^32), y likewise: each pixel drawn with probability
 * 1 / (width * height) up to one part in 2^32 / width), its centre ((x + 0.5) / width,
 * (y + 0.5) / height) written to coords[2i], coords[2i + 1] (as pixelCenters writes it), and
 * targets[i * channels + c] = its stored sample c (decoded, and made linear with cfg.linear).
 * @kernel
 */
export function samplePixels(i: u32, cfg: Const<ImageConfig>, pixels: Buf<u32>, pixelsHi: Buf<u32>, seed: u32, coords: Buf<f32>, targets: Buf<f32>): void {
  const key = fmix32(i);
  const x = mulHi(hashKey(key, seed, 0x2545f491), u32(cfg.width));
  const y = mulHi(hashKey(key, seed, 0x9e3779b9), u32(cfg.height));
  writePixel(i, cfg, pixels, pixelsHi, x, y, coords, targets);
}

/**
 * A bijection of [0, n) keyed by `key`, for 1 <= n <= mask + 1 where mask = 2^k - 1 is the least
 * such: a keyed permutation of the k-bit integers (four rounds of xor with a key word,
 * multiplication by an odd constant modulo 2^k and a xorshift by about k / 2, each a bijection of
 * [0, 2^k)) applied again until the value falls below n (cycle walking: since 2^k < 2n, at most
 * two rounds on average). Counter-based: the image of r depends on (r, n, key) alone.
 */
export function shufflePixel(r: u32, n: u32, mask: u32, key: u32): u32 {
  const shift: u32 = max((32 - clz(mask)) / 2, 1);
  const k1 = fmix32(key ^ 0x6a09e667);
  const k2 = fmix32(key ^ u32(0xbb67ae85));
  const k3 = fmix32(key ^ 0x3c6ef372);
  const k4 = fmix32(key ^ u32(0xa54ff53a));
  let p: u32 = r;
  // The walk from r stays on r's cycle of the permutation, which r itself (< n) closes: it ends
  // within the cycle's length, at most 2^k steps (mask is a run-time value, so this stays a loop).
  for (let t: u32 = 0; t <= mask; t++) {
    p = ((p ^ k1) * 0x2c1b3c6d) & mask;
    p ^= p >> shift;
    p = ((p ^ k2) * 0x297a2d39) & mask;
    p ^= p >> shift;
    p = ((p ^ k3) * u32(0x85ebca6b)) & mask;
    p ^= p >> shift;
    p = ((p ^ k4) * u32(0xc2b2ae35)) & mask;
    p ^= p >> shift;
    if (p < n) break;
  }
  return p;
}

/**
 * Thread i: the pixel at position base + i of a shuffled stream over the image's n = width * height
 * pixels, in epochs of n positions: position q is pixel shufflePixel(q mod n, n, mask, key of epoch
 * epoch + floor(q / n)), so each epoch draws every pixel exactly once, in an order of its own (the
 * key mixes the seed and the epoch). Writes its centre and stored values as samplePixels does.
 * The caller keeps base < n and n + threads <= 2^32 (no position overflows u32), and passes
 * mask = 2^k - 1 for the least k with 2^k >= n.
 * @kernel
 */
export function samplePixelsShuffled(i: u32, cfg: Const<ImageConfig>, pixels: Buf<u32>, pixelsHi: Buf<u32>, seed: u32, epoch: u32, base: u32, mask: u32, coords: Buf<f32>, targets: Buf<f32>): void {
  const n: u32 = u32(cfg.width) * u32(cfg.height);
  const q: u32 = base + i;
  const lap: u32 = q / n;
  const p = shufflePixel(q - lap * n, n, mask, fmix32(seed ^ fmix32(epoch + lap)));
  const y: u32 = p / u32(cfg.width);
  const x: u32 = p - y * u32(cfg.width);
  writePixel(i, cfg, pixels, pixelsHi, x, y, coords, targets);
}

/**
 * Thread i: the centre ((x + 0.5) / width, (y + 0.5) / height) of pixel i of the block of `cols`
 * columns from column x0 and rows from row0 (x = x0 + i % cols, y = row0 + i / cols), written to
 * coords[2i], coords[2i + 1].
 * @kernel
 */
export function pixelCenters(i: u32, cfg: Const<ImageConfig>, x0: u32, row0: u32, cols: u32, coords: Buf<f32>): void {
  coords[i * 2] = centre(x0 + i % cols, cfg.width);
  coords[i * 2 + 1] = centre(row0 + i / cols, cfg.height);
}

// The gigapixel test photograph (`bun scripts/mosaic.ts`, docs/gigapixel.md): a deterministic test photograph of any size (by default Tokyo's, 56718 x 21450, 1.22 gigapixels)
// made of the Kodak photographs as a mosaic: cells of 768 x 512, each a Kodak image chosen by a
// seeded generator, portrait ones turned a quarter (90 or 270 degrees), each mirrored or not
// (horizontally, vertically: landscape ones may so be turned 180 degrees); the last column and row
// cropped. Written band by band (one row of cells in memory) into a raw VIPS file, then encoded by
// sharp, which streams it, into the format --out names (.png, .tif/.tiff: tiled deflate BigTIFF,
// .v: the raw file itself). Not committed: by default it goes to the cache,
// <cache>/mosaic/mosaic-WxH-seedS.png, and a file already there is reused.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, extname, join, resolve } from "node:path";
import sharp from "sharp";
import { ExpectedError, UsageError } from "../dsl/errors.ts";
import { seededUniform } from "../modules/random.ts";
import { defaultCacheDir } from "../runtime/cache.ts";
import { VipsWriter } from "./vips_file.ts";

export const KODAK_DIR = resolve(import.meta.dir, "../../shared/data/kodak");
export const CELL = { width: 768, height: 512 } as const;
/** Tokyo's size (the learned-probing seed's photograph). */
export const GIGAPIXEL = { width: 56718, height: 21450 } as const;

export interface MosaicOptions {
  width?: number;
  height?: number;
  seed?: number;
  /** The file to write (.png, .tif, .tiff or .v); default: mosaicPath(width, height, seed). */
  out?: string;
  /** Directory of the source photographs (PNG); default ../shared/data/kodak. */
  kodak?: string;
  /** Write even when `out` exists. */
  force?: boolean;
  log?: (message: string) => void;
}

/** A cell of the mosaic: its top-left pixel, the source photograph (index) and its orientation. */
export interface MosaicCell {
  x: number;
  y: number;
  image: number;
  /** bit 0: mirrored left-right, bit 1: mirrored top-bottom (both: turned 180 degrees); portrait sources are first turned 90 degrees. */
  orientation: number;
}

/** Where the mosaic of this size and seed goes by default (in the cache). */
export function mosaicPath(width: number, height: number, seed: number): string {
  return join(defaultCacheDir(), "mosaic", `mosaic-${width}x${height}-seed${seed}.png`);
}

/** The cells, row by row, from one seeded generator: two draws per cell (photograph, orientation). */
export function mosaicLayout(width: number, height: number, seed: number, images: number): MosaicCell[] {
  const next = seededUniform(seed);
  const cells: MosaicCell[] = [];
  for (let y = 0; y < height; y += CELL.height) {
    for (let x = 0; x < width; x += CELL.width) cells.push({ x, y, image: Math.floor(next() * images), orientation: Math.floor(next() * 4) });
  }
  return cells;
}

/** A source photograph as a 768 x 512 RGB cell in the given orientation (raw samples). */
export async function orientedCell(path: string, orientation: number): Promise<Uint8Array> {
  const meta = await sharp(path).metadata();
  let pipe = sharp(path).removeAlpha().toColourspace("srgb");
  if ((meta.height ?? 0) > (meta.width ?? 0)) pipe = sharp(await pipe.rotate(90).png().toBuffer());
  if (orientation & 1) pipe = pipe.flop();
  if (orientation & 2) pipe = pipe.flip();
  const { data, info } = await pipe.resize(CELL.width, CELL.height, { fit: "cover" }).raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new ExpectedError(`${path}: ${info.channels} channels after conversion to RGB`);
  return data;
}

function sources(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    throw new ExpectedError(`--kodak: ${dir} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const pngs = names.filter((n) => n.toLowerCase().endsWith(".png")).sort();
  if (pngs.length === 0) throw new ExpectedError(`--kodak: ${dir} holds no .png photographs`);
  return pngs.map((n) => join(dir, n));
}

const FORMATS = [".png", ".tif", ".tiff", ".v"];

/** Writes the mosaic (see the file's comment) and gives its path; an existing file is reused unless `force`. */
export async function buildMosaic(opts: MosaicOptions = {}): Promise<string> {
  const width = opts.width ?? GIGAPIXEL.width;
  const height = opts.height ?? GIGAPIXEL.height;
  const seed = opts.seed ?? 1;
  for (const [flag, v, max] of [["--width", width, 2 ** 31 - 1], ["--height", height, 2 ** 31 - 1], ["--seed", seed, 2 ** 32 - 1]] as const) {
    if (!Number.isSafeInteger(v) || v < (flag === "--seed" ? 0 : 1) || v > max) throw new UsageError(`${flag}: ${v} is not an integer from ${flag === "--seed" ? 0 : 1} to ${max}`);
  }
  const out = resolve(opts.out ?? mosaicPath(width, height, seed));
  const ext = extname(out).toLowerCase();
  if (!FORMATS.includes(ext)) throw new UsageError(`--out: ${out} names no format written (allowed: ${FORMATS.join(", ")})`);
  if (!opts.force && existsSync(out) && statSync(out).isFile()) return out;
  const files = sources(opts.kodak ?? KODAK_DIR);
  const cells = mosaicLayout(width, height, seed, files.length);
  try {
    mkdirSync(dirname(out), { recursive: true });
  } catch (e) {
    throw new ExpectedError(`--out: cannot create the directory ${dirname(out)} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const tmp = join(dirname(out), `.${basename(out)}.${process.pid}.tmp`);
  const raw = ext === ".v" ? tmp : `${tmp}.v`;
  const log = opts.log ?? (() => {});
  try {
    let writer: VipsWriter;
    try {
      writer = new VipsWriter(raw, { width, height, channels: 3, bits: 8 });
    } catch (e) {
      throw new ExpectedError(`--out: cannot write in ${dirname(out)} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    const variants = new Map<number, Uint8Array>();
    const t0 = performance.now();
    let c = 0;
    for (let y = 0; y < height; y += CELL.height) {
      const rows = Math.min(CELL.height, height - y);
      const band = new Uint8Array(rows * width * 3);
      for (let x = 0; x < width; x += CELL.width, c++) {
        const cell = cells[c]!;
        const key = cell.image * 4 + cell.orientation;
        let src = variants.get(key);
        if (!src) variants.set(key, (src = await orientedCell(files[cell.image]!, cell.orientation)));
        const cols = Math.min(CELL.width, width - x) * 3;
        for (let r = 0; r < rows; r++) band.set(src.subarray(r * CELL.width * 3, r * CELL.width * 3 + cols), (r * width + x) * 3);
      }
      writer.write(band);
    }
    writer.close();
    log(`mosaic: ${width} x ${height} (${cells.length} cells) laid out in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    if (ext !== ".v") {
      const t1 = performance.now();
      const pipe = sharp(raw, { limitInputPixels: false });
      await (ext === ".png" ? pipe.png() : pipe.tiff({ compression: "deflate", tile: true, tileWidth: 256, tileHeight: 256, bigtiff: true })).toFile(tmp);
      log(`mosaic: encoded ${ext.slice(1).toUpperCase()} in ${((performance.now() - t1) / 1000).toFixed(1)} s`);
    }
    renameSync(tmp, out);
  } finally {
    rmSync(tmp, { force: true });
    rmSync(`${tmp}.v`, { force: true });
  }
  return out;
}

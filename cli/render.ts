// `bun run render --checkpoint <file> [--width W --height H | --scale S] --out image.png`: evaluates
// a trained field at any resolution, in tiles of rows (bounded memory), on the EMA weights when the
// checkpoint has them (--raw: the trained parameters themselves).
import { parseArgs } from "node:util";
import { CacheDirError } from "../runtime/cache.ts";
import { UsageError } from "../runtime/cli_input.ts";
import { ConfigError } from "../modules/options.ts";
import { CheckpointError, readCheckpoint } from "../train/checkpoint.ts";
import { parseTrainConfig } from "../train/config.ts";
import { quantize } from "../train/eval.ts";
import { ImageError, writeImage } from "../train/image.ts";
import { createField, fieldOf, loadCheckpointWeights } from "../train/trainer.ts";

const USAGE = "usage: bun run render --checkpoint FILE [--width W --height H | --scale S] --out IMAGE.png [--raw] [--backend auto|cuda|cpu|js]";
/** Pixels per tile. */
const TILE = 1 << 16;


function size(values: Record<string, string | boolean | undefined>, trained: { width: number; height: number }): { width: number; height: number } {
  const num = (flag: string): number | undefined => {
    const v = values[flag];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (typeof v !== "string" || !Number.isFinite(n) || n <= 0) throw new UsageError(`--${flag}: ${JSON.stringify(v)} is not a positive number`);
    return n;
  };
  const [w, h, s] = [num("width"), num("height"), num("scale")];
  if (s !== undefined && (w !== undefined || h !== undefined)) throw new UsageError("give --scale or --width/--height, not both");
  const aspect = trained.height / trained.width;
  const width = Math.round(w ?? (h !== undefined ? h / aspect : trained.width * (s ?? 1)));
  const height = Math.round(h ?? (w !== undefined ? w * aspect : trained.height * (s ?? 1)));
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) throw new UsageError(`the image would be ${width}x${height} pixels`);
  if (width * height > 2 ** 31) throw new UsageError(`${width}x${height} is more than 2^31 pixels`);
  return { width, height };
}

export async function main(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { checkpoint: { type: "string" }, width: { type: "string" }, height: { type: "string" }, scale: { type: "string" }, out: { type: "string" }, raw: { type: "boolean" }, backend: { type: "string" }, help: { type: "boolean" } },
    }));
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) return console.log(USAGE), 0;
  try {
    if (typeof values.checkpoint !== "string") throw new UsageError("--checkpoint is required");
    if (typeof values.out !== "string") throw new UsageError("--out is required");
    const ck = await readCheckpoint(values.checkpoint);
    const cfg = parseTrainConfig(ck.config);
    const trained = ck.meta.image as { width: number; height: number; channels: number; bits: 8 | 16 };
    const { width, height } = size(values, trained);
    let backend = cfg.backend;
    if (values.backend !== undefined) {
      try {
        backend = parseTrainConfig({ ...cfg, backend: values.backend }).backend;
      } catch (e) {
        throw new UsageError(`--${(e as Error).message}`); // "backend: ... (allowed: ...)"
      }
    }
    const { grid, mlp } = await createField(cfg, trained.channels, { backend });
    try {
      loadCheckpointWeights({ grid, mlp }, ck, values.raw === true);
      const field = fieldOf({ grid, mlp });
      const C = trained.channels;
      const pixels = trained.bits === 16 ? new Uint16Array(width * height * C) : new Uint8Array(width * height * C);
      const rows = Math.max(1, Math.floor(TILE / width));
      const coords = new Float32Array(2 * width * rows);
      let buf = grid.alloc(coords.length);
      for (let y0 = 0; y0 < height; y0 += rows) {
        const h = Math.min(rows, height - y0);
        for (let y = 0; y < h; y++)
          for (let x = 0; x < width; x++) {
            coords[2 * (y * width + x)] = (x + 0.5) / width;
            coords[2 * (y * width + x) + 1] = (y0 + y + 0.5) / height;
          }
        if (h < rows) buf = grid.alloc(2 * width * h); // the last, shorter tile
        buf.upload(coords.subarray(0, 2 * width * h));
        quantize(field(buf, width * h), pixels, y0 * width * C, { channels: C, bits: trained.bits, colorspace: cfg.colorspace });
      }
      await writeImage(values.out as string, { width, height, channels: C, bits: trained.bits }, pixels);
      console.log(`${values.out}: ${width}x${height}, ${C} channel${C > 1 ? "s" : ""}, ${trained.bits}-bit, from ${values.checkpoint} (step ${ck.step}${values.raw ? "" : ck.arrays["ema.encoding"] ? ", EMA weights" : ""}; backend ${grid.backend})`);
      return 0;
    } finally {
      grid.close();
      mlp.close();
    }
  } catch (e) {
    if (e instanceof UsageError) return console.error(`error: ${e.message}\n${USAGE}`), 2;
    if (e instanceof ConfigError || e instanceof CheckpointError || e instanceof ImageError || e instanceof CacheDirError) return console.error(`error: ${(e as Error).message}`), 2;
    throw e;
  }
}

if (import.meta.main) process.exit(await main(process.argv.slice(2)));

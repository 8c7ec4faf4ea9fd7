// `bun run render --checkpoint <file> [--width W --height H | --scale S] --out image.png`: evaluates
// a trained field at any resolution, in tiles of rows (bounded memory), on the EMA weights when the
// checkpoint has them (--raw: the trained parameters themselves). `--model <file>` renders an
// exported model (`bun run export`) the same way; either flag takes either kind of file (told
// apart by their magic, and said so).
import { backendRequest } from "../runtime/backend.ts";
import { UsageError } from "../dsl/errors.ts";
import { checkOutputFile } from "../runtime/files.ts";
import { checkMemory, MemoryError } from "../runtime/memory.ts";
import type { Encoding } from "../modules/encoding.ts";
import type { Mlp } from "../modules/mlp.ts";
import { readCheckpoint } from "../train/checkpoint.ts";
import { parseTrainConfig, type TrainConfig } from "../train/config.ts";
import { quantize } from "../train/eval.ts";
import { describeImage, imageFormat, writeImage } from "../train/image.ts";
import { fileKind, imageOf, loadModelWeights, readModelFile } from "../train/model_file.ts";
import { checkpointUses, createField, fieldOf, loadCheckpointWeights } from "../train/field.ts";
import { parseFlags } from "./flags.ts";
import { runCommand } from "./run.ts";

const USAGE = "usage: bun run render (--checkpoint FILE | --model FILE.ngp) [--width W --height H | --scale S] --out IMAGE.png|.jpg|.webp|.tif [--raw] [--backend auto|cuda|cpu|js]";
/** Pixels per tile. */
const TILE = 1 << 16;


function size(values: Record<string, string | boolean | undefined>, trained: { width: number; height: number }): { width: number; height: number } {
  const num = (flag: string): number | undefined => {
    const v = values[flag];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (typeof v !== "string" || !Number.isFinite(n) || n <= 0) throw new UsageError(`--${flag}: ${JSON.stringify(v)} is not a positive number`);
    if (flag !== "scale" && !Number.isInteger(n)) throw new UsageError(`--${flag}: ${v} is not an integer`); // pixels, as train's integer flags
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

/** What a field is rendered from: its configuration, trained image, and how to load its weights. */
interface Source {
  cfg: TrainConfig;
  image: { width: number; height: number; channels: number; bits: 8 | 16 };
  load(f: { encoding: Encoding; mlp: Mlp }): void;
  /** For the closing line: "from FILE (...)". */
  describe: string;
}

async function checkpointSource(file: string, raw: boolean, note: string): Promise<Source> {
  const ck = await readCheckpoint(file);
  return {
    image: imageOf(ck, "render needs a checkpoint trained on an image"),
    cfg: parseTrainConfig(ck.config),
    load: (f) => loadCheckpointWeights(f, ck, raw),
    describe: `${file} (${note ? `a checkpoint ${note}` : ""}step ${ck.step}${raw ? "" : checkpointUses(ck) === "ema" ? ", EMA weights" : ck.meta.weights === "raw" ? ", raw weights (a lower held-out error than the EMA's)" : ""}`,
  };
}

async function modelSource(file: string, raw: boolean, note: string): Promise<Source> {
  if (raw) throw new UsageError(`--raw: ${file} is an exported model, whose weights were chosen when it was exported (bun run export --raw)`);
  const m = await readModelFile(file);
  const features = m.features instanceof Float16Array ? "f16" : "f32";
  return {
    cfg: parseTrainConfig(m.config),
    image: m.image,
    load: (f) => loadModelWeights(f, m),
    describe: `${file} (${note}exported model of step ${m.source.step}, ${m.source.weights === "ema" ? "EMA" : "trained"} weights, ${features} features`,
  };
}

/**
 * Refuses (MemoryError) an image whose buffers the machine cannot hold, before any is allocated: the
 * samples, the PNG encoded from them (at most about as large), and one tile's coordinates, features,
 * hidden activations and outputs (f32; a tile is at least one row).
 */
function checkRenderMemory(out: string, img: { width: number; height: number; channels: number; bits: 8 | 16 }, cfg: TrainConfig): void {
  const samples = img.width * img.height * img.channels * (img.bits / 8);
  const tile = Math.max(1, Math.floor(TILE / img.width)) * img.width;
  const floats = 2 + cfg.encoding.levels * cfg.encoding.featuresPerLevel + 2 * cfg.network.width + img.channels;
  try {
    checkMemory(2 * samples + 4 * tile * floats, `${out}: a ${describeImage(img)} image`, Math.max(samples, 4 * tile * floats));
  } catch (e) {
    throw e instanceof MemoryError ? new MemoryError(`${e.message}: render it smaller (--width/--height or --scale)`) : e;
  }
}

/** Evaluates the field at width x height pixel centres in tiles of rows; the quantized pixels. */
function renderTiles(f: { encoding: Encoding; mlp: Mlp }, out: { width: number; height: number; channels: number; bits: 8 | 16 }, colorspace: TrainConfig["colorspace"]): Uint8Array | Uint16Array {
  const { width, height, channels: C, bits } = out;
  const { encoding } = f;
  const field = fieldOf(f);
  const pixels = bits === 16 ? new Uint16Array(width * height * C) : new Uint8Array(width * height * C);
  const rows = Math.max(1, Math.floor(TILE / width));
  const coords = new Float32Array(2 * width * rows);
  let buf = encoding.alloc(coords.length);
  for (let y0 = 0; y0 < height; y0 += rows) {
    const h = Math.min(rows, height - y0);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < width; x++) {
        coords[2 * (y * width + x)] = (x + 0.5) / width;
        coords[2 * (y * width + x) + 1] = (y0 + y + 0.5) / height;
      }
    if (h < rows) buf = encoding.alloc(2 * width * h); // the last, shorter tile
    buf.upload(coords.subarray(0, 2 * width * h));
    quantize(field(buf, width * h), pixels, y0 * width * C, { channels: C, bits, colorspace });
  }
  return pixels;
}

export async function main(argv: string[]): Promise<number> {
  const values = parseFlags(argv, {
    checkpoint: { type: "string" }, model: { type: "string" }, width: { type: "string" }, height: { type: "string" }, scale: { type: "string" }, out: { type: "string" }, raw: { type: "boolean" }, backend: { type: "string" }, help: { type: "boolean" },
  }).values as Record<string, string | boolean | undefined>;
  if (values.help) return console.log(USAGE), 0;
  if (typeof values.checkpoint === "string" && typeof values.model === "string") throw new UsageError("give --checkpoint or --model, not both");
  if (typeof values.checkpoint !== "string" && typeof values.model !== "string") throw new UsageError("--checkpoint is required (or --model, an exported model)");
  if (typeof values.out !== "string") throw new UsageError("--out is required");
  checkOutputFile({ flag: "--out", path: values.out }, [{ flag: "--checkpoint", path: values.checkpoint as string | undefined }, { flag: "--model", path: values.model as string | undefined }]);
  const raw = values.raw === true;
  // The flag says what the file should be; its magic says what it is (a missing or foreign
  // file is refused by the reader the flag names).
  const asModel = typeof values.model === "string";
  const file = (asModel ? values.model : values.checkpoint) as string;
  const kind = (await fileKind(file)) ?? (asModel ? "model" : "checkpoint");
  const note = kind === "model" && !asModel ? "given to --checkpoint; " : kind === "checkpoint" && asModel ? "given to --model; " : "";
  const src = kind === "model" ? await modelSource(file, raw, note) : await checkpointSource(file, raw, note);
  if (note) console.error(`note: ${file} is ${kind === "model" ? "an exported model (bun run export), not a checkpoint" : "a checkpoint, not an exported model"}: rendering it as one`);
  const { cfg, image: trained } = src;
  const { width, height } = size(values, trained);
  imageFormat(values.out, trained); // a name whose format cannot hold the image is refused before rendering
  const backend = backendRequest(values.backend as string | undefined, cfg.backend);
  checkRenderMemory(values.out, { width, height, channels: trained.channels, bits: trained.bits }, cfg);
  const { encoding, mlp } = await createField(cfg, trained.channels, { backend });
  try {
    src.load({ encoding, mlp });
    const C = trained.channels;
    const pixels = renderTiles({ encoding, mlp }, { width, height, channels: C, bits: trained.bits }, cfg.colorspace);
    await writeImage(values.out as string, { width, height, channels: C, bits: trained.bits }, pixels);
    console.log(`${values.out}: ${width}x${height}, ${C} channel${C > 1 ? "s" : ""}, ${trained.bits}-bit, from ${src.describe}; backend ${encoding.backend})`);
    return 0;
  } finally {
    encoding.close();
    mlp.close();
  }
}

if (import.meta.main) await runCommand(main, { usage: USAGE });

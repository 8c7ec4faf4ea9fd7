// Exported models (`bun run export`): exactly what inference needs, in the checkpoint's container
// (train/checkpoint.ts) with its own magic. No logits, no optimizer state, no EMA twin.
//
// Layout (little-endian):
//   0   8 bytes  magic "NGPKMODL"
//   8   u32      format version (MODEL_FORMAT_VERSION)
//   12  u64      header length H in bytes
//   20  H bytes  the header, UTF-8 JSON:
//                {"headerSha256":"<hex>","config":<the train config>,
//                 "image":{"width","height","channels","bits"},
//                 "source":{"step","weights":"ema"|"raw"},
//                 "probing":{"range":N_p,"rows":R,"bitsPerIndex":b} (only with learned probing),
//                 "arrays":[{"name","type","offset","length"}...],"payload":{"bytes":P,"sha256":"<hex>"}}
//   then zeros up to D = the next multiple of 64, and the payload, P bytes from D, with no padding
//   (each array starts at a multiple of its element size, which their order makes automatic):
//     "network.params"    f32, the network's parameters (mlpParamCount values)
//     "encoding.features" f16 or f32, the hash grid's features (HashGrid.paramCount values)
//     "probing.indices"   u8, ceil(R * b / 8) bytes: each codebook row's argmax slot, b = log2(N_p)
//                         bits per row, packed little-endian: row r's index occupies bits
//                         r*b .. r*b+b-1 of the stream, where bit k of the stream is bit (k mod 8)
//                         of byte floor(k / 8), the index's least significant bit first; the unused
//                         high bits of the last byte are zero.
// So a file is its header (the 20-byte prefix, the JSON and up to 63 zeros) plus
// HashGrid.memory(2 or 4).inferenceBytes + 4 * the network's parameters.
import { open, stat } from "node:fs/promises";
import { notRegularFile } from "../runtime/files.ts";
import { argmaxRows } from "../modules/hashgrid.ts";
import type { Encoding } from "../modules/encoding.ts";
import type { Mlp } from "../modules/mlp.ts";
import { type Checkpoint, CheckpointError, type CheckpointProblem, type ContainerFormat, MAGIC as CHECKPOINT_MAGIC, notJson, readContainer, trainedOn, writeContainer } from "./checkpoint.ts";
import { parseTrainConfig } from "./config.ts";
import { checkpointEncoding, checkpointUses, checkpointWeights, createField } from "./field.ts";
import { ExpectedError } from "../dsl/errors.ts";

export const MODEL_MAGIC = "NGPKMODL";
/** The format this code writes; it reads versions 1..MODEL_FORMAT_VERSION. */
export const MODEL_FORMAT_VERSION = 1;

/** A model file that cannot be written, read or used; the message names the file and the problem. */
export class ModelFileError extends ExpectedError {
  /** The model file ("" when not given). */
  readonly file: string;
  readonly problem: CheckpointProblem;
  constructor(message: string, opts: { file?: string; problem?: CheckpointProblem } = {}) {
    super(message);
    this.name = "ModelFileError";
    this.file = opts.file ?? "";
    this.problem = opts.problem ?? "incompatible";
  }
}

export interface ImageMeta {
  width: number;
  height: number;
  channels: number;
  bits: 8 | 16;
}

export interface ModelFile {
  /** The file's format version. */
  version: number;
  /** The training configuration (JSON, as in the checkpoint). */
  config: unknown;
  /** The trained image's size, channels and depth (the default rendering). */
  image: ImageMeta;
  /** Where the weights came from: the checkpoint's step, its averages (ema) or trained weights (raw). */
  source: { step: number; weights: "ema" | "raw" };
  /** The hash grid's features, f16 or f32. */
  features: Float16Array | Float32Array;
  /** The network's parameters. */
  network: Float32Array;
  /** Learned probing: N_p, the codebook rows and their argmax slots packed at log2(N_p) bits each. */
  probing?: { range: number; rows: number; indices: Uint8Array };
  /** The file it was read from (set by readModelFile; not written). */
  path?: string;
}

const int = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
const isImage = (x: unknown): x is ImageMeta => {
  const i = x as ImageMeta;
  return i !== null && typeof i === "object" && int(i.width) && i.width > 0 && int(i.height) && i.height > 0 && int(i.channels) && i.channels > 0 && (i.bits === 8 || i.bits === 16);
};
const bitsOf = (range: number) => Math.log2(range);
const validRange = (r: unknown) => int(r) && (r as number) >= 2 && Number.isInteger(Math.log2(r as number));

const MODEL: ContainerFormat = {
  magic: MODEL_MAGIC,
  version: MODEL_FORMAT_VERSION,
  what: "model file",
  align: "natural",
  typed: true,
  error: (message, file, problem) => new ModelFileError(message, { file, problem }),
  valid: (h) => {
    const src = h.source as ModelFile["source"];
    const p = h.probing as { range: unknown; rows: unknown; bitsPerIndex: unknown } | undefined;
    return (
      h.config !== null && typeof h.config === "object" && isImage(h.image) &&
      src !== null && typeof src === "object" && int(src.step) && (src.weights === "ema" || src.weights === "raw") &&
      (p === undefined || (p !== null && typeof p === "object" && validRange(p.range) && int(p.rows) && p.bitsPerIndex === bitsOf(p.range as number)))
    );
  },
};

/** Bytes of `rows` indices packed at `bits` bits each. */
export const packedBytes = (rows: number, bits: number) => Math.ceil((rows * bits) / 8);

/** Packs indices (each < 2^bits) at `bits` bits each, little-endian (see the layout above). */
export function packIndices(indices: Uint32Array, bits: number): Uint8Array {
  const out = new Uint8Array(packedBytes(indices.length, bits));
  for (let r = 0; r < indices.length; r++) {
    const v = indices[r]!;
    if (v >= 2 ** bits) throw new RangeError(`index ${v} of row ${r} does not fit in ${bits} bits`);
    for (let b = 0; b < bits; b++) if ((v >>> b) & 1) out[(r * bits + b) >>> 3]! |= 1 << ((r * bits + b) & 7);
  }
  return out;
}

/** The `rows` indices packed at `bits` bits each by packIndices. */
export function unpackIndices(packed: Uint8Array, rows: number, bits: number): Uint32Array {
  const out = new Uint32Array(rows);
  for (let r = 0; r < rows; r++) {
    let v = 0;
    for (let b = 0; b < bits; b++) v |= ((packed[(r * bits + b) >>> 3]! >>> ((r * bits + b) & 7)) & 1) << b;
    out[r] = v;
  }
  return out;
}

/** Writes a model file atomically (a temporary file, fsync, rename), as checkpoints are written. */
export async function writeModelFile(path: string, m: Omit<ModelFile, "version" | "path">): Promise<void> {
  const invalid = (why: string) => new ModelFileError(`model file ${path}: cannot write it: ${why}`, { file: path, problem: "invalid" });
  const bad = notJson(m.config, "config");
  if (bad) throw invalid(bad);
  if (!isImage(m.image)) throw invalid(`image ${JSON.stringify(m.image)} is not {width, height, channels, bits: 8 | 16}`);
  if (!(m.network instanceof Float32Array)) throw invalid("the network's parameters are not a Float32Array");
  if (!(m.features instanceof Float32Array || m.features instanceof Float16Array)) throw invalid("the features are not a Float32Array or a Float16Array");
  const fields: Record<string, unknown> = {
    config: m.config,
    image: { width: m.image.width, height: m.image.height, channels: m.image.channels, bits: m.image.bits },
    source: { step: m.source.step, weights: m.source.weights },
  };
  const arrays: Record<string, Float32Array | Float16Array | Uint8Array> = { "network.params": m.network, "encoding.features": m.features };
  if (m.probing) {
    const { range, rows, indices } = m.probing;
    if (!validRange(range) || !int(rows)) throw invalid(`probing range ${range} is not a power of two >= 2, or rows ${rows} is not an integer >= 0`);
    if (indices.length !== packedBytes(rows, bitsOf(range))) throw invalid(`${indices.length} bytes of packed indices, ${rows} rows of ${bitsOf(range)} bits need ${packedBytes(rows, bitsOf(range))}`);
    fields.probing = { range, rows, bitsPerIndex: bitsOf(range) };
    arrays["probing.indices"] = indices;
  }
  await writeContainer(path, MODEL, fields, arrays);
}

/** Reads and checks a model file; the arrays are views of the file's one buffer. */
export async function readModelFile(path: string): Promise<ModelFile> {
  const { version, header, arrays } = await readContainer(path, MODEL);
  const corrupt = (why: string) => new ModelFileError(`model file ${path}: is corrupt: ${why}`, { file: path, problem: "corrupt" });
  const network = arrays["network.params"];
  const features = arrays["encoding.features"];
  if (!(network instanceof Float32Array)) throw corrupt('it has no f32 array "network.params"');
  if (!(features instanceof Float32Array || features instanceof Float16Array)) throw corrupt('it has no f16 or f32 array "encoding.features"');
  const p = header.probing as { range: number; rows: number } | undefined;
  const indices = arrays["probing.indices"];
  if (p && !(indices instanceof Uint8Array && indices.length === packedBytes(p.rows, bitsOf(p.range)))) throw corrupt(`its probing indices are not ${packedBytes(p.rows, bitsOf(p.range))} bytes of u8`);
  if (!p && indices) throw corrupt("it has probing indices but no probing layout");
  return {
    version,
    config: header.config,
    image: header.image as ImageMeta,
    source: header.source as ModelFile["source"],
    features,
    network,
    ...(p ? { probing: { range: p.range, rows: p.rows, indices: indices as Uint8Array } } : {}),
    path,
  };
}

/** What a file is by its magic: "checkpoint", "model", or undefined (unreadable, foreign, too short). */
export async function fileKind(path: string): Promise<"checkpoint" | "model" | undefined> {
  try {
    if (notRegularFile(await stat(path))) return undefined; // not opened: a FIFO would block
    const fh = await open(path, "r");
    try {
      const head = new Uint8Array(8);
      const { bytesRead } = await fh.read(head, 0, 8, 0);
      const magic = new TextDecoder().decode(head.subarray(0, bytesRead));
      return magic === MODEL_MAGIC ? "model" : magic === CHECKPOINT_MAGIC ? "checkpoint" : undefined;
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
}

/**
 * The image a checkpoint's field was trained on (its size, channels and depth), or a CheckpointError
 * saying what it holds instead (a points field) and what the command `needs` it for.
 */
export function imageOf(ck: Checkpoint, needs: string): ImageMeta {
  const file = ck.path ?? "(checkpoint)";
  const image = ck.meta.image;
  if (ck.meta.points !== undefined || image === undefined)
    throw new CheckpointError(`checkpoint ${file}: holds a field trained on ${trainedOn(ck.meta)}, not on an image; ${needs}`, { file, problem: "incompatible" });
  if (!isImage(image)) throw new CheckpointError(`checkpoint ${file}: is corrupt: its image description ${JSON.stringify(image)} is not {width, height, channels, bits: 8 | 16}`, { file, problem: "corrupt" });
  return image;
}

/**
 * Loads an exported model into a field built for its configuration (createField): the features
 * (converted to the grid's precision: an f16 export into an f16 grid as is), the network, and the
 * probe table set directly from the packed argmax indices (an export has no logits).
 */
export function loadModelWeights(f: { encoding: Encoding; mlp: Mlp }, m: ModelFile): void {
  const file = m.path ?? "(model file)";
  const misfit = (why: string) => new ModelFileError(`model file ${file}: does not fit its configuration: ${why}`, { file, problem: "incompatible" });
  if (m.features.length !== f.encoding.paramCount) throw misfit(`${m.features.length} features, the hash grid needs ${f.encoding.paramCount}`);
  if (m.network.length !== f.mlp.paramCount) throw misfit(`${m.network.length} network parameters, the network needs ${f.mlp.paramCount}`);
  const { rows, range } = probingOf(f.encoding);
  if (rows) {
    if (!m.probing || m.probing.rows !== rows || m.probing.range !== range)
      throw misfit(`probing of ${m.probing ? `${m.probing.rows} rows of range ${m.probing.range}` : "nothing"}, the hash grid probes ${rows} rows of range ${range}`);
  } else if (m.probing) throw misfit(`${m.probing.rows} probing indices, the hash grid has no learned probing`);
  f.encoding.upload(m.features);
  f.mlp.params.upload(m.network);
  if (rows) {
    const probe = unpackIndices(m.probing!.indices, rows, bitsOf(range));
    let at = 0;
    for (const g of f.encoding.grids) {
      g.probe.upload(probe.subarray(at, at + g.probing.rows));
      at += g.probing.rows;
    }
  }
}

/**
 * The codebook rows of every member grid (concatenated, member after member) and their N_p: one
 * for all, as the file's one packing holds them (members probing with different N_p cannot be
 * exported: refused, naming them).
 */
function probingOf(e: Encoding): { rows: number; range: number } {
  const probed = e.grids.filter((g) => g.probing.rows);
  const ranges = [...new Set(probed.map((g) => g.probing.range))];
  if (ranges.length > 1) throw new ModelFileError(`the encoding's grids probe with different N_p (${ranges.join(", ")}): a model file packs one index width; give them one probing.range`);
  return { rows: probed.reduce((a, g) => a + g.probing.rows, 0), range: ranges[0] ?? 1 };
}

/** What an export holds, in bytes (the file is `header` more). */
export interface ModelAccounting {
  /** 2 (f16) or 4 (f32) bytes per feature. */
  featureBytes: 2 | 4;
  features: number;
  /** Codebook rows and bits per packed index (0 without learned probing). */
  probingRows: number;
  bitsPerIndex: number;
  /** HashGrid.memory(featureBytes): the features plus the packed indices. */
  inferenceBytes: number;
  indexBytes: number;
  networkParams: number;
  /** inferenceBytes + 4 * networkParams: the payload of the file. */
  payloadBytes: number;
}

/**
 * The inference model of a checkpoint: its configuration and image, the encoding's features in
 * `precision` (the averages unless `raw`, as rendering picks them), the argmax of each codebook
 * row's logits packed at log2(N_p) bits, and the network's f32 parameters; with the accounting
 * from HashGrid.memory. Builds the field on the JS backend (nothing is compiled or run) to check
 * the arrays against the configuration.
 */
export async function exportModel(ck: Checkpoint, opts: { precision?: "f16" | "f32"; raw?: boolean } = {}): Promise<{ model: Omit<ModelFile, "version" | "path">; accounting: ModelAccounting }> {
  const file = ck.path ?? "(checkpoint)";
  const fail = (why: string) => new CheckpointError(`checkpoint ${file}: cannot export it: ${why}`, { file, problem: "incompatible" });
  const precision = opts.precision ?? "f16";
  const raw = opts.raw === true;
  const cfg = parseTrainConfig(ck.config);
  const image = imageOf(ck, "export writes models of an image (for render --model), so it needs a checkpoint trained on one");
  const { encoding: grid, mlp } = await createField(cfg, image.channels, { backend: "js" });
  try {
    const encoding = checkpointEncoding(ck, grid.grids.length, raw);
    const network = checkpointWeights(ck, "network", raw);
    if (encoding.length !== grid.paramCount) throw fail(`${encoding.length} encoding parameters, its configuration needs ${grid.paramCount}`);
    if (network.length !== mlp.paramCount) throw fail(`${network.length} network parameters, its configuration needs ${mlp.paramCount}`);
    let features: Float16Array | Float32Array = encoding;
    if (precision === "f16") {
      features = Float16Array.from(encoding);
      const over = features.findIndex((v, k) => !Number.isFinite(v) && Number.isFinite(encoding[k]!));
      if (over >= 0) throw fail(`feature ${over} (${encoding[over]}) overflows f16 (largest 65504); export with --precision f32`);
    }
    const { rows, range } = probingOf(grid);
    const bits = rows ? Math.log2(range) : 0;
    let probing: ModelFile["probing"];
    if (rows) {
      const argmax = grid.grids.flatMap((g, i) => {
        if (!g.logitCount) return [];
        const name = grid.name("probing", i);
        const logits = ck.arrays[`${name}.params`];
        if (logits?.length !== g.logitCount) throw fail(`${logits?.length ?? 0} ${name} logits, its configuration needs ${g.logitCount}`);
        return [...argmaxRows(logits, range)];
      });
      probing = { range, rows, indices: packIndices(Uint32Array.from(argmax), bits) };
    }
    const featureBytes = precision === "f16" ? 2 : 4;
    const mem = grid.memory(featureBytes);
    const accounting: ModelAccounting = {
      featureBytes,
      features: grid.paramCount,
      probingRows: rows,
      bitsPerIndex: bits,
      inferenceBytes: mem.inferenceBytes,
      indexBytes: mem.indexBytes,
      networkParams: mlp.paramCount,
      payloadBytes: mem.inferenceBytes + 4 * mlp.paramCount,
    };
    const weights = checkpointUses(ck, raw);
    return { model: { config: ck.config, image: { width: image.width, height: image.height, channels: image.channels, bits: image.bits }, source: { step: ck.step, weights }, features, network, ...(probing ? { probing } : {}) }, accounting };
  } finally {
    grid.close();
    mlp.close();
  }
}

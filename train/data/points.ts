// Scattered N-D samples as a data source of the trainer: points with coordinates in 1 to 8
// dimensions and one or more values each, from a binary points file or CSV, normalized to [0, 1]
// by a bounding box, split into training and held-out blocks, and streamed from disk in shards
// that fit the memory allowed (`points.maxMemory`, `--max-memory`), so a file many times larger
// than memory trains with bounded memory.
//
// The binary points format (little-endian):
//   0   8 bytes   magic "NGPKPNTS"
//   8   u32       version (1)
//   12  u32       dims D (1..8)
//   16  u32       channels C (values per point, 1..16)
//   20  u32       flags: bit 0 = a bounding box follows (other bits must be 0)
//   24  u64       record count N
//   32  [box]     with flag bit 0: D f64 minima, then D f64 maxima (16 D bytes)
//   H   records   N records of D + C f32 each: coordinates then values (H = 32, or 32 + 16 D)
// The file ends after the N-th record. Without a box, the trainer computes one in a first pass.
//
// Data flow. A first pass reads the file through a fixed buffer: it refuses NaN and Infinity
// (naming the record), and measures the bounding box (unless the header has one) and the values'
// range (for PSNR). The records are then cut into blocks of `blockRecords` (fewer for small
// files, so that there are at least about 64 blocks); every `holdout`-th block (which one of each
// `holdout`: by the seed) is held out for validation. Each epoch visits the training blocks in a
// random order (by seed and epoch), taken in shards of as many blocks as fit the memory cap; a
// shard's records are read into one fixed buffer and shuffled as a whole (so within each block
// too), and micro-batches are taken from it in order. Micro-batch k holds the records at stream
// positions [k n, (k + 1) n): any micro-batch can be redrawn from (seed, k) alone, so a resumed
// run equals an uninterrupted one, and the same seed gives the same result.
//
// Memory: the cap covers the data's buffers (the shard and the evaluation chunk); the model, its
// batches and the process itself come on top. CSV files are parsed into memory (4 bytes per
// value); data larger than memory belongs in the binary format (writePointsFile, PointsWriter).
import { closeSync, fstatSync, openSync, readFileSync, readSync, statSync, writeSync } from "node:fs";
import { extname, join, resolve } from "node:path";
import sharp from "sharp";
import * as vega from "vega";
import * as vl from "vega-lite";
import type { DeviceBuffer } from "../../runtime/buffer.ts";
import type { Ranks } from "../../runtime/mpi.ts";
import type { BackendRequest } from "../../runtime/backend.ts";
import { seededUniform } from "../../modules/random.ts";
import { notRegularFile } from "../../runtime/files.ts";
import { CheckpointError, readCheckpoint, type Checkpoint } from "../checkpoint.ts";
import { parseTrainConfig, type TrainConfig } from "../config.ts";
import type { Batch, DataSource, EvaluateRequest, SourceContext, SourceEvaluation } from "./source.ts";
import { interruptible } from "../eval.ts";
import { createField, fieldOf, loadCheckpointWeights } from "../field.ts";
import { writeFileAtomic } from "../image.ts";
import { plotSpec, type MetricsRow } from "../outputs.ts";
import { ExpectedError } from "../../dsl/errors.ts";

/** The file a points run writes beside the trainer's: the validation figures of every evaluation. */
export const VALIDATION = "validation.csv";

export const POINTS_MAGIC = "NGPKPNTS";
export const POINTS_VERSION = 1;
export const POINTS_HEADER_BYTES = 32;
export const MAX_POINT_DIMS = 8;
export const MAX_POINT_CHANNELS = 16;
const FLAG_BOX = 1;
/** Blocks a file is cut into at least (when it has the records): the held-out split needs some. */
const MIN_BLOCKS = 64;
/** Records per evaluation chunk at most. */
const EVAL_CHUNK = 1 << 14;

/** Bad points input (exit status 2): the message names the file and the problem. */
export class PointsError extends ExpectedError {
  constructor(
    message: string,
    readonly file: string,
  ) {
    super(message);
    this.name = "PointsError";
  }
}

export interface BoundingBox {
  min: number[];
  max: number[];
}

export interface PointsHeader {
  dims: number;
  channels: number;
  /** Written into the header when given (else the trainer measures one). */
  box?: BoundingBox;
}

function headerBytes(h: PointsHeader, count: number): Uint8Array {
  const size = POINTS_HEADER_BYTES + (h.box ? 16 * h.dims : 0);
  const buf = new Uint8Array(size);
  const v = new DataView(buf.buffer);
  buf.set(new TextEncoder().encode(POINTS_MAGIC), 0);
  v.setUint32(8, POINTS_VERSION, true);
  v.setUint32(12, h.dims, true);
  v.setUint32(16, h.channels, true);
  v.setUint32(20, h.box ? FLAG_BOX : 0, true);
  v.setBigUint64(24, BigInt(count), true);
  if (h.box) for (let d = 0; d < h.dims; d++) (v.setFloat64(32 + 8 * d, h.box.min[d]!, true), v.setFloat64(32 + 8 * (h.dims + d), h.box.max[d]!, true));
  return buf;
}

function checkHeader(h: PointsHeader): void {
  if (!Number.isInteger(h.dims) || h.dims < 1 || h.dims > MAX_POINT_DIMS) throw new RangeError(`points: dims ${h.dims} is not an integer from 1 to ${MAX_POINT_DIMS}`);
  if (!Number.isInteger(h.channels) || h.channels < 1 || h.channels > MAX_POINT_CHANNELS) throw new RangeError(`points: channels ${h.channels} is not an integer from 1 to ${MAX_POINT_CHANNELS}`);
}

/**
 * Writes a binary points file in pieces (records of dims + channels f32, appended by write());
 * the record count in the header is written by close(). Memory: only what write() is given.
 */
export class PointsWriter {
  #fd: number | undefined;
  #count = 0;
  readonly #floats: number;
  constructor(
    readonly path: string,
    readonly header: PointsHeader,
  ) {
    checkHeader(header);
    this.#floats = header.dims + header.channels;
    this.#fd = openSync(path, "w");
    writeSync(this.#fd, headerBytes(header, 0));
  }
  /** Appends whole records. */
  write(records: Float32Array): void {
    if (this.#fd === undefined) throw new Error(`PointsWriter ${this.path}: closed`);
    if (records.length % this.#floats !== 0) throw new RangeError(`PointsWriter: ${records.length} floats are not whole records of ${this.#floats}`);
    const bytes = new Uint8Array(records.buffer, records.byteOffset, records.byteLength);
    for (let done = 0; done < bytes.length; ) done += writeSync(this.#fd, bytes, done, bytes.length - done);
    this.#count += records.length / this.#floats;
  }
  get count(): number {
    return this.#count;
  }
  close(): void {
    if (this.#fd === undefined) return;
    const count = new Uint8Array(8);
    new DataView(count.buffer).setBigUint64(0, BigInt(this.#count), true);
    writeSync(this.#fd, count, 0, 8, 24);
    closeSync(this.#fd);
    this.#fd = undefined;
  }
}

/** A binary points file holding `records` ([n][dims + channels] f32). */
export function writePointsFile(path: string, header: PointsHeader, records: Float32Array): void {
  const w = new PointsWriter(path, header);
  try {
    w.write(records);
  } finally {
    w.close();
  }
}

/** Reads whole records [first, first + count) into `into` from float `at` on. */
interface RecordReader {
  read(first: number, count: number, into: Float32Array, at: number): void;
  close(): void;
}

/** What a points file holds, before the first pass. */
interface Opened {
  format: "binary" | "csv";
  dims: number;
  channels: number;
  records: number;
  box?: BoundingBox;
  reader: RecordReader;
  /** CSV: the line of record r (for messages). */
  lineOf?: (r: number) => number;
}

/** "1 record", "20,000 records"; a bigint (a header's u64 count) exactly, not rounded to a double. */
const plural = (n: number | bigint, what: string) => `${n.toLocaleString("en")} ${what}${n == 1 ? "" : "s"}`;

function openBinary(path: string, fd: number, size: number, wantDims: number | undefined): Opened {
  const fail = (problem: string) => new PointsError(`${path}: ${problem}`, path);
  if (size < POINTS_HEADER_BYTES) throw fail(`truncated: ${size} bytes, shorter than the ${POINTS_HEADER_BYTES}-byte header of a points file`);
  const head = new Uint8Array(POINTS_HEADER_BYTES);
  readFully(fd, head, 0, head.length, 0, path);
  const v = new DataView(head.buffer);
  const version = v.getUint32(8, true);
  if (version < 1 || version > POINTS_VERSION) throw fail(`points format version ${version}; this version reads 1 to ${POINTS_VERSION}`);
  const dims = v.getUint32(12, true);
  const channels = v.getUint32(16, true);
  const flags = v.getUint32(20, true);
  const count = v.getBigUint64(24, true);
  if (dims < 1 || dims > MAX_POINT_DIMS) throw fail(`wrong dimension: the header says ${dims} coordinate dimensions; points have 1 to ${MAX_POINT_DIMS}`);
  if (wantDims !== undefined && dims !== wantDims) throw fail(`wrong dimension: the file's points have ${dims} coordinates, --dims (points.dims) asks for ${wantDims}`);
  if (channels < 1 || channels > MAX_POINT_CHANNELS) throw fail(`the header says ${channels} values per point; 1 to ${MAX_POINT_CHANNELS} are allowed`);
  if ((flags & ~FLAG_BOX) !== 0) throw fail(`unknown header flags 0x${flags.toString(16)}`);
  const hasBox = (flags & FLAG_BOX) !== 0;
  const start = POINTS_HEADER_BYTES + (hasBox ? 16 * dims : 0);
  if (size < start) throw fail(`truncated: ${size} bytes, shorter than the ${start}-byte header with its bounding box`);
  let box: BoundingBox | undefined;
  if (hasBox) {
    const b = new Uint8Array(16 * dims);
    readFully(fd, b, 0, b.length, POINTS_HEADER_BYTES, path);
    const bv = new DataView(b.buffer);
    box = { min: [], max: [] };
    for (let d = 0; d < dims; d++) (box.min.push(bv.getFloat64(8 * d, true)), box.max.push(bv.getFloat64(8 * (dims + d), true)));
    for (let d = 0; d < dims; d++)
      if (!Number.isFinite(box.min[d]!) || !Number.isFinite(box.max[d]!) || box.min[d]! > box.max[d]!)
        throw fail(`the header's bounding box on axis ${d} is [${box.min[d]}, ${box.max[d]}], not finite numbers min <= max`);
  }
  const recordBytes = 4 * (dims + channels);
  const have = size - start;
  if (count === 0n) throw fail(`empty: the header says 0 records`);
  const need = count * BigInt(recordBytes);
  if (BigInt(have) < need)
    throw fail(`truncated: the header says ${plural(count, "record")} of ${recordBytes} bytes (${need} bytes after the ${start}-byte header), the file has ${have} (${plural(Math.floor(have / recordBytes), "whole record")})`);
  if (BigInt(have) > need) throw fail(`${BigInt(have) - need} bytes after the ${plural(count, "record")} the header says it holds (a record count that is wrong, or a file written past its end)`);
  const records = Number(count);
  const bytesAt = (r: number) => start + r * recordBytes;
  return {
    format: "binary", dims, channels, records, box,
    reader: {
      read(first, n, into, at) {
        readFully(fd, new Uint8Array(into.buffer, into.byteOffset + 4 * at, n * recordBytes), 0, n * recordBytes, bytesAt(first), path);
      },
      close: () => closeSync(fd),
    },
  };
}

function readFully(fd: number, into: Uint8Array, offset: number, length: number, position: number, path: string): void {
  let done = 0;
  while (done < length) {
    const got = readSync(fd, into, offset + done, length - done, position + done);
    if (got <= 0) throw new PointsError(`${path}: truncated: the file ended while reading (it changed while training?)`, path);
    done += got;
  }
}

const SPECIAL: Record<string, number> = { nan: NaN, "+nan": NaN, "-nan": NaN, inf: Infinity, "+inf": Infinity, "-inf": -Infinity, infinity: Infinity, "+infinity": Infinity, "-infinity": -Infinity };

/** A CSV file: a header row naming the columns, then one point per row (plain comma-separated numbers, no quoting). */
function openCsv(path: string, text: string, wantDims: number | undefined): Opened {
  const fail = (problem: string) => new PointsError(`${path}: ${problem}`, path);
  const lines = text.split(/\r?\n/);
  while (lines.length && lines.at(-1)!.trim() === "") lines.pop();
  if (lines.length === 0) throw fail("empty: no header row and no records");
  const names = lines[0]!.split(",").map((s) => s.trim());
  if (names.every((s) => s !== "" && !Number.isNaN(Number(s))))
    throw fail(`line 1 holds numbers (${lines[0]!.slice(0, 60)}): the first line must name the columns (e.g. x,y,z,t,value)`);
  const columns = names.length;
  const dims = wantDims ?? columns - 1;
  if (wantDims === undefined && (dims < 1 || dims > MAX_POINT_DIMS))
    throw fail(`wrong dimension: ${columns} columns (${names.join(",")}) make ${dims} coordinates and one value; points have 1 to ${MAX_POINT_DIMS} coordinates (--dims D: the first D columns are coordinates)`);
  if (dims >= columns) throw fail(`wrong dimension: --dims ${dims} takes every one of the ${columns} columns (${names.join(",")}) as a coordinate, leaving no value column`);
  const channels = columns - dims;
  if (channels > MAX_POINT_CHANNELS) throw fail(`${channels} value columns; 1 to ${MAX_POINT_CHANNELS} are allowed (--dims ${dims})`);
  const rows: number[] = [];
  for (let l = 1; l < lines.length; l++) if (lines[l]!.trim() !== "") rows.push(l);
  if (rows.length === 0) throw fail(`empty: a header row (${names.join(",")}) and no records`);
  const data = new Float32Array(rows.length * columns);
  for (let r = 0; r < rows.length; r++) {
    const l = rows[r]!;
    const cells = lines[l]!.split(",");
    if (cells.length !== columns) throw fail(`line ${l + 1}: ${cells.length} cells, the header names ${columns} columns`);
    for (let c = 0; c < columns; c++) {
      const s = cells[c]!.trim();
      const x = s === "" ? NaN : (SPECIAL[s.toLowerCase()] ?? Number(s));
      if (Number.isNaN(x) && !(s.toLowerCase() in SPECIAL)) throw fail(`line ${l + 1}, column ${c + 1} (${names[c]}): ${JSON.stringify(s)} is not a number`);
      data[r * columns + c] = x;
    }
  }
  return {
    format: "csv", dims, channels, records: rows.length,
    reader: {
      read(first, n, into, at) {
        into.set(data.subarray(first * columns, (first + n) * columns), at);
      },
      close() {},
    },
    lineOf: (r) => rows[r]! + 1,
  };
}

/** Opens a points file: the binary format (by its magic) or CSV (by a .csv or .txt name). */
function openPoints(path: string, wantDims: number | undefined): Opened {
  const fail = (problem: string) => new PointsError(`${path}: ${problem}`, path);
  let fd: number;
  try {
    const st = statSync(path);
    if (st.isDirectory()) throw fail("is a directory, not a points file");
    const special = notRegularFile(st);
    if (special) throw fail(`${special}, not a points file`);
    fd = openSync(path, "r");
  } catch (e) {
    if (e instanceof PointsError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw fail(code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : (e as Error).message);
  }
  try {
    const size = fstatSync(fd).size;
    if (size === 0) throw fail("empty file (0 bytes)");
    const magic = new Uint8Array(Math.min(8, size));
    readFully(fd, magic, 0, magic.length, 0, path);
    if (new TextDecoder().decode(magic) === POINTS_MAGIC) return openBinary(path, fd, size, wantDims);
    const ext = extname(path).toLowerCase();
    if (ext !== ".csv" && ext !== ".txt") throw fail(`not a points file: no ${POINTS_MAGIC} magic (the binary format), and not named .csv`);
    closeSync(fd);
    return openCsv(path, readFileSync(path, "utf8"), wantDims);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {}
    throw e;
  }
}

/** A 32-bit mix of integers (the stream's seeds). */
function mix(...xs: number[]): number {
  let h = 0x9e3779b9;
  for (const x of xs) {
    h = (h ^ (x >>> 0)) >>> 0;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
    h = (h ^ (h >>> 16)) >>> 0;
    h = (h ^ Math.floor(x / 2 ** 32)) >>> 0; // the high bits of large counters
  }
  return h;
}

/** The project's seeded generator (modules/random.ts); next(m) is an integer in [0, m). */
function generator(seed: number): (m: number) => number {
  const next = seededUniform(seed);
  return (m) => Math.floor(next() * m);
}

interface EvalBuffers {
  coords: DeviceBuffer<"f32">;
  pred: DeviceBuffer<"f32">;
  targets: DeviceBuffer<"f32">;
  grad: DeviceBuffer<"f32">;
}
const disposeEval = (d: EvalBuffers) => [d.coords, d.pred, d.targets, d.grad].forEach((b) => b.dispose());

export interface PointsSummary {
  path: string;
  format: "binary" | "csv";
  dims: number;
  channels: number;
  records: number;
  trainRecords: number;
  heldOutRecords: number;
  /** Records per block (blockRecords, or fewer for a small file) and the file's blocks. */
  blockRecords: number;
  blocks: number;
  /** Records of one shard (what the memory cap holds) and the number of shards per epoch (over ranks: rank 0's share). */
  shardRecords: number;
  shardsPerEpoch: number;
  /** The memory cap and the bytes the data's buffers hold (the shard and the evaluation chunk). */
  maxMemory: number;
  dataBytes: number;
  /** Coordinates are normalized by this box: (x - min) / (max - min) per axis (0.5 where min = max). */
  box: BoundingBox;
  /** Whether the box came from the file's header, the first pass, or a resumed checkpoint. */
  boxFrom: "header" | "data" | "checkpoint";
  /** The values' range over every record (PSNR is relative to max - min). */
  valueRange: { min: number; max: number };
  /** The last evaluation's validation loss and PSNR over the held-out split (NaN before one). */
  validationLoss: number;
  psnr: number;
  /**
   * The largest resident memory (VmRSS) of the process in bytes while training: sampled at every
   * micro-batch and evaluation chunk, from the first micro-batch to the end of the final
   * evaluation (0 where /proc is absent). Unlike the process's peak (VmHWM), it leaves out what
   * loading the kernels takes before training starts.
   */
  trainingRss: number;
}

/** The process's resident memory in bytes now (VmRSS), 0 where /proc is absent. */
export function currentRss(): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync("/proc/self/status", "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** The process's peak resident memory in bytes (VmHWM; the resource usage's maxRSS where /proc is absent). */
export function peakRss(): number {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {}
  return process.resourceUsage().maxRSS * 1024;
}

/** A first pass over some records: coordinate ranges per axis, the values' range, records outside the header's box, the first non-finite value's position (record x (dims + channels) + column; Infinity: none). */
interface FirstPass {
  min: number[];
  max: number[];
  values: { min: number; max: number };
  outside: number;
  notFinite: number;
}

/** The data's description a checkpoint keeps (meta.points): what a render or evaluation needs. */
export interface PointsMeta {
  file: string;
  format: "binary" | "csv";
  dims: number;
  channels: number;
  records: number;
  box: BoundingBox;
  valueRange: { min: number; max: number };
}

/** A size in bytes for people. */
const showBytes = (n: number) => (n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${(n / 2 ** 10).toFixed(1)} KiB`);

/**
 * The configuration's points, opened and measured. With `share` (rank `rank` of `size` of an MPI
 * job), the first pass reads that rank's run of blocks only, and the source is measured once every
 * rank has called gather(ranks).
 */
export async function openPointSource(cfg: TrainConfig, opts: { log?: (m: string) => void; share?: { rank: number; size: number } } = {}): Promise<PointSource> {
  if (!cfg.points) throw new Error("openPointSource: the configuration has no points");
  return new PointSource(cfg, openPoints(cfg.points.file, cfg.points.dims), opts.log ?? (() => {}), opts.share);
}

/** The stream of training points and the held-out split, read in shards of bounded size. */
export class PointSource implements DataSource {
  readonly kind = "points";
  readonly dims: number;
  readonly channels: number;
  readonly path: string;
  readonly records: number;
  readonly #o: Opened;
  readonly #floats: number;
  readonly #blockRecords: number;
  readonly #blocks: number;
  readonly #train: number[] = [];
  readonly #heldOut: number[] = [];
  readonly #trainRecords: number;
  readonly #heldOutRecords: number;
  #shardBlocks: number;
  /** The training blocks this process draws (split: a rank's share) and their records. */
  #stream: number[];
  #streamRecords: number;
  readonly #evalChunk: number;
  readonly #maxMemory: number;
  #box!: BoundingBox;
  #boxFrom: PointsSummary["boxFrom"];
  #values!: { min: number; max: number };
  /** With a share: the first pass over this rank's blocks, until gather() combines the ranks'. */
  #firstPass: FirstPass | undefined;
  readonly #log: (m: string) => void;
  /** Per axis: normalized = (x - min) * scale + bias. */
  #scale: Float64Array;
  #min: Float64Array;
  #bias: Float64Array;
  /** The shard buffer (records of dims + channels f32) and the evaluation chunk's. */
  readonly #shard: Float32Array;
  readonly #evalBuf: Float32Array;
  /** The loaded shard: (epoch, shard) and its records; the epoch's block order and shard starts. */
  #loaded: { epoch: number; shard: number; records: number } | undefined;
  #epoch: { epoch: number; order: number[]; starts: number[] } | undefined;
  #ctx: SourceContext | undefined;
  #batch = new Map<number, { coords: DeviceBuffer<"f32">; targets: DeviceBuffer<"f32">; c: Float32Array; t: Float32Array }>();
  #evalDev = new Map<number, EvalBuffers>();
  #evalCoords: Float32Array;
  #evalTargets: Float32Array;
  /** Every evaluation: step, validation loss, PSNR. */
  readonly validation: { step: number; loss: number; psnr: number }[] = [];
  #closed = false;
  #trainingRss = 0;

  constructor(
    private readonly cfg: TrainConfig,
    opened: Opened,
    log: (m: string) => void,
    share?: { rank: number; size: number },
  ) {
    const p = cfg.points!;
    this.#o = opened;
    this.path = p.file;
    this.dims = opened.dims;
    this.channels = opened.channels;
    this.records = opened.records;
    this.#floats = this.dims + this.channels;
    const R = this.records;
    const fail = (problem: string) => new PointsError(`${this.path}: ${problem}`, this.path);
    if (R < 2) throw fail(`${plural(R, "record")}: training and its held-out split need at least 2`);
    // Blocks: blockRecords, fewer for a small file so that there are about MIN_BLOCKS of them.
    this.#blockRecords = Math.max(1, Math.min(p.blockRecords, Math.ceil(R / MIN_BLOCKS)));
    this.#blocks = Math.ceil(R / this.#blockRecords);
    // Every holdout-th block, from one picked by the seed, is held out (at least one, never all).
    const k = p.holdout;
    const first = this.cfg.seed % Math.min(k, this.#blocks);
    for (let b = 0; b < this.#blocks; b++) (b % k === first ? this.#heldOut : this.#train).push(b);
    this.#trainRecords = this.#train.reduce((s, b) => s + this.#blockLength(b), 0);
    this.#heldOutRecords = R - this.#trainRecords;

    // The memory cap: the evaluation chunk (at most an eighth of it), the rest for the shard.
    const recordBytes = 4 * this.#floats;
    this.#maxMemory = p.maxMemory;
    const evalRecords = Math.max(1, Math.min(EVAL_CHUNK, this.#heldOutRecords, Math.floor(p.maxMemory / 8 / recordBytes)));
    const shardBytes = p.maxMemory - evalRecords * recordBytes;
    const shardBlocks = Math.floor(shardBytes / (this.#blockRecords * recordBytes));
    if (shardBlocks < 1)
      throw new PointsError(`--max-memory (points.maxMemory) ${p.maxMemory} bytes cannot hold one block of ${this.#blockRecords} records of ${recordBytes} bytes beside the evaluation chunk (${showBytes(evalRecords * recordBytes)}): allow more, or give a smaller points.blockRecords`, this.path);
    this.#shardBlocks = Math.min(shardBlocks, this.#train.length);
    [this.#stream, this.#streamRecords] = [this.#train, this.#trainRecords];
    this.#evalChunk = evalRecords;
    // The shard buffer also serves the first pass.
    this.#shard = new Float32Array(Math.min(this.#shardBlocks * this.#blockRecords, R) * this.#floats);
    this.#evalBuf = new Float32Array(evalRecords * this.#floats);
    this.#evalCoords = new Float32Array(evalRecords * this.dims);
    this.#evalTargets = new Float32Array(evalRecords * this.channels);

    this.#log = log;
    this.#boxFrom = opened.box ? "header" : "data";
    [this.#min, this.#scale, this.#bias] = [new Float64Array(this.dims), new Float64Array(this.dims), new Float64Array(this.dims)];
    // The first pass: the whole file, or this rank's run of blocks (gather() combines the ranks').
    const [from, to] = share ? [Math.floor((this.#blocks * share.rank) / share.size), Math.floor((this.#blocks * (share.rank + 1)) / share.size)] : [0, this.#blocks];
    this.#firstPass = this.#scan(from * this.#blockRecords, Math.min(R, to * this.#blockRecords));
    if (!share) this.#measured(this.#firstPass);
    log(
      `points: ${this.path} (${opened.format}), ${plural(R, "record")} of ${this.dims} coordinates and ${plural(this.channels, "value")}; ` +
        `${plural(this.#heldOutRecords, "record")} held out (every ${k}th block of ${this.#blockRecords}); ` +
        `shards of ${plural(this.#shardBlocks * this.#blockRecords, "record")} (${showBytes(this.#shard.byteLength)}), ${this.#shardsPerEpoch()} per epoch`,
    );
  }

  #blockLength(b: number): number {
    return Math.min(this.#blockRecords, this.records - b * this.#blockRecords);
  }

  #shardsPerEpoch(): number {
    return Math.ceil(this.#stream.length / this.#shardBlocks);
  }

  /**
   * The first pass over records [from, to): the box and the values' range measured, the records
   * outside the header's box counted, and the first value that is not finite (NaN, Infinity) found:
   * the pass stops there.
   */
  #scan(from: number, to: number): FirstPass {
    const { dims } = this;
    const F = this.#floats;
    const min = new Array<number>(dims).fill(Infinity);
    const max = new Array<number>(dims).fill(-Infinity);
    let vmin = Infinity;
    let vmax = -Infinity;
    let outside = 0;
    const hb = this.#o.box;
    const cap = this.#shard.length / F;
    for (let r0 = from; r0 < to; r0 += cap) {
      const n = Math.min(cap, to - r0);
      this.#o.reader.read(r0, n, this.#shard, 0);
      const a = this.#shard;
      for (let i = 0; i < n; i++) {
        const o = i * F;
        let out = false;
        for (let j = 0; j < F; j++) {
          const x = a[o + j]!;
          if (!Number.isFinite(x)) return { min, max, values: { min: vmin, max: vmax }, outside, notFinite: (r0 + i) * F + j };
          if (j < dims) {
            if (x < min[j]!) min[j] = x;
            if (x > max[j]!) max[j] = x;
            if (hb && (x < hb.min[j]! || x > hb.max[j]!)) out = true;
          } else {
            if (x < vmin) vmin = x;
            if (x > vmax) vmax = x;
          }
        }
        if (out) outside++;
      }
    }
    return { min, max, values: { min: vmin, max: vmax }, outside, notFinite: Infinity };
  }

  /**
   * Data-parallel training: the first pass of every rank's share (openPointSource's `share`)
   * combined, a collective every rank calls: the minima and maxima (exact in any order), the count
   * outside the header's box and the first value that is not finite, so that every rank has what
   * one process's pass over the whole file gives, or throws its error. The file is read once
   * between the ranks.
   */
  gather(ranks: Ranks): void {
    const pass = this.#firstPass;
    if (!pass) return;
    const { dims } = this;
    const low = Float64Array.from([...pass.min, pass.values.min, pass.notFinite]);
    const high = Float64Array.from([...pass.max, pass.values.max]);
    const outside = Float64Array.of(pass.outside);
    ranks.allReduce(low, "min");
    ranks.allReduce(high, "max");
    ranks.allReduce(outside, "sum");
    this.#measured({ min: [...low.subarray(0, dims)], max: [...high.subarray(0, dims)], values: { min: low[dims]!, max: high[dims]! }, outside: outside[0]!, notFinite: low[dims + 1]! });
  }

  /** The whole file's first pass: a value that is not finite refused (naming the record), else the box and values' range set. */
  #measured(pass: FirstPass): void {
    this.#firstPass = undefined;
    if (pass.notFinite !== Infinity) {
      const F = this.#floats;
      const [r, j] = [Math.floor(pass.notFinite / F), pass.notFinite % F];
      const record = new Float32Array(F);
      this.#o.reader.read(r, 1, record, 0);
      const line = this.#o.lineOf ? ` (line ${this.#o.lineOf(r)})` : "";
      const what = j < this.dims ? `coordinate ${j}` : `value ${j - this.dims}`;
      throw new PointsError(`${this.path}: record ${r}${line} (counting from 0) has ${record[j]} as its ${what}: coordinates and values must be finite numbers`, this.path);
    }
    // -0 and 0 are equal minima: which one a pass keeps depends on the order it meets them in; +0 always.
    const zeroed = (xs: number[]) => xs.map((x) => x + 0);
    this.#box = this.#o.box ?? { min: zeroed(pass.min), max: zeroed(pass.max) };
    this.#values = { min: pass.values.min + 0, max: pass.values.max + 0 };
    if (this.#o.box && pass.outside > 0) this.#log(`${this.path}: ${plural(pass.outside, "record")} lie outside the header's bounding box (their coordinates are clamped to it)`);
    this.#setBox(this.#box);
  }

  #setBox(box: BoundingBox): void {
    for (let d = 0; d < this.dims; d++) {
      const ext = box.max[d]! - box.min[d]!;
      this.#min[d] = box.min[d]!;
      this.#scale[d] = ext > 0 ? 1 / ext : 0;
      this.#bias[d] = ext > 0 ? 0 : 0.5;
    }
  }

  get box(): BoundingBox {
    return { min: [...this.#box.min], max: [...this.#box.max] };
  }

  /** Record i of `src` (from float 0) split into normalized coordinates and values. */
  #split(src: Float32Array, from: number, n: number, coords: Float32Array, targets: Float32Array, at: number): void {
    const { dims, channels } = this;
    const F = this.#floats;
    for (let i = 0; i < n; i++) {
      const o = (from + i) * F;
      const c = (at + i) * dims;
      for (let d = 0; d < dims; d++) coords[c + d] = (src[o + d]! - this.#min[d]!) * this.#scale[d]! + this.#bias[d]!;
      const t = (at + i) * channels;
      for (let v = 0; v < channels; v++) targets[t + v] = src[o + dims + v]!;
    }
  }

  /** The epoch's order of training blocks and where each shard starts in the epoch's stream. */
  #epochPlan(epoch: number): { order: number[]; starts: number[] } {
    if (this.#epoch?.epoch === epoch) return this.#epoch;
    const order = [...this.#stream];
    const next = generator(mix(this.cfg.seed, 0x0b10c, epoch));
    for (let i = order.length - 1; i > 0; i--) {
      const j = next(i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const starts = [0];
    for (let s = 0, at = 0; s < this.#shardsPerEpoch(); s++) {
      for (const b of order.slice(s * this.#shardBlocks, (s + 1) * this.#shardBlocks)) at += this.#blockLength(b);
      starts.push(at);
    }
    this.#epoch = { epoch, order, starts };
    return this.#epoch;
  }

  /** Reads shard s of the epoch into the shard buffer and shuffles its records as a whole. */
  #load(epoch: number, shard: number): number {
    if (this.#loaded?.epoch === epoch && this.#loaded.shard === shard) return this.#loaded.records;
    const plan = this.#epochPlan(epoch);
    const F = this.#floats;
    let n = 0;
    for (const b of plan.order.slice(shard * this.#shardBlocks, (shard + 1) * this.#shardBlocks)) {
      const len = this.#blockLength(b);
      this.#o.reader.read(b * this.#blockRecords, len, this.#shard, n * F);
      n += len;
    }
    const a = this.#shard;
    const next = generator(mix(this.cfg.seed, 0x5ba2d, epoch, shard));
    for (let i = n - 1; i > 0; i--) {
      const j = next(i + 1);
      if (j === i) continue;
      for (let f = 0, oi = i * F, oj = j * F; f < F; f++) {
        const t = a[oi + f]!;
        a[oi + f] = a[oj + f]!;
        a[oj + f] = t;
      }
    }
    this.#loaded = { epoch, shard, records: n };
    return n;
  }

  /**
   * Rank `rank` of `size` draws training blocks i with i % size == rank (of the file's training
   * blocks in order), shuffled and sharded by epoch as one process's: the ranks read the file
   * once per epoch between them. Before the first sample().
   */
  split(rank: number, size: number): void {
    const mine = this.#train.filter((_, i) => i % size === rank);
    if (mine.length === 0)
      throw new PointsError(`${this.path}: ${plural(this.#train.length, "training block")} cannot be shared by ${size} ranks: give a smaller --block-records (points.blockRecords), or fewer ranks`, this.path);
    [this.#stream, this.#streamRecords] = [mine, mine.reduce((s, b) => s + this.#blockLength(b), 0)];
    this.#shardBlocks = Math.min(this.#shardBlocks, mine.length);
    [this.#epoch, this.#loaded] = [undefined, undefined];
  }

  async attach(ctx: SourceContext): Promise<void> {
    this.#ctx = ctx;
    // The model is built: collect what loading its kernels left behind, so that training starts
    // from the steady state (and trainingRss measures training, not the garbage of the builds).
    (globalThis as { Bun?: { gc(force: boolean): void } }).Bun?.gc(true);
  }

  sample(n: number, micro: number): Batch {
    let b = this.#batch.get(n);
    if (!b) {
      for (const old of this.#batch.values()) (old.coords.dispose(), old.targets.dispose());
      this.#batch.clear();
      b = { coords: this.#ctx!.alloc(n * this.dims), targets: this.#ctx!.alloc(n * this.channels), c: new Float32Array(n * this.dims), t: new Float32Array(n * this.channels) };
      this.#batch.set(n, b);
    }
    let p = micro * n; // the stream position of the batch's first record
    for (let i = 0; i < n; ) {
      const epoch = Math.floor(p / this.#streamRecords);
      const q = p - epoch * this.#streamRecords;
      const { starts } = this.#epochPlan(epoch);
      let s = this.#loaded?.epoch === epoch && q >= starts[this.#loaded.shard]! && q < starts[this.#loaded.shard + 1]! ? this.#loaded.shard : 0;
      while (q >= starts[s + 1]!) s++;
      const records = this.#load(epoch, s);
      const from = q - starts[s]!;
      const take = Math.min(n - i, records - from);
      this.#split(this.#shard, from, take, b.c, b.t, i);
      i += take;
      p += take;
    }
    b.coords.upload(b.c);
    b.targets.upload(b.t);
    this.#trainingRss = Math.max(this.#trainingRss, currentRss());
    return { coords: b.coords, targets: b.targets };
  }

  /** Validation loss (the configured loss) and PSNR (relative to the values' range) over the whole held-out split. */
  async evaluate(step: number, opts: EvaluateRequest): Promise<SourceEvaluation | undefined> {
    const ctx = this.#ctx!;
    const stopped = interruptible(opts.signal);
    const F = this.#floats;
    const C = this.channels;
    let lossSum = 0;
    let sq = 0;
    let fill = 0;
    const flush = () => {
      if (fill === 0) return;
      let dev = this.#evalDev.get(fill);
      if (!dev) {
        if (this.#evalDev.size >= 2) {
          for (const d of this.#evalDev.values()) disposeEval(d);
          this.#evalDev.clear();
        }
        dev = { coords: ctx.alloc(fill * this.dims), pred: ctx.alloc(fill * C), targets: ctx.alloc(fill * C), grad: ctx.alloc(fill * C) };
        this.#evalDev.set(fill, dev);
      }
      this.#split(this.#evalBuf, 0, fill, this.#evalCoords, this.#evalTargets, 0);
      dev.coords.upload(this.#evalCoords.subarray(0, fill * this.dims));
      const pred = ctx.field(dev.coords, fill);
      const targets = this.#evalTargets.subarray(0, fill * C);
      dev.pred.upload(pred);
      dev.targets.upload(targets);
      lossSum += ctx.loss.evaluate(dev.pred, dev.targets, { grad: dev.grad }).loss * fill * C;
      let s = 0;
      for (let k = 0; k < fill * C; k++) {
        const d = pred[k]! - targets[k]!;
        s += d * d;
      }
      sq += s;
      fill = 0;
      this.#trainingRss = Math.max(this.#trainingRss, currentRss());
    };
    for (const b of this.#heldOut) {
      const len = this.#blockLength(b);
      for (let done = 0; done < len; ) {
        const take = Math.min(len - done, this.#evalChunk - fill);
        this.#o.reader.read(b * this.#blockRecords + done, take, this.#evalBuf, fill * F);
        fill += take;
        done += take;
        if (fill === this.#evalChunk) flush();
        if (await stopped()) return undefined;
      }
    }
    flush();
    const count = this.#heldOutRecords * C;
    const loss = lossSum / count;
    const mse = sq / count;
    const range = this.#values.max - this.#values.min || 1;
    const psnr = 10 * Math.log10((range * range) / mse);
    this.validation.push({ step, loss, psnr });
    return { psnr, heldOutLoss: loss };
  }

  meta(): Record<string, unknown> {
    const m: PointsMeta = { file: resolve(this.path), format: this.#o.format, dims: this.dims, channels: this.channels, records: this.records, box: this.box, valueRange: { ...this.#values } };
    return { points: m };
  }

  /** The checkpoint must be of points with as many coordinates and values; its box and value range are used from here on. */
  checkResume(ck: Checkpoint, path: string): void {
    const was = ck.meta.points as PointsMeta | undefined;
    if (!was) throw new CheckpointError(`${path}: the checkpoint was trained on an image, not on points`, { file: path, problem: "incompatible" });
    if (was.dims !== this.dims || was.channels !== this.channels)
      throw new CheckpointError(`${path}: the checkpoint was trained on points of ${was.dims} coordinates and ${was.channels} values, not ${this.dims} and ${this.channels}`, { file: path, problem: "incompatible" });
    this.#box = { min: [...was.box.min], max: [...was.box.max] };
    this.#boxFrom = "checkpoint";
    this.#values = { ...was.valueRange };
    this.#setBox(this.#box);
  }

  summary(): PointsSummary {
    const last = this.validation.at(-1);
    return {
      path: this.path, format: this.#o.format, dims: this.dims, channels: this.channels, records: this.records,
      trainRecords: this.#trainRecords, heldOutRecords: this.#heldOutRecords, blockRecords: this.#blockRecords, blocks: this.#blocks,
      shardRecords: this.#shard.length / this.#floats, shardsPerEpoch: this.#shardsPerEpoch(),
      maxMemory: this.#maxMemory, dataBytes: this.#shard.byteLength + this.#evalBuf.byteLength,
      box: this.box, boxFrom: this.#boxFrom, valueRange: { ...this.#values },
      validationLoss: last?.loss ?? NaN, psnr: last?.psnr ?? NaN, trainingRss: this.#trainingRss,
    };
  }

  summaryFields(): Record<string, unknown> {
    return { points: this.summary() };
  }

  /** validation.csv: step, loss, psnr of every evaluation. */
  async writeOutputs(out: string): Promise<Record<string, string>> {
    const validation = join(out, VALIDATION);
    const num = (x: number) => (Number.isFinite(x) ? String(x) : "nan");
    writeFileAtomic(validation, ["step,loss,psnr", ...this.validation.map((v) => `${v.step},${num(v.loss)},${num(v.psnr)}`)].join("\n") + "\n");
    return { validation };
  }

  /** The plot: training and validation loss, held-out PSNR. */
  async writePlot(plotPath: string, rows: MetricsRow[]): Promise<void> {
    const spec = plotSpec(rows) as unknown as { vconcat: Record<string, unknown>[] };
    const [loss, psnr] = spec.vconcat as [Record<string, unknown>, Record<string, unknown>];
    const x = { field: "step", type: "quantitative", title: "step" };
    const y = { field: "loss", type: "quantitative", title: "loss (log scale)", scale: { type: "log" } };
    const val = this.validation.filter((v) => Number.isFinite(v.loss) && v.loss > 0).map((v) => ({ step: v.step, loss: v.loss }));
    spec.vconcat[0] = {
      width: loss.width, height: loss.height, title: "training loss (blue) and validation loss (red)",
      layer: [{ data: loss.data, mark: loss.mark, encoding: loss.encoding }, { data: { values: val }, mark: { type: "line", point: true, color: "#e45756" }, encoding: { x, y } }],
    };
    spec.vconcat[1] = { ...psnr, title: "held-out PSNR (relative to the value range)" };
    const view = new vega.View(vega.parse(vl.compile(spec as unknown as vl.TopLevelSpec).spec), { renderer: "none" });
    let svg: string;
    try {
      svg = await view.toSVG();
    } finally {
      view.finalize();
    }
    writeFileAtomic(plotPath, await sharp(Buffer.from(svg), { density: 144 }).png().toBuffer());
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const b of this.#batch.values()) (b.coords.dispose(), b.targets.dispose());
    for (const d of this.#evalDev.values()) disposeEval(d);
    this.#batch.clear();
    this.#evalDev.clear();
    this.#o.reader.close();
  }
}

/**
 * A points checkpoint's field at raw (unnormalized) coordinates: the model (its averaged weights
 * unless `raw`), normalized by the checkpoint's bounding box, as the trainer's evaluation does.
 */
export async function loadPointField(checkpoint: string, opts: { backend?: BackendRequest; raw?: boolean } = {}): Promise<{
  dims: number;
  channels: number;
  box: BoundingBox;
  /** Predictions ([n][channels]) at n points ([n][dims], in the data's own units). */
  predict(coords: Float32Array): Float32Array;
  close(): void;
}> {
  const ck = await readCheckpoint(checkpoint);
  const meta = ck.meta.points as PointsMeta | undefined;
  if (!meta) throw new CheckpointError(`${checkpoint}: not a checkpoint of points (it was trained on an image)`, { file: checkpoint, problem: "incompatible" });
  const cfg = parseTrainConfig(ck.config);
  const f = await createField(cfg, meta.channels, { backend: opts.backend ?? (cfg.backend as BackendRequest) }, meta.dims);
  loadCheckpointWeights(f, ck, opts.raw);
  const field = fieldOf(f);
  const { dims, box } = meta;
  return {
    dims, channels: meta.channels, box,
    predict(coords) {
      const n = coords.length / dims;
      if (!Number.isInteger(n)) throw new RangeError(`predict: ${coords.length} values are not whole points of ${dims} coordinates`);
      const x = new Float32Array(coords.length);
      for (let i = 0; i < n; i++)
        for (let d = 0; d < dims; d++) {
          const ext = box.max[d]! - box.min[d]!;
          x[i * dims + d] = ext > 0 ? (coords[i * dims + d]! - box.min[d]!) * (1 / ext) : 0.5;
        }
      const buf = f.encoding.alloc(x.length);
      try {
        buf.upload(x);
        return field(buf, n);
      } finally {
        buf.dispose();
      }
    },
    close: () => (f.encoding.close(), f.mlp.close()),
  };
}

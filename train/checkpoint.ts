// Training checkpoints: one binary file holding the configuration, the step, the RNG state, free
// JSON (schedule, optimizer step, metrics) and named f32 arrays (parameters, optimizer moments,
// EMA), written atomically and refused, with a message naming the file and the problem, when it is
// missing, foreign, from a newer format, truncated or corrupt.
//
// Layout (little-endian):
//   0   8 bytes  magic "NGPKCKPT"
//   8   u32      format version (FORMAT_VERSION)
//   12  u64      header length H in bytes
//   20  H bytes  the header, UTF-8 JSON:
//                {"headerSha256":"<hex>","config":...,"step":...,"rng":...,"meta":...,
//                 "arrays":[{"name","offset","length"}...],"payload":{"bytes":P,"sha256":"<hex>"}}
//   then zeros up to D = the next multiple of 64, and the payload: P bytes from D, each array's
//   raw f32 data at D + offset (offsets multiples of 64, zeros between), nothing after it.
// headerSha256 is the SHA-256 of the header's bytes with its own 64 hex digits written as "0"s; the
// payload's sha256 covers its P bytes (padding included). A flipped byte anywhere is detected.
//
// The container (writeContainer, readContainer) is shared with exported models
// (train/model_file.ts): another magic and version, other header fields, typed arrays (each entry
// with a "type": f32, f16 or u8) aligned to their element size instead of 64 bytes.
import { createHash, randomBytes } from "node:crypto";
import { constants, type Stats } from "node:fs";
import { type FileHandle, open, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { ExpectedError } from "../dsl/errors.ts";
import { notRegularFile } from "../runtime/files.ts";

export const MAGIC = "NGPKCKPT";
/** The format this code writes; it reads versions 1..FORMAT_VERSION. */
export const FORMAT_VERSION = 1;
const PREFIX = 20;
const ALIGN = 64;
const DIGEST_FIELD = '{"headerSha256":"';
const ZERO_DIGEST = "0".repeat(64);

export interface Checkpoint {
  /** The file's format version. */
  version: number;
  /** The training configuration (JSON). */
  config: unknown;
  step: number;
  /** The random generator's state (JSON). */
  rng: unknown;
  /** Free JSON: schedule state, optimizer step, metrics... */
  meta: Record<string, unknown>;
  /** Parameters, optimizer moments, EMA... (each read back into a buffer of its own). */
  arrays: Record<string, Float32Array>;
  /** The file it was read from (set by readCheckpoint; not written). */
  path?: string;
}

export type CheckpointProblem =
  | "missing" | "directory" | "empty" | "foreign" | "version" | "truncated" | "corrupt" // reading
  | "unwritable" | "invalid" // writing
  | "incompatible"; // checkCompatible

/** A checkpoint that cannot be written, read or used; the message names the file and the problem. */
export class CheckpointError extends ExpectedError {
  /** The checkpoint file ("" when not given). */
  readonly file: string;
  readonly problem: CheckpointProblem;
  constructor(message: string, opts: { file?: string; problem?: CheckpointProblem } = {}) {
    super(message);
    this.name = "CheckpointError";
    this.file = opts.file ?? "";
    this.problem = opts.problem ?? "incompatible";
  }
}

const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;
const sha256 = (...chunks: Uint8Array[]) => {
  const h = createHash("sha256");
  for (const c of chunks) h.update(c);
  return h.digest("hex");
};
const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** The first path inside `value` that JSON cannot hold faithfully, with why (undefined when fine). */
export function notJson(value: unknown, at: string): string | undefined {
  switch (typeof value) {
    case "string":
    case "boolean":
      return undefined;
    case "number":
      return Number.isFinite(value) ? undefined : `${at} is ${value}, which JSON cannot hold`;
    case "object": {
      if (value === null) return undefined;
      if (ArrayBuffer.isView(value)) return `${at} is a ${value.constructor.name} (put arrays in \`arrays\`)`;
      if (Array.isArray(value)) {
        for (let k = 0; k < value.length; k++) {
          const bad = notJson(value[k], `${at}[${k}]`);
          if (bad) return bad;
        }
        return undefined;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) return `${at} is a ${value.constructor?.name ?? "non-plain object"}, which JSON cannot hold`;
      for (const [k, v] of Object.entries(value)) {
        if (v === undefined) continue; // an absent optional field: dropped, read back as absent
        const bad = notJson(v, `${at}.${k}`);
        if (bad) return bad;
      }
      return undefined;
    }
    default:
      return `${at} is ${typeof value === "bigint" ? "a bigint" : typeof value}, which JSON cannot hold`;
  }
}

async function writeAll(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, Math.min(data.length - done, 1 << 30), position + done);
    if (bytesWritten <= 0) throw new Error("write made no progress");
    done += bytesWritten;
  }
}

/** Element types of a container's arrays: f32, f16 (IEEE binary16) and u8, little-endian. */
export const ARRAY_TYPES = { f32: Float32Array, f16: Float16Array, u8: Uint8Array } as const;
export type ArrayType = keyof typeof ARRAY_TYPES;
export type ContainerArray = Float32Array | Float16Array | Uint8Array;
/**
 * An array the writer asks for when it writes it, one at a time (a device buffer's download): a
 * state of many large arrays never needs a second copy of itself in memory. `read` must give
 * `length` values of `type`; the writer calls it once and drops the result before the next.
 */
export interface LazyArray {
  type: ArrayType;
  length: number;
  read(): ContainerArray;
}
export type ArraySource = ContainerArray | LazyArray;

/** A file format built on the container: its magic, version, name in messages and arrays' layout. */
export interface ContainerFormat {
  /** 8 ASCII bytes at the start of the file. */
  magic: string;
  /** The version this code writes; it reads 1..version. */
  version: number;
  /** What the file is called in messages ("checkpoint", "model file"). */
  what: string;
  /** Array offsets in the payload are multiples of this ("natural": of their element size). */
  align: number | "natural";
  /** Arrays of several types (each entry has a "type"); otherwise f32 only, entries without one. */
  typed: boolean;
  /** The error to throw (its message names the file and the problem). */
  error: (message: string, file: string, problem: CheckpointProblem) => Error;
  /** Whether a checksummed header has the format's own fields (besides arrays and payload). */
  valid: (header: Record<string, unknown>) => boolean;
}

const CHECKPOINT: ContainerFormat = {
  magic: MAGIC,
  version: FORMAT_VERSION,
  what: "checkpoint",
  align: ALIGN,
  typed: false,
  error: (message, file, problem) => new CheckpointError(message, { file, problem }),
  valid: (h) => Number.isSafeInteger(h.step) && (h.step as number) >= 0 && h.meta !== null && typeof h.meta === "object",
};

const typeOf = (a: unknown): ArrayType | undefined => (Object.keys(ARRAY_TYPES) as ArrayType[]).find((t) => a instanceof ARRAY_TYPES[t]);
const arrayAlign = (f: ContainerFormat, type: ArrayType) => (f.align === "natural" ? ARRAY_TYPES[type].BYTES_PER_ELEMENT : f.align);
const alignTo = (n: number, a: number) => Math.ceil(n / a) * a;

/**
 * Writes `ck` to `path` atomically: a temporary file in the same directory, fsync, rename (and an
 * fsync of the directory). Nothing is left behind and an existing file is untouched on failure.
 * The arrays are written from their own memory (no copies), lazy ones read one at a time.
 */
export async function writeCheckpoint(path: string, ck: Omit<Checkpoint, "version" | "arrays"> & { arrays: Record<string, Float32Array | LazyArray> }): Promise<void> {
  const invalid = (why: string) => new CheckpointError(`checkpoint ${path}: cannot write it: ${why}`, { file: path, problem: "invalid" });
  if (!Number.isSafeInteger(ck.step) || ck.step < 0) throw invalid(`step ${ck.step} is not an integer >= 0`);
  for (const [k, v] of [["config", ck.config], ["rng", ck.rng], ["meta", ck.meta]] as const) {
    const bad = v === undefined ? undefined : notJson(v, k); // config and rng undefined: written as null
    if (bad) throw invalid(bad);
  }
  if (ck.meta === null || typeof ck.meta !== "object" || Array.isArray(ck.meta)) throw invalid("meta is not an object");
  await writeContainer(path, CHECKPOINT, { config: ck.config ?? null, step: ck.step, rng: ck.rng ?? null, meta: ck.meta }, ck.arrays ?? {});
}

/**
 * Writes a container file atomically: the header {headerSha256, ...fields, arrays, payload} and the
 * arrays in their order (at offsets aligned as the format says). `fields` must be JSON already
 * (check it with notJson's callers' rules); the arrays' types must be the format's.
 *
 * One pass over the arrays: the header's length does not depend on the digests (64 hex digits
 * each), so the payload is written after a placeholder, checksummed as it goes, and the header
 * written over the placeholder last. A lazy array is read when its turn comes and dropped after.
 */
export async function writeContainer(path: string, format: ContainerFormat, fields: Record<string, unknown>, arrays: Record<string, ArraySource>): Promise<void> {
  const invalid = (why: string) => format.error(`${format.what} ${path}: cannot write it: ${why}`, path, "invalid");
  const bad = notJson(fields, "header");
  if (bad) throw invalid(bad);

  // The layout: each array at an aligned offset of the payload.
  const entries: { name: string; type: ArrayType; offset: number; length: number; source: ArraySource }[] = [];
  let bytes = 0;
  for (const [name, source] of Object.entries(arrays)) {
    const type = ArrayBuffer.isView(source) ? typeOf(source) : source.type in ARRAY_TYPES ? source.type : undefined;
    if (!format.typed && type !== "f32") throw invalid(`array ${JSON.stringify(name)} is not a Float32Array`);
    if (!type) throw invalid(`array ${JSON.stringify(name)} is not a Float32Array, Float16Array or Uint8Array`);
    if (!Number.isSafeInteger(source.length) || source.length < 0) throw invalid(`array ${JSON.stringify(name)} has length ${source.length}`);
    bytes = alignTo(bytes, arrayAlign(format, type));
    entries.push({ name, type, offset: bytes, length: source.length, source });
    bytes += source.length * ARRAY_TYPES[type].BYTES_PER_ELEMENT;
  }
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw invalid("this machine is big-endian; the format is little-endian");

  const headerFor = (payloadSha256: string) => {
    const header = {
      headerSha256: ZERO_DIGEST,
      ...fields,
      arrays: entries.map(({ name, type, offset, length }) => (format.typed ? { name, type, offset, length } : { name, offset, length })),
      payload: { bytes, sha256: payloadSha256 },
    };
    const text = JSON.stringify(header);
    const unsigned = new TextEncoder().encode(text);
    const signed = new TextEncoder().encode(DIGEST_FIELD + sha256(unsigned) + text.slice(DIGEST_FIELD.length + 64));
    const head = new Uint8Array(align(PREFIX + signed.length));
    head.set(new TextEncoder().encode(format.magic), 0);
    const view = new DataView(head.buffer);
    view.setUint32(8, format.version, true);
    view.setBigUint64(12, BigInt(signed.length), true);
    head.set(signed, PREFIX);
    return head;
  };
  const start = headerFor(ZERO_DIGEST).length; // the same for every digest

  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  let fh;
  try {
    fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "does not exist" : code === "ENOTDIR" ? "is not a directory" : code === "EACCES" || code === "EPERM" || code === "EROFS" ? "is not writable" : `cannot be written (${(e as Error).message})`;
    throw format.error(`${format.what} ${path}: cannot write it: directory ${dir} ${why}${code ? ` (${code})` : ""}`, path, "unwritable");
  }
  let wrong: Error | undefined; // a lazy array that gave something else than it promised
  try {
    try {
      const digest = createHash("sha256");
      const padding = new Uint8Array(ALIGN);
      let at = 0;
      const put = async (data: Uint8Array) => {
        digest.update(data);
        await writeAll(fh, data, start + at);
        at += data.length;
      };
      for (const e of entries) {
        if (e.offset > at) await put(padding.subarray(0, e.offset - at));
        const data = ArrayBuffer.isView(e.source) ? e.source : e.source.read();
        if (typeOf(data) !== e.type || data.length !== e.length) {
          wrong = invalid(`array ${JSON.stringify(e.name)} gave ${data.length} values of ${typeOf(data) ?? "another type"}, not the ${e.length} of ${e.type} it announced`);
          throw wrong;
        }
        await put(bytesOf(data));
      }
      await writeAll(fh, headerFor(digest.digest("hex")), 0);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    if (e === wrong) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw format.error(`${format.what} ${path}: writing it failed (${code ?? (e as Error).message}${code === "ENOSPC" ? ": no space left" : ""}); ${dir} is unchanged`, path, "unwritable");
  }
  // Make the rename durable (best effort: not every file system lets a directory be opened).
  try {
    const d = await open(dir, constants.O_RDONLY);
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {}
}

/** Reads and checks a checkpoint; each array in a buffer of its own. */
export async function readCheckpoint(path: string): Promise<Checkpoint> {
  const { version, header, arrays } = await readContainer(path, CHECKPOINT);
  return { version, config: header.config, step: header.step as number, rng: header.rng, meta: header.meta as Record<string, unknown>, arrays: arrays as Record<string, Float32Array>, path };
}

/**
 * Reads and checks a container file of `format`: its version, its header (checksummed JSON, with
 * the format's fields) and its arrays, each read into a buffer of its own.
 */
export async function readContainer(path: string, format: ContainerFormat): Promise<{ version: number; header: Record<string, unknown>; arrays: Record<string, ContainerArray>; bytes: number }> {
  const { what } = format;
  const fail = (problem: CheckpointProblem, msg: string) => format.error(`${what} ${path}: ${msg}`, path, problem);
  let st: Stats;
  try {
    st = await stat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw fail("missing", "no such file");
    throw fail("missing", `cannot be read (${code ?? (e as Error).message})`);
  }
  if (st.isDirectory()) throw fail("directory", `is a directory, not a ${what.endsWith(" file") ? what : `${what} file`}`);
  const special = notRegularFile(st); // a FIFO or a device: reading it would block or never end
  if (special) throw fail("foreign", `${special}, not a ${what}`);
  if (st.size === 0) throw fail("empty", `is empty (0 bytes): not a ${what}, or its writing was interrupted`);
  // Read in parts: the start and the header, then each array into a buffer of its own, the payload
  // checksummed as it is read (one buffer of the whole file fails past the runtime's largest
  // ArrayBuffer: an Earth4D checkpoint is 8 GiB).
  let fh: FileHandle;
  try {
    fh = await open(path, "r");
  } catch (e) {
    throw fail("missing", `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const size = st.size;
    const readAt = async (into: Uint8Array, position: number): Promise<void> => {
      for (let done = 0; done < into.length; ) {
        const { bytesRead } = await fh.read(into, done, Math.min(into.length - done, 1 << 30), position + done);
        if (bytesRead === 0) throw fail("truncated", `is truncated: ${size} bytes`);
        done += bytesRead;
      }
    };
    const u8 = new Uint8Array(Math.min(size, PREFIX));
    await readAt(u8, 0);
    const magic = new TextEncoder().encode(format.magic);
    const n = Math.min(u8.length, magic.length);
    if (!magic.subarray(0, n).every((b, k) => u8[k] === b)) {
      throw fail("foreign", `is not a ${what} (it starts with ${describeStart(u8)}, a ${what} with "${format.magic}")`);
    }
    if (size < PREFIX) throw fail("truncated", `is truncated: ${size} bytes, shorter than the ${PREFIX}-byte start of a ${what}`);
    const view = new DataView(u8.buffer);
    const version = view.getUint32(8, true);
    if (version > format.version) throw fail("version", `has format version ${version}, newer than this program reads (up to ${format.version}): update ngp-kernels to read it`);
    if (version < 1) throw fail("version", `has an unknown format version ${version} (this program reads 1 to ${format.version})`);
    const headerLength = view.getBigUint64(12, true);
    if (headerLength > BigInt(size - PREFIX)) throw fail("truncated", `is truncated: ${size} bytes, but its header alone needs ${PREFIX + Number(headerLength)}`);
    const start = align(PREFIX + Number(headerLength));
    const headPart = new Uint8Array(Math.min(start, size) - PREFIX);
    await readAt(headPart, PREFIX);
    const headerBytes = headPart.subarray(0, Number(headerLength));
    let text: string;
    let header: Record<string, unknown>;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
      header = JSON.parse(text);
    } catch {
      throw fail("corrupt", "is corrupt: its header is not valid JSON");
    }
    const digest = text.startsWith(DIGEST_FIELD) ? text.slice(DIGEST_FIELD.length, DIGEST_FIELD.length + 64) : undefined;
    if (!digest || digest !== header?.headerSha256 || sha256(new TextEncoder().encode(DIGEST_FIELD + ZERO_DIGEST + text.slice(DIGEST_FIELD.length + 64))) !== digest)
      throw fail("corrupt", "is corrupt: its header does not match its checksum");
    const arrays = header.arrays as { name: string; type?: string; offset: number; length: number }[];
    const payload = header.payload as { bytes: number; sha256: string };
    const int = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
    if (!Array.isArray(arrays) || !payload || !int(payload.bytes) || typeof payload.sha256 !== "string" || !format.valid(header))
      throw fail("corrupt", `is corrupt: its header lacks the fields of a ${what}`);
    if (!headPart.subarray(Number(headerLength)).every((b) => b === 0)) throw fail("corrupt", "is corrupt: the padding after its header is not zeros");
    const end = start + payload.bytes;
    if (end > size) throw fail("truncated", `is truncated: ${size} bytes, its header says ${end}`);
    if (end < size) throw fail("corrupt", `is corrupt: ${size} bytes, ${size - end} more than its header says (${end})`);
    const entries: { name: string; Type: (typeof ARRAY_TYPES)[ArrayType]; offset: number; length: number }[] = [];
    const names = new Set<string>();
    for (const a of arrays) {
      const type: ArrayType | undefined = format.typed ? (Object.hasOwn(ARRAY_TYPES, a?.type ?? "") ? (a.type as ArrayType) : undefined) : "f32";
      const Type = type && ARRAY_TYPES[type];
      if (!Type || typeof a?.name !== "string" || !int(a.offset) || a.offset % arrayAlign(format, type!) !== 0 || !int(a.length) || a.offset + Type.BYTES_PER_ELEMENT * a.length > payload.bytes || names.has(a.name))
        throw fail("corrupt", `is corrupt: array entry ${JSON.stringify(a)} is not within its data`);
      names.add(a.name);
      entries.push({ name: a.name, Type, offset: a.offset, length: a.length });
    }
    // The payload in order: each array into its own buffer, what lies between them (padding) through
    // a scratch buffer; every byte into the checksum once.
    const hash = createHash("sha256");
    const out: Record<string, ContainerArray> = {};
    const between = async (from: number, to: number) => {
      for (let at = from; at < to; ) {
        const part = new Uint8Array(Math.min(to - at, 1 << 26));
        await readAt(part, start + at);
        hash.update(part);
        at += part.length;
      }
    };
    let at = 0;
    for (const e of [...entries].sort((a, b) => a.offset - b.offset)) {
      const bytes = e.Type.BYTES_PER_ELEMENT * e.length;
      if (e.offset < at) {
        // Arrays that overlap (not written by this program): their bytes are checksummed once.
        const data = new e.Type(e.length);
        await readAt(new Uint8Array(data.buffer), start + e.offset);
        out[e.name] = data;
        continue;
      }
      await between(at, e.offset);
      const data = new e.Type(e.length);
      const raw = new Uint8Array(data.buffer);
      await readAt(raw, start + e.offset);
      hash.update(raw);
      out[e.name] = data;
      at = e.offset + bytes;
    }
    await between(at, payload.bytes);
    if (hash.digest("hex") !== payload.sha256) throw fail("corrupt", "is corrupt: its data does not match its checksum (sha256)");
    // In the header's order, as before.
    const ordered: Record<string, ContainerArray> = {};
    for (const e of entries) ordered[e.name] = out[e.name]!;
    return { version, header, arrays: ordered, bytes: size };
  } finally {
    await fh.close();
  }
}

/** The first bytes of a foreign file, for the message: its type when known, else printable text or hex. */
export function describeStart(u8: Uint8Array): string {
  const starts = (sig: number[]) => sig.every((b, k) => u8[k] === b);
  if (starts([0x89, 0x50, 0x4e, 0x47])) return "a PNG signature";
  if (starts([0xff, 0xd8, 0xff])) return "a JPEG signature";
  if (starts([0x50, 0x4b, 0x03, 0x04])) return "a ZIP signature";
  const head = u8.subarray(0, 8);
  if (head.every((b) => b >= 0x20 && b < 0x7f)) return JSON.stringify(new TextDecoder().decode(head));
  return `bytes ${Array.from(head, (b) => b.toString(16).padStart(2, "0")).join(" ")}`;
}

/**
 * What a checkpoint's field was trained on, from its metadata, for messages: "a 64x48 image with 3
 * channels", "3-D points with 1 value (from /data/points.bin)".
 */
export function trainedOn(meta: Record<string, unknown>): string {
  const s = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;
  const image = meta.image as { width: number; height: number; channels: number } | undefined;
  const points = meta.points as { file: string; dims: number; channels: number } | undefined;
  if (points) return `${points.dims}-D points with ${s(points.channels, "value")} (from ${points.file})`;
  if (image) return `a ${image.width}x${image.height} image with ${s(image.channels, "channel")}`;
  const volume = meta.volume as { width: number; height: number; depth: number; channels: number } | undefined;
  if (volume) return `a ${volume.width}x${volume.height}x${volume.depth} volume with ${s(volume.channels, "channel")}`;
  return "neither an image nor points (its metadata names neither)";
}

/** The value at a dotted path ("model.grid.levels"; array indices as numbers). */
function at(value: unknown, path: string): unknown {
  return path.split(".").reduce<unknown>((o, k) => (o !== null && typeof o === "object" ? (o as Record<string, unknown>)[k] : undefined), value);
}

function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/**
 * Throws a CheckpointError naming the first of `fields` (dotted paths into the configuration, e.g.
 * "model.grid.levels") whose value differs between the checkpoint's configuration and `config`.
 */
export function checkCompatible(ck: Checkpoint, config: unknown, fields: string[]): void {
  const file = ck.path ?? "(checkpoint)";
  const show = (v: unknown) => (v === undefined ? "absent" : JSON.stringify(v));
  for (const f of fields) {
    const saved = at(ck.config, f);
    const now = at(config, f);
    if (!sameJson(saved, now))
      throw new CheckpointError(`checkpoint ${file}: does not fit this configuration: ${f} is ${show(saved)} in the checkpoint but ${show(now)} here`, { file, problem: "incompatible" });
  }
}

/** The largest ||a - b|| / ||a|| over the arrays two checkpoints hold. */
export async function largestRelative(a: string, b: string): Promise<{ name: string; relative: number }> {
  const [x, y] = [await readCheckpoint(a), await readCheckpoint(b)];
  let worst = { name: "", relative: 0 };
  for (const [name, u] of Object.entries(x.arrays)) {
    const v = y.arrays[name];
    if (!v || v.length !== u.length) return { name, relative: Infinity };
    let [d, n] = [0, 0];
    for (let i = 0; i < u.length; i++) (d += (u[i]! - v[i]!) ** 2), (n += u[i]! ** 2);
    const relative = Math.sqrt(d / Math.max(n, 1e-300));
    if (relative >= worst.relative) worst = { name, relative };
  }
  return worst;
}

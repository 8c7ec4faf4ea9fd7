// The checkpoint format of train/checkpoint.ts: an exact round trip (JSON parts, every f32 bit
// pattern, a ~1e6-float array, empty and odd-length arrays, views 64-byte aligned); every refusal
// with a message naming the file and the problem (missing, a directory, empty, foreign, a future
// version, truncated at several places, a flipped byte in the payload and in the header, trailing
// bytes); checkCompatible naming the differing field; atomic writes (no temporary file left, a
// failed write, including one that fails midway in a child process, leaves an existing checkpoint
// intact).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { type Checkpoint, CheckpointError, checkCompatible, FORMAT_VERSION, readCheckpoint, writeCheckpoint } from "../../train/checkpoint.ts";
import { freshSeed, rng, runCommand } from "../util.ts";

const dir = mkdtempSync(join(tmpdir(), "ngpk-ckpt-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);
let counter = 0;
const fresh = (name = "ck") => join(dir, `${name}-${counter++}.ckpt`);

function sample(n = 1_000_003): Omit<Checkpoint, "version"> {
  const r = rng(freshSeed("checkpoint"));
  const big = new Float32Array(n);
  const u = bits(big);
  for (let i = 0; i < n; i++) u[i] = (r() * 2 ** 32) >>> 0; // every bit pattern, NaN payloads included
  big.set([NaN, -0, Infinity, -Infinity, 1e-45], 0);
  return {
    config: { model: { grid: { levels: 16, log2HashmapSize: 19 }, mlp: { width: 64, hiddenLayers: 2 } }, lr: 0.01, image: "photo.png", tags: ["a", "ü€"] },
    step: 12345,
    rng: { seed: 7, state: [3735928559, 1] },
    meta: { schedule: { kind: "plateau", best: null, badEpochs: 2, factor: 0.25 }, optimizerStep: 12345, metrics: [{ step: 10, psnr: 21.5 }] },
    arrays: {
      "params/encoding": big,
      "params/network": Float32Array.from({ length: 4099 }, (_, i) => Math.sin(i)),
      empty: new Float32Array(0),
      "odd length": Float32Array.of(1, 2, 3),
      // A view into a larger buffer (not at its start): written from the view only.
      view: new Float32Array(new Float32Array([9, 8, 7, 6, 5]).buffer, 4, 3),
    },
  };
}

async function refusal(path: string, problem: CheckpointError["problem"], message: RegExp): Promise<void> {
  let err: unknown;
  try {
    await readCheckpoint(path);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CheckpointError);
  const e = err as CheckpointError;
  expect(e.problem).toBe(problem);
  expect(e.file).toBe(path);
  expect(e.message).toContain(path);
  expect(e.message).toMatch(message);
}

describe("round trip", () => {
  test("exact: configuration, step, RNG, meta, and every array bit for bit (a ~1e6-float one), each in a buffer of its own", async () => {
    const ck = sample();
    const path = fresh();
    await writeCheckpoint(path, ck);
    const back = await readCheckpoint(path);
    expect(back.version).toBe(FORMAT_VERSION);
    expect(back.path).toBe(path);
    expect(back.config).toEqual(ck.config);
    expect(back.step).toBe(ck.step);
    expect(back.rng).toEqual(ck.rng);
    expect(back.meta).toEqual(ck.meta);
    expect(Object.keys(back.arrays)).toEqual(Object.keys(ck.arrays));
    for (const [name, a] of Object.entries(ck.arrays)) {
      const b = back.arrays[name]!;
      expect(b).toBeInstanceOf(Float32Array);
      expect(b.length).toBe(a.length);
      expect(Buffer.from(bits(b).buffer, b.byteOffset, b.byteLength).equals(Buffer.from(a.buffer, a.byteOffset, a.byteLength))).toBe(true);
      expect(b.byteOffset % 64).toBe(0);
      // Each array read straight into a buffer of its own (a file past the runtime's largest ArrayBuffer is read too).
      expect(b.buffer.byteLength).toBe(b.byteLength);
    }
    expect(Object.is(back.arrays["params/encoding"]![1], -0)).toBe(true);
    // The file: magic, version, header, then the data (about 4 MB for 1e6 floats).
    const file = readFileSync(path);
    expect(file.subarray(0, 8).toString()).toBe("NGPKCKPT");
    expect(file.readUInt32LE(8)).toBe(FORMAT_VERSION);
    expect(file.length).toBeLessThan(4 * 1_010_000 + 4096);
  });

  test("lazy arrays: read one at a time, in order, each once; the same bytes as the arrays themselves; a lazy array that gives another length is refused, nothing written", async () => {
    const ck = sample(100_003);
    const eager = fresh();
    await writeCheckpoint(eager, ck);
    const order: string[] = [];
    const path = fresh();
    // When an array is read, the ones before it are in the file already (the writer holds one at a time).
    let before = 0;
    const written = () => readdirSync(dir).filter((f) => f.startsWith(`.${basename(path)}.`)).map((f) => statSync(join(dir, f)).size)[0] ?? -1;
    const lazy = Object.fromEntries(
      Object.entries(ck.arrays).map(([name, a]) => [name, { type: "f32" as const, length: a.length, read: () => {
        order.push(name);
        expect(written()).toBeGreaterThanOrEqual(before);
        before += a.byteLength;
        return a.slice();
      } }]),
    );
    await writeCheckpoint(path, { ...ck, arrays: lazy });
    expect(order).toEqual(Object.keys(ck.arrays));
    expect(readFileSync(path).equals(readFileSync(eager))).toBe(true);
    const liar = fresh();
    const bad = { ...ck.arrays, x: { type: "f32" as const, length: 5, read: () => new Float32Array(4) } };
    await expect(writeCheckpoint(liar, { ...ck, arrays: bad })).rejects.toThrow(`checkpoint ${liar}: cannot write it: array "x" gave 4 values of f32, not the 5 of f32 it announced`);
    expect(readdirSync(dir).filter((f) => f.includes(liar.split("/").pop()!))).toEqual([]);
  });

  test("overwriting a checkpoint replaces it; nothing else is left in the directory", async () => {
    const sub = join(dir, "overwrite");
    mkdirSync(sub);
    const path = join(sub, "run.ckpt");
    await writeCheckpoint(path, { config: { a: 1 }, step: 1, rng: null, meta: {}, arrays: { x: Float32Array.of(1) } });
    await writeCheckpoint(path, { config: { a: 2 }, step: 2, rng: null, meta: {}, arrays: { x: Float32Array.of(2, 3) } });
    expect(readdirSync(sub)).toEqual(["run.ckpt"]);
    const back = await readCheckpoint(path);
    expect(back.config).toEqual({ a: 2 });
    expect(Array.from(back.arrays.x!)).toEqual([2, 3]);
  });

  test("no arrays, undefined optional fields dropped", async () => {
    const path = fresh();
    await writeCheckpoint(path, { config: { a: undefined, b: 1 }, step: 0, rng: undefined, meta: { note: "x", gone: undefined }, arrays: {} });
    const back = await readCheckpoint(path);
    expect(back).toMatchObject({ config: { b: 1 }, step: 0, rng: null, meta: { note: "x" }, arrays: {} });
    expect("gone" in back.meta).toBe(false);
  });
});

describe("refusals name the file and the problem", () => {
  let good = "";
  let bytes: Buffer;
  const variant = (mutate: (b: Buffer) => Buffer | string) => {
    const p = fresh("bad");
    writeFileSync(p, mutate(Buffer.from(bytes)));
    return p;
  };
  const headerEnd = () => 20 + Number(bytes.readBigUInt64LE(12));

  beforeAll(async () => {
    good = fresh("good");
    await writeCheckpoint(good, sample(100_000));
    bytes = readFileSync(good);
  });

  test("the good checkpoint that every refusal below alters reads back", async () => {
    expect((await readCheckpoint(good)).step).toBe(12345);
  });

  test("missing, a directory, empty", async () => {
    await refusal(join(dir, "nope.ckpt"), "missing", /no such file/);
    await refusal(join(dir, "nodir", "nope.ckpt"), "missing", /no such file/);
    const d = join(dir, "a-directory");
    mkdirSync(d);
    await refusal(d, "directory", /is a directory/);
    await refusal(variant(() => Buffer.alloc(0)), "empty", /is empty/);
  });

  test("a foreign file (wrong magic): a PNG, text, random bytes", async () => {
    await refusal(variant(() => Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])), "foreign", /is not a checkpoint \(it starts with a PNG signature/);
    await refusal(variant(() => "model: big\nsteps: 100\n"), "foreign", /is not a checkpoint \(it starts with "model: b"/);
    await refusal(variant(() => Buffer.from([1, 2, 3])), "foreign", /is not a checkpoint \(it starts with bytes 01 02 03/);
    await refusal(variant((b) => ((b[3] = 0x58), b)), "foreign", /is not a checkpoint/);
  });

  test("a future or unknown format version", async () => {
    await refusal(variant((b) => (b.writeUInt32LE(FORMAT_VERSION + 1, 8), b)), "version", new RegExp(`format version ${FORMAT_VERSION + 1}, newer than this program reads`));
    await refusal(variant((b) => (b.writeUInt32LE(0, 8), b)), "version", /unknown format version 0/);
  });

  test("truncated: cut in the magic, in the prefix, in the header, in the data, one byte short", async () => {
    for (const n of [4, 8, 15, 25, headerEnd() - 1, headerEnd() + 100, Math.floor(bytes.length / 2), bytes.length - 1])
      await refusal(variant((b) => b.subarray(0, n)), "truncated", /is truncated/);
  });

  test("corrupt: a flipped byte in the payload (anywhere), in the header, in the padding; bytes after the end", async () => {
    for (const at of [bytes.length - 1, bytes.length - 4000, Math.floor(bytes.length * 0.6)])
      await refusal(variant((b) => ((b[at] ^= 0x10), b)), "corrupt", /is corrupt: its data does not match its checksum/);
    // The header: a digit of the step (still valid JSON) and a brace (not JSON any more).
    const stepAt = bytes.indexOf('"step":12345') + 8; // a byte offset (the header has non-ASCII text)
    await refusal(variant((b) => ((b[stepAt] = "9".charCodeAt(0)), b)), "corrupt", /its header does not match its checksum/);
    await refusal(variant((b) => ((b[headerEnd() - 1] = 0x20), b)), "corrupt", /its header is not valid JSON/);
    // Between the header and the 64-byte aligned data.
    if (headerEnd() % 64 !== 0) await refusal(variant((b) => ((b[headerEnd()] = 1), b)), "corrupt", /padding/);
    await refusal(variant((b) => Buffer.concat([b, Buffer.from([0])])), "corrupt", /1 more than its header says/);
  });

  test("the header length pointing past the end is truncation", async () => {
    await refusal(variant((b) => (b.writeBigUInt64LE(2n ** 40n, 12), b)), "truncated", /header alone needs/);
  });
});

describe("checkCompatible", () => {
  test("names the first differing field (dotted path), with both values; equal fields pass", async () => {
    const path = fresh();
    await writeCheckpoint(path, { ...sample(10), arrays: {} });
    const ck = await readCheckpoint(path);
    const config = structuredClone(ck.config) as { model: { grid: { levels: number }; mlp: Record<string, unknown> }; lr: number };
    config.lr = 0.5; // not checked
    checkCompatible(ck, config, ["model.grid", "model.mlp.width"]);
    config.model.grid.levels = 8;
    delete config.model.mlp.width;
    const fields = ["model.mlp.hiddenLayers", "model.grid.levels", "model.mlp.width"];
    expect(() => checkCompatible(ck, config, fields)).toThrow(CheckpointError);
    expect(() => checkCompatible(ck, config, fields)).toThrow(`checkpoint ${path}: does not fit this configuration: model.grid.levels is 16 in the checkpoint but 8 here`);
    expect(() => checkCompatible(ck, config, ["model.mlp.width"])).toThrow("model.mlp.width is 64 in the checkpoint but absent here");
    expect(() => checkCompatible(ck, config, ["model.grid"])).toThrow(/model\.grid is \{"levels":16,"log2HashmapSize":19\} in the checkpoint but \{"levels":8,/);
    // Key order does not matter.
    checkCompatible(ck, { model: { grid: { log2HashmapSize: 19, levels: 16 } } }, ["model.grid"]);
  });
});

describe("atomic writes", () => {
  test("an unwritable directory is named (missing, or a file)", async () => {
    const file = join(dir, "plain-file");
    writeFileSync(file, "x");
    for (const [d, why] of [[join(dir, "no", "such"), /does not exist/], [file, /is not a directory/]] as const) {
      const p = join(d, "run.ckpt");
      const err = await writeCheckpoint(p, sample(10)).catch((e) => e);
      expect(err).toBeInstanceOf(CheckpointError);
      expect(err.problem).toBe("unwritable");
      expect(err.message).toContain(`directory ${d} `);
      expect(err.message).toMatch(why);
    }
  });

  test("a refused write (not JSON, not f32) and a failed rename leave the existing checkpoint and no temporary file", async () => {
    const sub = join(dir, "atomic");
    mkdirSync(sub);
    const path = join(sub, "run.ckpt");
    await writeCheckpoint(path, sample(1000));
    const before = readFileSync(path);
    const bad: [Partial<Omit<Checkpoint, "version">>, RegExp][] = [
      [{ meta: { schedule: { best: Infinity } } }, /meta\.schedule\.best is Infinity, which JSON cannot hold/],
      [{ rng: { s: 1n } }, /rng\.s is a bigint/],
      [{ meta: { m: new Float32Array(2) } }, /meta\.m is a Float32Array \(put arrays in `arrays`\)/],
      [{ arrays: { x: new Float64Array(2) as never } }, /array "x" is not a Float32Array/],
      [{ step: -1 }, /step -1/],
    ];
    for (const [change, message] of bad) {
      const err = await writeCheckpoint(path, { ...sample(1000), ...change }).catch((e) => e);
      expect(err).toBeInstanceOf(CheckpointError);
      expect(err.message).toContain(path);
      expect(err.message).toMatch(message);
    }
    expect(readFileSync(path).equals(before)).toBe(true);
    expect(readdirSync(sub)).toEqual(["run.ckpt"]);
    // The rename fails (the target is a non-empty directory) after the data was written.
    const target = join(sub, "taken");
    mkdirSync(target);
    writeFileSync(join(target, "f"), "x");
    const err = await writeCheckpoint(target, sample(1000)).catch((e) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect(err.message).toMatch(/writing it failed/);
    expect(readdirSync(sub).sort()).toEqual(["run.ckpt", "taken"]);
  });

  test("a write that fails midway (file size limit, in a child process) leaves the old checkpoint intact and no temporary file", async () => {
    const sub = join(dir, "midway");
    mkdirSync(sub);
    const path = join(sub, "run.ckpt");
    await writeCheckpoint(path, { config: { old: true }, step: 5, rng: null, meta: {}, arrays: { p: Float32Array.of(1, 2, 3) } });
    const before = readFileSync(path);
    const script = join(sub, "..", "midway-writer.ts");
    writeFileSync(script, `
      import { writeCheckpoint } from ${JSON.stringify(resolve(import.meta.dir, "../../train/checkpoint.ts"))};
      try {
        await writeCheckpoint(${JSON.stringify(path)}, { config: { old: false }, step: 6, rng: null, meta: {}, arrays: { p: new Float32Array(4_000_000).fill(1) } });
        console.log("WROTE");
      } catch (e) { console.log("ERROR " + e.name + ": " + e.message); }
    `);
    // 1024 blocks of 1 KiB: the 16 MB checkpoint cannot be written; SIGXFSZ ignored, so write() fails with EFBIG.
    const { out } = await runCommand(["bash", "-c", `trap '' XFSZ; ulimit -f 1024; exec "${process.execPath}" "${script}"`]);
    expect(out).toContain("ERROR CheckpointError: checkpoint " + path + ": writing it failed (EFBIG");
    expect(readFileSync(path).equals(before)).toBe(true);
    expect(readdirSync(sub)).toEqual(["run.ckpt"]);
    expect((await readCheckpoint(path)).config).toEqual({ old: true });
  });
});

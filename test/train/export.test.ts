// `bun run export` and rendering from an export: a tiny run with learned probing is exported in
// f32 and f16 (child processes, as a user runs them); the f32 export renders bit for bit as the
// checkpoint and the f16 one within a small difference; the packed indices are the argmax of the
// checkpoint's logits; the file is its header plus exactly HashGrid.memory's inference bytes and
// the network; broken, foreign and missing files are refused with exit 2 and a message naming them.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { argmaxRows } from "../../modules/hashgrid.ts";
import { imageFormat } from "../../train/image.ts";
import { checkMemory, MemoryError } from "../../runtime/memory.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { type Checkpoint, readCheckpoint, writeCheckpoint } from "../../train/checkpoint.ts";
import { parseTrainConfig, type TrainConfigInput } from "../../train/config.ts";
import { exportModel, loadModelWeights, MODEL_MAGIC, packIndices, readModelFile, unpackIndices, writeModelFile } from "../../train/model_file.ts";
import { checkpointUses, createField, fieldOf, loadCheckpointWeights } from "../../train/field.ts";
import { train } from "../../train/trainer.ts";
import { cacheDir, type ChildResult, envForFile, ROOT, runBun, TEST_TIMEOUT } from "../util.ts";

const CPU = findCxx().tool !== undefined;
const BACKEND = CPU ? "cpu" : "js";

let dir: string;
let image: string;
/** The probing run's checkpoint, and its exports. */
let ckPath: string;
let ck: Checkpoint;
let f32: string;
let f16: string;

type Result = ChildResult;
const exportCli = (args: string[]) => runBun("cli/export.ts", args);
const renderCli = (args: string[]) => runBun("cli/render.ts", [...args, "--backend", BACKEND]);

/** Exit status `code`, a first line "error: " naming every `parts`, no stack trace. */
function expectCleanError(what: string, r: Result, code: number, parts: string[]): void {
  const context = `${what}: exit ${r.code}, stderr:\n${r.err}`;
  expect(r.code, context).toBe(code);
  expect(r.err, context).not.toMatch(/^\s{4}at /m);
  expect(r.err, context).not.toContain("Bun has crashed");
  expect(r.err.trim().split("\n")[0], context).toStartWith("error: ");
  for (const p of parts) expect(r.err, context).toContain(p);
}

/** The decoded pixels of an image file. */
const pixels = async (path: string) => new Uint8Array(await sharp(path).raw().toBuffer());

/** A small model with learned probing (2 of its 4 levels are hashed and probed), keeping an EMA (the weights an export chooses from). */
function config(over: Partial<TrainConfigInput> = {}): TrainConfigInput {
  return {
    image,
    ema: { enabled: true },
    encoding: { levels: 4, log2HashmapSize: 12, finestResolution: 256, probing: { range: 4, codebookSize: 256 } },
    network: { width: 16 },
    batch: 4096,
    steps: 30,
    evalEvery: 0,
    backend: BACKEND,
    seed: 11,
    out: join(dir, "run"),
    ...over,
  };
}

// The trainer loads its kernels through $NGPK_CACHE_DIR (it takes no cacheDir option).
envForFile({ NGPK_CACHE_DIR: cacheDir });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ngpk-export-"));
  image = join(dir, "astronaut-64x48.png");
  await sharp(join(ROOT, "data/astronaut.png")).resize(64, 48, { fit: "cover" }).png().toFile(image);
  const result = await train(config());
  ckPath = result.files.checkpoint;
  ck = await readCheckpoint(ckPath);
  [f32, f16] = [join(dir, "model-f32.ngp"), join(dir, "model-f16.ngp")];
  const [a, b] = await Promise.all([exportCli(["--checkpoint", ckPath, "--out", f32, "--precision", "f32"]), exportCli(["--checkpoint", ckPath, "--out", f16])]);
  for (const r of [a, b]) if (r.code !== 0) throw new Error(`export failed (${r.code}):\n${r.err}`);
}, TEST_TIMEOUT);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("packing", () => {
  test("indices are packed little-endian at log2(N_p) bits per row, least significant bit first", () => {
    // 2 bits: rows 1, 2, 3, 0 fill byte 0 from its low bits (0b00_11_10_01), row 4 starts byte 1.
    expect(Array.from(packIndices(new Uint32Array([1, 2, 3, 0, 1]), 2))).toEqual([0x39, 0x01]);
    // 3 bits: row 2 straddles bytes 0 and 1 (bits 6..8).
    expect(Array.from(packIndices(new Uint32Array([0, 0, 0b111]), 3))).toEqual([0xc0, 0x01]);
    expect(() => packIndices(new Uint32Array([4]), 2)).toThrow(/does not fit in 2 bits/);
  });

  test("pack and unpack round-trip at every bit width of the probing ranges", () => {
    for (let bits = 1; bits <= 6; bits++)
      for (const rows of [0, 1, 7, 8, 9, 1001]) {
        const idx = new Uint32Array(rows).map((_, r) => (r * 2654435761) % 2 ** bits);
        const packed = packIndices(idx, bits);
        expect(packed.length).toBe(Math.ceil((rows * bits) / 8));
        expect(unpackIndices(packed, rows, bits)).toEqual(idx);
      }
  });
});

describe("export", () => {
  test("the file holds the configuration, image, features, packed argmax indices and network, nothing else", async () => {
    const m = await readModelFile(f16);
    expect(m.config).toEqual(ck.config as never);
    expect(m.image).toEqual(ck.meta.image as never);
    // The weights the run chose: the EMA's, or the raw ones where their held-out loss is the lower
    // (as early in a run as this one).
    const used = checkpointUses(ck);
    expect(used).toBe(ck.meta.weights as never);
    expect(m.source).toEqual({ step: 30, weights: used });
    const text = readFileSync(f16);
    expect(text.subarray(0, 8).toString()).toBe(MODEL_MAGIC);
    const header = JSON.parse(text.subarray(20, 20 + Number(text.readBigUInt64LE(12))).toString());
    expect(header.arrays.map((a: { name: string; type: string }) => `${a.name}:${a.type}`)).toEqual(["network.params:f32", "encoding.features:f16", "probing.indices:u8"]);
    expect(Object.keys(header)).toEqual(["headerSha256", "config", "image", "source", "probing", "arrays", "payload"]);
    expect(header.probing).toEqual({ range: 4, rows: 512, bitsPerIndex: 2 });
    // The features are those weights rounded to f16; the network's are exact.
    const [enc, net] = used === "ema" ? ["ema.encoding", "ema.network"] : ["encoding.params", "network.params"];
    expect(m.features).toBeInstanceOf(Float16Array);
    expect(Array.from(m.features)).toEqual(Array.from(Float16Array.from(ck.arrays[enc]!)));
    expect(m.network).toEqual(ck.arrays[net]!);
    expect((await readModelFile(f32)).features).toEqual(ck.arrays[enc]!);
    // A checkpoint that chose the EMA, or one written before the choice was recorded: the EMA's.
    for (const weights of ["ema", undefined]) {
      const { model } = await exportModel({ ...ck, meta: { ...ck.meta, weights } }, { precision: "f32" });
      expect(model.source.weights).toBe("ema");
      expect(model.features).toEqual(ck.arrays["ema.encoding"]!);
      expect(model.network).toEqual(ck.arrays["ema.network"]!);
    }
  });

  test("the packed indices are the argmax of each codebook row of the checkpoint's logits", async () => {
    const logits = ck.arrays["probing.params"]!;
    expect(logits.length).toBe(512 * 4);
    const want = argmaxRows(logits, 4);
    expect(new Set(want).size).toBeGreaterThan(1); // not a degenerate table
    for (const file of [f16, f32]) {
      const m = await readModelFile(file);
      expect(m.probing!.indices.length).toBe(128); // 512 rows x 2 bits
      expect(unpackIndices(m.probing!.indices, m.probing!.rows, 2)).toEqual(want);
    }
  });

  test("the file's size is its header plus HashGrid.memory's inference bytes plus the f32 network, as printed", async () => {
    const { encoding: grid, mlp } = await createField(parseTrainConfig(ck.config), 3, { backend: "js" });
    try {
      for (const [file, bytes] of [[f16, 2], [f32, 4]] as const) {
        const buf = readFileSync(file);
        const payloadStart = Math.ceil((20 + Number(buf.readBigUInt64LE(12))) / 64) * 64;
        const size = statSync(file).size;
        const mem = grid.memory(bytes);
        expect(mem.indexBytes).toBe(128);
        expect(size).toBe(payloadStart + mem.inferenceBytes + 4 * mlp.paramCount);
        expect(payloadStart).toBeLessThan(4096); // a small header
      }
      // What export prints: the size and the breakdown.
      const out = join(dir, "printed.ngp");
      const r = await exportCli(["--checkpoint", ckPath, "--out", out]);
      expect(r.code, r.err).toBe(0);
      const n = (x: number) => x.toLocaleString("en-US");
      expect(r.out).toContain(`${out}: ${n(statSync(out).size)} bytes`);
      expect(r.out).toContain(`${n(grid.paramCount * 2)} B  ${n(grid.paramCount)} x f16`);
      expect(r.out).toContain("128 B  512 codebook rows x 2 bits, packed");
      expect(r.out).toContain(`${n(4 * mlp.paramCount)} B  ${n(mlp.paramCount)} x f32`);
      expect(r.out).toContain(`${n(grid.memory(2).inferenceBytes)} B HashGrid.memory(2).inferenceBytes`);
    } finally {
      grid.close();
      mlp.close();
    }
  });

  test("--raw exports the trained weights; a model without probing has no indices", async () => {
    const raw = join(dir, "raw.ngp");
    const r = await exportCli(["--checkpoint", ckPath, "--out", raw, "--precision", "f32", "--raw"]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain("trained weights");
    const m = await readModelFile(raw);
    expect(m.source.weights).toBe("raw");
    expect(m.features).toEqual(ck.arrays["encoding.params"]!);
    expect(m.network).toEqual(ck.arrays["network.params"]!);

    // In process, without probing (the API behind the CLI).
    const plain = await readCheckpoint((await train(config({ steps: 3, encoding: { levels: 4, log2HashmapSize: 12, finestResolution: 256 }, out: join(dir, "plain") }))).files.checkpoint);
    const { model, accounting } = await exportModel(plain, { precision: "f16" });
    expect(model.probing).toBeUndefined();
    expect(accounting.indexBytes).toBe(0);
    const file = join(dir, "plain.ngp");
    await writeModelFile(file, model);
    const buf = readFileSync(file);
    expect(buf.length).toBe(Math.ceil((20 + Number(buf.readBigUInt64LE(12))) / 64) * 64 + accounting.payloadBytes);
    expect((await readModelFile(file)).probing).toBeUndefined();
  });

  test("--help, and bad arguments", async () => {
    const help = await exportCli(["--help"]);
    expect(help.code).toBe(0);
    for (const flag of ["--checkpoint", "--out", "--precision", "--raw", "render --model"]) expect(help.out).toContain(flag);
    expectCleanError("no --checkpoint", await exportCli(["--out", join(dir, "x.ngp")]), 2, ["--checkpoint is required"]);
    expectCleanError("no --out", await exportCli(["--checkpoint", ckPath]), 2, ["--out is required"]);
    expectCleanError("bad precision", await exportCli(["--checkpoint", ckPath, "--out", join(dir, "x.ngp"), "--precision", "bf16"]), 2, ['--precision: "bf16"', "f16, f32"]);
    const missing = join(dir, "nope.ngpk");
    expectCleanError("missing checkpoint", await exportCli(["--checkpoint", missing, "--out", join(dir, "x.ngp")]), 2, [missing, "no such file"]);
    expectCleanError("an export given as the checkpoint", await exportCli(["--checkpoint", f16, "--out", join(dir, "x.ngp")]), 2, [f16, "already an exported model"]);
    expectCleanError("unwritable out", await exportCli(["--checkpoint", ckPath, "--out", join(dir, "no/such/dir/x.ngp")]), 2, ["model file", "does not exist"]);
  });
});

describe("render from an export", () => {
  test("an f32 export renders bit for bit as the checkpoint; an f16 one within a small difference", async () => {
    const [fromCk, fromF32, fromF16] = ["ck.png", "f32.png", "f16.png"].map((f) => join(dir, f));
    const rs = await Promise.all([
      renderCli(["--checkpoint", ckPath, "--out", fromCk, "--scale", "2"]),
      renderCli(["--model", f32, "--out", fromF32, "--scale", "2"]),
      renderCli(["--model", f16, "--out", fromF16, "--scale", "2"]),
    ]);
    for (const r of rs) expect(r.code, r.err).toBe(0);
    expect(rs[1]!.out).toContain(`from ${f32} (exported model of step 30, ${checkpointUses(ck) === "ema" ? "EMA" : "trained"} weights, f32 features`);
    const [a, b, c] = await Promise.all([fromCk, fromF32, fromF16].map(pixels));
    expect(a.length).toBe(128 * 96 * 3);
    expect(Buffer.compare(Buffer.from(a), Buffer.from(b))).toBe(0);
    let se = 0;
    let worst = 0;
    for (let i = 0; i < a.length; i++) {
      const d = a[i]! - c[i]!;
      se += d * d;
      worst = Math.max(worst, Math.abs(d));
    }
    const psnr = se === 0 ? Infinity : 10 * Math.log10((255 * 255 * a.length) / se);
    expect(psnr).toBeGreaterThan(45);
    expect(worst).toBeLessThanOrEqual(3);
  });

  test("either flag takes either kind of file, and says so; --raw is refused for an export", async () => {
    const out = join(dir, "swap.png");
    const r = await renderCli(["--checkpoint", f32, "--out", out]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toContain(`note: ${f32} is an exported model (bun run export), not a checkpoint`);
    const s = await renderCli(["--model", ckPath, "--out", join(dir, "swap2.png")]);
    expect(s.code, s.err).toBe(0);
    expect(s.err).toContain(`note: ${ckPath} is a checkpoint, not an exported model`);
    expect(Buffer.compare(Buffer.from(await pixels(out)), Buffer.from(await pixels(join(dir, "swap2.png"))))).toBe(0);
    expectCleanError("--raw", await renderCli(["--model", f16, "--out", out, "--raw"]), 2, [f16, "--raw", "bun run export --raw"]);
    expectCleanError("both", await renderCli(["--model", f16, "--checkpoint", ckPath, "--out", out]), 2, ["not both"]);
    const help = await runBun("cli/render.ts", ["--help"]);
    expect(help.code).toBe(0);
    expect(help.out).toContain("--model");
  });

  test("an f16 export of an f16-precision encoding evaluates bit for bit as its checkpoint (JS backend, in process)", async () => {
    const half = await readCheckpoint((await train(config({ steps: 5, batch: 1024, backend: "js", encoding: { precision: "f16", levels: 4, log2HashmapSize: 12, finestResolution: 256, probing: { range: 4, codebookSize: 256 } }, out: join(dir, "half") }))).files.checkpoint);
    const file = join(dir, "half.ngp");
    await writeModelFile(file, (await exportModel(half, { precision: "f16" })).model);
    const m = await readModelFile(file);
    const cfg = parseTrainConfig(half.config);
    const coords = new Float32Array(2 * 4096).map((_, k) => ((k * 0.6180339887) % 1));
    const outputs = await Promise.all(
      [(f: Parameters<typeof fieldOf>[0]) => loadCheckpointWeights(f, half), (f: Parameters<typeof fieldOf>[0]) => loadModelWeights(f, m)].map(async (load) => {
        const f = await createField(cfg, 3, { backend: "js" });
        try {
          load(f);
          const x = f.encoding.alloc(coords.length);
          x.upload(coords);
          return fieldOf(f)(x, 4096);
        } finally {
          f.encoding.close();
          f.mlp.close();
        }
      }),
    );
    expect(new Uint32Array(outputs[1]!.buffer)).toEqual(new Uint32Array(outputs[0]!.buffer));
  });

  test("truncated, corrupt, foreign and missing model files are refused with exit 2, naming the file", async () => {
    const bytes = readFileSync(f16);
    const truncated = join(dir, "truncated.ngp");
    writeFileSync(truncated, bytes.subarray(0, bytes.length - 100));
    const flipped = join(dir, "flipped.ngp");
    const copy = Buffer.from(bytes);
    copy[copy.length - 500]! ^= 0x10; // in the features
    writeFileSync(flipped, copy);
    const header = join(dir, "header.ngp");
    const copy2 = Buffer.from(bytes);
    copy2[100]! ^= 0x01; // in the header's JSON
    writeFileSync(header, copy2);
    const foreign = join(dir, "foreign.ngp");
    copyFileSync(image, foreign);
    const newer = join(dir, "newer.ngp");
    const copy3 = Buffer.from(bytes);
    copy3.writeUInt32LE(99, 8);
    writeFileSync(newer, copy3);
    const missing = join(dir, "missing.ngp");
    const cases: [string, string, string[]][] = [
      ["truncated", truncated, ["is truncated"]],
      ["flipped byte", flipped, ["is corrupt", "sha256"]],
      ["flipped header byte", header, ["is corrupt"]],
      ["foreign", foreign, ["is not a model file", "PNG signature", MODEL_MAGIC]],
      ["newer version", newer, ["format version 99"]],
      ["missing", missing, ["no such file"]],
    ];
    const results = await Promise.all(cases.map(([, file]) => renderCli(["--model", file, "--out", join(dir, "bad.png")])));
    cases.forEach(([what, file, parts], k) => expectCleanError(what, results[k]!, 2, [`model file ${file}: `, ...parts]));
    // Through --checkpoint, a broken export is still recognized by its magic and refused as a model file.
    expectCleanError("truncated via --checkpoint", await renderCli(["--checkpoint", truncated, "--out", join(dir, "bad.png")]), 2, [`model file ${truncated}: is truncated`]);
  });
});

describe("inputs and outputs (issue 16)", () => {
  test("render writes the format its --out names (PNG, JPEG, WebP, TIFF) or refuses it; an --out naming a directory is refused", async () => {
    const outs = ["r.jpg", "r.JPEG", "r.webp", "r.tif", "r"].map((f) => join(dir, f));
    const rs = await Promise.all(outs.map((out) => renderCli(["--checkpoint", ckPath, "--out", out])));
    rs.forEach((r, k) => expect(r.code, `${outs[k]}: ${r.err}`).toBe(0));
    expect(await Promise.all(outs.map(async (o) => (await sharp(o).metadata()).format))).toEqual(["jpeg", "jpeg", "webp", "tiff", "png"]);
    // The lossless ones hold exactly the pixels of the PNG.
    const png = await pixels(join(dir, "r"));
    for (const o of [outs[2]!, outs[3]!]) expect(Buffer.compare(Buffer.from(await pixels(o)), Buffer.from(png)), o).toBe(0);
    const bmp = join(dir, "r.bmp");
    const existing = join(dir, "a-directory");
    mkdirSync(existing);
    const [a, b, c, d, e] = await Promise.all([
      renderCli(["--checkpoint", ckPath, "--out", bmp]),
      renderCli(["--checkpoint", ckPath, "--out", join(dir, "no-such-dir") + "/"]),
      renderCli(["--checkpoint", ckPath, "--out", existing]),
      renderCli(["--checkpoint", ckPath, "--out", existing + "/"]),
      exportCli(["--checkpoint", ckPath, "--out", existing + "/"]),
    ]);
    expectCleanError(".bmp", a, 2, [`cannot write ${bmp}: its extension ".bmp" names no image format`, ".png, .jpg, .jpeg, .webp, .tif, .tiff"]);
    expect(existsSync(bmp)).toBe(false);
    expectCleanError("a missing dir/", b, 2, [`--out ${join(dir, "no-such-dir")}/ names a directory`]);
    expectCleanError("an existing directory", c, 2, [`--out ${existing} names a directory`]);
    expectCleanError("an existing dir/", d, 2, [`--out ${existing}/ names a directory`]);
    expectCleanError("export --out dir/", e, 2, [`--out ${existing}/ names a directory`]);
    expect(() => imageFormat("x.jpg", { channels: 3, bits: 16 })).toThrow("cannot write x.jpg: JPEG holds 8-bit samples and the image is 16-bit: write .png or .tiff");
    expect(() => imageFormat("x.jpg", { channels: 4, bits: 8 })).toThrow("JPEG has no alpha channel and the image is RGBA");
    expect(() => imageFormat("x.webp", { channels: 1, bits: 16 })).toThrow("WebP holds 8-bit samples");
    expect(imageFormat("x.tiff", { channels: 4, bits: 16 })).toBe("tiff");
  });

  test("render checks the bytes an image needs before allocating them, and takes whole pixels", async () => {
    const out = join(dir, "huge.png");
    const [a, b, c] = await Promise.all([
      renderCli(["--checkpoint", ckPath, "--out", out, "--width", "40000", "--height", "40000"]),
      renderCli(["--checkpoint", ckPath, "--out", out, "--width", "16.5"]),
      renderCli(["--checkpoint", ckPath, "--out", out, "--height", "2.5"]),
    ]);
    expectCleanError("40000 x 40000", a, 2, [`${out}: a 40000 x 40000 RGB 8-bit image needs a buffer of 4.80 GB`, "--width/--height or --scale"]);
    expect(a.err).not.toContain("RangeError");
    expectCleanError("--width 16.5", b, 2, ["--width: 16.5 is not an integer"]);
    expectCleanError("--height 2.5", c, 2, ["--height: 2.5 is not an integer"]);
    expect(() => checkMemory(1e15, "a test")).toThrow(MemoryError);
    expect(() => checkMemory(1e15, "a test")).toThrow(/^a test needs 1000000\.0 GB of memory, more than the \d+\.\d+ GB available \(of \d+\.\d+ GB\)$/);
    expect(() => checkMemory(1e6, "a test", 2 ** 33)).toThrow("a test needs a buffer of 8.59 GB, more than the 4.29 GB one buffer can hold");
    checkMemory(1e6, "a test"); // a megabyte is there
  });

  test("a checkpoint of a points field: render and export say what it holds and what they need; resuming it on an image too", async () => {
    const file = join(dir, "points-ck.ngpk");
    const points = { file: "/data/scan.bin", format: "binary", dims: 3, channels: 1, records: 2000, box: { min: [0, 0, 0], max: [1, 1, 1] }, valueRange: { min: 0, max: 1 } };
    const { image: _image, ...meta } = ck.meta;
    await writeCheckpoint(file, { ...ck, meta: { ...meta, points } });
    const holds = `checkpoint ${file}: holds a field trained on 3-D points with 1 value (from /data/scan.bin), not on an image`;
    const [r, m, e] = await Promise.all([
      renderCli(["--checkpoint", file, "--out", join(dir, "points.png")]),
      renderCli(["--model", file, "--out", join(dir, "points.png")]),
      exportCli(["--checkpoint", file, "--out", join(dir, "points.ngp")]),
    ]);
    expectCleanError("render", r, 2, [holds, "render needs a checkpoint trained on an image"]);
    expectCleanError("render --model", m, 2, [holds]);
    expectCleanError("export", e, 2, [holds, "export writes models of an image"]);
    for (const x of [r, m, e]) expect(x.err + x.out).not.toContain("undefined");
    await expect(train(config({ steps: 40, out: join(dir, "points-resume") }), { resume: file })).rejects.toThrow(
      `${file}: the checkpoint was trained on 3-D points with 1 value (from /data/scan.bin), not on a 64x48 image with 3 channels`,
    );
  });

  test("an output that is the same file as an input (the path, another spelling, a hard link) is refused and the input kept", async () => {
    const copy = join(dir, "same.ngpk");
    copyFileSync(ckPath, copy);
    const link = join(dir, "same-link.ngpk");
    linkSync(copy, link);
    const before = readFileSync(copy);
    const [a, b, c, d] = await Promise.all([
      renderCli(["--checkpoint", copy, "--out", copy]),
      renderCli(["--checkpoint", copy, "--out", link]),
      renderCli(["--model", f16, "--out", join(dir, ".", "model-f16.ngp")]),
      exportCli(["--checkpoint", copy, "--out", link]),
    ]);
    expectCleanError("render --out the checkpoint", a, 2, [`--out ${copy} is the same file as --checkpoint ${copy}`]);
    expectCleanError("render --out a hard link", b, 2, [`--out ${link} is the same file as --checkpoint ${copy}`]);
    expectCleanError("render --out the model", c, 2, [`is the same file as --model ${f16}`]);
    expectCleanError("export --out a hard link", d, 2, [`--out ${link} is the same file as --checkpoint ${copy}`]);
    expect(Buffer.compare(readFileSync(copy), before)).toBe(0);
    expect((await readModelFile(f16)).source.step).toBe(30);
    // train: the image is the reconstruction its --out would replace.
    const run = join(dir, "same-run");
    mkdirSync(run);
    const img = join(run, "reconstruction.png");
    copyFileSync(image, img);
    const t = await runBun("cli/train.ts", [img, "--steps", "3", "--out", run, "--backend", BACKEND]);
    expectCleanError("train --out holding the image", t, 2, [`--out ${img} is the same file as the image ${img}`]);
    expect(Buffer.compare(readFileSync(img), readFileSync(image))).toBe(0);
  });

  test("a FIFO given as a checkpoint or model is refused, not opened (render, export, train --resume)", async () => {
    const fifo = join(dir, "fifo");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    const trainArgs = ["cli/train.ts", image, "--steps", "3", "--batch", "1024", "--levels", "4", "--log2-table", "12", "--finest", "256", "--width", "16", "--backend", BACKEND];
    // The commands are killed after CHILD_TIMEOUT: a read of the FIFO would hang, and fail the test.
    const [a, b, c, d] = await Promise.all([
      renderCli(["--checkpoint", fifo, "--out", join(dir, "fifo.png")]),
      renderCli(["--model", fifo, "--out", join(dir, "fifo.png")]),
      exportCli(["--checkpoint", fifo, "--out", join(dir, "fifo.ngp")]),
      runBun(trainArgs[0]!, [...trainArgs.slice(1), "--out", join(dir, "fifo-run"), "--resume", fifo]),
    ]);
    expectCleanError("render --checkpoint FIFO", a, 2, [`checkpoint ${fifo}: is not a regular file (a FIFO)`]);
    expectCleanError("render --model FIFO", b, 2, [`model file ${fifo}: is not a regular file (a FIFO)`]);
    expectCleanError("export --checkpoint FIFO", c, 2, [`checkpoint ${fifo}: is not a regular file (a FIFO)`]);
    expectCleanError("train --resume FIFO", d, 2, [`checkpoint ${fifo}: is not a regular file (a FIFO)`]);
    expect(d.err).not.toContain("empty");
    // The data a run trains on, read through the same check.
    const tiny = trainArgs.slice(2);
    const [e, f] = await Promise.all([runBun("cli/train.ts", [fifo, ...tiny, "--out", join(dir, "fifo-run")]), runBun("cli/train.ts", ["--points", fifo, ...tiny, "--out", join(dir, "fifo-run")])]);
    expectCleanError("train FIFO", e, 2, [`${fifo}: is not a regular file (a FIFO), not an image`]);
    expectCleanError("train --points FIFO", f, 2, [`${fifo}: is not a regular file (a FIFO), not a points file`]);
  });
});

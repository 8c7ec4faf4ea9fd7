// `bun run train` and `bun run render` as a user runs them (child processes from the repository
// root): every bad input exits 2 with one line naming the problem and no stack trace; --help lists
// every flag with its default; --json ends with one JSON object; the bundled photograph trains
// with no image given; Ctrl-C (SIGINT) exits 130 with a checkpoint that --resume continues;
// render writes an image at another size and refuses bad input; a diverging run exits 1; a large
// generated image trains with its peak memory measured against its size.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateSync } from "node:zlib";
import sharp from "sharp";
import { findCxx } from "../../runtime/toolchain.ts";
import { FLAGS } from "../../cli/flags.ts";
import { readCheckpoint } from "../../train/checkpoint.ts";
import { TrainConfigSchema } from "../../train/config.ts";
import { buildKernelsFor, ROOT, runBun, type ChildResult, TEST_TIMEOUT } from "../util.ts";

const CPU = findCxx().tool !== undefined;
const BACKEND = CPU ? "cpu" : "js";
/** The small model of test/train/trainer.test.ts (the same native builds). */
/** A run whose loss becomes non-finite within a few steps: a linear network under SGD at a constant rate of 10. */
const DIVERGE = ["--steps", "50", "--loss", "l2", "--activation", "none", "--optimizer", "sgd", "--lr", "10", "--schedule", "none"];
const SMALL = ["--batch", "1024", "--levels", "4", "--log2-table", "12", "--finest", "256", "--width", "16", "--eval-every", "0", "--backend", BACKEND];

let dir: string;
let image: string;
let runs = 0;
const outDir = (name: string) => join(dir, `${name}-${runs++}`);

type Result = ChildResult;

/** `bun <script> args` from the repository root (util.ts runBun: killed after CHILD_TIMEOUT unless `timeout` says otherwise). */
const bun = runBun;
const trainCli = (args: string[], opts?: Parameters<typeof bun>[2]) => bun("cli/train.ts", args, opts);

/**
 * `bun cli/train.ts args`, sent `signal` as soon as its stderr matches `when`; `waited`: ms from
 * the signal to the exit.
 */
async function trainSignalled(args: string[], when: RegExp, opts: { signal?: "SIGINT" | "SIGTERM"; env?: Record<string, string> } = {}): Promise<Result & { waited: number }> {
  let sent = 0;
  const r = await runBun("cli/train.ts", args, {
    env: opts.env,
    onStderr: (err, proc) => {
      if (!sent && when.test(err)) (proc.kill(opts.signal ?? "SIGINT"), (sent = performance.now()));
    },
  });
  return { ...r, waited: sent ? performance.now() - sent : NaN };
}

/** Every file in `dir` (dot files too), by name: its bytes. */
const snapshot = (d: string) => Object.fromEntries(readdirSync(d).sort().map((n) => [n, readFileSync(join(d, n)).toString("base64")]));
const renderCli = (args: string[]) => bun("cli/render.ts", args);

/** The last line of stdout as JSON. */
const lastJson = (r: Result) => JSON.parse(r.out.trim().split("\n").at(-1)!);

/** Exit status `code`, an "error: " line naming every `parts`, at most `lines` lines, no stack trace. */
function expectCleanError(what: string, r: Result, code: number, parts: string[], lines = 1): void {
  const context = `${what}: exit ${r.code}, stderr:\n${r.err}`;
  expect(r.code, context).toBe(code);
  expect(r.err, context).not.toMatch(/^\s{4}at /m);
  expect(r.err, context).not.toContain("Bun has crashed");
  const errLines = r.err.trim().split("\n");
  expect(errLines[0], context).toStartWith("error: ");
  expect(errLines.length, context).toBeLessThanOrEqual(lines);
  for (const p of parts) expect(r.err, context).toContain(p);
}

/** A PNG with the given IHDR size and one empty IDAT (for 0 x 0). */
function pngWithSize(width: number, height: number): Buffer {
  const chunk = (type: string, data: Uint8Array) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, "latin1");
    Buffer.from(data).copy(out, 8);
    out.writeUInt32BE(Bun.hash.crc32(out.subarray(4, 8 + data.length)) >>> 0, 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = 2; // RGB
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(Buffer.alloc(0))), chunk("IEND", new Uint8Array())]);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ngpk-train-cli-"));
  image = join(dir, "astronaut-64x48.png");
  await sharp(join(ROOT, "data/astronaut.png")).resize(64, 48, { fit: "cover" }).png().toFile(image);
  // SMALL's native kernels built first: the commands' time limits below bound the commands, not the builds.
  await buildKernelsFor([image, ...SMALL, "--steps", "1", "--out", join(dir, "warm")]);
}, 600_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("bun run train: bad input", () => {
  test("exit status 2 and one line naming the problem (image, YAML, flags, checkpoint), never a stack trace", async () => {
    const f = (name: string, content: string | Buffer) => {
      const p = join(dir, name);
      writeFileSync(p, content);
      return p;
    };
    const png = readFileSync(image);
    const missing = join(dir, "missing.png");
    const directory = join(dir, "a-directory.png");
    mkdirSync(directory);
    const text = f("text.png", "this is not a picture\n");
    const truncated = f("truncated.png", png.subarray(0, Math.floor(png.length / 3)));
    const empty = f("zero.png", pngWithSize(0, 0));
    const badYaml = f("bad.yaml", "steps: [1, 2\nbatch: 3\n");
    const badField = f("bad-field.yaml", "steps: 3\nnetwork:\n  width: 48\n");
    const unknownField = f("unknown-field.yaml", "stepz: 3\n");
    const out = ["--out", outDir("bad"), "--steps", "3", ...SMALL];
    const cases: [string, string[], string[], number?][] = [
      ["a missing image", [missing, ...out], [missing, "no such file"]],
      ["a directory", [directory, ...out], [directory, "is a directory"]],
      ["a text file named .png", [text, ...out], [text, "not an image"]],
      ["a truncated PNG", [truncated, ...out], [truncated, "truncated or corrupt"]],
      ["a 0 x 0 PNG", [empty, ...out], [empty, "empty image (0 x 0 pixels)"]],
      ["YAML that does not parse", [image, "--config", badYaml, ...out], [badYaml, "is not valid YAML"]],
      ["a YAML field with a bad value", [image, "--config", badField, "--out", outDir("bad")], ["network.width: 48 is not allowed (allowed: 16, 32, 64, 128)"]],
      ["an unknown YAML field", [image, "--config", unknownField, ...out], ['unknown field "stepz"']],
      ["--width 48", [image, ...out, "--width", "48"], ["--width: 48 is not allowed (allowed: 16, 32, 64, 128)"]],
      ["--steps abc", [image, ...out, "--steps", "abc"], ['--steps: "abc" is not a number']],
      ["--lr=-1", [image, ...out, "--lr=-1"], ["--lr: -1 is out of range"]],
      ["--sampling nearest", [image, ...out, "--sampling", "nearest"], ['--sampling: "nearest" is not allowed (allowed: "bilinear", "pixel")']],
      ["an unknown flag (with the usage line)", [image, ...out, "--frobnicate", "3"], ["--frobnicate", "usage: bun run train"], 2],
      ["two images", [image, image, ...out], ["one image at most"]],
      ["--resume of a foreign file", [image, ...out, "--resume", image], [image, "is not a checkpoint"]],
    ];
    // Four at a time (each is a short process).
    for (let k = 0; k < cases.length; k += 4) {
      const batch = cases.slice(k, k + 4);
      const results = await Promise.all(batch.map(([, args]) => trainCli(args)));
      batch.forEach(([what, , parts, lines], i) => expectCleanError(what, results[i]!, 2, parts, lines ?? 1));
    }
  });

  test("an unwritable out directory (under a regular file, or a regular file itself): exit 2 naming it and why, no stack trace", async () => {
    const file = join(dir, "a-file");
    writeFileSync(file, "x");
    for (const out of [join(file, "sub"), file]) {
      const r = await trainCli([image, "--steps", "3", ...SMALL, "--out", out]);
      expect(r.code, r.err).toBe(2);
      expect(r.err).toStartWith(`error: the out directory ${out} cannot be written: ${out === file ? "a file of that name exists" : "a part of the path is a file"}`);
      expect(r.err).not.toMatch(/^\s{4}at /m);
      expect(r.err.trim().split("\n").length).toBe(1);
    }
  });
});

test("--help: exit 0, every flag with its default", async () => {
  const r = await trainCli(["--help"]);
  expect(r.code).toBe(0);
  expect(r.out).toStartWith("usage: bun run train");
  const defaults = TrainConfigSchema.parse({});
  const get = (path: string) => path.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], defaults);
  const lines = r.out.split("\n");
  for (const flag of [...FLAGS.map((f) => f.flag), "config", "resume", "json", "help"]) {
    const line = lines.find((l) => new RegExp(`^\\s+--${flag}(\\s|$)`).test(l));
    expect(line, `--${flag} in --help`).toBeDefined();
    const f = FLAGS.find((x) => x.flag === flag);
    if (!f || f.kind === "bool") continue;
    const d = get(f.path);
    if (d !== undefined) expect(line, `--${flag}'s default`).toContain(`[${d}]`);
    else if (f.path.startsWith("schedule.")) expect(line, `--${flag}'s default`).toMatch(/\[[^\]]+\]$/);
  }
  expect(r.out).toContain("options (default in brackets)");
});

/** One --json run on the small image, from a YAML file and flags; its checkpoint feeds the render tests. */
let jsonRun: Promise<{ r: Result; out: string }> | undefined;
function smallJsonRun(): Promise<{ r: Result; out: string }> {
  jsonRun ??= (async () => {
    const yaml = join(dir, "small.yaml");
    writeFileSync(yaml, `# the small model\nencoding:\n  levels: 4\n  log2HashmapSize: 12\n  finestResolution: 256\nnetwork:\n  width: 16\nbatch: 1024\nsteps: 100\nevalEvery: 0\nbackend: ${BACKEND}\n`);
    const out = outDir("json");
    const r = await trainCli([image, "--config", yaml, "--steps", "5", "--json", "--out", out]);
    return { r, out };
  })();
  return jsonRun;
}

describe("bun run train: runs", () => {
  test("--json: the last stdout line is one JSON object (psnr, steps, seconds, steps_per_s, backend, params_encoding, params_network); flags override the YAML", async () => {
    const { r, out } = await smallJsonRun();
    expect(r.code, r.err).toBe(0);
    const j = lastJson(r);
    expect(j.steps).toBe(5);
    for (const k of ["psnr", "seconds", "steps_per_s", "params_encoding", "params_network"]) expect(typeof j[k], k).toBe("number");
    expect(Number.isFinite(j.psnr)).toBe(true);
    expect(j.backend).toBe(BACKEND);
    expect(j.params_network).toBe(8 * 16 + 16 * 16 + 16 * 3);
    expect(j.params_encoding).toBeGreaterThan(0);
    for (const f of ["reconstruction.png", "metrics.csv", "plot.png", "summary.json", "checkpoint.ngpk"]) expect(existsSync(join(out, f)), f).toBe(true);
    const summary = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"));
    expect(summary.config.steps).toBe(5);
    expect(summary.config.encoding.levels).toBe(4);
  });

  // The backend is left to auto, as a newcomer runs it: on a machine with a GPU its first run
  // builds the CUDA kernels (hence the longer timeouts).
  test("with no image: the bundled photograph (a short run)", async () => {
    const out = outDir("bundled");
    const r = await trainCli(["--steps", "3", "--batch", "1024", "--levels", "4", "--log2-table", "12", "--finest", "256", "--width", "16", "--eval-every", "0", "--out", out], { timeout: 280_000 });
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain("on the full 512x512 image after 3 steps");
    // The default schedule (onecycle) spans the steps given, and says so.
    expect(r.err).toContain("onecycle over 3 steps (--steps; --seconds alone spans the steps that fit)");
    expect(r.out).toMatch(/^backend \w+: /m);
    const rec = await sharp(join(out, "reconstruction.png")).metadata();
    expect([rec.width, rec.height, rec.channels]).toEqual([512, 512, 3]);
  }, 300_000);

  test("SIGINT during training: exit 130 with a checkpoint, which --resume continues", async () => {
    const out = outDir("sigint");
    // At the first progress line (non-TTY: "step N/1000000 ...", printed at the first step and then every 5 s).
    // A constant rate, so that the run can be continued to a few more steps (onecycle and cosine refuse a changed span).
    const { code, err, out: text } = await trainSignalled([image, ...SMALL, "--schedule", "none", "--steps", "1000000", "--out", out], /step \d+\/1000000/);
    expect(code, err).toBe(130);
    expect(err).toContain("SIGINT: stopping");
    expect(err).not.toMatch(/^\s{4}at /m);
    const checkpoint = join(out, "checkpoint.ngpk");
    expect(text).toContain(`--resume ${checkpoint}`);
    const ck = await readCheckpoint(checkpoint);
    expect(ck.step).toBeGreaterThanOrEqual(1);
    expect(ck.step).toBeLessThan(1_000_000);
    const resumed = await trainCli([image, ...SMALL, "--schedule", "none", "--steps", String(ck.step + 3), "--resume", checkpoint, "--json", "--out", outDir("resumed")]);
    expect(resumed.code, resumed.err).toBe(0);
    expect(lastJson(resumed).steps).toBe(ck.step + 3);
    expect(lastJson(resumed).stopped_by).toBe("steps");
  });

  test("--seconds alone with --schedule cosine: the span estimated after a warm-up, said and reported; --resume with another --steps exits 2 naming it", async () => {
    const out = outDir("timed-cosine");
    const r = await trainCli([image, ...SMALL, "--seconds", "3", "--schedule", "cosine", "--out", out]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toContain("stops after 3 s (--seconds): the cosine schedule spans the steps estimated to fit, after a warm-up measuring the steps per second");
    const n = Number(/^cosine over (\d+) steps, estimated after \d+ warm-up steps? \([\d.]+ s\) at [\d.e+]+ steps\/s for the 3 s budget \(redone from the start\): stops at \1 steps or after 3 s, whichever comes first$/m.exec(r.err)?.[1]);
    expect(n, r.err).toBeGreaterThanOrEqual(1);
    expect(r.out).toContain(`schedule: cosine over ${n} steps, estimated after`);
    expect(r.out).toContain(`(--steps ${n} reruns it)`);
    const summary = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"));
    expect(summary.scheduleSpan).toMatchObject({ steps: n, from: "seconds", budget: 3 });
    expect((await readCheckpoint(join(out, "checkpoint.ngpk"))).meta.scheduleSpan).toEqual(summary.scheduleSpan);
    const checkpoint = join(out, "checkpoint.ngpk");
    expectCleanError("--resume with another --steps", await trainCli([image, ...SMALL, "--schedule", "cosine", "--steps", String(n + 5), "--resume", checkpoint, "--out", outDir("resumed")]), 2, [
      `error: --steps: ${n + 5} is not the ${n} steps that ${checkpoint}'s cosine schedule spans (estimated for its 3 s budget): resume with --steps ${n} or with --seconds and no --steps`,
    ]);
  });

  test("a diverging run (l2, linear network, SGD at a constant lr 10): exit 1 naming the step and the kept checkpoint", async () => {
    const out = outDir("diverge");
    const r = await trainCli([image, ...SMALL, ...DIVERGE, "--checkpoint-every", "1", "--out", out]);
    expect(r.code, r.err).toBe(1);
    expect(r.err).toMatch(/^error: the training loss became non-finite at step \d+; .*the last good checkpoint, .*checkpoint\.ngpk, is kept/m);
    expect(r.err).not.toMatch(/^\s{4}at /m);
    const step = Number(/non-finite at step (\d+)/.exec(r.err)![1]);
    expect((await readCheckpoint(join(out, "checkpoint.ngpk"))).step).toBe(step - 1);
  });

  // Closing the last CPU module right after a multi-threaded kernel (the trainer on a non-finite
  // loss, render after writing its image) once unloaded libgomp while its worker threads spun in
  // it: a segmentation fault about 4 runs in 5 (render: 1 in 6). The runtime now holds it open.
  // (The diverging run above is one such case; render, right after writing its image, another.)
  test("no crash from unloading libgomp: render exits 0, three times", async () => {
    const { out } = await smallJsonRun();
    for (let k = 0; k < 3; k++) {
      const p = await bun("cli/render.ts", ["--checkpoint", join(out, "checkpoint.ngpk"), "--out", join(dir, "again.png"), "--backend", BACKEND]);
      expect(p.err).not.toContain("Segmentation fault");
      expect(p.code, p.err).toBe(0);
    }
  });
});

// A run's outputs are all of that run, or the earlier run's untouched: a run writes nothing over
// them before its first checkpoint, which is the switch (train/trainer.ts).
describe("bun run train: a reused out directory", () => {
  /** An out directory holding a finished 3-step run's outputs. */
  async function earlierRun(name: string): Promise<string> {
    const out = outDir(name);
    const r = await trainCli([image, ...SMALL, "--steps", "3", "--out", out]);
    expect(r.code, r.err).toBe(0);
    expect(readdirSync(out).sort()).toEqual(["checkpoint.ngpk", "metrics.csv", "plot.png", "reconstruction.png", "summary.json"]);
    return out;
  }

  // A fresh kernel cache, so that the second configuration compiles (seconds a kernel): Ctrl-C
  // lands while it does, and the run stops once the field (the grid and the MLP) is built.
  test.skipIf(!CPU)("Ctrl-C while the next run compiles: exit 130, nothing written, the earlier outputs byte for byte", async () => {
    const out = await earlierRun("compile-sigint");
    const before = snapshot(out);
    const cache = mkdtempSync(join(dir, "cache-"));
    const r = await trainSignalled([image, ...SMALL, "--width", "32", "--steps", "3", "--out", out], /ngp-kernels: compiling/, { env: { NGPK_CACHE_DIR: cache } });
    expect(r.code, r.err).toBe(130);
    expect(r.err).toContain("SIGINT: stopping");
    expect(r.err).toContain(`interrupted before the first step: nothing written (${out} holds what it held)`);
    expect(r.err).not.toMatch(/^\s{4}at /m);
    expect(r.err.match(/ngp-kernels: compiling/g)?.length).toBeLessThanOrEqual(2); // the field's two, not all six
    expect(snapshot(out)).toEqual(before);
  });

  test("a run that fails (a non-finite loss) before its first checkpoint: exit 1, the earlier outputs byte for byte; after one, only its own outputs", async () => {
    const out = await earlierRun("diverge-reused");
    const before = snapshot(out);
    const r = await trainCli([image, ...SMALL, ...DIVERGE, "--out", out]);
    expect(r.code, r.err).toBe(1);
    expect(r.err).toMatch(new RegExp(`^error: the training loss became non-finite at step \\d+; stopped without applying it \\(${out} is left as it was\\)`, "m"));
    expect(snapshot(out)).toEqual(before);
    // With --checkpoint-every 1, the run's checkpoint (the last good step) and its metrics replace
    // the earlier ones, and the earlier run's summary, plot and reconstruction are gone.
    const again = await trainCli([image, ...SMALL, ...DIVERGE, "--checkpoint-every", "1", "--out", out]);
    expect(again.code, again.err).toBe(1);
    const step = Number(/non-finite at step (\d+)/.exec(again.err)![1]);
    expect(readdirSync(out).sort()).toEqual(["checkpoint.ngpk", "metrics.csv"]);
    expect((await readCheckpoint(join(out, "checkpoint.ngpk"))).step).toBe(step - 1);
    expect(readFileSync(join(out, "metrics.csv"), "utf8").trim().split("\n").length).toBe(step); // the header and steps 1 .. step - 1
  });

  test("SIGINT after training (the final evaluation of a 4096 x 4096 image): exit 130 at once, the checkpoint saved, no reconstruction", async () => {
    const [W, H] = [4096, 4096];
    const big = join(dir, "big-eval.png");
    const raw = Buffer.alloc(W * H);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) raw[y * W + x] = (x ^ y) & 255;
    await sharp(raw, { raw: { width: W, height: H, channels: 1 } }).toColourspace("b-w").png({ compressionLevel: 1 }).toFile(big);
    const out = await earlierRun("eval-sigint");
    // The checkpoint's line comes before the final evaluation, which takes tens of seconds here.
    const r = await trainSignalled([big, ...SMALL, "--steps", "3", "--out", out], /checkpoint: .* \(step 3\)/);
    expect(r.code, r.err).toBe(130);
    expect(r.waited, r.err).toBeLessThan(15_000);
    expect((await readCheckpoint(join(out, "checkpoint.ngpk"))).step).toBe(3);
    expect(r.out).toContain(`interrupted: continue with --resume ${join(out, "checkpoint.ngpk")}`);
    // The earlier run's reconstruction is gone (this run's was not written); no temporaries.
    expect(readdirSync(out).sort()).toEqual(["checkpoint.ngpk", "metrics.csv", "plot.png", "summary.json"]);
    const summary = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"));
    expect([summary.stoppedBy, summary.steps, summary.image.width]).toEqual(["interrupted", 3, W]);
  });

  test("temporaries of killed runs (their pid gone, a minute old) are removed by the next run; others are kept", async () => {
    const out = await earlierRun("stale");
    const old = (Date.now() - TEST_TIMEOUT) / 1000;
    const names = {
      stale: [".checkpoint.ngpk.99999999.0a1b2c.tmp", ".metrics.csv.99999999.0a1b2c3d4e5f.tmp", ".reconstruction.png.99999999.k3x9q.tmp"],
      kept: [`.summary.json.${process.pid}.0a1b.tmp`, ".plot.png.99999999.young.tmp", "notes.99999999.0a1b.tmp", ".checkpoint.ngpk.99999999.tmp"],
    };
    for (const n of [...names.stale, ...names.kept]) {
      writeFileSync(join(out, n), "");
      if (!n.includes("young")) utimesSync(join(out, n), old, old);
    }
    const r = await trainCli([image, ...SMALL, "--steps", "3", "--out", out]);
    expect(r.code, r.err).toBe(0);
    expect(readdirSync(out).sort()).toEqual([...names.kept, "checkpoint.ngpk", "metrics.csv", "plot.png", "reconstruction.png", "summary.json"].sort());
  });
});

describe("bun run render", () => {
  test("--scale 0.5 and --width: the field at another size, the image's channels", async () => {
    const { r, out } = await smallJsonRun();
    expect(r.code, r.err).toBe(0);
    const checkpoint = join(out, "checkpoint.ngpk");
    const half = join(dir, "half.png");
    const a = await renderCli(["--checkpoint", checkpoint, "--scale", "0.5", "--out", half, "--backend", BACKEND]);
    expect(a.code, a.err).toBe(0);
    expect(a.out).toContain("32x24");
    const m = await sharp(half).metadata();
    expect([m.format, m.width, m.height, m.channels]).toEqual(["png", 32, 24, 3]);
    const wide = join(dir, "wide.png");
    const b = await renderCli(["--checkpoint", checkpoint, "--width", "128", "--out", wide, "--backend", BACKEND]);
    expect(b.code, b.err).toBe(0);
    const w = await sharp(wide).metadata();
    expect([w.width, w.height, w.channels]).toEqual([128, 96, 3]);
  });

  test("bad input: exit 2 with a message (no --checkpoint, no --out, a missing or foreign file, a bad --scale)", async () => {
    const { out } = await smallJsonRun();
    const checkpoint = join(out, "checkpoint.ngpk");
    const target = join(dir, "never.png");
    const cases: [string, string[], string[], number][] = [
      ["no --checkpoint", ["--out", target], ["--checkpoint is required", "usage: bun run render"], 2],
      ["no --out", ["--checkpoint", checkpoint], ["--out is required"], 2],
      ["a missing checkpoint", ["--checkpoint", join(dir, "nope.ngpk"), "--out", target], [join(dir, "nope.ngpk"), "no such file"], 1],
      ["a foreign file", ["--checkpoint", image, "--out", target], [image, "is not a checkpoint"], 1],
      ["--scale 0", ["--checkpoint", checkpoint, "--scale", "0", "--out", target], ["--scale", "not a positive number"], 2],
    ];
    const results = await Promise.all(cases.map(([, args]) => renderCli(args)));
    cases.forEach(([what, , parts, lines], i) => expectCleanError(what, results[i]!, 2, parts, lines));
    expect(existsSync(target)).toBe(false);
  });
});

test("a large image (3000 x 2000 grayscale, 2 steps): trains, peak memory proportional to its pixels", async () => {
  const [W, H] = [3000, 2000];
  const big = join(dir, "big.png");
  const raw = Buffer.alloc(W * H);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) raw[y * W + x] = (((x >> 4) ^ (y >> 4)) & 1) * 128 + ((x * 7 + y * 3) & 127);
  await sharp(raw, { raw: { width: W, height: H, channels: 1 } }).toColourspace("b-w").png({ compressionLevel: 1 }).toFile(big);
  expect((await sharp(big).metadata()).channels).toBe(1);
  const args = (img: string) => [img, ...SMALL, "--batch", "4096", "--steps", "2", "--json", "--out", outDir("large")];
  const peak = (r: Result) => Number(/maxrss-kb (\d+)/.exec(r.err)?.[1]) * 1024;
  // The same command on the 64 x 48 image: the fixed cost (Bun, the codec, the model).
  const small = await bun("test/fixtures/train/maxrss.ts", args(image));
  const large = await bun("test/fixtures/train/maxrss.ts", args(big));
  for (const r of [small, large]) {
    expect(r.code, r.err).toBe(0);
    expect(lastJson(r).steps).toBe(2);
  }
  const imageBytes = W * H; // 8-bit, one channel
  const [p0, p1] = [peak(small), peak(large)];
  const mb = (b: number) => `${(b / 1e6).toFixed(0)} MB`;
  console.log(`[train large image] peak RSS ${mb(p1)} for ${W}x${H} gray (${mb(imageBytes)} of samples), ${mb(p0)} for 64x48: ${((p1 - p0) / (W * H)).toFixed(1)} bytes per pixel over the small run; PSNR ${lastJson(large).psnr.toFixed(2)}`);
  expect(p0).toBeGreaterThan(0);
  // Proportional to the pixels: at most 32 bytes per pixel over the small run (64 on the JS
  // backend, whose kernels make more garbage), measured 13-26 here: mostly the evaluation tiles'
  // garbage, collected when the GC gets to it; and the bound of the issue.
  expect(p1 - p0).toBeLessThan((CPU ? 32 : 64) * W * H);
  expect(p1).toBeLessThan(4 * imageBytes + 600e6);
  const rec = await sharp(join(lastJson(large).out, "reconstruction.png")).metadata();
  expect([rec.width, rec.height, rec.channels]).toEqual([W, H, 1]);
});

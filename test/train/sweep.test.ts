// bun run sweep (train/sweep/, cli/sweep.ts) on a 32 x 24 crop of the bundled photograph: 2
// budgets (2048, 4096) x levels {2, 16} x F = 2, 5 steps of 1024 samples, a 16-wide network of one
// hidden layer. L = 2 trains (T = 2^9, 2^10: two grids to build, cached in $NGPK_CACHE_DIR), L = 16
// is refused by the encoder (T = 2^6, 2^7 < 2^8). Tests: the allocation plan (T, the encoder's
// counts, refusals with its messages); the CSV written byte for byte, read back, and bad files named
// by line; a sweep's CSV, plots and run directories; an interrupted sweep (mid-run, then between
// runs) resumed to the same rows without redoing a finished run; the command: shards merged to the
// same rows, SIGTERM then a rerun, bad flags, grid, image and settings; under mpirun (when MPI is
// here), 2 ranks give the same rows and a rerun over 3 redoes nothing.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { hashGridParamCount } from "../../modules/hashgrid.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { NO_MPIRUN, runUnderMpirun } from "../runtime/helpers.ts";
import { ImageError, loadImage } from "../../train/image.ts";
import { mergeSweeps } from "../../train/sweep/merge.ts";
import { checkAxis, planSweep, runKey } from "../../train/sweep/plan.ts";
import { readSweepCsv, SWEEP_HEADER, writeSweepCsv, type SweepRow } from "../../train/sweep/results.ts";
import { runDir, runSweep, type SweepOptions } from "../../train/sweep/run.ts";
import { cacheDir, type ChildResult, envForFile, ROOT, runBun, TEST_TIMEOUT } from "../util.ts";

const CPU = findCxx().tool !== undefined;
const BACKEND = CPU ? "cpu" : "js";

let dir: string;
let image: string;

// The trainer loads its kernels through $NGPK_CACHE_DIR (it takes no cacheDir option).
envForFile({ NGPK_CACHE_DIR: cacheDir });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ngpk-sweep-"));
  image = join(dir, "astronaut-32x24.png");
  await sharp(join(ROOT, "data/astronaut.png")).resize(32, 24, { fit: "cover" }).png().toFile(image);
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const TINY = { batch: 1024, network: { width: 16, hiddenLayers: 1 }, backend: BACKEND };
const options = (out: string, over: Partial<SweepOptions> = {}): SweepOptions => ({
  image, budgets: [2048, 4096], grid: { levels: [2, 16], features: [2], base: [16], finest: [256] }, steps: 5, seed: 7, train: TINY, out: join(dir, out), ...over,
});
const CLI_TINY = () => ["--image", image, "--budgets", "2048,4096", "--levels", "2,16", "--features", "2", "--base", "16", "--finest", "256", "--steps", "5", "--seed", "7", "--batch", "1024", "--width", "16", "--layers", "1", "--backend", BACKEND];

/** A row without its timings (which differ run to run; the PSNR does not). */
const result = ({ seconds: _s, stepsPerSecond: _r, ...rest }: SweepRow) => rest;
const sorted = (rows: SweepRow[]) => rows.map(result).sort((a, b) => runKey(a).localeCompare(runKey(b)));

/** The uninterrupted sweep, shared by the tests that compare against it. */
let straight: ReturnType<typeof runSweep> | undefined;
const reference = () => (straight ??= runSweep(options("straight")));

const cli = (args: string[]) => runBun("cli/sweep.ts", args);
const lastJson = (r: ChildResult) => JSON.parse(r.out.trim().split("\n").at(-1)!);
const isPng = (p: string) => existsSync(p) && readFileSync(p).subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));

describe("the allocation plan", () => {
  test("T = B / (L F) rounded to a power of two; the encoder's counts; refusals with its messages", () => {
    const plan = planSweep([65536, 10000, 4096], { levels: [16, 4], features: [2], base: [16], finest: [2048] });
    // Budgets ascending, then levels and features in the grid's order.
    expect(plan.map((r) => [r.budget, r.levels, r.log2T])).toEqual([[4096, 16, 7], [4096, 4, 9], [10000, 16, 8], [10000, 4, 10], [65536, 16, 11], [65536, 4, 13]]);
    expect(plan.map((r) => r.index)).toEqual([0, 1, 2, 3, 4, 5]);
    const b16 = Math.exp(Math.log(2048 / 16) / 15);
    expect(plan[4]!.scale).toBeCloseTo(b16, 12);
    // The encoder's own count: dense coarse levels make it smaller than L * F * T.
    for (const r of plan.filter((r) => !r.refused))
      expect(r.params).toBe(hashGridParamCount({ dims: 2, levels: r.levels, featuresPerLevel: 2, log2HashmapSize: r.log2T, baseResolution: 16, finestResolution: 2048 }));
    expect(plan[4]!.params).toBeLessThan(65536);
    expect(plan[0]!.refused).toBe("hashGrid.log2HashmapSize: 7 is out of range (allowed: an integer from 8 to 24)");
    // Growth given directly; a resolution beyond the encoder's limit is refused with its message.
    const scaled = planSweep([4096], { levels: [2], features: [2], base: [16, 2 ** 24], scale: [1.5] });
    expect(scaled[0]!.scale).toBe(1.5);
    expect(scaled[0]!.finest).toBe(24);
    expect(scaled[1]!.refused).toContain("above 8388608 (2^23)");
    // Budget series and bad values name the field and what is allowed.
    expect(checkAxis("budgets", ["4096", "16384", "...", "1048576"], "--budgets")).toEqual([4096, 16384, 65536, 262144, 1048576]);
    expect(checkAxis("budgets", ["2^12", 8192], "--budgets")).toEqual([4096, 8192]);
    expect(() => checkAxis("budgets", ["4096", "...", "65536"], "--budgets")).toThrow("A,B,...,C");
    expect(() => checkAxis("features", [3], "grid file g.yaml: features")).toThrow("grid file g.yaml: features: 3 is not allowed (allowed: 1, 2, 4, 8)");
  });
});

describe("the CSV", () => {
  test("written byte for byte as before (quoted reasons, non-finite cells) and read back; a bad file names itself, the line and why", () => {
    const csv = join(dir, "pinned.csv");
    const rows: SweepRow[] = [
      { budget: 4096, levels: 4, features: 2, log2T: 9, base: 16, scale: 5.03968, params: 3728, psnr: 21.123456789, seconds: 1.5, stepsPerSecond: 12.345, steps: 5, seed: 7, status: "ok", reason: "" },
      { budget: 4096, levels: 16, features: 2, log2T: 7, base: 16, scale: 1.38191, steps: 5, seed: 7, status: "refused", reason: 'a, "b"' },
      { budget: 8192, levels: 2, features: 4, log2T: 10, base: 16.5, scale: 2, params: 100, psnr: NaN, seconds: 0.25, stepsPerSecond: Infinity, steps: 5, seed: 7, status: "failed", reason: "x\ny" },
    ];
    writeSweepCsv(csv, rows);
    expect(readFileSync(csv, "utf8")).toBe(
      `${SWEEP_HEADER}\n` +
        "4096,4,2,9,16,5.03968,3728,21.123456789,1.500,12.35,5,7,ok,\n" +
        '4096,16,2,7,16,1.38191,,,,,5,7,refused,"a, ""b"""\n' +
        '8192,2,4,10,16.5,2,100,nan,0.250,inf,5,7,failed,"x; y"\n',
    );
    expect(readSweepCsv(csv)).toEqual([{ ...rows[0]!, stepsPerSecond: 12.35 }, rows[1]!, { ...rows[2]!, reason: "x; y" }]);
    // CRLF line ends and an empty file read too.
    writeFileSync(csv, readFileSync(csv, "utf8").replace(/\n/g, "\r\n"));
    expect(readSweepCsv(csv)).toHaveLength(3);
    writeFileSync(csv, "");
    expect(readSweepCsv(csv)).toEqual([]);
    const bad = (body: string) => {
      writeFileSync(csv, `${SWEEP_HEADER}\n${body}\n`);
      return () => readSweepCsv(csv);
    };
    const ok = "4096,4,2,9,16,5.03968,3728,21.1,1.500,12.35,5,7";
    const columns = `not a sweep row (14 columns: ${SWEEP_HEADER})`;
    expect(bad(`${ok},ok,\n${ok},ok,"open`)).toThrow(`${csv}:3: ${columns}: ${JSON.stringify(`${ok},ok,"open`)}`);
    expect(bad(`${ok},ok,"a"b`)).toThrow(`${csv}:2: ${columns}`);
    expect(bad(`${ok},ok`)).toThrow(`${csv}:2: ${columns}`);
    expect(bad(`${ok},ok,,`)).toThrow(`${csv}:2: ${columns}`);
    expect(bad(`${ok.replace("4096", "")},ok,`)).toThrow(`${csv}:2: budget is not a number: `);
    expect(bad(`${ok.replace("21.1", "fast")},ok,`)).toThrow(`${csv}:2: psnr is not a number: `);
    expect(bad(`${ok},done,`)).toThrow(`${csv}:2: status "done" is not ok, refused or failed: `);
    writeFileSync(csv, "budget,levels\n");
    expect(() => readSweepCsv(csv)).toThrow(`${csv}: not a sweep CSV (its first line is not "${SWEEP_HEADER}")`);
    expect(() => readSweepCsv(join(dir, "absent.csv"))).toThrow(`sweep CSV ${join(dir, "absent.csv")} does not exist`);
  });
});

describe("a sweep", () => {
  test("trains every allocation, writes the CSV, both plots and each run's outputs; refusals listed with the encoder's reason", async () => {
    const r = await reference();
    expect(r.interrupted).toBe(false);
    expect(r.trained).toBe(2);
    expect(r.refused).toBe(2);
    expect(r.rows.map((x) => [x.budget, x.levels, x.log2T, x.status])).toEqual([[2048, 2, 9, "ok"], [2048, 16, 6, "refused"], [4096, 2, 10, "ok"], [4096, 16, 7, "refused"]]);
    for (const row of r.rows.filter((x) => x.status === "ok")) {
      expect(row.psnr!).toBeGreaterThan(0);
      expect(row.params).toBe(hashGridParamCount({ dims: 2, levels: 2, featuresPerLevel: 2, log2HashmapSize: row.log2T, baseResolution: 16, finestResolution: 256 }));
      expect(row.steps).toBe(5);
      expect(row.seed).toBe(7);
      expect(row.reason).toBe("");
    }
    expect(r.rows[1]!.reason).toBe("hashGrid.log2HashmapSize: 6 is out of range (allowed: an integer from 8 to 24)");
    expect(r.rows[1]!.psnr).toBeUndefined();
    // The CSV holds the same rows; the plots are PNGs; each run kept its outputs but not its checkpoint.
    const text = readFileSync(r.csv, "utf8");
    expect(text.split("\n")[0]).toBe(SWEEP_HEADER);
    expect(readSweepCsv(r.csv)).toEqual(r.rows);
    expect(isPng(r.plots!.allocation)).toBe(true);
    expect(isPng(r.plots!.best)).toBe(true);
    const run0 = runDir(join(dir, "straight"), r.plan[0]!);
    expect(existsSync(join(run0, "summary.json"))).toBe(true);
    expect(existsSync(join(run0, "checkpoint.ngpk"))).toBe(false);
  });

  test("interrupted mid-run, then between runs, then crashed, and resumed: no finished run redone, the same rows", async () => {
    const opts = options("resumed");
    // 1: stopped at step 2 of the first run; its checkpoint is kept.
    const c1 = new AbortController();
    const r1 = await runSweep(opts, { signal: c1.signal, onStep: (_p, s) => s.step === 2 && c1.abort() });
    expect(r1.interrupted).toBe(true);
    expect(r1.rows).toEqual([]);
    expect(existsSync(join(runDir(opts.out, r1.plan[0]!), "checkpoint.ngpk"))).toBe(true);
    // 2: the first run continues from its checkpoint; stopped after it.
    const c2 = new AbortController();
    const logs: string[] = [];
    const r2 = await runSweep(opts, { signal: c2.signal, log: (m) => logs.push(m), onRunEnd: () => c2.abort() });
    expect(r2.interrupted).toBe(true);
    expect(logs.some((m) => m.includes("continuing from"))).toBe(true);
    expect(readSweepCsv(r2.csv).map((x) => [x.budget, x.levels, x.status])).toEqual([[2048, 2, "ok"]]);
    // 3: a crash in the third run (an exception out of the trainer's hook): the CSV stays whole.
    await expect(runSweep(opts, { onStep: (p, s) => { if (p.run.index === 2 && s.step === 2) throw new Error("simulated crash"); } })).rejects.toThrow("simulated crash");
    expect(readSweepCsv(r2.csv).map((x) => [x.budget, x.levels, x.status])).toEqual([[2048, 2, "ok"], [2048, 16, "refused"]]);
    // 4: to the end; the finished run is not started again.
    const started: number[] = [];
    const r3 = await runSweep(opts, { onRunStart: (p) => started.push(p.run.index), log: (m) => logs.push(m) });
    expect(r3.interrupted).toBe(false);
    expect(r3.alreadyDone).toBe(2);
    expect(started).toEqual([2]);
    expect(logs.some((m) => m.includes("2 already in"))).toBe(true);
    const ref = await reference();
    expect(sorted(readSweepCsv(r3.csv))).toEqual(sorted(ref.rows));
    // A rerun of a finished sweep trains nothing.
    const r4 = await runSweep(opts, { onRunStart: (p) => started.push(p.run.index) });
    expect(r4.alreadyDone).toBe(4);
    expect(started).toEqual([2]);
    // Other fixed settings in the same directory are refused, naming them.
    await expect(runSweep({ ...opts, train: { ...TINY, batch: 2048 } })).rejects.toThrow("batch: 1024 there, 2048 here");
  });
});

describe("bun run sweep", () => {
  test("--shard i/n splits the runs, --merge recombines them to the same rows and draws the plots", async () => {
    const out = join(dir, "sharded");
    const [a, b] = await Promise.all([cli([...CLI_TINY(), "--out", out, "--shard", "0/2", "--json"]), cli([...CLI_TINY(), "--out", out, "--shard", "1/2", "--json"])]);
    expect(a.code, a.err).toBe(0);
    expect(b.code, b.err).toBe(0);
    const [ja, jb] = [lastJson(a), lastJson(b)];
    expect(ja.runs + jb.runs).toBe(4);
    expect(ja.csv).toBe(join(out, "sweep-shard-0-of-2.csv"));
    const rowsA = readSweepCsv(ja.csv);
    const rowsB = readSweepCsv(jb.csv);
    expect(rowsA.length + rowsB.length).toBe(4);
    const m = await cli(["--merge", ja.csv, jb.csv, "--out", join(dir, "merged")]);
    expect(m.code, m.err).toBe(0);
    expect(m.out).toContain("merged 2 CSVs: 4 runs");
    expect(m.out).toContain("refused B=2048 L=16 F=2");
    const merged = readSweepCsv(join(dir, "merged", "sweep.csv"));
    expect(sorted(merged)).toEqual(sorted((await reference()).rows));
    expect(isPng(join(dir, "merged", "psnr-by-allocation.png"))).toBe(true);
    expect(isPng(join(dir, "merged", "best-psnr-by-params.png"))).toBe(true);
    // The library's merge of the same files agrees.
    expect(sorted((await mergeSweeps([ja.csv, jb.csv], join(dir, "merged2"))).rows)).toEqual(sorted(merged));
  });

  test("SIGTERM stops it with status 130; the same command continues without redoing the finished run", async () => {
    const out = join(dir, "killed");
    // 400 steps a run: the third run must still be training when the signal lands, which on a
    // loaded machine (the suite's files run side by side) can take a second after its first line.
    const args = [...CLI_TINY().map((a) => (a === "5" ? "400" : a)), "--out", out];
    const csv = join(out, "sweep.csv");
    const rows = () => (existsSync(csv) ? readSweepCsv(csv).length : 0);
    // SIGTERM as the third run starts (the first trained, the second refused, both recorded).
    let sent = false;
    const { code, out: stdout, err: stderr } = await runBun("cli/sweep.ts", args, {
      onStderr: (err, proc) => {
        if (!sent && err.includes("): B=4096 L=2 F=2")) (proc.kill("SIGTERM"), (sent = true));
      },
    });
    expect(code, stderr).toBe(130);
    expect(stdout).toContain("interrupted: rerun the same command to continue");
    expect(rows()).toBe(2);
    const again = await cli(args);
    expect(again.code, again.err).toBe(0);
    expect(again.out).toContain("2 already done");
    // Interrupted before its first step (while it loaded its kernels), the run wrote nothing and
    // starts over; after it, it continues from its checkpoint.
    if (!stderr.includes("B=4096 L=2 F=2 T=2^10 N_min=16 b=16: interrupted before the first step: nothing written"))
      expect(again.err).toContain("B=4096 L=2 F=2 T=2^10 N_min=16 b=16: continuing from");
    expect(again.err).not.toContain("B=2048 L=2 F=2 T=2^9");
    expect(readSweepCsv(csv).map((r) => [r.budget, r.levels, r.status])).toEqual([[2048, 2, "ok"], [2048, 16, "refused"], [4096, 2, "ok"], [4096, 16, "refused"]]);
  });

  test("bad flags, grid file, image and settings: status 2, naming the field and what is allowed", async () => {
    const out = join(dir, "bad");
    const levels = await cli([...CLI_TINY(), "--levels", "0,4", "--out", out]);
    expect(levels.code).toBe(2);
    expect(levels.err.trim()).toBe(`error: --levels: "0" is not allowed (allowed: integers from 1 to 64)`);
    const grid = join(dir, "grid.yaml");
    writeFileSync(grid, "levels: [2]\nfeatures: [3]\n");
    const g = await cli(["--grid", grid, "--image", image, "--out", out]);
    expect(g.code).toBe(2);
    expect(g.err.trim()).toBe(`error: grid file ${grid}: features: 3 is not allowed (allowed: 1, 2, 4, 8)`);
    writeFileSync(grid, "levls: [2]\n");
    expect((await cli(["--grid", grid, "--out", out])).err).toContain(`unknown field "levls" (fields: budgets, levels, features, base, scale, finest)`);
    const width = await cli([...CLI_TINY(), "--width", "20", "--out", out]);
    expect(width.code).toBe(2);
    expect(width.err).toContain("--width: 20 is not allowed (allowed: 16, 32, 64, 128)");
    const shard = await cli([...CLI_TINY(), "--shard", "2/2", "--out", out]);
    expect(shard.err).toContain("--shard: \"2/2\" is not allowed (allowed: i/n with 0 <= i < n");
    // A bad image: the trainer's own message.
    const bad = join(dir, "not-an-image.png");
    writeFileSync(bad, "hello");
    const expected = await loadImage(bad).then(() => "", (e: ImageError) => e.message);
    expect(expected).not.toBe("");
    const img = await cli([...CLI_TINY().map((a) => (a === image ? bad : a)), "--out", out]);
    expect(img.code).toBe(2);
    expect(img.err.trim()).toBe(`error: ${expected}`);
  });
});

describe.skipIf(!!NO_MPIRUN)(`over MPI ranks${NO_MPIRUN}`, () => {
  const ranks = (n: number, args: string[]) => runUnderMpirun(["bun", "cli/sweep.ts", ...args], { ranks: n, env: { ...process.env, NGPK_CACHE_DIR: cacheDir } });

  test("mpirun -np 2: rank r runs shard r/2, rank 0 merges: the single process's rows; a rerun over 3 ranks redoes nothing", async () => {
    const out = join(dir, "ranks");
    const two = await ranks(2, [...CLI_TINY(), "--out", out, "--json"]);
    expect(two.code, two.err).toBe(0);
    // rank 0 alone writes to stdout: one JSON line, for the whole sweep
    expect(two.out.trim().split("\n").filter((l) => l.startsWith("{"))).toHaveLength(1);
    expect(lastJson(two)).toMatchObject({ ranks: 2, runs: 4, already_done: 0, trained: 2, refused: 2, failed: 0, left: 0, interrupted: false, csv: join(out, "sweep.csv"), rows: 4 });
    for (const r of [0, 1]) expect(readSweepCsv(join(out, `sweep-shard-${r}-of-2.csv`))).toHaveLength(2);
    expect(sorted(readSweepCsv(join(out, "sweep.csv")))).toEqual(sorted((await reference()).rows));
    for (const png of ["psnr-by-allocation.png", "best-psnr-by-params.png"]) expect(isPng(join(out, png))).toBe(true);

    // Another rank count: the shards of 3 start from the merged CSV (nothing trained again).
    const three = await ranks(3, [...CLI_TINY(), "--out", out, "--json"]);
    expect(three.code, three.err).toBe(0);
    expect(lastJson(three)).toMatchObject({ ranks: 3, runs: 4, already_done: 4, trained: 0, rows: 4 });
    expect(sorted(readSweepCsv(join(out, "sweep.csv")))).toEqual(sorted((await reference()).rows));
  }, 240_000);

  test("--shard with ranks: status 2, naming both", async () => {
    const r = await ranks(2, [...CLI_TINY(), "--out", join(dir, "ranks-shard"), "--shard", "0/2"]);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain("error: --shard 0/2: not with 2 MPI ranks, which split the sweep themselves (rank r runs shard r/2)");
  }, TEST_TIMEOUT);
});

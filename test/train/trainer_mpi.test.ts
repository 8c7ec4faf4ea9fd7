// `bun run train` under mpirun (docs/distributed.md "Training across ranks"): 2 ranks with batch B
// against one process with --accumulate 2 (dense, and sparse updates), every rank's state the same,
// rank 0 the one writer, configurations that differ, a non-finite loss, SIGUSR1 and --resume; and the points source's
// split between ranks (in this process, no MPI needed). The multi-rank tests skip, saying why,
// where MPI or mpirun is missing.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { allocBuffer } from "../../runtime/buffer.ts";
import { readCheckpoint } from "../../train/checkpoint.ts";
import { parseTrainConfig } from "../../train/config.ts";
import { openPointSource, writePointsFile } from "../../train/data/points.ts";
import type { SourceContext } from "../../train/data/source.ts";
import type { Ranks } from "../../runtime/mpi.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { mpirunArgs, NO_MPIRUN, runUnderMpirun, unlaunched } from "../runtime/helpers.ts";
import { cacheDir, ROOT, runCommand, TEST_TIMEOUT } from "../util.ts";

const BACKEND = findCxx().tool ? "cpu" : "js";
const ENV = { ...unlaunched(), NGPK_CACHE_DIR: cacheDir };
if (NO_MPIRUN) console.log(`test/train/trainer_mpi.test.ts: multi-rank tests${NO_MPIRUN}`);

let dir: string;
let image: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ngpk-train-mpi-"));
  image = join(dir, "astronaut-64x48.png");
  await sharp(join(ROOT, "data/astronaut.png")).resize(64, 48, { fit: "cover" }).png().toFile(image);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A small model (test/train/trainer.test.ts's base()) on the 64x48 photograph. */
const TINY = () => [image, "--levels", "4", "--log2-table", "12", "--finest", "256", "--width", "16", "--batch", "1024", "--eval-every", "0", "--backend", BACKEND, "--seed", "7", "--lr", "1e-2", "--schedule", "none", "--ema", "0.99"];
const cli = (args: string[]) => ["bun", "cli/train.ts", ...args];
const train = (args: string[], ranks?: number) => runUnderMpirun(cli(args), { ranks, env: ENV });

/** ||a - b|| / ||a|| of every array two checkpoints hold, by name. */
async function relative(a: string, b: string): Promise<Record<string, number>> {
  const [x, y] = [await readCheckpoint(a), await readCheckpoint(b)];
  expect(Object.keys(y.arrays).sort()).toEqual(Object.keys(x.arrays).sort());
  return Object.fromEntries(
    Object.entries(x.arrays).map(([name, u]) => {
      const v = y.arrays[name]!;
      let [d, n] = [0, 0];
      for (let i = 0; i < u.length; i++) (d += (u[i]! - v[i]!) ** 2), (n += u[i]! ** 2);
      return [name, Math.sqrt(d / Math.max(n, 1e-300))];
    }),
  );
}

/** `command` under mpirun (2 ranks; `mpirun` options first), sent `signal` at its first step's progress line. */
function signalAfterFirstStep(command: string[], signal: NodeJS.Signals, mpirun: string[] = []) {
  const [launcher, ...options] = mpirunArgs(2);
  let signalled = false;
  return runCommand([launcher!, ...mpirun, ...options, ...command], {
    env: ENV,
    onStderr: (err, proc) => {
      if (!signalled && /step 1\//.test(err)) (proc.kill(signal), (signalled = true));
    },
  });
}

const metricsLosses = (out: string) => readFileSync(join(out, "metrics.csv"), "utf8").trim().split("\n").slice(1).map((l) => l.split(",")[1]);

describe.skipIf(!!NO_MPIRUN)(`2 ranks under mpirun${NO_MPIRUN}`, () => {
  test("2 ranks with batch B = one process with --accumulate 2: the same losses, state within 1e-6; ranks agree bit for bit every step (probing, EMA); rank 0 alone writes", async () => {
    const [one, two] = [join(dir, "acc2"), join(dir, "ranks2")];
    const args = [...TINY(), "--steps", "4", "--probing-range", "4", "--checkpoint-every", "1"];
    const single = await train([...args, "--accumulate", "2", "--out", one]);
    expect(single.code, single.err).toBe(0);
    // --checkpoint-every 1: the ranks compare a digest of their whole state (parameters, logits,
    // optimizer, EMA) at every checkpoint; a difference would stop the run.
    const ranks = await train([...args, "--out", two, "--json"], 2);
    expect(ranks.code, ranks.err).toBe(0);
    // One JSON line: rank 0's. The summary records the ranks and the batches.
    expect(ranks.lines).toHaveLength(1);
    expect(ranks.lines[0]).toMatchObject({ steps: 4, ranks: { count: 2, batch: 1024, globalBatch: 2048 } });
    expect(JSON.parse(readFileSync(join(two, "summary.json"), "utf8")).ranks).toEqual({ count: 2, batch: 1024, globalBatch: 2048 });
    // The same files as one process's, and no temporaries (rank 1 wrote nothing).
    expect(readdirSync(two).sort()).toEqual(readdirSync(one).sort());
    // Each step's loss is the mean over both ranks' batches: the single process's, bit for bit.
    expect(metricsLosses(two)).toEqual(metricsLosses(one));
    const [a, b] = [await readCheckpoint(join(one, "checkpoint.ngpk")), await readCheckpoint(join(two, "checkpoint.ngpk"))];
    expect([b.step, b.rng]).toEqual([a.step, a.rng]);
    // Up to f32 summation order: the grid's backward adds each point into the accumulated
    // gradient, where the ranks sum two micro-batch totals (the network's gradient: the same
    // order). Learned probing's logits: 1e-5 (measured 3.6e-6): Adam divides each logit's small
    // gradient by its own root mean square, which scales its rounding up; their moments: 1e-6.
    for (const [name, rel] of Object.entries(await relative(join(one, "checkpoint.ngpk"), join(two, "checkpoint.ngpk"))))
      expect({ name, rel: rel < (name === "probing.params" ? 1e-5 : 1e-6) }).toEqual({ name, rel: true });
  }, TEST_TIMEOUT);

  test("a different configuration on rank 1: rank 0 names it, every rank exits non-zero, nothing written", async () => {
    const out = join(dir, "differ");
    const rank = (seed: string) => [...TINY(), "--steps", "2", "--out", out].map((a, i, all) => (all[i - 1] === "--seed" ? seed : a));
    const { code, out: stdout, err: stderr } = await runCommand([...mpirunArgs(1), ...cli(rank("7")), ":", "-np", "1", ...cli(rank("8"))], { env: ENV });
    expect(code).not.toBe(0);
    expect(stdout).toBe("");
    const errors = stderr.split("\n").filter((l) => l.includes("error:"));
    expect(errors).toEqual(["error: rank 1 of 2 has a different configuration (flags, --config, --resume) than rank 0: start every rank with the same flags and files"]);
    expect(existsSync(out)).toBe(false);
  }, 60_000);

  test("sparse updates over 2 ranks: every rank steps the union of the rows touched (probing's too) = one process with --accumulate 2; ranks agree bit for bit every step", async () => {
    const [one, two] = [join(dir, "sparse-acc2"), join(dir, "sparse-ranks2")];
    const args = [...TINY(), "--steps", "4", "--probing-range", "4", "--checkpoint-every", "1", "--sparse-updates"];
    const single = await train([...args, "--accumulate", "2", "--out", one]);
    expect(single.code, single.err).toBe(0);
    // --checkpoint-every 1: the ranks compare their whole state's digest at every step.
    const ranks = await train([...args, "--out", two], 2);
    expect(ranks.code, ranks.err).toBe(0);
    // The gradients' all-reduce (runtime/nccl.ts openAllReduce) says what it uses, once (rank 0): on the CPU, MPI.
    expect(ranks.err.split("\n").filter((l) => l.startsWith("gradient all-reduce: "))).toEqual([expect.stringMatching(/^gradient all-reduce: MPI \(.+\): host buffers$/)]);
    expect(metricsLosses(two)).toEqual(metricsLosses(one));
    // Each rank alone would step only its own rows: the state would be far from one process's.
    for (const [name, rel] of Object.entries(await relative(join(one, "checkpoint.ngpk"), join(two, "checkpoint.ngpk"))))
      expect({ name, rel: rel < (name === "probing.params" ? 1e-5 : 1e-6) }).toEqual({ name, rel: true });
  }, TEST_TIMEOUT);

  test("a non-finite loss stops every rank without applying it: rank 0 says so once, the last good checkpoint kept", async () => {
    const out = join(dir, "nan");
    // test/cli/train_render.test.ts's diverging run: l2, a linear network, SGD at a constant lr 10.
    const r = await train([...TINY(), "--steps", "50", "--loss", "l2", "--activation", "none", "--optimizer", "sgd", "--lr", "10", "--schedule", "none", "--checkpoint-every", "1", "--out", out], 2);
    expect(r.code).not.toBe(0);
    const errors = r.err.split("\n").filter((l) => l.includes("error:"));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^error: the training loss became non-finite at step \d+; stopped without applying it \(the last good checkpoint, .+checkpoint\.ngpk, is kept\)/);
    const step = Number(/non-finite at step (\d+)/.exec(errors[0]!)![1]);
    expect((await readCheckpoint(join(out, "checkpoint.ngpk"))).step).toBe(step - 1);
  }, 60_000);

  test("SIGUSR1 to mpirun: every rank stops after the same step, rank 0 writes one checkpoint; --resume with 2 ranks ends where an uninterrupted run does", async () => {
    const [stopped, straight] = [join(dir, "usr1"), join(dir, "straight")];
    const args = [...TINY(), "--steps", "120", "--batch", "256"];
    // mpirun passes SIGUSR1 on to every rank.
    const { out: stdout, err: stderr, code } = await signalAfterFirstStep(cli([...args, "--out", stopped]), "SIGUSR1");
    expect(code, stderr).not.toBe(0); // 130 on every rank
    expect(stdout).toMatch(/^interrupted on 2 ranks: continue with --resume .+checkpoint\.ngpk \(with 2 ranks\)$/m);
    expect(stderr.match(/SIGUSR1: stopping after this step on every rank/g)).toHaveLength(1);
    const ck = await readCheckpoint(join(stopped, "checkpoint.ngpk"));
    expect(ck.step).toBeGreaterThan(0);
    expect(ck.step).toBeLessThan(120);
    expect(readdirSync(stopped).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    // Resumed with the same count, to 120 steps: the uninterrupted run's state, bit for bit.
    const resumed = await train([...args, "--out", stopped, "--resume", join(stopped, "checkpoint.ngpk")], 2);
    expect(resumed.code, resumed.err).toBe(0);
    const whole = await train([...args, "--out", straight], 2);
    expect(whole.code, whole.err).toBe(0);
    for (const rel of Object.values(await relative(join(straight, "checkpoint.ngpk"), join(stopped, "checkpoint.ngpk")))) expect(rel).toBe(0);
  }, 180_000);

  test("SIGTERM to mpirun with --mca odls_base_sigkill_timeout 3: the ranks get SIGTERM together 3 s later, stop after the same step, rank 0 writes one checkpoint and the outputs before the SIGKILL", async () => {
    const out = join(dir, "term");
    // Open MPI 4.1's mpirun on SIGTERM: SIGCONT to every rank, the timeout, SIGTERM to every rank, the timeout, SIGKILL.
    const { err: stderr, code } = await signalAfterFirstStep(cli([...TINY(), "--steps", "100000", "--batch", "256", "--out", out]), "SIGTERM", ["--mca", "odls_base_sigkill_timeout", "3"]);
    expect(code, stderr).not.toBe(0);
    expect(stderr.match(/SIGTERM: stopping after this step on every rank/g)).toHaveLength(1);
    // The checkpoint's save compared the ranks' state digests (equal), and rank 0 got to the end.
    const ck = await readCheckpoint(join(out, "checkpoint.ngpk"));
    expect(ck.step).toBeGreaterThan(0);
    expect(JSON.parse(readFileSync(join(out, "summary.json"), "utf8"))).toMatchObject({ steps: ck.step, stoppedBy: "interrupted", ranks: { count: 2 } });
    expect(readdirSync(out).sort()).toEqual(["checkpoint.ngpk", "metrics.csv", "plot.png", "summary.json"]);
  }, 60_000);

  test("--seconds with a cosine schedule: the warm-up and the stop follow rank 0's clock, so the ranks stay alike (compared at every checkpoint)", async () => {
    const out = join(dir, "seconds");
    const r = await train([...TINY(), "--schedule", "cosine", "--seconds", "3", "--checkpoint-every", "1", "--out", out, "--json"], 2);
    expect(r.code, r.err).toBe(0);
    expect(r.lines[0]).toMatchObject({ stopped_by: expect.stringMatching(/^(steps|seconds)$/), schedule_span: { from: "seconds" } });
  }, 60_000);

  test("a rank killed mid-run: mpirun ends the other and exits non-zero (no rank waits in a collective)", async () => {
    const out = join(dir, "killed");
    let killed = 0;
    let children: number[] = [];
    const { code } = await runUnderMpirun(cli([...TINY(), "--steps", "100000", "--batch", "256", "--out", out]), {
      ranks: 2,
      env: ENV,
      onStderr: (err, proc) => {
        if (killed || !err.includes("step 1/")) return;
        // One of mpirun's two children (a rank), with SIGKILL.
        children = Bun.spawnSync(["pgrep", "-P", String(proc.pid)], { env: process.env }).stdout.toString().trim().split("\n").map(Number);
        if (children.length === 2) process.kill(children[1]!, "SIGKILL");
        killed = performance.now();
      },
    });
    expect(children).toHaveLength(2);
    expect(killed).toBeGreaterThan(0);
    expect(code).not.toBe(0);
    expect(performance.now() - killed).toBeLessThan(30_000);
  }, 60_000);

  test("--resume with another rank count continues the sample stream from the next multiple of the new count", async () => {
    const out = join(dir, "recount");
    const two = await train([...TINY(), "--steps", "3", "--out", out], 2);
    expect(two.code, two.err).toBe(0);
    expect((await readCheckpoint(join(out, "checkpoint.ngpk"))).rng).toEqual({ micro: 6 });
    const one = await train([...TINY(), "--steps", "5", "--out", out, "--resume", join(out, "checkpoint.ngpk")]);
    expect(one.code, one.err).toBe(0);
    const ck = await readCheckpoint(join(out, "checkpoint.ngpk"));
    expect([ck.step, ck.rng]).toEqual([5, { micro: 8 }]);
  }, TEST_TIMEOUT);

  /** 4000 records of 2 coordinates and 1 value; the extremes apart: rank 0 of 2 reads records [0, 2000), rank 1 [2000, 4000). */
  const pointsFile = (name: string, bad?: number) => {
    const file = join(dir, name);
    const n = 4000;
    const records = Float32Array.from({ length: 3 * n }, (_, k) => (k % 3 === 2 ? Math.sin(k) : ((k * 7919) % 1000) / 1000));
    [records[3 * 10 + 2], records[3 * 3990 + 2], records[3 * 3000], records[3 * 5 + 1]] = [5, -5, 2, -1];
    if (bad !== undefined) records[3 * bad + 2] = Infinity;
    writePointsFile(file, { dims: 2, channels: 1 }, records);
    return file;
  };
  const pointsArgs = (file: string, out: string) => ["--points", file, "--levels", "4", "--log2-table", "12", "--width", "16", "--batch", "256", "--steps", "3", "--eval-every", "0", "--backend", BACKEND, "--schedule", "none", "--out", out];

  test("points: each rank its own blocks; the first pass shared, its box and value range one process's; rank 0 writes validation.csv", async () => {
    const file = pointsFile("pts.bin");
    const [one, two] = [join(dir, "points1"), join(dir, "points2")];
    const single = await train(pointsArgs(file, one));
    expect(single.code, single.err).toBe(0);
    const r = await train(pointsArgs(file, two), 2);
    expect(r.code, r.err).toBe(0);
    expect(readdirSync(two).sort()).toEqual(["checkpoint.ngpk", "metrics.csv", "plot.png", "summary.json", "validation.csv"]);
    const measured = (out: string) => {
      const { box, boxFrom, valueRange } = JSON.parse(readFileSync(join(out, "summary.json"), "utf8")).points;
      return { box, boxFrom, valueRange };
    };
    expect(measured(one)).toEqual({ box: { min: [0, -1], max: [2, Math.fround(0.999)] }, boxFrom: "data", valueRange: { min: -5, max: 5 } });
    expect(measured(two)).toEqual(measured(one));
    expect((await readCheckpoint(join(two, "checkpoint.ngpk"))).meta.points).toEqual((await readCheckpoint(join(one, "checkpoint.ngpk"))).meta.points);
  }, TEST_TIMEOUT);

  test("points: a value that is not finite in rank 1's share: rank 0 reports one process's error, every rank exits non-zero, nothing written", async () => {
    const file = pointsFile("pts-inf.bin", 3500);
    const [one, two] = [join(dir, "points-inf1"), join(dir, "points-inf2")];
    const errors = (err: string) => err.split("\n").filter((l) => l.includes("error:"));
    const single = await train(pointsArgs(file, one));
    expect(single.code).toBe(2);
    expect(errors(single.err)).toEqual([`error: ${file}: record 3500 (counting from 0) has Infinity as its value 0: coordinates and values must be finite numbers`]);
    const r = await train(pointsArgs(file, two), 2);
    expect(r.code).not.toBe(0);
    expect(errors(r.err)).toEqual(errors(single.err));
    // The out directory made, as one process makes it, and nothing in it.
    expect([readdirSync(one), readdirSync(two)]).toEqual([[], []]);
  }, TEST_TIMEOUT);
});

describe("the points source split between ranks (no MPI needed)", () => {
  test("rank r of N draws its own training blocks: over an epoch the ranks' records are disjoint and together the training split", async () => {
    const file = join(dir, "split.bin");
    const n = 1000;
    // Record i: coordinates (i / n, 0.5), value i: the value names the record.
    writePointsFile(file, { dims: 2, channels: 1, box: { min: [0, 0], max: [1, 1] } }, Float32Array.from({ length: 3 * n }, (_, k) => (k % 3 === 0 ? Math.floor(k / 3) / n : k % 3 === 1 ? 0.5 : Math.floor(k / 3))));
    const cfg = parseTrainConfig({ points: { file, blockRecords: 10 }, seed: 3 });
    const ctx = { alloc: (length: number) => allocBuffer("js", "f32", length) } as unknown as SourceContext;
    const drawn: number[][] = [];
    let trainRecords = 0;
    for (const rank of [0, 1, 2]) {
      const s = await openPointSource(cfg);
      trainRecords = s.summary().trainRecords;
      s.split(rank, 3);
      await s.attach(ctx);
      const values: number[] = [];
      // Batches of 10 up to a third of the training split (about one epoch of this rank's share).
      for (let k = 0; k < Math.floor(trainRecords / 3 / 10); k++) values.push(...s.sample(10, k).targets.download());
      drawn.push(values);
      s.close();
    }
    const all = drawn.flat();
    expect(new Set(all).size).toBe(all.length); // no record twice, within or across ranks
    expect(all.length).toBe(trainRecords);
    // Rank r's blocks are the training blocks i with i % 3 == r: records of one block (10) on one rank.
    const rankOfBlock = new Map<number, number>();
    drawn.forEach((values, rank) => values.forEach((v) => expect(rankOfBlock.get(Math.floor(v / 10)) ?? rank).toBe((rankOfBlock.set(Math.floor(v / 10), rank), rank))));
  });

  test("the first pass as rank r of N reads rank r's run of blocks only: a NaN in rank 1's, the box and value range of rank 0's", async () => {
    const file = join(dir, "first-pass.bin");
    const n = 640; // 64 blocks of 10: rank 0 of 2 reads records [0, 320), rank 1 [320, 640)
    // Record r: (r / n, 1 - r / n), value r.
    const records = Float32Array.from({ length: 3 * n }, (_, k) => [Math.floor(k / 3) / n, 1 - Math.floor(k / 3) / n, Math.floor(k / 3)][k % 3]!);
    records[3 * 500 + 1] = NaN;
    writePointsFile(file, { dims: 2, channels: 1 }, records);
    const cfg = parseTrainConfig({ points: { file, blockRecords: 10 } });
    const message = `${file}: record 500 (counting from 0) has NaN as its coordinate 1: coordinates and values must be finite numbers`;
    await expect(openPointSource(cfg)).rejects.toThrow(message);
    // Without the other ranks (the collectives return their input): each rank's own share only.
    const alone = { allReduce() {} } as unknown as Ranks;
    const zero = await openPointSource(cfg, { share: { rank: 0, size: 2 } });
    zero.gather(alone);
    expect(zero.summary().valueRange).toEqual({ min: 0, max: 319 });
    expect(zero.box).toEqual({ min: [0, Math.fround(1 - 319 / n)], max: [Math.fround(319 / n), 1] });
    zero.close();
    const one = await openPointSource(cfg, { share: { rank: 1, size: 2 } });
    expect(() => one.gather(alone)).toThrow(message);
    one.close();
  });

  test("more ranks than training blocks: an error naming the file and what to change", async () => {
    const file = join(dir, "few.bin");
    writePointsFile(file, { dims: 1, channels: 1 }, Float32Array.from([0, 1, 0.5, 2])); // 2 blocks of 1 record: 1 trains
    const s = await openPointSource(parseTrainConfig({ points: { file } }));
    try {
      expect(() => s.split(5, 8)).toThrow(`${file}: 1 training block cannot be shared by 8 ranks: give a smaller --block-records (points.blockRecords), or fewer ranks`);
    } finally {
      s.close();
    }
  });
});

// The lock of an out directory (train/lock.ts): a second command writing into a directory that
// another one is writing into is refused, naming the holder; a stale lock (its process gone) is
// taken over with a note; the shards of one split share a directory; the lock goes when its
// holder ends, by return, error or process.exit. The commands: train, sweep and sweep --merge.
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { lockOutDir, OutDirInUseError } from "../../train/lock.ts";
import { SWEEP_HEADER } from "../../train/sweep/results.ts";
import { ROOT, runCommand } from "../util.ts";

const tmp = mkdtempSync(join(tmpdir(), "ngpk-lock-"));
const sleepers: Bun.Subprocess[] = [];
afterAll(() => {
  for (const p of sleepers) p.kill();
  rmSync(tmp, { recursive: true, force: true });
});

let n = 0;
const freshDir = () => {
  const dir = join(tmp, `o${n++}`);
  mkdirSync(dir);
  return dir;
};

/** Start time of `pid` in clock ticks (as lock.ts records it), on Linux. */
const ticks = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
  } catch {
    return undefined;
  }
};

/** A lock file in `dir` held by a live process (a sleeping child) that says it is `command`. */
function heldBy(dir: string, command: string, name = ".lock"): { pid: number; started: Date } {
  const child = Bun.spawn(["sleep", "600"]);
  sleepers.push(child);
  const started = new Date();
  writeFileSync(join(dir, name), JSON.stringify({ pid: child.pid, host: hostname(), command, started: started.toISOString(), ticks: ticks(child.pid), nonce: "x" }));
  return { pid: child.pid, started };
}

const hms = (d: Date) => d.toTimeString().slice(0, 8);

test("a directory held by a running command is refused, naming the command, its pid and start time", () => {
  const dir = freshDir();
  const { pid, started } = heldBy(dir, "sweep");
  expect(() => lockOutDir(dir)).toThrow(new OutDirInUseError(`${dir} is in use by sweep (pid ${pid}, started ${hms(started)}); wait for it or choose another --out`));
  expect(readdirSync(dir)).toEqual([".lock"]); // the holder's lock untouched, no temporary left
});

test("a lock of this process is held until disposed; then the directory is free again", () => {
  const dir = freshDir();
  const lock = lockOutDir(dir);
  expect(() => lockOutDir(dir)).toThrow(OutDirInUseError);
  lock[Symbol.dispose]();
  expect(readdirSync(dir)).toEqual([]);
  lockOutDir(dir)[Symbol.dispose]();
});

test("a stale lock (its process gone, or a pid now used by another process) is taken over with a note", async () => {
  const dir = freshDir();
  const dead = Bun.spawn(["true"]);
  await dead.exited;
  writeFileSync(join(dir, ".lock"), JSON.stringify({ pid: dead.pid, host: hostname(), command: "train", started: new Date(0).toISOString(), nonce: "x" }));
  const notes: string[] = [];
  const lock = lockOutDir(dir, { log: (m) => notes.push(m) });
  expect(notes).toEqual([expect.stringMatching(new RegExp(`^taking over the stale lock ${dir}/\\.lock of train \\(pid ${dead.pid}, started 1970-01-0[12] \\d\\d:\\d\\d:\\d\\d\\), which is no longer running$`))]);
  expect(JSON.parse(readFileSync(join(dir, ".lock"), "utf8")).pid).toBe(process.pid);
  lock[Symbol.dispose]();

  if (ticks(process.pid) === undefined) return; // no /proc: a reused pid cannot be told apart
  const { pid } = heldBy(dir, "sweep");
  const reused = JSON.parse(readFileSync(join(dir, ".lock"), "utf8"));
  writeFileSync(join(dir, ".lock"), JSON.stringify({ ...reused, ticks: reused.ticks - 1 })); // pid now another process's
  lockOutDir(dir, { log: (m) => notes.push(m) })[Symbol.dispose]();
  expect(notes[1]).toContain(`of sweep (pid ${pid}`);
});

test("the shards of one split share a directory; a whole sweep, a run or another split does not", () => {
  const dir = freshDir();
  const a = lockOutDir(dir, { shard: { index: 0, count: 2 } });
  const b = lockOutDir(dir, { shard: { index: 1, count: 2 } });
  expect(() => lockOutDir(dir, { shard: { index: 0, count: 2 } })).toThrow(OutDirInUseError);
  expect(() => lockOutDir(dir, { shard: { index: 0, count: 3 } })).toThrow(OutDirInUseError);
  expect(() => lockOutDir(dir)).toThrow(OutDirInUseError);
  a[Symbol.dispose]();
  b[Symbol.dispose]();
  const whole = lockOutDir(dir);
  expect(() => lockOutDir(dir, { shard: { index: 1, count: 2 } })).toThrow(OutDirInUseError);
  whole[Symbol.dispose]();
  expect(readdirSync(dir)).toEqual([]);
});

test("the lock goes when its process exits through process.exit (a second Ctrl-C) or an uncaught error", async () => {
  for (const end of ["process.exit(130)", "throw new Error('boom')"]) {
    const dir = freshDir();
    const script = `import { lockOutDir } from ${JSON.stringify(join(ROOT, "train/lock.ts"))}; lockOutDir(${JSON.stringify(dir)}); console.log(require("node:fs").readdirSync(${JSON.stringify(dir)}).join()); ${end};`;
    const file = join(tmp, `exit-${n++}.ts`);
    writeFileSync(file, script);
    const { out } = await runCommand([process.execPath, file]);
    expect({ end, out: out.trim(), after: readdirSync(dir) }).toEqual({ end, out: ".lock", after: [] });
  }
});

async function cli(args: string[]): Promise<{ code: number; err: string }> {
  const { code, err } = await runCommand([process.execPath, ...args]);
  return { code, err };
}

test("train, sweep and sweep --merge into a directory in use: one line naming the holder, exit status 2, nothing written", async () => {
  const T = ["--steps", "3", "--batch", "1024", "--levels", "4", "--log2-table", "12", "--finest", "256", "--width", "16"];
  const csv = join(tmp, "shard.csv");
  writeFileSync(csv, `${SWEEP_HEADER}\n`);
  for (const args of [
    ["cli/train.ts", "data/astronaut.png", ...T, "--out"],
    ["cli/sweep.ts", "--budgets", "4096", "--levels", "4", "--features", "2", "--steps", "3", "--out"],
    ["cli/sweep.ts", "--shard", "0/2", "--budgets", "4096", "--levels", "4", "--features", "2", "--steps", "3", "--out"],
    ["cli/sweep.ts", "--merge", csv, "--out"],
  ]) {
    const dir = freshDir();
    const { pid, started } = heldBy(dir, "sweep");
    const r = await cli([...args, dir]);
    expect({ args: args.join(" "), ...r }).toEqual({ args: args.join(" "), code: 2, err: `error: ${dir} is in use by sweep (pid ${pid}, started ${hms(started)}); wait for it or choose another --out\n` });
    expect(readdirSync(dir)).toEqual([".lock"]);
  }
});

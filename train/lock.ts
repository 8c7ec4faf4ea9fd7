// The lock of an out directory: two commands writing into one directory at once (two sweeps, two
// train runs, a train run beside a sweep) would train into the same folders and overwrite each
// other's outputs, so the second one is refused, naming the first.
//
// The lock is a file in the directory, created with O_EXCL: `.lock`, or `.lock-shard-i-of-n` for
// a sweep's shard, since the shards of one split (i/n, j/n) train disjoint runs and may share an
// out directory; anything else (a whole sweep, a run, a shard of another split) excludes all
// others. It holds the holder's pid, host, command and start time. A lock whose process is gone
// (on this host) is stale: taken over, with a note. It is removed when its holder ends normally,
// by an error, by Ctrl-C or process.exit; a killed holder leaves a stale one.
import { randomBytes } from "node:crypto";
import { linkSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { basename, dirname, join } from "node:path";
import { processAlive } from "../runtime/cache.ts";
import { UsageError } from "../dsl/errors.ts";

/** The out directory is held by another command (the CLIs' exit status 2). */
export class OutDirInUseError extends UsageError {
  constructor(message: string) {
    super(message);
    this.name = "OutDirInUseError";
  }
}

interface Holder {
  pid: number;
  host: string;
  command: string;
  started: string;
  /** The holder's start time in clock ticks since boot (Linux), so that a reused pid is not taken for it. */
  ticks?: number;
  /** Unique per lock, so that release removes only its own file. */
  nonce: string;
}

/** Paths of the locks this process holds (a pid of our own in a lock is stale unless listed here). */
const held = new Map<string, string>();
process.on("exit", () => {
  for (const path of held.keys()) releaseFile(path);
});

/**
 * Takes the lock of `dir` (which exists) for this process, or throws OutDirInUseError naming its
 * holder. `shard`: a sweep's shard, which shares the directory with the other shards of its split.
 * Released by disposing the result (`using lock = lockOutDir(...)`), or when the process exits.
 */
export function lockOutDir(dir: string, opts: { shard?: { index: number; count: number }; log?: (message: string) => void } = {}): Disposable {
  const name = opts.shard ? `.lock-shard-${opts.shard.index}-of-${opts.shard.count}` : ".lock";
  const path = join(dir, name);
  const script = basename(process.argv[1] ?? "bun").replace(/\.[cm]?[jt]s$/, "");
  const me: Holder = {
    pid: process.pid,
    host: hostname(),
    command: opts.shard ? `${script} --shard ${opts.shard.index}/${opts.shard.count}` : script,
    started: new Date().toISOString(),
    ticks: startTicks(process.pid),
    nonce: randomBytes(8).toString("hex"),
  };
  // Written whole under a temporary name, then linked to the lock's name (which fails if it
  // exists, like O_EXCL), so that nobody reads a lock before its holder is in it.
  const tmp = `${path}.${process.pid}-${me.nonce}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ ...me, argv: process.argv.slice(1) })}\n`);
  try {
    while (!create(tmp, path)) {
      const holder = readHolder(path);
      if (holder && running(holder, path)) throw inUse(path, holder);
      // Stale (or not a lock of ours). Another process may take it over at the same moment: the
      // exclusive create decides.
      opts.log?.(`taking over the stale lock ${path}${holder ? ` of ${describe(holder)}, which is no longer running` : ""}`);
      rmSync(path, { force: true });
    }
  } finally {
    rmSync(tmp, { force: true });
  }
  held.set(path, me.nonce);
  // Then the other locks of the directory: created first, checked after, so that of two commands
  // starting together at least one sees the other (both may refuse; neither runs beside the other).
  for (const other of readdirSync(dir)) {
    if (other === name || !other.startsWith(".lock") || other.endsWith(".tmp") || (opts.shard && other.startsWith(".lock-shard-") && other.endsWith(`-of-${opts.shard.count}`))) continue;
    const holder = readHolder(join(dir, other));
    if (holder && running(holder, join(dir, other))) {
      releaseFile(path);
      throw inUse(join(dir, other), holder);
    }
  }
  return { [Symbol.dispose]: () => releaseFile(path) };
}

/** Creates `path` as a link to `tmp`; false when it exists. */
function create(tmp: string, path: string): boolean {
  try {
    linkSync(tmp, path);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return false;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP") throw e;
  }
  // A file system without hard links: an exclusive create, then the contents.
  try {
    writeFileSync(path, readFileSync(tmp), { flag: "wx" });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw e;
  }
}

function releaseFile(path: string): void {
  const nonce = held.get(path);
  if (nonce === undefined) return;
  held.delete(path);
  if (readHolder(path)?.nonce === nonce) rmSync(path, { force: true });
}

function readHolder(path: string): Holder | undefined {
  try {
    const h = JSON.parse(readFileSync(path, "utf8")) as Holder;
    return Number.isInteger(h.pid) && typeof h.host === "string" && typeof h.command === "string" ? h : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the lock's holder may still run: always when it is on another host (we cannot tell). */
function running(h: Holder, path: string): boolean {
  if (h.host !== hostname()) return true;
  if (h.pid === process.pid) return held.has(path);
  if (!processAlive(h.pid)) return false;
  const ticks = startTicks(h.pid);
  return h.ticks === undefined || ticks === undefined || ticks === h.ticks;
}

/** Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot (Linux). */
function startTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
  } catch {
    return undefined;
  }
}

/** "sweep (pid 1234, started 12:03:05)": the date too when not today, the host when not ours. */
function describe(h: Holder): string {
  const t = new Date(h.started);
  const day = t.toDateString() === new Date().toDateString() ? "" : `${t.getFullYear()}-${String(t.getMonth() + 1).padStart(2, "0")}-${String(t.getDate()).padStart(2, "0")} `;
  return `${h.command} (pid ${h.pid}${h.host === hostname() ? "" : ` on ${h.host}`}, started ${day}${t.toTimeString().slice(0, 8)})`;
}

function inUse(lock: string, h: Holder): OutDirInUseError {
  // The holder's pid can be checked only on its own host.
  const elsewhere = h.host === hostname() ? "" : ` (if it no longer runs there, delete ${lock})`;
  return new OutDirInUseError(`${dirname(lock)} is in use by ${describe(h)}; wait for it or choose another --out${elsewhere}`);
}

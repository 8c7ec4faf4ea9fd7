// The machine's own limits, measured in the benchmark's process: the CPU (model, the vector
// extensions /proc/cpuinfo reports and the width the compiler's target macros allow), the f32 FMA
// peak of all threads and the stream-triad bandwidth. bench/machine.cpp is built with the
// project's CPU flags through the build cache and loaded with bun:ffi, like bench/hand.ts.
//
//   const m = await loadMachine();
//   m.fmaPeak()    // { gflops, max, samples }: median and best of several ~0.1 s runs
//   m.triad()      // { gbs, gbsWriteAllocate, gbsStreaming }: medians, 3 streams counted
import { dlopen } from "bun:ffi";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { buildCached, type BuildResult } from "../runtime/cache.ts";
import { validateSharedLibrary } from "../runtime/elf.ts";
import { CPU_FLAGS, findCxx } from "../runtime/toolchain.ts";

export const MACHINE_SOURCE_PATH = join(import.meta.dir, "machine.cpp");
const MACHINE_COMPILER_VERSION = "bench-machine-1";

export function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export interface CpuInfo {
  model: string;
  /** "family F model M" from /proc/cpuinfo (Zen 4 is family 25, Zen 5 family 26). */
  family: string;
  /** The vector extensions /proc/cpuinfo lists (avx512f, avx2, fma, ...). */
  flags: string[];
  /** Logical CPUs listed. */
  cpus: number;
  /** g++ -march=native as the compiler resolves it: its -march and preferred vector width. */
  march: string;
  preferVectorWidth: string;
}

export function cpuInfo(cxx?: string): CpuInfo {
  let text = "";
  try {
    text = readFileSync("/proc/cpuinfo", "utf8");
  } catch {}
  const field = (name: string) => text.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, "m"))?.[1]?.trim() ?? "?";
  const flags = field("flags")
    .split(/\s+/)
    .filter((f) => /^(avx|fma|f16c)/.test(f));
  const cpus = (text.match(/^processor\s*:/gm) ?? []).length;
  let march = "?";
  let preferVectorWidth = "?";
  if (cxx) {
    try {
      const r = Bun.spawnSync([cxx, "-march=native", "-Q", "--help=target"], { stdout: "pipe", stderr: "pipe", timeout: 20_000 });
      const out = r.stdout.toString();
      march = out.match(/^\s*-march=\s+(\S+)/m)?.[1] ?? "?";
      preferVectorWidth = out.match(/^\s*-mprefer-vector-width=\s+(\S+)/m)?.[1] ?? "?";
      // GCC spells a 128-bit preference as -mprefer-avx128 on some versions.
      if (preferVectorWidth === "none" && /^\s*-mprefer-avx128\s+-mprefer-vector-width=128/m.test(out)) preferVectorWidth = "128";
    } catch {}
  }
  return { model: field("model name"), family: `family ${field("cpu family")} model ${field("model")}`, flags, cpus, march, preferVectorWidth };
}

/**
 * CPU time of the whole machine and of this process, to tell how much of a run other processes
 * took: on a 2-core machine a second process halves an OpenMP kernel's speed (its threads meet at
 * barriers), so figures measured next to one mean little.
 */
export interface CpuSnapshot {
  /** Busy jiffies over all CPUs (user + nice + system + irq + softirq + steal). */
  busy: number;
  /** All jiffies over all CPUs. */
  total: number;
  /** This process's user + system jiffies (all its threads). */
  self: number;
}

export function cpuSnapshot(): CpuSnapshot | undefined {
  try {
    const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, idle, iowait, irq, softirq, steal] = cpu as [number, number, number, number, number, number, number, number];
    const self = readFileSync("/proc/self/stat", "utf8");
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15,
    // and the finished children's (a compiler building a kernel) cutime 16, cstime 17.
    const rest = self.slice(self.lastIndexOf(")") + 2).split(" ").map(Number);
    const busy = user + nice + system + irq + softirq + (steal ?? 0);
    return { busy, total: busy + idle + iowait, self: rest[11]! + rest[12]! + rest[13]! + rest[14]! };
  } catch {
    return undefined;
  }
}

/** The share of all CPU time between two snapshots that other processes used (0 .. 1). */
export function othersShare(a: CpuSnapshot | undefined, b: CpuSnapshot | undefined): number | undefined {
  if (!a || !b || b.total <= a.total) return undefined;
  return Math.max(0, (b.busy - a.busy - (b.self - a.self)) / (b.total - a.total));
}

/** CPU time of other processes, summed over the segments of a run that count (start/stop around each). */
export class BusyMeter {
  #others = 0;
  #total = 0;
  #from: CpuSnapshot | undefined;
  start(): void {
    this.#from = cpuSnapshot();
  }
  stop(): void {
    const a = this.#from;
    const b = cpuSnapshot();
    this.#from = undefined;
    if (!a || !b || b.total <= a.total) return;
    this.#others += Math.max(0, b.busy - a.busy - (b.self - a.self));
    this.#total += b.total - a.total;
  }
  get share(): number | undefined {
    return this.#total > 0 ? this.#others / this.#total : undefined;
  }
}

/** Above this share of the CPU time taken by other processes, a benchmark's figures are suspect. */
export const BUSY_SHARE = 0.05;

/** "23%" of the CPU time, or why it is unknown. */
export const busyText = (share: number | undefined | null): string => (share == null ? "unknown (no /proc/stat)" : `${(100 * share).toFixed(0)}%`);

/** " (other processes: 23% of the CPU time)" when a measurement ran next to others. */
export const busyNote = (share: number | undefined | null): string => (share != null && share > BUSY_SHARE ? ` (other processes: ${busyText(share)} of the CPU time)` : "");

/**
 * A benchmark's closing lines: its duration and the CPU time other processes used meanwhile, and
 * a WARNING when they used more than BUSY_SHARE, saying what that does to `figures`.
 */
export function loadReport(share: number | undefined, seconds: number, opts: { note?: string; figures?: string } = {}): string[] {
  const lines = [`(${seconds.toFixed(0)} s; other processes used ${busyText(share)} of the machine's CPU time meanwhile${opts.note ?? ""})`];
  if (share !== undefined && share > BUSY_SHARE) {
    const figures = opts.figures ?? "An OpenMP kernel whose threads share a core with another process waits for it at every barrier: these figures understate the machine";
    lines.push(`WARNING: other processes were running (${busyText(share)} of all CPU time). ${figures}; run again when it is idle.`);
  }
  return lines;
}

/**
 * A figure as a share of a physical limit of the machine (GFLOP/s of the FMA peak, GB/s of the
 * stream triad). The limit cannot be exceeded: a share above 1 means the limit was measured low
 * (while other processes ran, or the clock was down) and is no result. `share` is then null and
 * `disturbed` says why.
 */
export interface LimitShare {
  share: number | null;
  disturbed?: string;
}

export function shareOfLimit(value: number, limit: number, what: string, others: number | undefined): LimitShare {
  const share = value / limit;
  if (share <= 1) return { share };
  const why = others !== undefined && others > BUSY_SHARE
    ? `other processes used ${busyText(others)} of the CPU time, so the limit was measured while they ran`
    : "the limit was measured low (another process or a lower clock at that moment)";
  return { share: null, disturbed: `measurement disturbed: ${what} came out at ${(100 * share).toFixed(0)}% of a limit that cannot be exceeded; ${why}` };
}

/** "87.3%", or "invalid" for a disturbed measurement (whose reason is printed apart). */
export const fmtShare = (s: LimitShare, digits = 1): string => (s.share === null ? "invalid" : `${(100 * s.share).toFixed(digits)}%`);

export interface FmaPeak {
  /** Median f32 GFLOP/s over the samples. */
  gflops: number;
  max: number;
  samples: number[];
}

export interface Triad {
  /** STREAM convention: 3 streams of 4 bytes per element (read b, read c, write a), plain stores. */
  gbs: number;
  /** The same runs counting the write-allocate read of a (4 streams): the traffic DRAM really sees. */
  gbsWriteAllocate: number;
  /** Non-temporal stores (no write-allocate): 3 streams that really are 3. */
  gbsStreaming: number;
  /** Floats per array. */
  n: number;
}

export interface MachineLib {
  path: string;
  build: BuildResult;
  /** 512, 256 or 32 (scalar): what __AVX512F__ / __AVX2__ && __FMA__ gave the compiler. */
  vectorBits: number;
  fmaChains: number;
  threads: number;
  fmaPeak(samples?: number, targetSeconds?: number): FmaPeak;
  triad(n?: number, reps?: number): Triad;
  close(): void;
}

export async function loadMachine(options: { cacheDir?: string } = {}): Promise<MachineLib> {
  const { tool, reason } = findCxx();
  if (!tool) throw new Error(`cannot build ${MACHINE_SOURCE_PATH}: no C++ compiler (${reason})`);
  const build = await buildCached({
    source: readFileSync(MACHINE_SOURCE_PATH, "utf8"),
    lang: "cpp",
    tool,
    flags: CPU_FLAGS,
    compilerVersion: MACHINE_COMPILER_VERSION,
    cacheDir: options.cacheDir,
    name: "bench_machine",
  });
  const problem = validateSharedLibrary(build.path);
  if (problem) throw new Error(`refusing to load ${build.path}: ${problem}`);
  const { symbols: s, close } = dlopen(build.path, {
    machine_vector_bits: { args: [], returns: "i32" },
    machine_fma_chains: { args: [], returns: "i32" },
    machine_threads: { args: [], returns: "i32" },
    machine_fma_peak: { args: ["i64", "ptr"], returns: "f64" },
    machine_triad: { args: ["i64", "i32", "i32", "ptr"], returns: "i32" },
  });
  const fmaRun = (iters: number) => {
    const secs = new Float64Array(1);
    const flops = s.machine_fma_peak(iters, secs);
    if (!(flops > 0)) throw new Error(`machine_fma_peak(${iters}) failed (${flops})`);
    return { flops, secs: secs[0]! };
  };
  return {
    path: build.path,
    build,
    vectorBits: s.machine_vector_bits(),
    fmaChains: s.machine_fma_chains(),
    threads: s.machine_threads(),
    fmaPeak(samples = 7, targetSeconds = 0.08) {
      // Calibrate the iteration count to about targetSeconds per run (the first runs also warm up
      // the threads and let the clock settle).
      let iters = 1 << 16;
      for (let k = 0; k < 6; k++) {
        const { secs } = fmaRun(iters);
        if (secs > targetSeconds / 4) {
          iters = Math.max(1, Math.round((iters * targetSeconds) / secs));
          break;
        }
        iters *= 4;
      }
      const gf = Array.from({ length: samples }, () => fmaRun(iters).flops / 1e9);
      return { gflops: median(gf), max: Math.max(...gf), samples: gf };
    },
    triad(n = 1 << 25, reps = 9) {
      const run = (streaming: number) => {
        const t = new Float64Array(reps + 1);
        const rc = s.machine_triad(n, reps + 1, streaming, t);
        if (rc !== 0) throw new Error(`machine_triad failed (${rc})`);
        return median([...t.subarray(1)]); // the first run warms up
      };
      const plain = run(0);
      const streaming = run(1);
      return { gbs: (3 * 4 * n) / plain / 1e9, gbsWriteAllocate: (4 * 4 * n) / plain / 1e9, gbsStreaming: (3 * 4 * n) / streaming / 1e9, n };
    },
    close,
  };
}

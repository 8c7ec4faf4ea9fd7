// `bun run check:gpu [--stand-in js|cpu] [--only STEPS] [--budget S] [--json]`
//
// One prepared run of everything that needs a CUDA device, for the first session that is lent one:
//   grid parity   HashGrid forward, table gradient and dL/dx on CUDA vs the CPU backend, same
//                 inputs (5 configurations: 2D/3D defaults, f16 parameters, smoothstep, dense)
//   mlp parity    Mlp forward, trainStep (loss, weight gradient, dL/dx) and backward, CUDA vs CPU
//   adam parity   Optimizer (Adam) steps over two parameter groups, CUDA vs CPU
//   cuda tests    every test file with a CUDA execution test (they run when a device is present;
//                 found by what they import), each file in its own `bun test` with a timeout
//   grid bench    bench/hashgrid.ts --backend cuda: generated CUDA vs generated CPU kernels
//   mlp bench     bench/mlp.ts --backend cuda when that script exists and takes the flag, else
//                 Mlp.trainStep / forward and Adam timed directly (scripts/gpu_checks.ts mlp-bench)
//   nccl          runtime/nccl.ts on the real libnccl ($NGPK_NCCL, the CUDA install, the loader's
//                 path, else a Python package's nvidia/.../libnccl.so.2): bootstrap and exact sums,
//                 one rank per GPU under mpirun when there are several GPUs and MPI, else one rank;
//                 SKIP with the reason when there is no libnccl
//   train-ranks   mpirun bun run train on the device (one rank per GPU, at least 2) against one
//                 process with --accumulate: the gradients through NCCL (a GPU per rank, libnccl)
//                 or MPI through host memory, named by the log; the results within 1e-5
// then one summary: PASS/FAIL per step, the figures, a verdict. Each step is a child process with
// its own timeout (a crash or hang in one cannot stop the others), and the whole run keeps within
// a budget of a little under 5 minutes: a step that would start past it is reported NOT RUN.
// Exit status: 0 when every step passed (or when there is no device: nothing to check), 1 if any
// step failed or did not run, 2 for a usage error.
//
// Without a CUDA device it says so, with the reason from device detection, and exits 0.
// --stand-in js|cpu runs every step with that backend playing the device (no GPU needed): it
// exercises this script and the comparisons; its figures mean nothing.
// --only grid-parity,mlp-parity,... runs a subset (to rerun what failed). --budget S changes the
// time budget (default 285 s).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync, appendFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { detectCudaDevices } from "../runtime/device.ts";
import { findMpi } from "../runtime/mpi.ts";
import { findNccl } from "../runtime/nccl.ts";
import { largestRelative } from "../train/checkpoint.ts";
import { readMetrics } from "../train/outputs.ts";
import { findNvcc } from "../runtime/toolchain.ts";

const ROOT = resolve(import.meta.dir, "..");
/** The whole run, in seconds (under 5 minutes); --budget lowers or raises it. */
let BUDGET_S = 285;
const T0 = performance.now();
const elapsed = () => (performance.now() - T0) / 1000;

type Status = "PASS" | "FAIL" | "WARN" | "SKIP" | "NOT RUN";
interface StepResult {
  name: string;
  status: Status;
  seconds: number;
  /** One-line findings (failures first). */
  notes: string[];
  /** Figure lines for the summary. */
  figures: string[];
  json?: unknown;
}

interface Run {
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  seconds: number;
  stdout: string[];
  /** Everything it wrote, stdout and stderr. */
  logFile: string;
  json?: Record<string, unknown>;
}

let LOG_DIR = "";
const say = (s = "") => console.log(s);

/** Runs cmd in the repository root with a timeout; lines go to the step's log (and the terminal if live). */
async function spawnStep(logName: string, cmd: string[], timeoutS: number, live: boolean): Promise<Run> {
  const logFile = join(LOG_DIR, `${logName.replace(/[^\w.-]+/g, "_")}.log`);
  writeFileSync(logFile, `$ ${cmd.join(" ")}\n`);
  const t0 = performance.now();
  const stdout: string[] = [];
  let timedOut = false;
  let proc: ReturnType<typeof Bun.spawn>;
  try {
    proc = Bun.spawn(cmd, { cwd: ROOT, stdout: "pipe", stderr: "pipe", stdin: "ignore", env: { ...process.env, FORCE_COLOR: "0", NO_COLOR: "1" } });
  } catch (error) {
    appendFileSync(logFile, `spawn failed: ${(error as Error).message}\n`);
    return { code: null, signal: null, timedOut: false, seconds: 0, stdout: [`spawn failed: ${(error as Error).message}`], logFile };
  }
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      proc.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, timeoutS * 1000);
  const pump = async (stream: ReadableStream<Uint8Array>, keep: boolean) => {
    const decoder = new TextDecoder();
    let pending = "";
    const emit = (line: string) => {
      appendFileSync(logFile, `${line}\n`);
      if (keep) stdout.push(line);
      if (live) console.log(`    | ${line}`);
    };
    try {
      for await (const chunk of stream) {
        pending += decoder.decode(chunk, { stream: true });
        const lines = pending.split("\n");
        pending = lines.pop()!;
        for (const line of lines) emit(line);
      }
    } catch {
      // the stream ends with the process
    }
    if (pending) emit(pending);
  };
  await Promise.all([pump(proc.stdout as ReadableStream<Uint8Array>, true), pump(proc.stderr as ReadableStream<Uint8Array>, false), proc.exited]);
  clearTimeout(timer);
  const seconds = (performance.now() - t0) / 1000;
  const code = proc.exitCode;
  const signal = proc.signalCode == null ? null : String(proc.signalCode);
  appendFileSync(logFile, `[exit code ${code}, signal ${signal}${timedOut ? `, killed after ${timeoutS} s` : ""}, ${seconds.toFixed(1)} s]\n`);
  let json: Record<string, unknown> | undefined;
  for (let i = stdout.length - 1; i >= 0 && !json; i--) {
    const line = stdout[i]!.trim();
    if (!line.startsWith("{")) continue;
    try {
      json = JSON.parse(line);
    } catch {
      // not the result line
    }
  }
  return { code, signal, timedOut, seconds, stdout, logFile, json };
}

function exitText(r: Run, timeoutS: number): string {
  if (r.timedOut) return `timed out after ${timeoutS} s (killed)`;
  if (r.signal) return `killed by ${r.signal}`;
  return `exit code ${r.code}`;
}

/** The tail of a failed step's output, for the terminal. */
function showTail(r: Run, lines = 25) {
  const tail = r.stdout.slice(-lines);
  if (tail.length === 0) return;
  say(`    last ${tail.length} lines of its output:`);
  for (const l of tail) say(`    > ${l.length > 300 ? `${l.slice(0, 300)}...` : l}`);
}

const fmt = (v: unknown, digits = 1) =>
  typeof v === "number" && Number.isFinite(v) ? (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 || v === 0 ? v.toFixed(digits) : v.toPrecision(2)) : String(v);

// ---------------------------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------------------------

interface Ctx {
  backend: string;
  standIn: boolean;
}

interface StepDef {
  id: string;
  title: (ctx: Ctx) => string;
  timeoutS: number;
  run: (ctx: Ctx, timeoutS: number) => Promise<Omit<StepResult, "name" | "seconds">>;
}

/** A scripts/gpu_checks.ts check: its JSON line says ok and lists failures and figures. */
function checkStep(id: string, title: string, timeoutS: number, launcher: () => string[] = () => []): StepDef {
  return {
    id,
    title: (ctx) => `${title} (${ctx.backend} vs cpu)`,
    timeoutS,
    async run(ctx, t) {
      const r = await spawnStep(id, [...launcher(), "bun", "scripts/gpu_checks.ts", id, "--backend", ctx.backend, ...(ctx.standIn ? ["--quick"] : [])], t, true);
      const j = r.json as { ok?: boolean; failures?: string[]; figures?: Record<string, unknown> } | undefined;
      const notes: string[] = [];
      let status: Status;
      if (!j) {
        status = "FAIL";
        notes.push(`no result line (${exitText(r, t)})`);
        showTail(r);
      } else {
        status = j.ok ? (r.code === 0 ? "PASS" : "WARN") : "FAIL";
        for (const f of j.failures ?? []) notes.push(f.split("\n")[0]!);
        if (j.ok && r.code !== 0) notes.push(`all comparisons passed, but the process then ended with ${exitText(r, t)}`);
        if (!j.ok) showTail(r, 15);
      }
      const figures: string[] = [];
      if (j?.figures && id === "mlp-bench") {
        for (const [k, v] of Object.entries(j.figures)) {
          const f = v as Record<string, number>;
          if (k === "adam") figures.push(`adam  ${f.params} params: ${fmt(f.stepMs, 3)} ms per step, ${fmt(f.gbs)} GB/s`);
          else figures.push(`mlp   ${k}: trainStep ${fmt(f.trainStepMs, 3)} ms, ${fmt(f.trainStepGflops)} GFLOP/s, ${fmt(f.itemsPerSecM)} M items/s; forward ${fmt(f.forwardMs, 3)} ms, ${fmt(f.forwardGflops)} GFLOP/s`);
        }
      } else if (j?.figures) {
        const values = Object.values(j.figures).flatMap((v) => (typeof v === "object" && v ? Object.values(v) : [v])).filter((v) => typeof v === "string") as string[];
        const identical = values.filter((v) => v === "bit-identical").length;
        notes.push(`${values.length} comparisons, ${identical} bit-identical`);
      }
      return { status, notes, figures, json: j };
    },
  };
}

/** The libnccl to check: findNccl's, else one that a Python package (PyTorch's nvidia-nccl) holds. */
function ncclLibrary(): { library?: string; reason: string } {
  const found = findNccl();
  if (found.library || process.env.NGPK_NCCL) return found;
  const python = "import glob, site; d = site.getsitepackages() + [site.getusersitepackages()]; p = [f for s in d for f in sorted(glob.glob(s + '/nvidia/**/libnccl.so*', recursive=True))]; print(p[0] if p else '')";
  const r = spawnSync("python3", ["-c", python], { encoding: "utf8", timeout: 20_000 });
  const path = r.status === 0 ? r.stdout.trim() : "";
  return path ? { library: path, reason: `${path} (a Python package's)` } : { reason: `${found.reason}; no Python package holds one either` };
}

/** NCCL on the real library: SKIP without one; under mpirun with one rank per GPU when there are several. */
const ncclStep: StepDef = {
  id: "nccl",
  title: () => "nccl all-reduce (runtime/nccl.ts on the real libnccl)",
  timeoutS: 60,
  async run(ctx, t) {
    if (ctx.standIn) return { status: "SKIP", notes: [`skipped: NCCL needs a CUDA device, not the ${ctx.backend} stand-in`], figures: [] };
    const nccl = ncclLibrary();
    if (!nccl.library) return { status: "SKIP", notes: [`skipped: ${nccl.reason}`], figures: [] };
    process.env.NGPK_NCCL = nccl.library; // for the child (and its ranks)
    const gpus = detectCudaDevices().count;
    const mpirun = Bun.which("mpirun");
    const ranks = gpus >= 2 && mpirun && findMpi().mpi ? gpus : 1;
    const launcher = () => (ranks > 1 ? [mpirun!, "--allow-run-as-root", "--bind-to", "none", "-np", String(ranks)] : []);
    const r = await checkStep("nccl", "nccl", t, launcher).run(ctx, t);
    const f = (r.json as { figures?: Record<string, unknown> } | undefined)?.figures;
    const figures = f?.nccl ? [`nccl  ${f.nccl}: 64 MB all-reduce ${fmt(f.allReduce64MBms, 3)} ms${ranks > 1 ? `, bus ${fmt(f.busGBs)} GB/s` : " (one rank: no transfer)"}`] : [];
    const sums = r.notes.filter((n) => !/comparisons/.test(n));
    const notes = ranks > 1 ? sums : [...sums, `one rank (${gpus} GPU${gpus === 1 ? "" : "s"}${gpus >= 2 ? "; no mpirun or MPI" : ""}): the bootstrap and the identity, no exchange`];
    return { ...r, notes, figures };
  },
};

/**
 * The trainer over MPI ranks on the device: mpirun -np R bun run train (R = the GPUs, at least 2)
 * against one process with --accumulate R, a small model with learned probing: the gradients
 * through NCCL where every rank has a GPU of its own and libnccl loads, else MPI through host
 * memory (2 ranks sharing one GPU); the log names which. The losses agree within 1e-5 and the
 * states within 1e-5 relative (CUDA's backward adds with atomics: not bit for bit); the ranks'
 * states equal bit for bit (the trainer compares their digests at every checkpoint).
 */
const trainRanksStep: StepDef = {
  id: "train-ranks",
  title: (ctx) => `train over MPI ranks (${ctx.backend}: mpirun bun run train vs --accumulate)`,
  timeoutS: 150,
  async run(ctx, t) {
    const mpirun = Bun.which("mpirun");
    const mpi = findMpi();
    if (!mpirun || !mpi.mpi) return { status: "SKIP", notes: [`skipped: ${!mpirun ? "mpirun is not on PATH" : mpi.reason}`], figures: [] };
    const nccl = ctx.standIn ? { reason: `the ${ctx.backend} stand-in has host buffers` } : ncclLibrary();
    if (nccl.library) process.env.NGPK_NCCL = nccl.library; // for the ranks
    const gpus = ctx.standIn ? 0 : detectCudaDevices().count;
    const ranks = Math.max(2, gpus);
    const dir = mkdtempSync(join(LOG_DIR, "train-ranks-"));
    const train = ["bun", "cli/train.ts", "data/astronaut.png", "--backend", ctx.backend, "--levels", "4", "--log2-table", "12", "--finest", "256", "--width", "16", "--batch", "1024", "--steps", "4", "--eval-every", "0", "--seed", "7", "--lr", "1e-2", "--schedule", "none", "--probing-range", "4", "--checkpoint-every", "1"];
    const one = await spawnStep("train-ranks-one", [...train, "--accumulate", String(ranks), "--out", join(dir, "one")], t / 2, false);
    const many = await spawnStep("train-ranks-many", [mpirun, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", String(ranks), ...train, "--out", join(dir, "ranks")], t / 2, false);
    const failed = [one, many].filter((r) => r.code !== 0);
    if (failed.length) {
      failed.forEach((r) => showTail(r));
      return { status: "FAIL", notes: failed.map((r) => `${r === one ? "one process" : `${ranks} ranks`}: ${exitText(r, t / 2)} (log ${r.logFile})`), figures: [] };
    }
    const via = readFileSync(many.logFile, "utf8").split("\n").find((l) => l.startsWith("gradient all-reduce: ")) ?? "no gradient all-reduce line";
    const expectNccl = gpus >= 2 && nccl.library !== undefined;
    const notNccl = !nccl.library ? nccl.reason : `${ranks} ranks share ${gpus} GPU${gpus === 1 ? "" : "s"}`;
    const notes = [`${ranks} ranks on ${gpus} GPU${gpus === 1 ? "" : "s"}: ${via}${expectNccl ? "" : ` (NCCL not expected: ${notNccl})`}`];
    const [a, b] = [readMetrics(join(dir, "one", "metrics.csv")), readMetrics(join(dir, "ranks", "metrics.csv"))];
    const loss = a.length === b.length ? Math.max(...a.map((r, i) => Math.abs(r.loss - b[i]!.loss) / Math.abs(r.loss))) : Infinity;
    const state = await largestRelative(join(dir, "one", "checkpoint.ngpk"), join(dir, "ranks", "checkpoint.ngpk"));
    notes.push(`losses within ${loss.toExponential(1)}, state within ${state.relative.toExponential(1)} relative (largest: ${state.name}) of one process with --accumulate ${ranks}`);
    const ok = loss <= 1e-5 && state.relative <= 1e-5 && via.includes(expectNccl ? "NCCL" : "MPI");
    if (!ok) notes.unshift(`FAILED: ${via.includes(expectNccl ? "NCCL" : "MPI") ? "the results differ" : `expected ${expectNccl ? "NCCL" : "MPI"}`}`);
    return { status: ok ? "PASS" : "FAIL", notes, figures: [], json: { ranks, gpus, via, loss, state } };
  },
};

/** Test files with CUDA execution tests: those that ask device detection or a cuda backend. */
function cudaTestFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) {
        if (name !== "fixtures" && name !== "node_modules") walk(path);
      } else if (name.endsWith(".test.ts")) {
        const text = readFileSync(path, "utf8");
        if (/detectCudaDevices|backend: "cuda"|NGPK_BACKEND: "cuda"/.test(text)) out.push(relative(ROOT, path));
      }
    }
  };
  walk(join(ROOT, "test"));
  return out;
}

const testsStep: StepDef = {
  id: "tests",
  title: () => "cuda tests (bun test, files with CUDA execution tests)",
  timeoutS: 120,
  async run(_ctx, t) {
    const files = cudaTestFiles();
    const notes: string[] = [];
    const deadline = performance.now() + t * 1000;
    let pass = 0;
    let fail = 0;
    let skip = 0;
    let bad = false;
    for (const file of files) {
      const left = (deadline - performance.now()) / 1000;
      if (left < 5) {
        notes.push(`${file}: not run (out of time)`);
        bad = true;
        continue;
      }
      const perFile = Math.min(90, left);
      const r = await spawnStep(`test-${file}`, ["bun", "test", "--timeout", "120000", file], perFile, false);
      // bun test writes its report to stderr: read the counts from the log.
      const text = readFileSync(r.logFile, "utf8");
      const count = (what: string) => Number(new RegExp(`^\\s*(\\d+) ${what}$`, "m").exec(text)?.[1] ?? 0);
      const [p, f, s] = [count("pass"), count("fail"), count("skip")];
      pass += p;
      fail += f;
      skip += s;
      const failed = text.split("\n").filter((l) => l.startsWith("(fail)"));
      const skippedCuda = text.split("\n").filter((l) => l.startsWith("(skip)") && /cuda|gpu|device/i.test(l));
      const ok = r.code === 0 && f === 0 && !r.timedOut;
      if (!ok) bad = true;
      say(`    | ${ok ? "ok  " : "FAIL"} ${file}: ${p} pass, ${f} fail, ${s} skip (${r.seconds.toFixed(1)} s${ok ? "" : `; ${exitText(r, perFile)}`})`);
      for (const l of failed) notes.push(`${file}: ${l}`);
      for (const l of skippedCuda) notes.push(`${file}: ${l}`);
      if (!ok && failed.length === 0) notes.push(`${file}: ${exitText(r, perFile)}`);
    }
    notes.unshift(`${files.length} files: ${pass} pass, ${fail} fail, ${skip} skip`);
    return { status: bad ? "FAIL" : "PASS", notes, figures: [] };
  },
};

const gridBenchStep: StepDef = {
  id: "grid-bench",
  title: (ctx) => `grid bench (bench/hashgrid.ts --backend ${ctx.backend})`,
  timeoutS: 90,
  async run(ctx, t) {
    // A stand-in (js especially) is far slower than a GPU: small batches there.
    const cmd = ["bun", "bench/hashgrid.ts", "--backend", ctx.backend, "--quick", "--reps", ctx.standIn ? "1" : "5", ...(ctx.standIn ? ["--n", "4096,16384"] : []), "--json"];
    const r = await spawnStep("grid-bench", cmd, t, true);
    const j = r.json as { rows?: { dims: number; n: number; device: Record<string, number>; cpu: Record<string, number>; fwdBitIdentical: boolean; fwdMaxAbsDiff: number }[] } | undefined;
    if (!j?.rows || r.code !== 0) {
      showTail(r);
      return { status: "FAIL", notes: [`no figures (${exitText(r, t)})`], figures: [] };
    }
    const figures = j.rows.map(
      (row) =>
        `grid  D=${row.dims} n=${String(row.n).padEnd(7)} ${ctx.backend} fwd ${fmt(row.device.fwd)} bwd ${fmt(row.device.bwd)} f+b ${fmt(row.device.fwdBwd)} M points/s` +
        ` | cpu ${fmt(row.cpu.fwd)}/${fmt(row.cpu.bwd)}/${fmt(row.cpu.fwdBwd)} | x${fmt(row.device.fwd / row.cpu.fwd)} x${fmt(row.device.bwd / row.cpu.bwd)} x${fmt(row.device.fwdBwd / row.cpu.fwdBwd)}`,
    );
    const same = j.rows.filter((row) => row.fwdBitIdentical).length;
    return { status: "PASS", notes: [`forward ${ctx.backend} vs cpu bit-identical in ${same} of ${j.rows.length} runs`], figures, json: j };
  },
};

/** bench/mlp.ts if it exists and takes --backend (someone is writing it), else our own timing. */
function mlpBenchStep(): StepDef {
  const script = join(ROOT, "bench/mlp.ts");
  const source = existsSync(script) ? readFileSync(script, "utf8") : "";
  // It takes the flag if it mentions --backend or declares a parseArgs option named backend.
  const usable = source.includes("--backend") || /\bbackend\s*:\s*\{\s*type\s*:/.test(source);
  if (!usable) {
    const def = checkStep("mlp-bench", "mlp bench (Mlp.trainStep timed directly", 75);
    const why = source ? "bench/mlp.ts takes no --backend flag" : "no bench/mlp.ts";
    return { ...def, title: (ctx) => `mlp bench (${why}: Mlp.trainStep, forward and Adam timed on ${ctx.backend})` };
  }
  return {
    id: "mlp-bench",
    title: (ctx) => `mlp bench (bench/mlp.ts --backend ${ctx.backend})`,
    timeoutS: 75,
    async run(ctx, t) {
      const quick = source.includes("--quick") || source.includes("quick:") ? ["--quick"] : [];
      const r = await spawnStep("mlp-bench", ["bun", "bench/mlp.ts", "--backend", ctx.backend, ...quick, "--json"], t, true);
      if (r.code !== 0 || !r.json) {
        showTail(r);
        return { status: "FAIL", notes: [`bench/mlp.ts: ${r.json ? "" : "no JSON line; "}${exitText(r, t)}`], figures: [] };
      }
      const scalars = Object.entries(r.json).filter(([, v]) => typeof v === "number" || typeof v === "string");
      return { status: "PASS", notes: [], figures: [`mlp   ${scalars.map(([k, v]) => `${k} ${fmt(v, 2)}`).join(", ")}`], json: r.json };
    },
  };
}

// ---------------------------------------------------------------------------------------------

function deviceDescription(): string {
  try {
    const r = spawnSync("nvidia-smi", ["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], { encoding: "utf8", timeout: 10_000 });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim().split("\n").join("; ");
  } catch {
    // no nvidia-smi
  }
  return "nvidia-smi unavailable";
}

async function main(): Promise<number> {
  let values;
  try {
    values = parseArgs({ options: { "stand-in": { type: "string" }, only: { type: "string" }, budget: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } }).values;
  } catch (error) {
    console.error(`${(error as Error).message}\nusage: bun run check:gpu [--stand-in js|cpu] [--only STEPS] [--budget S] [--json]`);
    return 2;
  }
  if (values.budget !== undefined) {
    const b = Number(values.budget);
    if (!Number.isFinite(b) || b < 1 || b > 3600) {
      console.error(`--budget must be a number of seconds from 1 to 3600, got ${values.budget}`);
      return 2;
    }
    BUDGET_S = b;
  }
  const steps: StepDef[] = [
    checkStep("grid-parity", "grid parity", 100),
    checkStep("mlp-parity", "mlp parity", 80),
    checkStep("adam-parity", "adam parity", 45),
    testsStep,
    gridBenchStep,
    mlpBenchStep(),
    ncclStep,
    trainRanksStep,
  ];
  if (values.help) {
    say(`usage: bun run check:gpu [--stand-in js|cpu] [--only ${steps.map((s) => s.id).join(",")}] [--budget S] [--json]`);
    return 0;
  }
  const standIn = values["stand-in"];
  if (standIn !== undefined && standIn !== "js" && standIn !== "cpu") {
    console.error(`--stand-in must be js or cpu, got ${standIn}`);
    return 2;
  }
  const only = values.only?.split(",").map((s) => s.trim());
  const unknown = only?.filter((id) => !steps.some((s) => s.id === id));
  if (unknown?.length) {
    console.error(`--only: unknown step ${unknown.join(", ")} (steps: ${steps.map((s) => s.id).join(", ")})`);
    return 2;
  }

  const devices = detectCudaDevices();
  const nvcc = findNvcc();
  if (devices.count === 0 && !standIn) {
    say(`check:gpu: no CUDA device present: ${devices.reason}.`);
    say("Nothing was run. On a machine with an NVIDIA GPU this runs the CUDA-vs-CPU parity checks (grid, MLP, Adam),");
    say("the CUDA execution tests, the GPU grid and MLP benchmarks and NCCL's all-reduce; `bun run check:gpu --stand-in js` exercises it here.");
    if (values.json) say(JSON.stringify({ device: false, reason: devices.reason, steps: [] }));
    return 0;
  }
  if (devices.count > 0 && !nvcc.tool && !standIn) {
    say(`check:gpu: FAIL: a CUDA device is present (${devices.reason}) but nvcc is not: ${nvcc.reason}. The generated CUDA cannot be built.`);
    if (values.json) say(JSON.stringify({ device: true, reason: devices.reason, nvcc: nvcc.reason, steps: [], verdict: "FAIL" }));
    return 1;
  }
  // The checks compile kernels from TypeScript: without the dependencies every step would fail alike.
  const missing = ["ts-morph", "zod"].filter((dep) => !existsSync(join(ROOT, "node_modules", dep)));
  if (missing.length) {
    say(`check:gpu: FAIL: the dependencies are not installed (node_modules/${missing.join(", node_modules/")} missing): run \`bun install\` (or carry node_modules to this machine) and run it again.`);
    return 1;
  }
  const ctx: Ctx = { backend: standIn ?? "cuda", standIn: standIn !== undefined };
  LOG_DIR = mkdtempSync(join(tmpdir(), "check_gpu-"));
  say(`check:gpu: ${devices.count > 0 ? `${devices.reason}; ${deviceDescription()}` : `no CUDA device (${devices.reason})`}`);
  if (ctx.standIn) say(`STAND-IN RUN: the ${ctx.backend} backend plays the device; this checks the script, not CUDA, and its figures mean nothing.`);
  say(`host: ${cpus()[0]?.model ?? "?"}, ${cpus().length} threads; nvcc: ${nvcc.reason}; budget ${BUDGET_S} s; logs in ${LOG_DIR}`);

  const results: StepResult[] = [];
  for (const step of steps) {
    const title = step.title(ctx);
    if (only && !only.includes(step.id)) continue;
    const left = BUDGET_S - elapsed();
    if (left < 15) {
      say(`\n== ${title}: NOT RUN (${left.toFixed(0)} s of the budget left)`);
      results.push({ name: title, status: "NOT RUN", seconds: 0, notes: ["out of time"], figures: [] });
      continue;
    }
    const timeoutS = Math.floor(Math.min(step.timeoutS, left));
    say(`\n== ${title} (timeout ${timeoutS} s)`);
    const t0 = performance.now();
    let r: Omit<StepResult, "name" | "seconds">;
    try {
      r = await step.run(ctx, timeoutS);
    } catch (error) {
      r = { status: "FAIL", notes: [`the step itself failed: ${(error as Error).message}`], figures: [] };
    }
    const seconds = (performance.now() - t0) / 1000;
    say(`== ${r.status} ${title} (${seconds.toFixed(1)} s)`);
    results.push({ name: title, seconds, ...r });
  }

  const failed = results.filter((r) => r.status === "FAIL" || r.status === "NOT RUN");
  const warned = results.filter((r) => r.status === "WARN");
  say("\n================ check:gpu summary ================");
  say(`device: ${devices.count > 0 ? `${devices.reason}; ${deviceDescription()}` : `none (${devices.reason})`}${ctx.standIn ? ` -- STAND-IN RUN with ${ctx.backend}` : ""}`);
  say(`host:   ${cpus()[0]?.model ?? "?"}, ${cpus().length} threads; total ${elapsed().toFixed(1)} s (budget ${BUDGET_S} s)`);
  for (const r of results) {
    say(`  ${r.status.padEnd(7)} ${r.name.padEnd(60)} ${r.seconds.toFixed(1).padStart(6)} s`);
    for (const n of r.notes.slice(0, 8)) say(`          ${n}`);
    if (r.notes.length > 8) say(`          ... ${r.notes.length - 8} more in the logs`);
  }
  const figures = results.flatMap((r) => r.figures);
  if (figures.length) {
    say("figures:");
    for (const f of figures) say(`  ${f}`);
  }
  const verdict = failed.length ? "FAIL" : "PASS";
  say(
    `verdict: ${verdict}: ${results.length - failed.length} of ${results.length} steps passed` +
      (failed.length ? `; failed or not run: ${failed.map((r) => r.name.split(" (")[0]).join(", ")}` : "") +
      (warned.length ? `; with warnings: ${warned.map((r) => r.name.split(" (")[0]).join(", ")}` : ""),
  );
  say(`logs: ${LOG_DIR}`);
  if (values.json) say(JSON.stringify({ device: devices.count > 0, reason: devices.reason, standIn: standIn ?? null, seconds: +elapsed().toFixed(1), verdict, steps: results }));
  return failed.length ? 1 : 0;
}

let status: number;
try {
  status = await main();
} catch (error) {
  console.error(`check:gpu: internal error: ${(error as Error).stack ?? error}`);
  status = 1;
}
process.exit(status);

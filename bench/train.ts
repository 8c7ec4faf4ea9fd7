// `bun run bench:train [--json] [--seconds S,S] [--image path]... [--reps R] [--batch-sweep] [--no-torch]`
//
// The whole training step of the default 2D configuration (L=16, F=2, log2T=19, N_min=16, finest
// 2048, MLP 64x2, batch 2^16: the trainer's defaults) on the CPU backend, against this machine's
// own limits, all measured in one process run:
//   - the CPU, its f32 FMA peak and its stream triad (bench/machine.ts);
//   - the step's time split: the same pipeline as train/trainer.ts built from the modules
//     (ImageSampler, HashGrid, Mlp, Optimizer, Ema) and each phase timed on its own over many
//     steps (medians after warm-up): sampling, encoding forward, the MLP's fused forward + loss +
//     backward, encoding backward, Adam over both groups, EMA;
//   - the step's limit: the MLP's FLOPs at the FMA peak, Adam's 8 streams and EMA's 3 streams of
//     4 bytes per parameter at the triad, and the encoding's forward and backward at the rate of
//     the hand-written C++ kernels (bench/hand.ts) on the same configuration and batch, timed
//     round by round next to ours; sampling has no reference and is left out of the limit;
//   - train() itself (its defaults, evalEvery 0) for each budget of `--seconds` (default 10 and 60)
//     on each `--image` (default a Kodak photograph): its steps/s and the full-image PSNR reached;
//   - beside it, at the same wall-clock budgets, two pure-PyTorch CPU peers training the same model
//     (bench/torch_train.py) when `import torch` works: the naive loop a user would write (pixel
//     centres, plain L2, no EMA, constant learning rate) and the bilinear peer (tiny-cuda-nn's
//     sample: bilinear targets at random points, relative L2, EMA); their PSNR and steps/s;
//   - with --batch-sweep, the PSNR after the largest budget for batches 2^14 .. 2^17.
// With --json the last line printed is one JSON object with every figure.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { Ema } from "../modules/ema.ts";
import { HostBuffer, type DeviceBuffer } from "../runtime/buffer.ts";
import { Optimizer } from "../modules/optimizer.ts";
import { findCxx } from "../runtime/toolchain.ts";
import { DEFAULT_IMAGE, parseTrainConfig, type TrainConfig } from "../train/config.ts";
import { FLAT_LR } from "../train/schedule.ts";
import { loadImage, type ImageData } from "../train/image.ts";
import { ImageSampler } from "../train/sampler.ts";
import { createField } from "../train/field.ts";
import { microSeed } from "../train/data/source.ts";
import { train, type TrainResult } from "../train/trainer.ts";
import { benchArgs } from "./args.ts";
import { gridTables, handBackward, handForward, loadHand } from "./hand.ts";
import { BUSY_SHARE, BusyMeter, busyNote, busyText, cpuInfo, cpuSnapshot, loadMachine, loadReport, median, othersShare, shareOfLimit, type LimitShare } from "./machine.ts";
import { mlpStepFlops } from "./mlp.ts";

const USAGE = `usage: bun run bench:train [--json] [--seconds S,S] [--image path]... [--reps R] [--batch-sweep] [--no-torch]
  --seconds S,S  training budgets in seconds, compared at equal wall time with the PyTorch peers (default 10,60);
                 the largest is also the --batch-sweep runs' budget
  --image path   a photograph, repeatable: the first one also serves the phase split
                 (default: ../shared/data/kodak/kodim05.png if present, else data/astronaut.png)
  --reps R       timed steps of the phase split (default 30, after 3 warm-up steps)
  --batch-sweep  also train batches 2^14, 2^15 (and 2^17 when fast enough) for the same budget
  --no-torch     skip the PyTorch comparison
  --json         print the results as one JSON line last`;

const KODAK = resolve(import.meta.dir, "../../shared/data/kodak/kodim05.png");
const TORCH_SCRIPT = join(import.meta.dir, "torch_train.py");

/** The PyTorch peers: what each one's training is (bench/torch_train.py's config fields). */
const PEERS = {
  naive: { title: "naive PyTorch loop", sampling: "pixel", loss: "l2", ema: false },
  bilinear: { title: "bilinear PyTorch peer", sampling: "bilinear", loss: "relative_l2", ema: true },
} as const;
type Peer = keyof typeof PEERS;

function timeMs(f: () => void): number {
  const t0 = performance.now();
  f();
  return performance.now() - t0;
}

const PHASES = ["sample", "encodeForward", "mlp", "encodeBackward", "optimizer", "ema"] as const;
type Phase = (typeof PHASES)[number];
const PHASE_NAMES: Record<Phase, string> = {
  sample: "sampling (ImageSampler)",
  encodeForward: "encoding forward",
  mlp: "MLP fwd + loss + bwd (fused)",
  encodeBackward: "encoding backward",
  optimizer: "Adam (both groups)",
  ema: "EMA",
};

interface Split {
  /** Median milliseconds of each phase. */
  ms: Record<Phase, number>;
  /** Median of the whole step (the phases back to back). */
  stepMs: number;
  /** The hand-written encoding, timed in the same rounds on the same points. */
  hand: { forwardMs: number; backwardMs: number; forwardIdentical: boolean; vectorPath: string };
  paramsEncoding: number;
  paramsNetwork: number;
  mlpFlops: number;
}

/** The trainer's step built from the modules, each phase timed on its own. */
export async function measureSplit(cfg: TrainConfig, image: ImageData, reps: number, log: (s: string) => void): Promise<Split> {
  const load = { backend: "cpu" as const };
  const { encoding, mlp } = await createField(cfg, image.channels, load);
  const grid = encoding.grids[0]!; // (the hand-written kernels are of one grid)
  const gridParams = grid.params as DeviceBuffer<"f32">;
  const opt = await Optimizer.create(
    [
      { name: "encoding", params: gridParams, grad: grid.grad, lr: cfg.encoding.lr ?? cfg.optimizer.lr ?? FLAT_LR, weightDecay: 0 },
      { name: "network", params: mlp.params, grad: mlp.grad, lr: cfg.network.lr ?? cfg.optimizer.lr ?? FLAT_LR, weightDecay: cfg.network.weightDecay },
    ],
    cfg.optimizer,
    load,
  );
  const ema = await Ema.create([{ name: "encoding", params: gridParams }, { name: "network", params: mlp.params }], { decay: cfg.ema.decay }, load);
  const sampler = await ImageSampler.create(image, { backend: "cpu", colorspace: cfg.colorspace, sampling: cfg.sampling });
  try {
    for (const [what, b] of [["grid", grid.backend], ["mlp", mlp.backend], ["sampler", sampler.backend]] as const) {
      if (b !== "cpu") throw new Error(`the ${what} runs on ${b}, not the CPU backend`);
    }
    const n = cfg.batch;
    const enc = grid.alloc(n * grid.outputDim);
    const dEnc = grid.alloc(n * grid.outputDim);
    if (!(gridParams instanceof HostBuffer) || !(enc instanceof HostBuffer) || !(dEnc instanceof HostBuffer)) throw new Error("CPU buffers are host memory");

    const { encoding: e } = cfg;
    const tables = gridTables(2, e.levels, e.featuresPerLevel, e.log2HashmapSize, e.baseResolution, Math.exp(Math.log(e.finestResolution / e.baseResolution) / (e.levels - 1)));
    if (tables.paramCount !== grid.paramCount) throw new Error(`hand-written tables have ${tables.paramCount} parameters, the grid ${grid.paramCount}`);
    const hand = await loadHand();
    const handOut = new Float32Array(n * grid.outputDim);
    const handGrad = new Float32Array(grid.paramCount);

    let micro = 0;
    const samples: Record<Phase | "step" | "handForward" | "handBackward", number[]> = {
      sample: [], encodeForward: [], mlp: [], encodeBackward: [], optimizer: [], ema: [], step: [], handForward: [], handBackward: [],
    };
    let identical = true;
    let coords: DeviceBuffer<"f32"> | undefined;
    let targets: DeviceBuffer<"f32"> | undefined;
    const phase: Record<Phase, () => void> = {
      sample: () => void ({ coords, targets } = sampler.sample(n, microSeed(cfg.seed, micro++))),
      encodeForward: () => void grid.forward(coords!, enc),
      mlp: () => {
        const loss = mlp.trainStep(enc, targets!, { scale: 1, inputGrad: dEnc });
        if (!Number.isFinite(loss)) throw new Error(`non-finite loss at step ${micro}`);
      },
      encodeBackward: () => void grid.backward(dEnc, { accumulate: true }),
      optimizer: () => opt.update(),
      ema: () => ema.update(),
    };
    const warmup = 3;
    Bun.gc(true);
    for (let r = 0; r < warmup + reps; r++) {
      const t: Partial<Record<Phase, number>> = {};
      for (const p of PHASES) t[p] = timeMs(phase[p]);
      // The hand-written encoding on the same points and the same upstream gradient, in the same
      // round, so that the machine's noise hits both alike. It writes its own buffers only.
      const x = (coords as HostBuffer<"f32">).data;
      const hf = timeMs(() => handForward(tables, n, x, gridParams.data, handOut, hand));
      const hb = timeMs(() => handBackward(tables, n, x, dEnc.data, handGrad, hand));
      if (r === 0) {
        // Same points, parameters of the step before the update: recompute ours to compare.
        const ours = grid.forward(coords!).download();
        handForward(tables, n, x, gridParams.data, handOut, hand);
        identical = ours.every((v, k) => v === handOut[k]);
        log(`encoding forward: generated and hand-written outputs ${identical ? "are bit-identical" : "DIFFER"} on the step's points`);
        handGrad.fill(0);
      }
      if (r < warmup) continue;
      for (const p of PHASES) samples[p].push(t[p]!);
      samples.step.push(PHASES.reduce((s, p) => s + t[p]!, 0));
      samples.handForward.push(hf);
      samples.handBackward.push(hb);
    }
    const ms = Object.fromEntries(PHASES.map((p) => [p, median(samples[p])])) as Record<Phase, number>;
    const { fanIn, fanOut } = mlp.layout;
    // With the input gradient (the encoding needs it) the first layer's dX is computed too.
    const mlpFlops = mlpStepFlops(n, fanIn, fanOut) + (mlp.settings.inputGrad ? 2 * n * fanIn[0]! * fanOut[0]! : 0);
    return {
      ms,
      stepMs: median(samples.step),
      hand: { forwardMs: median(samples.handForward), backwardMs: median(samples.handBackward), forwardIdentical: identical, vectorPath: hand.vectorPath },
      paramsEncoding: grid.paramCount,
      paramsNetwork: mlp.paramCount,
      mlpFlops,
    };
  } finally {
    for (const m of [sampler, ema, opt, mlp, grid]) m.close();
  }
}

async function trainFor(image: string, seconds: number, batch: number | undefined, out: string): Promise<TrainResult> {
  // steps: far beyond the budget, so that the time budget ends the run (the default is 1000 steps).
  return train({ image, backend: "cpu", seconds, steps: 1e9, evalEvery: 0, out, ...(batch ? { batch } : {}) });
}

interface TorchResult {
  budgets: { seconds: number; steps: number; psnr: number }[];
  steps_per_s: number;
  torch: string;
  threads: number;
  params: number;
}

/**
 * A python3 that imports torch: the one on PATH, else Debian's (python3-torch installs into
 * /usr/bin/python3's packages, which a python3 from pyenv or a venv earlier on PATH does not see).
 */
function findTorchPython(): { python?: string; why: string } {
  let why = "";
  for (const python of ["python3", "/usr/bin/python3"]) {
    try {
      const r = Bun.spawnSync([python, "-c", "import torch"], { stdout: "pipe", stderr: "pipe", timeout: 60_000 });
      if (r.exitCode === 0) return { python, why: "" };
      why ||= `${python}: ${r.stderr.toString().trim().split("\n").pop() || `exit ${r.exitCode}`}`;
    } catch (e) {
      why ||= `${python}: ${(e as Error).message}`;
    }
  }
  return { why };
}

/** A PyTorch peer trained on `image` for the largest of `budgets` seconds, its PSNR at each. */
async function runTorch(python: string, peer: Peer, cfg: TrainConfig, image: ImageData, budgets: number[], threads: number, dir: string): Promise<TorchResult> {
  const { encoding: e } = cfg;
  const tables = gridTables(2, e.levels, e.featuresPerLevel, e.log2HashmapSize, e.baseResolution, Math.exp(Math.log(e.finestResolution / e.baseResolution) / (e.levels - 1)));
  const samples = image.width * image.height * image.channels;
  // The packed words hold the samples in order, little endian: their bytes are the raw samples.
  const raw = new Uint8Array(image.packed.buffer, image.packed.byteOffset, (samples * image.bits) / 8);
  const rawPath = join(dir, "image.raw");
  writeFileSync(rawPath, raw);
  const config = {
    image: rawPath, width: image.width, height: image.height, channels: image.channels, bits: image.bits,
    dims: 2, levels: e.levels, features: e.featuresPerLevel,
    scale: [...tables.scale], stride: [...tables.stride], size: [...tables.size], offset: [...tables.offset], hashed: [...tables.hashed].map(Boolean),
    width_mlp: cfg.network.width, hidden_layers: cfg.network.hiddenLayers, batch: cfg.batch,
    lr: cfg.optimizer.lr ?? FLAT_LR, beta1: cfg.optimizer.beta1, beta2: cfg.optimizer.beta2, eps: cfg.optimizer.eps,
    ema_decay: cfg.ema.decay, threads, seed: cfg.seed, ...PEERS[peer], seconds: budgets,
  };
  const configPath = join(dir, "torch.json");
  writeFileSync(configPath, JSON.stringify(config));
  const proc = Bun.spawn([python, TORCH_SCRIPT, configPath], { stdout: "pipe", stderr: "pipe", env: { ...process.env, OMP_NUM_THREADS: String(threads) } });
  const timer = setTimeout(() => proc.kill(), 1000 * (Math.max(...budgets) * 3 + 300));
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  if (code !== 0) throw new Error(`bench/torch_train.py exited with ${code}: ${stderr.trim().split("\n").slice(-3).join(" | ")}`);
  return JSON.parse(stdout.trim().split("\n").pop()!) as TorchResult;
}

async function main(): Promise<number> {
  const values = benchArgs(USAGE, {
    json: { type: "boolean" }, seconds: { type: "string" }, image: { type: "string", multiple: true }, reps: { type: "string" },
    "batch-sweep": { type: "boolean" }, "no-torch": { type: "boolean" },
  }, { prefix: "bench:train: " });
  if (typeof values === "number") return values;
  const budgets = (values.seconds ?? "10,60").split(",").map(Number).sort((a, b) => a - b);
  if (!budgets.every((b) => b > 0 && b <= 3600)) return console.error(`--seconds must be numbers in (0, 3600] separated by commas, got ${values.seconds}`), 2;
  const seconds = budgets[budgets.length - 1]!;
  const reps = values.reps === undefined ? 30 : Number(values.reps);
  if (!Number.isInteger(reps) || reps < 1 || reps > 1000) return console.error(`--reps must be an integer in [1, 1000], got ${values.reps}`), 2;
  const imagePaths = values.image ?? [existsSync(KODAK) ? KODAK : DEFAULT_IMAGE];
  const imagePath = imagePaths[0]!;
  const log = (s: string) => console.log(s);
  const started = performance.now();
  const busy = new BusyMeter();
  busy.start();

  const cfg = parseTrainConfig({ image: imagePath, backend: "cpu", evalEvery: 0 });
  let images: ImageData[];
  try {
    images = await Promise.all(imagePaths.map((p) => loadImage(p)));
  } catch (e) {
    console.error(`bench:train: ${(e as Error).message}`);
    return 1;
  }
  const image = images[0]!;

  // The machine.
  const cxx = findCxx().tool;
  const cpu = cpuInfo(cxx?.path);
  const machine = await loadMachine();
  const isa = (bits: number) => (bits === 512 ? "AVX-512" : bits === 256 ? "AVX2+FMA" : "scalar");
  log(`CPU: ${cpu.model} (${cpu.family}), ${cpu.cpus} logical CPUs, ${machine.threads} OpenMP threads; -march=native = ${cpu.march}, vector width ${isa(machine.vectorBits)} (${machine.vectorBits} bits)`);
  const peak = machine.fmaPeak();
  log(`f32 FMA peak: ${peak.gflops.toFixed(1)} GFLOP/s (median; best ${peak.max.toFixed(1)})`);
  const triad = machine.triad();
  log(`stream triad: ${triad.gbs.toFixed(1)} GB/s (3 streams; ${triad.gbsWriteAllocate.toFixed(1)} GB/s counting the write-allocate read)`);

  const e = cfg.encoding;
  const n = cfg.batch;
  log(`configuration: 2D, L=${e.levels}, F=${e.featuresPerLevel}, log2T=${e.log2HashmapSize}, N_min=${e.baseResolution}, finest ${e.finestResolution}, ` +
    `MLP ${cfg.network.width}x${cfg.network.hiddenLayers} (${cfg.network.activation}, no biases), loss ${cfg.loss}, batch ${n}, Adam, EMA ${cfg.ema.enabled ? cfg.ema.decay : "off"}, CPU backend`);
  log(`image: ${imagePath} (${image.width}x${image.height}, ${image.channels} channels, ${image.bits}-bit)`);

  // The phase split and the hand-written encoding.
  const splitCpu = cpuSnapshot();
  const split = await measureSplit(cfg, image, reps, log);
  const splitOthers = othersShare(splitCpu, cpuSnapshot());
  const P = split.paramsEncoding + split.paramsNetwork;

  // train() itself at each budget on each image, then the PyTorch peers at the same budgets.
  const outRoot = mkdtempSync(join(tmpdir(), "bench-train-"));
  const ours: { image: string; seconds: number; result: TrainResult; others: number | undefined }[] = [];
  const sweep: { batch: number; psnr: number; steps: number; steps_per_s: number; samples_per_s: number; others_cpu_share: number | null }[] = [];
  const peers: { image: string; peer: Peer; result: TorchResult }[] = [];
  let torchNote = "";
  // The first image's largest budget: the run the phase split and the limit are compared with.
  let main!: (typeof ours)[number];
  try {
    for (const path of imagePaths) {
      for (const b of budgets) {
        Bun.gc(true);
        log(`training ${b} s with train() on ${basename(path)} (CPU backend, the trainer's defaults, evalEvery 0) ...`);
        const c0 = cpuSnapshot();
        const result = await trainFor(path, b, undefined, join(outRoot, `ours-${ours.length}`));
        const o = othersShare(c0, cpuSnapshot());
        log(`  ${result.steps} steps in ${result.seconds.toFixed(1)} s: ${result.stepsPerSecond.toFixed(2)} steps/s, full-image PSNR ${result.psnr.toFixed(2)} dB (${result.weights.used} weights)${busyNote(o)}`);
        ours.push({ image: path, seconds: b, result, others: o });
      }
    }
    main = ours.find((r) => r.image === imagePath && r.seconds === seconds)!;
    sweep.push({ batch: n, psnr: main.result.psnr, steps: main.result.steps, steps_per_s: main.result.stepsPerSecond, samples_per_s: main.result.stepsPerSecond * n, others_cpu_share: main.others ?? null });

    if (values["batch-sweep"]) {
      const batches = [1 << 14, 1 << 15];
      // 2^17 when it would still take at least 100 steps in the budget (about half of 2^16's rate).
      if ((main.result.stepsPerSecond / 2) * seconds >= 100) batches.push(1 << 17);
      for (const b of batches) {
        Bun.gc(true);
        log(`training ${seconds} s with batch ${b} ...`);
        const c0 = cpuSnapshot();
        const r = await trainFor(imagePath, seconds, b, join(outRoot, `b${b}`));
        const o = othersShare(c0, cpuSnapshot());
        log(`  ${r.steps} steps, ${r.stepsPerSecond.toFixed(2)} steps/s, PSNR ${r.psnr.toFixed(2)} dB${busyNote(o)}`);
        sweep.push({ batch: b, psnr: r.psnr, steps: r.steps, steps_per_s: r.stepsPerSecond, samples_per_s: r.stepsPerSecond * b, others_cpu_share: o ?? null });
      }
      sweep.sort((a, b) => a.batch - b.batch);
    }

    if (values["no-torch"]) torchNote = "skipped (--no-torch)";
    else {
      const avail = findTorchPython();
      if (!avail.python) torchNote = `python3-torch not installed (${avail.why}): apt-get install python3-torch libopenblas0-pthread to compare`;
      else {
        // The child's CPU time is not "other processes": leave its segments out of the busy check.
        busy.stop();
        try {
          for (const [k, path] of imagePaths.entries()) {
            for (const peer of Object.keys(PEERS) as Peer[]) {
              log(`PyTorch: the ${PEERS[peer].title} on ${basename(path)} for ${budgets.join(" and ")} s (same model, batch ${n}, ${machine.threads} threads) ...`);
              const result = await runTorch(avail.python, peer, cfg, images[k]!, budgets, machine.threads, outRoot);
              log(`  ${result.budgets.map((b) => `${b.seconds.toFixed(0)} s: ${b.steps} steps, ${b.psnr.toFixed(2)} dB`).join("; ")}`);
              peers.push({ image: path, peer, result });
            }
          }
        } catch (err) {
          torchNote = `failed: ${(err as Error).message}`;
        }
        busy.start();
      }
    }
  } finally {
    rmSync(outRoot, { recursive: true, force: true });
  }
  const { result, others: mainOthers } = main;
  // The machine's limits once more at the end: noise (another process, another tenant's memory
  // traffic, the clock) only ever lowers them, so the limit takes the better of the two.
  const peakEnd = machine.fmaPeak(5);
  const triadEnd = machine.triad();
  busy.stop();
  const others = busy.share;
  const peakGflops = Math.max(peak.gflops, peakEnd.gflops);
  // Adam's and the EMA's streams are all real memory traffic (their writes go to lines they read),
  // so they are held to the triad's full traffic, write-allocate read included (4 streams).
  const triadGbs = Math.max(triad.gbsWriteAllocate, triadEnd.gbsWriteAllocate);
  const limitMs = {
    encodeForward: split.hand.forwardMs,
    mlp: split.mlpFlops / peakGflops / 1e6,
    encodeBackward: split.hand.backwardMs,
    optimizer: (8 * 4 * P) / triadGbs / 1e6,
    ema: (3 * 4 * P) / triadGbs / 1e6,
  };
  const limitStepMs = Object.values(limitMs).reduce((a, b) => a + b, 0);
  const limitStepsPerS = 1000 / limitStepMs;

  // Report.
  const stepsPerS = result.stepsPerSecond;
  const share = stepsPerS / limitStepsPerS;
  log("");
  log(`phase split: median of ${reps} steps (after 3 warm-up), each phase timed alone; limit = this machine's rate for that phase`);
  log("phase                          |   ms     share |  limit ms  basis                                   | ms / limit");
  const basis: Record<Exclude<Phase, "sample">, string> = {
    encodeForward: `hand-written C++ ${split.hand.vectorPath}: ${(n / split.hand.forwardMs / 1e3).toFixed(1)} M pts/s`,
    mlp: `${(split.mlpFlops / 1e9).toFixed(2)} GFLOP at ${peakGflops.toFixed(0)} GFLOP/s`,
    encodeBackward: `hand-written C++: ${(n / split.hand.backwardMs / 1e3).toFixed(1)} M pts/s`,
    optimizer: `8 x 4 B x ${(P / 1e6).toFixed(2)} M at ${triadGbs.toFixed(1)} GB/s`,
    ema: `3 x 4 B x ${(P / 1e6).toFixed(2)} M at ${triadGbs.toFixed(1)} GB/s`,
  };
  const sumMs = PHASES.reduce((s, p) => s + split.ms[p], 0);
  // The MLP's, Adam's and the EMA's limits are the machine's (FMA peak, triad): a phase faster than
  // its limit is a disturbed measurement, no result. The encoding's are hand-written kernels, which
  // the generated ones may beat.
  const physical = { mlp: "the MLP phase", optimizer: "the Adam phase", ema: "the EMA phase" } as Partial<Record<Phase, string>>;
  const phaseShare: Partial<Record<Phase, LimitShare>> = {};
  const disturbed: string[] = [];
  for (const p of PHASES) {
    const what = physical[p];
    if (what === undefined) continue;
    phaseShare[p] = shareOfLimit(limitMs[p as keyof typeof limitMs], split.ms[p], what, splitOthers ?? others);
    if (phaseShare[p]!.disturbed) disturbed.push(phaseShare[p]!.disturbed!);
  }
  for (const p of PHASES) {
    const ms = split.ms[p];
    const lim = p === "sample" ? undefined : limitMs[p];
    const ratio = lim === undefined ? "-" : phaseShare[p]?.share === null ? "invalid" : `${(ms / lim).toFixed(2)}x`;
    log(
      `${PHASE_NAMES[p].padEnd(30)} | ${ms.toFixed(2).padStart(6)} ${((100 * ms) / sumMs).toFixed(1).padStart(6)}% | ` +
        `${lim === undefined ? "     -" : lim.toFixed(2).padStart(8)}  ${(p === "sample" ? "(no reference: not in the limit)" : basis[p]).padEnd(40)}| ${ratio}`,
    );
  }
  for (const d of disturbed) log(`invalid: ${d}`);
  log(`${"step (phases back to back)".padEnd(30)} | ${split.stepMs.toFixed(2).padStart(6)}         | ${limitStepMs.toFixed(2).padStart(8)}  = ${limitStepsPerS.toFixed(1)} steps/s limit`);
  const gaps = (Object.keys(limitMs) as (keyof typeof limitMs)[])
    .map((p) => ({ p, gap: split.ms[p] - limitMs[p] }))
    .concat([{ p: "sample" as never, gap: split.ms.sample }])
    .sort((a, b) => b.gap - a.gap);
  log(`biggest gaps to the limit (ms per step): ${gaps.slice(0, 3).map((g) => `${PHASE_NAMES[g.p as Phase]} +${g.gap.toFixed(2)}`).join(", ")}`);
  log("");
  log(`params: encoding ${split.paramsEncoding}, network ${split.paramsNetwork}; encoding forward ${split.hand.forwardIdentical ? "bit-identical to" : "DIFFERENT from"} the hand-written kernel`);
  if (splitOthers !== undefined && splitOthers > BUSY_SHARE) log(`(the phase split ran next to other processes: ${busyText(splitOthers)} of the CPU time)`);
  log(`train(): ${stepsPerS.toFixed(2)} steps/s (${result.steps} steps in ${result.seconds.toFixed(1)} s; the split's phases give ${(1000 / split.stepMs).toFixed(2)})`);
  log(`limit: ${limitStepsPerS.toFixed(2)} steps/s; train() reaches ${(100 * share).toFixed(1)}% of it (target >= 60%: ${share >= 0.6 ? "MET" : "NOT MET"})`);
  log(`PSNR after ${seconds} s on ${imagePath.split("/").pop()}: ${result.psnr.toFixed(2)} dB`);
  if (sweep.length > 1) {
    log(`batch sweep (${seconds} s each, same image, train() defaults otherwise):`);
    for (const s of sweep) log(`  batch ${String(s.batch).padStart(6)}: ${s.psnr.toFixed(2)} dB, ${s.steps} steps, ${s.steps_per_s.toFixed(2)} steps/s, ${(s.samples_per_s / 1e6).toFixed(2)} M samples/s${busyNote(s.others_cpu_share ?? undefined)}`);
    const best = sweep.reduce((a, b) => (b.psnr > a.psnr ? b : a));
    log(`  highest PSNR: batch ${best.batch} (${best.psnr.toFixed(2)} dB)${best.batch === n ? " = the default" : ` (the default ${n} reaches ${result.psnr.toFixed(2)} dB)`}`);
  }
  const table = peerTable(ours, peers, budgets);
  for (const line of table.lines) log(line);
  if (peers.length === 0 || torchNote) log(`PyTorch: ${torchNote}`);
  log(`machine at the end of the run: FMA peak ${peakEnd.gflops.toFixed(1)} GFLOP/s (start ${peak.gflops.toFixed(1)}), triad ${triadEnd.gbs.toFixed(1)} GB/s (start ${triad.gbs.toFixed(1)}); the limit uses the better of each`);
  for (const line of loadReport(others, (performance.now() - started) / 1000, { note: peers.length > 0 ? ", the PyTorch children's part left out" : "" })) log(line);

  if (values.json) {
    console.log(JSON.stringify({
      cpu: cpu.model, cpu_family: cpu.family, threads: machine.threads, vector_bits: machine.vectorBits, march: cpu.march,
      fma_peak_gflops: peakGflops, fma_peak_start_gflops: peak.gflops, fma_peak_end_gflops: peakEnd.gflops,
      triad_gbs: Math.max(triad.gbs, triadEnd.gbs), triad_start_gbs: triad.gbs, triad_end_gbs: triadEnd.gbs, triad_gbs_write_allocate: Math.max(triad.gbsWriteAllocate, triadEnd.gbsWriteAllocate),
      batch: n, params_encoding: split.paramsEncoding, params_network: split.paramsNetwork, mlp_flops: split.mlpFlops,
      steps_per_s: stepsPerS, train_steps: result.steps, train_seconds: result.seconds,
      disturbed,
      split_ms: { sample: split.ms.sample, encode_forward: split.ms.encodeForward, mlp: split.ms.mlp, encode_backward: split.ms.encodeBackward, optimizer: split.ms.optimizer, ema: split.ms.ema, step: split.stepMs },
      limit_ms: { encode_forward: limitMs.encodeForward, mlp: limitMs.mlp, encode_backward: limitMs.encodeBackward, optimizer: limitMs.optimizer, ema: limitMs.ema, step: limitStepMs },
      limit_steps_per_s: limitStepsPerS, limit_share: share,
      hand_forward_mpts: n / split.hand.forwardMs / 1e3, hand_backward_mpts: n / split.hand.backwardMs / 1e3, hand_vector_path: split.hand.vectorPath,
      psnr: result.psnr, psnr_seconds: seconds, image: imagePath,
      batch_sweep: sweep.length > 1 ? sweep : null,
      equal_time: table.rows, torch_note: torchNote || null,
      reps, others_cpu_share: others ?? null, split_others_cpu_share: splitOthers ?? null, train_others_cpu_share: mainOthers ?? null,
    }));
  }
  return 0;
}

interface EqualTimeRow {
  image: string;
  seconds: number;
  ours: { psnr: number; steps: number; steps_per_s: number };
  peers: Partial<Record<Peer, { psnr: number; steps: number; steps_per_s: number }>>;
  /** Ours minus the best peer's PSNR, in dB (null without peers). */
  margin: number | null;
}

/**
 * Ours and the PyTorch peers side by side at each budget and image, and the targets at the largest
 * budget: ours at least 3 dB above the best peer and at least 10x each peer's steps per second.
 */
function peerTable(ours: { image: string; seconds: number; result: TrainResult }[], peers: { image: string; peer: Peer; result: TorchResult }[], budgets: number[]): { lines: string[]; rows: EqualTimeRow[] } {
  const rows: EqualTimeRow[] = ours.map(({ image, seconds, result }) => {
    const k = budgets.indexOf(seconds);
    const at: EqualTimeRow["peers"] = {};
    for (const p of peers.filter((p) => p.image === image)) {
      const b = p.result.budgets[k]!;
      at[p.peer] = { psnr: b.psnr, steps: b.steps, steps_per_s: p.result.steps_per_s };
    }
    const best = Math.max(...Object.values(at).map((p) => p.psnr));
    return { image, seconds, ours: { psnr: result.psnr, steps: result.steps, steps_per_s: result.stepsPerSecond }, peers: at, margin: Number.isFinite(best) ? result.psnr - best : null };
  });
  const cell = (r: { psnr: number; steps: number } | undefined) => (r ? `${r.psnr.toFixed(2)} dB ${`(${r.steps} steps)`.padEnd(13)}` : "-".padEnd(22));
  const lines = [
    "",
    `full-image PSNR at equal wall time (pixel centres; ours: train()'s defaults)`,
    `image        budget | ours                   | ${(Object.keys(PEERS) as Peer[]).map((p) => PEERS[p].title.padEnd(22)).join(" | ")} | ours - best peer`,
  ];
  for (const r of rows) {
    lines.push(`${basename(r.image).padEnd(12)} ${`${r.seconds} s`.padStart(6)} | ${cell(r.ours)} | ${(Object.keys(PEERS) as Peer[]).map((p) => cell(r.peers[p])).join(" | ")} | ${r.margin === null ? "-" : `${r.margin >= 0 ? "+" : ""}${r.margin.toFixed(2)} dB`}`);
  }
  const last = rows.filter((r) => r.seconds === budgets[budgets.length - 1] && r.margin !== null);
  if (last.length > 0) {
    const worst = Math.min(...last.map((r) => r.margin!));
    const speed = last.flatMap((r) => Object.values(r.peers).map((p) => r.ours.steps_per_s / p.steps_per_s));
    lines.push(`at ${budgets[budgets.length - 1]} s: ours - best peer >= ${worst.toFixed(2)} dB on every image (target >= 3 dB: ${worst >= 3 ? "MET" : "NOT MET"}); ` +
      `steps/s ${Math.min(...speed).toFixed(1)}x to ${Math.max(...speed).toFixed(1)}x the peers' (target >= 10x: ${Math.min(...speed) >= 10 ? "MET" : "NOT MET"})`);
  }
  return { lines, rows };
}

if (import.meta.main) process.exit(await main());

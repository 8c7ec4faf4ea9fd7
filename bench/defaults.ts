// `bun run bench:defaults [--image path]... [--seconds 10,60,300] [--rate R] [--results dir] [--markdown file] [--json]`
//
// How the trainer's defaults were chosen, kept as a script: train() on several photographs at
// several budgets, once with its defaults and once per alternative setting (sampling, loss,
// schedule, EMA), and the full-image PSNR of each, side by side. The defaults pass where they are
// within 0.3 dB of the best setting tried at every budget and image.
//
// - Budgets are wall-clock seconds (`--seconds`). With `--rate R` (the defaults' steps per second
//   on this machine, e.g. `bun run train --seconds 60 --eval-every 0 --json` when it is idle) each
//   budget becomes round(R x seconds) steps instead, the same for every setting: the figures then do
//   not depend on what else the machine runs during a sweep of an hour. The settings' speeds differ
//   little (an EMA costs 4 to 5% of a step; the sampling and loss kernels cost the same), which a
//   step budget leaves out.
// - The largest budget runs the defaults and only the settings within `--keep` dB (default 1) of
//   the best at the budget before, on that image, and not those that gave exactly the defaults'
//   result there (the same weights): the long runs are most of the cost.
// - Each run's result is a JSON file in `--results` (default: a temporary folder); a run whose file
//   is there already is not run again, so an interrupted sweep continues where it stopped.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { MAX_STEPS, parseTrainConfig, type TrainConfigInput } from "../train/config.ts";
import { train } from "../train/trainer.ts";
import { findCxx } from "../runtime/toolchain.ts";
import { benchArgs } from "./args.ts";
import { BusyMeter, busyNote, cpuInfo, cpuSnapshot, loadReport, othersShare } from "./machine.ts";

const USAGE = `usage: bun run bench:defaults [--image path]... [--seconds 10,60,300] [--rate R] [--keep dB] [--results dir] [--markdown file] [--json]
  --image path     a photograph, repeatable (default: kodim01, kodim05, kodim13 and kodim23 of ../shared/data/kodak)
  --seconds S,...  budgets in seconds (default 10,60,300)
  --rate R         run round(R x seconds) steps per budget instead of timing it (the same steps for every setting)
  --keep dB        the largest budget runs the defaults and the settings within this of the best at the budget before (default 1)
  --results dir    keep each run's result here; runs already there are not repeated (default: a temporary folder)
  --markdown file  also write the tables as Markdown (for docs/)
  --json           print every result as one JSON line last`;

const KODAK = resolve(import.meta.dir, "../../shared/data/kodak");
const DEFAULT_IMAGES = ["kodim01", "kodim05", "kodim13", "kodim23"].map((k) => join(KODAK, `${k}.png`));

/**
 * The settings tried: train()'s defaults, and each alternative as the fields it changes (one that
 * the defaults already are is skipped). Keeping an EMA is not among them: at equal steps it can
 * only tie with the raw weights or beat them, as the run chooses between the two by held-out MSE,
 * so what it costs is time, which a step budget (--rate) leaves out.
 */
export const SETTINGS: Record<string, { what: string; config: TrainConfigInput }> = {
  defaults: { what: "train()'s defaults", config: {} },
  "no-ema": { what: "no EMA (the raw weights)", config: { ema: { enabled: false } } },
  "relative-l2": { what: "relative L2 loss", config: { loss: "relative_l2" } },
  "l2": { what: "plain L2 loss", config: { loss: "l2" } },
  constant: { what: "constant learning rate", config: { schedule: { kind: "none" } } },
  cosine: { what: "cosine schedule", config: { schedule: { kind: "cosine" } } },
  onecycle: { what: "onecycle schedule", config: { schedule: { kind: "onecycle" } } },
  bilinear: { what: "bilinear sampling", config: { sampling: "bilinear" } },
  "lr-1e-2": { what: "a learning rate of 1e-2 whatever the span (tiny-cuda-nn's)", config: { optimizer: { lr: 1e-2 } } },
  "lr-5e-3": { what: "a learning rate of 5e-3 whatever the span", config: { optimizer: { lr: 5e-3 } } },
};

interface RunResult {
  setting: string;
  image: string;
  seconds: number;
  /** The steps asked for (--rate), or null for a timed budget. */
  budgetSteps: number | null;
  psnr: number;
  steps: number;
  runSeconds: number;
  weights: string;
  othersCpuShare: number | null;
}

const OPTIONS = {
  image: { type: "string", multiple: true }, seconds: { type: "string" }, rate: { type: "string" }, keep: { type: "string" },
  results: { type: "string" }, markdown: { type: "string" }, json: { type: "boolean" },
} as const;

/** The flags' values, checked. */
function parse(values: Exclude<ReturnType<typeof benchArgs<typeof OPTIONS>>, number>) {
  const number = (flag: string, v: string | undefined, fallback: number, ok: (x: number) => boolean, allowed: string) => {
    if (v === undefined) return fallback;
    const x = Number(v);
    if (!ok(x)) throw new Error(`--${flag}: ${JSON.stringify(v)} is not ${allowed}`);
    return x;
  };
  const budgets = (values.seconds ?? "10,60,300").split(",").map((b) => number("seconds", b, NaN, (x) => x > 0 && x <= 3600, "a number of seconds in (0, 3600]")).sort((a, b) => a - b);
  const images = values.image ?? DEFAULT_IMAGES;
  for (const i of images) if (!existsSync(i)) throw new Error(`--image: ${i}: no such file`);
  return {
    images,
    budgets,
    rate: values.rate === undefined ? undefined : number("rate", values.rate, 0, (x) => x > 0 && x <= 1e6, "a number of steps per second > 0"),
    keep: number("keep", values.keep, 1, (x) => x >= 0, "a number of dB >= 0"),
    results: values.results,
    markdown: values.markdown,
    json: values.json === true,
  };
}

async function runOne(setting: string, image: string, seconds: number, rate: number | undefined, dir: string, log: (s: string) => void): Promise<RunResult> {
  const file = join(dir, `${setting}-${basename(image, ".png")}-${seconds}s${rate ? `-r${rate}` : ""}.json`);
  if (existsSync(file)) return JSON.parse(readFileSync(file, "utf8")) as RunResult;
  const budgetSteps = rate ? Math.max(1, Math.round(rate * seconds)) : null;
  const out = mkdtempSync(join(tmpdir(), "bench-defaults-"));
  const c0 = cpuSnapshot();
  try {
    const r = await train({ ...SETTINGS[setting]!.config, image, backend: "cpu", evalEvery: 0, out, ...(budgetSteps ? { steps: budgetSteps } : { seconds, steps: MAX_STEPS }) });
    const others = othersShare(c0, cpuSnapshot());
    const result: RunResult = { setting, image, seconds, budgetSteps, psnr: r.psnr, steps: r.steps, runSeconds: r.seconds, weights: r.weights.used, othersCpuShare: others ?? null };
    log(`  ${setting.padEnd(12)} ${basename(image).padEnd(12)} ${`${seconds} s`.padStart(6)}: ${r.psnr.toFixed(2)} dB, ${r.steps} steps in ${r.seconds.toFixed(1)} s (${r.weights.used} weights)${busyNote(others)}`);
    writeFileSync(file, JSON.stringify(result));
    return result;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

/** One table per budget: a row per image, a column per setting, the defaults' distance to the best. */
function tables(results: RunResult[], names: string[], images: string[], budgets: number[]): { lines: string[]; failures: string[] } {
  const lines: string[] = ["", `settings: ${names.map((n) => `${n}, ${SETTINGS[n]!.what}`).join("; ")}`];
  const failures: string[] = [];
  for (const b of budgets) {
    const at = results.filter((r) => r.seconds === b);
    const cols = names.filter((n) => at.some((r) => r.setting === n));
    const steps = at.find((r) => r.budgetSteps !== null)?.budgetSteps;
    lines.push("", `**${b} s**${steps ? ` (${steps} steps each)` : ""}: full-image PSNR in dB; best of each row in bold`, "");
    lines.push(`| image | ${cols.join(" | ")} | defaults - best |`, `|---|${cols.map(() => "---:").join("|")}|---:|`);
    for (const image of images) {
      const row = at.filter((r) => r.image === image);
      if (row.length === 0) continue;
      const best = Math.max(...row.map((r) => r.psnr));
      const cell = (n: string) => {
        const r = row.find((x) => x.setting === n);
        if (!r) return "-";
        const v = r.psnr.toFixed(2);
        return r.psnr === best ? `**${v}**` : v;
      };
      const d = row.find((r) => r.setting === "defaults");
      const gap = d ? d.psnr - best : NaN;
      if (d && gap < -0.3) failures.push(`${basename(image)} at ${b} s: the defaults are ${(-gap).toFixed(2)} dB below ${row.find((r) => r.psnr === best)!.setting}`);
      lines.push(`| ${basename(image)} | ${cols.map(cell).join(" | ")} | ${Number.isNaN(gap) ? "-" : gap.toFixed(2)} |`);
    }
  }
  return { lines, failures };
}

async function main(): Promise<number> {
  const values = benchArgs(USAGE, OPTIONS, { prefix: "bench:defaults: " });
  if (typeof values === "number") return values;
  let o: ReturnType<typeof parse>;
  try {
    o = parse(values);
  } catch (e) {
    console.error(`bench:defaults: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const log = (s: string) => console.log(s);
  const cpu = cpuInfo(findCxx().tool?.path);
  log(`CPU: ${cpu.model} (${cpu.family}), ${cpu.cpus} logical CPUs; -march=native = ${cpu.march}`);
  log(`images: ${o.images.map((i) => basename(i)).join(", ")}; budgets: ${o.budgets.join(", ")} s${o.rate ? ` as ${o.budgets.map((b) => Math.round(o.rate! * b)).join(", ")} steps (--rate ${o.rate})` : " (timed)"}`);
  const dir = o.results ?? mkdtempSync(join(tmpdir(), "bench-defaults-results-"));
  mkdirSync(dir, { recursive: true });
  const started = performance.now();
  const busy = new BusyMeter();
  busy.start();
  const results: RunResult[] = [];
  // An alternative that the defaults already are is not run twice.
  const key = (n: string) => JSON.stringify(parseTrainConfig(SETTINGS[n]!.config));
  const names = Object.keys(SETTINGS).filter((n) => n === "defaults" || key(n) !== key("defaults"));
  for (const [k, b] of o.budgets.entries()) {
    const last = k === o.budgets.length - 1 && o.budgets.length > 1;
    log(`${b} s${last ? ` (the defaults and the settings within ${o.keep} dB of the best at ${o.budgets[k - 1]} s)` : ""}:`);
    for (const image of o.images) {
      let chosen = names;
      if (last) {
        const before = results.filter((r) => r.image === image && r.seconds === o.budgets[k - 1]);
        const best = Math.max(...before.map((r) => r.psnr));
        // Not those that gave exactly the defaults' result (the same weights: an EMA never chosen).
        const defaults = before.find((r) => r.setting === "defaults")?.psnr;
        chosen = names.filter((n) => n === "defaults" || before.some((r) => r.setting === n && r.psnr >= best - o.keep && r.psnr !== defaults));
      }
      for (const setting of chosen) results.push(await runOne(setting, image, b, o.rate, dir, log));
    }
  }
  busy.stop();
  const { lines, failures } = tables(results, names, o.images, o.budgets);
  for (const l of lines) log(l);
  log("");
  log(failures.length === 0 ? "the defaults are within 0.3 dB of the best setting tried at every budget and image: MET" : `NOT MET:\n  ${failures.join("\n  ")}`);
  for (const l of loadReport(busy.share, (performance.now() - started) / 1000, { figures: o.rate ? "The figures are step counts, so this changed only the time taken" : undefined })) log(l);
  if (o.markdown) writeFileSync(o.markdown, [`CPU: ${cpu.model}, ${o.rate ? `budgets as steps at ${o.rate} steps/s` : "timed budgets"}`, ...lines, ""].join("\n"));
  if (o.json) console.log(JSON.stringify({ cpu: cpu.model, rate: o.rate ?? null, results, failures }));
  return failures.length === 0 ? 0 : 1;
}

if (import.meta.main) process.exit(await main());

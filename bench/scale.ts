// `bun run bench:scale [--parts sparse,earth4d,gigapixel] [--seconds S] [--json]`
//
// The seeds' workloads on one machine, each part in its own process (so that each peak memory is
// its own) and each printing one JSON object as its last line, merged here:
//   - sparse (bench/sparse.ts): one training step against the table size T = 2^16, 2^19, 2^22 for
//     the same batch, dense and sparse updates: sparse_step_ratio and dense_step_ratio (the step
//     at 2^22 over the step at 2^16);
//   - earth4d (bench/earth4d.ts): the Earth4D preset with learned probing on the synthetic
//     observations of scripts/earth4d_points.ts: earth4d_params, earth4d_peak_rss_bytes,
//     earth4d_steps_per_s;
//   - gigapixel (bench/gigapixel.ts): the 56718 x 21450 Kodak mosaic of scripts/mosaic.ts (built
//     on first use) trained for --seconds (default 300): gigapixel_pixels,
//     gigapixel_peak_rss_bytes, gigapixel_psnr, gigapixel_seconds (the whole run's wall time).
// Each figure comes with the CPU it ran on. With --json the last line is one object holding every
// part's fields. The whole run takes up to about 30 minutes (the mosaic's first build included).
import { resolve } from "node:path";
import { benchArgs } from "./args.ts";
import { findCxx } from "../runtime/toolchain.ts";
import { cpuInfo } from "./machine.ts";

const USAGE = `usage: bun run bench:scale [--parts sparse,earth4d,gigapixel] [--seconds S] [--json]
  --parts LIST   which parts to run (default: all three)
  --seconds S    the gigapixel run's training budget (default 300)
  --json         print every figure as one JSON object, the last line`;

const PARTS = {
  sparse: { script: "sparse.ts", args: (_: Options) => [] as string[] },
  earth4d: { script: "earth4d.ts", args: (_: Options) => [] as string[] },
  gigapixel: { script: "gigapixel.ts", args: (o: Options) => ["--seconds", String(o.seconds)] },
} as const;
type Part = keyof typeof PARTS;

interface Options {
  parts: Part[];
  seconds: number;
  json: boolean;
}

/** Runs one part in a child process (its output passed through) and gives its last line's object. */
async function runPart(part: Part, o: Options): Promise<Record<string, unknown>> {
  const script = resolve(import.meta.dir, PARTS[part].script);
  const proc = Bun.spawn(["bun", script, "--json", ...PARTS[part].args(o)], { stdout: "pipe", stderr: "inherit", env: process.env });
  let text = "";
  const decoder = new TextDecoder();
  for await (const chunk of proc.stdout) {
    const s = decoder.decode(chunk, { stream: true });
    text += s;
    process.stderr.write(s);
  }
  const code = await proc.exited;
  const last = text.trim().split("\n").at(-1) ?? "";
  if (code !== 0) throw new Error(`bench:scale: the ${part} part (bench/${PARTS[part].script}) exited with status ${code}`);
  try {
    return JSON.parse(last) as Record<string, unknown>;
  } catch {
    throw new Error(`bench:scale: the ${part} part's last line is not JSON: ${last.slice(0, 200)}`);
  }
}

async function main(): Promise<number> {
  const a = benchArgs(USAGE, { parts: { type: "string" }, seconds: { type: "string" }, json: { type: "boolean" } });
  if (typeof a === "number") return a;
  const parts = (a.parts ?? "sparse,earth4d,gigapixel").split(",").map((p) => p.trim()) as Part[];
  const unknown = parts.filter((p) => !Object.hasOwn(PARTS, p));
  if (unknown.length) return console.error(`--parts: ${unknown.join(", ")} is not a part (allowed: ${Object.keys(PARTS).join(", ")})\n${USAGE}`), 2;
  const seconds = a.seconds === undefined ? 300 : Number(a.seconds);
  if (!(seconds > 0)) return console.error(`--seconds: ${JSON.stringify(a.seconds)} is not a positive number\n${USAGE}`), 2;
  const o: Options = { parts, seconds, json: a.json === true };
  const cpu = cpuInfo(findCxx().tool?.path);
  const machine = `${cpu.model}, ${cpu.cpus} CPUs, ${cpu.march}, vectors of ${cpu.preferVectorWidth} bits preferred (${cpu.flags.filter((f) => /^avx(2|512f)$/.test(f)).join(", ")})`;
  console.log(`bench:scale on ${machine}; parts: ${parts.join(", ")}`);
  const merged: Record<string, unknown> = { cpu: cpu.model, march: cpu.march, vector_width: cpu.preferVectorWidth };
  const started = performance.now();
  for (const part of parts) {
    const t0 = performance.now();
    const r = await runPart(part, o);
    for (const [k, v] of Object.entries(r)) merged[k === "cpu" ? `${part}_cpu` : k] = v;
    console.log(`${part}: done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  const show = (k: string, f: (v: number) => string) => (typeof merged[k] === "number" ? console.log(`  ${k.padEnd(26)} ${f(merged[k] as number)}`) : undefined);
  console.log(`\nbench:scale on ${machine}, ${((performance.now() - started) / 1000).toFixed(0)} s in all:`);
  show("sparse_step_ratio", (v) => `${v.toFixed(2)}x (sparse step at T = 2^22 over 2^16; target at most 1.2x)`);
  show("dense_step_ratio", (v) => `${v.toFixed(2)}x (the same, dense)`);
  show("earth4d_params", (v) => v.toLocaleString("en"));
  show("earth4d_peak_rss_bytes", (v) => `${(v / 2 ** 30).toFixed(2)} GiB`);
  show("earth4d_steps_per_s", (v) => v.toPrecision(3));
  show("gigapixel_pixels", (v) => v.toLocaleString("en"));
  show("gigapixel_peak_rss_bytes", (v) => `${(v / 2 ** 30).toFixed(2)} GiB`);
  show("gigapixel_psnr", (v) => `${v.toFixed(2)} dB`);
  show("gigapixel_seconds", (v) => `${v.toFixed(0)} s`);
  if (o.json) console.log(JSON.stringify(merged));
  return 0;
}

if (import.meta.main) process.exit(await main());

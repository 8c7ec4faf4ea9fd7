// What every command shares (cli/flags.ts, cli/run.ts): one table and one name per option across
// train, sweep, params and gradcheck; an unknown flag named with its nearest; diagnostics and
// other expected errors printed the same way by every command (exit 2, no stack trace); the
// backend from --backend, else NGPK_BACKEND, else auto; --seconds alone lets time govern; a YAML
// config's errors name the file.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ALL_FLAGS, FLAGS, flagConfig } from "../../cli/flags.ts";
import { detectCudaDevices } from "../../runtime/device.ts";
import { findCxx } from "../../runtime/toolchain.ts";
import { MAX_STEPS, parseTrainConfig } from "../../train/config.ts";
import { buildKernelsFor, runBun, type ChildResult } from "../util.ts";

const BACKEND = findCxx().tool !== undefined ? "cpu" : "js";
const tmp = mkdtempSync(join(tmpdir(), "ngpk-cli-flags-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
/** The small model of test/train/trainer.test.ts (the same native builds). */
const SMALL = ["--steps", "2", "--batch", "1024", "--levels", "4", "--log2-table", "12", "--finest", "256", "--width", "16", "--eval-every", "0"];

type Result = ChildResult;

/** `bun <script> args` from the repository root; killed after CHILD_TIMEOUT, so a hang fails. */
const run = (script: string, args: string[], env: Record<string, string | undefined> = {}) => runBun(script, args, { env });

// SMALL's native kernels built first: the commands' time limits below bound the commands, not the builds.
beforeAll(() => buildKernelsFor([...SMALL, "--backend", BACKEND, "--out", join(tmp, "warm")]), 600_000);

/** Exit status 2, stderr starting with `first` (and holding every `parts`), no stack trace. */
function expectClean(what: string, r: Result, first: string, parts: string[] = [], lines = 1): void {
  const context = `${what}: exit ${r.code}, stderr:\n${r.err}`;
  expect(r.code, context).toBe(2);
  expect(r.err, context).not.toMatch(/^\s{4}at /m);
  expect(r.err, context).not.toContain("Bun has crashed");
  expect(r.err.trim().split("\n").length, context).toBeLessThanOrEqual(lines);
  expect(r.err, context).toStartWith(first);
  for (const p of parts) expect(r.err, context).toContain(p);
}

test("a variant's diagnostics: train and gradcheck print them as compile does, exit 2, no stack trace", async () => {
  const variant = join(tmp, "ternary_variant.ts");
  writeFileSync(
    variant,
    [
      'import { type i32, type u32 } from "ngp-kernels/dsl";',
      "export function spatialHash(coords: u32[], dims: i32): u32 {",
      "  let h: u32 = 0;",
      "  for (let d = 0; d < dims; d++) h = h > 3 ? h ^ coords[d] : h + coords[d];",
      "  return h;",
      "}",
      "",
    ].join("\n"),
  );
  for (const [script, args] of [
    ["cli/train.ts", [...SMALL, "--backend", "js", "--encoding", variant, "--out", join(tmp, "ternary")]],
    ["cli/gradcheck.ts", ["--encoding", variant]],
  ] as const) {
    const r = await run(script, [...args]);
    expectClean(script, r, "error[NGP1001]", [`${variant}:4:`, "hint: use select(cond, a, b)", "\n1 error"], 20);
  }
});

test("the backend: --backend, else NGPK_BACKEND, else auto; a bad value names where it came from; cuda without a GPU is one line", async () => {
  const out = join(tmp, "env-js");
  const trained = await run("cli/train.ts", [...SMALL, "--out", out], { NGPK_BACKEND: "js" });
  expect(trained.code, trained.err).toBe(0);
  expect(trained.out).toContain("backend js: requested by");
  const checkpoint = join(out, "checkpoint.ngpk");
  const rendered = await run("cli/render.ts", ["--checkpoint", checkpoint, "--out", join(tmp, "env-js.png")], { NGPK_BACKEND: "js" });
  expect(rendered.code, rendered.err).toBe(0);
  expect(rendered.out).toContain("backend js)");
  const env = "NGPK_BACKEND: \"gpu\" is not allowed (allowed: auto, cuda, cpu, js)";
  for (const [script, args] of [
    ["cli/train.ts", [...SMALL, "--out", join(tmp, "env-bogus")]],
    ["cli/render.ts", ["--checkpoint", checkpoint, "--out", join(tmp, "env-bogus.png")]],
    ["cli/gradcheck.ts", []],
    ["cli/sweep.ts", ["--budgets", "4096", "--levels", "2", "--steps", "1", "--out", join(tmp, "env-bogus-sweep")]],
  ] as const) expectClean(`${script} NGPK_BACKEND=gpu`, await run(script, [...args], { NGPK_BACKEND: "gpu" }), `error: ${env}`);
  // The flag wins over the environment, and is checked as strictly.
  expectClean("render --backend metal", await run("cli/render.ts", ["--checkpoint", checkpoint, "--out", join(tmp, "metal.png"), "--backend", "metal"], { NGPK_BACKEND: "js" }), 'error: --backend: "metal" is not allowed');
  expectClean("train --backend metal", await run("cli/train.ts", [...SMALL, "--out", join(tmp, "metal"), "--backend", "metal"]), 'error: --backend: "metal" is not allowed');
  if (detectCudaDevices().count === 0)
    for (const [script, args] of [
      ["cli/train.ts", [...SMALL, "--out", join(tmp, "cuda"), "--backend", "cuda"]],
      ["cli/render.ts", ["--checkpoint", checkpoint, "--out", join(tmp, "cuda.png"), "--backend", "cuda"]],
    ] as const) expectClean(`${script} --backend cuda`, await run(script, [...args]), "error: backend cuda requested by", ["but no"]);
});

test("the defaults chosen by bench:defaults (pixel sampling, plain L2, onecycle, no EMA); --ema D turns the average on, --no-ema off", () => {
  const d = parseTrainConfig({});
  expect([d.sampling, d.loss, d.schedule.kind, d.ema.enabled]).toEqual(["pixel", "l2", "onecycle", false]);
  expect(flagConfig({ ema: "0.99" })).toEqual({ ema: { decay: 0.99, enabled: true } });
  expect(parseTrainConfig(flagConfig({ ema: "0.99" })).ema).toEqual({ enabled: true, decay: 0.99 });
  expect(flagConfig({ "no-ema": true })).toEqual({ ema: { enabled: false } });
});

test("--seconds alone: time governs (no step limit), said at the start; with --steps, whichever comes first", async () => {
  expect(parseTrainConfig({ seconds: 180 }).steps).toBe(MAX_STEPS);
  expect(parseTrainConfig({ seconds: 180, steps: 20 }).steps).toBe(20);
  expect(parseTrainConfig({}).steps).toBe(1000);
  expect(parseTrainConfig({ seconds: 180, schedule: { kind: "cosine" } }).steps).toBe(MAX_STEPS); // the trainer decides its span (test/train/trainer.test.ts)
  expect(parseTrainConfig({ seconds: 180, steps: 20, schedule: { kind: "cosine" } }).schedule.kind).toBe("cosine");
  // A constant rate: no schedule spans the steps, so nothing is estimated (the default onecycle's case: test/cli/train_render.test.ts).
  const alone = await run("cli/train.ts", [...SMALL.filter((a, i, all) => a !== "--steps" && all[i - 1] !== "--steps"), "--schedule", "none", "--seconds", "1.5", "--backend", BACKEND, "--out", join(tmp, "seconds")]);
  expect(alone.code, alone.err).toBe(0);
  expect(alone.err).toContain("stops after 1.5 s (--seconds; no step limit)");
  expect(alone.out).toContain("stopped by seconds");
  const both = await run("cli/train.ts", [...SMALL, "--seconds", "100", "--backend", BACKEND, "--out", join(tmp, "seconds-steps")]);
  expect(both.code, both.err).toBe(0);
  expect(both.err).toContain("stops at 2 steps or after 100 s, whichever comes first");
  expect(both.out).toContain("stopped by steps");
});

test("a YAML config's field errors name the file; a section that is no mapping is refused with flags too; NaN is NaN", async () => {
  const yaml = (name: string, text: string) => {
    const file = join(tmp, name);
    writeFileSync(file, text);
    return file;
  };
  const seven = yaml("seven.yaml", "encoding: 7\n");
  const nan = yaml("nan.yaml", "encoding:\n  levels: .nan\n  log2HashmapSize: .inf\n");
  const unknown = yaml("unknown.yaml", "levls: 3\nnetwork:\n  width: 16\n");
  const cases: [string[], string][] = [
    [["--config", seven], `error: ${seven}: encoding: 7 is not an object`],
    [["--config", seven, "--levels", "4"], `error: ${seven}: encoding: 7 is not an object`],
    [["--config", nan], `error: ${nan}: encoding.levels: NaN is not a finite number\n${nan}: encoding.log2HashmapSize: Infinity is not a finite number`],
    [["--config", unknown, "--width", "48"], `error: --width: 48 is not allowed (allowed: 16, 32, 64, 128)\n${unknown}: config: unknown field "levls"`],
  ];
  for (const [args, message] of cases) {
    const r = await run("cli/train.ts", [...args, "--out", join(tmp, "yaml")]);
    expectClean(args.join(" "), r, message, [], 2);
    expect(r.err.trim()).toBe(message);
  }
  const swept = await run("cli/sweep.ts", ["--config", nan, "--out", join(tmp, "yaml-sweep")]);
  expectClean("sweep --config", swept, `error: ${nan}: encoding.levels: swept by the sweep`);
});

test("params takes every flag of its usage from the one table (cli/flags.ts), its own ones marked as not the trainer's", async () => {
  const help = await run("cli/params.ts", ["--help"]);
  expect(help.code).toBe(0);
  const named = [...new Set([...help.out.matchAll(/^\s+--([a-z0-9-]+)/gm)].map((m) => m[1]!))].filter((f) => f !== "help" && f !== "json");
  expect(named.length).toBeGreaterThan(15);
  for (const flag of named) expect(ALL_FLAGS.some((f) => f.flag === flag), `--${flag}`).toBe(true);
  // Its own (not the trainer's) stay out of train's and sweep's flags.
  for (const own of ["outputs", "solve", "budget", "budget-of"]) {
    expect(ALL_FLAGS.find((f) => f.flag === own)?.only).toBe("params");
    expect(FLAGS.some((f) => f.flag === own)).toBe(false);
  }
  expect(new Set(ALL_FLAGS.map((f) => f.flag)).size).toBe(ALL_FLAGS.length);
});

test("flags: one name per option (--per-level-scale, --grid-type; the old names work with a warning), an unknown flag named with the nearest", async () => {
  const unknown: [string, string[], string][] = [
    ["cli/train.ts", ["--per-level-scal", "2"], "error: unknown flag --per-level-scal; did you mean --per-level-scale?"],
    ["cli/train.ts", ["--scle", "2"], "error: unknown flag --scle; did you mean --per-level-scale?"],
    ["cli/sweep.ts", ["--scle", "2"], "error: unknown flag --scle; did you mean --per-level-scale?"],
    ["cli/params.ts", ["--grid-typ", "hash"], "error: unknown flag --grid-typ; did you mean --grid-type?"],
    ["cli/gradcheck.ts", ["--encodng", "x.ts"], "error: unknown flag --encodng; did you mean --encoding?"],
    ["cli/render.ts", ["--chekpoint", "x"], "error: unknown flag --chekpoint; did you mean --checkpoint?"],
    ["cli/export.ts", ["--precison", "f16"], "error: unknown flag --precison; did you mean --precision?"],
    ["cli/compile.ts", ["dsl/examples/saxpy.ts", "--targt", "js"], "error: unknown flag --targt; did you mean --target?"],
    ["cli/train.ts", ["--frobnicate"], "error: unknown flag --frobnicate\n"],
    ["cli/train.ts", ["--steps"], "error: --steps needs a value"],
    ["cli/train.ts", ["--steps", "--json"], "error: --steps needs a value"],
    ["cli/train.ts", ["--json=yes"], "error: --json takes no value"],
  ];
  for (const [script, args, message] of unknown) expectClean(`${script} ${args.join(" ")}`, await run(script, args), message, [], 60);
  // The old names: the same result as the new, and a warning naming the new.
  const params = (...args: string[]) => run("cli/params.ts", [...args, "--levels", "3", "--json"]);
  const [old, now] = await Promise.all([params("--scale", "1.5", "--type", "dense"), params("--per-level-scale", "1.5", "--grid-type", "dense")]);
  expect(old.code, old.err).toBe(0);
  expect(old.out).toBe(now.out);
  expect(old.err).toContain("warning: --scale is now --per-level-scale");
  expect(old.err).toContain("warning: --type is now --grid-type");
  expect(JSON.parse(now.out).settings.perLevelScale).toBe(1.5);
  const gc = await run("cli/gradcheck.ts", ["--scale", "1.5", "--levels", "2", "--points", "2"]);
  expect(gc.code, gc.err).toBe(0);
  expect(gc.err).toContain("warning: --scale is now --per-level-scale");
});

test("flags: the growth given twice, resolutions going down, points flags with an image and non-integers are refused alike everywhere", async () => {
  const out = ["--out", join(tmp, "refused")];
  const cases: [string, string[], string][] = [
    ["cli/train.ts", ["--finest", "256", "--per-level-scale", "2", ...out], "error: --per-level-scale and --finest: give one of them"],
    ["cli/sweep.ts", ["--finest", "256", "--per-level-scale", "2", ...out], "error: --per-level-scale and --finest: give one of them"],
    ["cli/params.ts", ["--finest", "256", "--per-level-scale", "2"], "error: --per-level-scale: give --per-level-scale or --finest, not both"],
    ["cli/train.ts", ["--base", "512", "--finest", "16", "--steps", "1", "--backend", "js", ...out], "error: --finest: 16 is below the base resolution 512: the resolutions would go down"],
    ["cli/params.ts", ["--base", "512", "--finest", "16"], "error: --finest: 16 is below the base resolution 512"],
    ["cli/train.ts", ["data/astronaut.png", "--dims", "3", ...out], "error: --dims needs --points FILE, not an image (data/astronaut.png)"],
    ["cli/train.ts", ["--levels", "2.5", ...out], "error: --levels: 2.5 is not an integer"],
    ["cli/sweep.ts", ["--steps", "2.5", ...out], "error: --steps: 2.5 is not an integer"],
    ["cli/gradcheck.ts", ["--levels", "2.5"], "error: --levels: 2.5 is not an integer"],
    ["cli/gradcheck.ts", ["--points", "2.5"], "error: --points: 2.5 is not an integer"],
    ["cli/params.ts", ["--levels", "2.5"], "error: --levels: 2.5 is not an integer"],
  ];
  for (const [script, args, message] of cases) expectClean(`${script} ${args.join(" ")}`, await run(script, args), message);
  // A --finest flag replaces a growth factor from the YAML (which would otherwise win over it).
  const yaml = join(tmp, "growth.yaml");
  writeFileSync(yaml, "encoding:\n  perLevelScale: 1.5\n");
  const r = await run("cli/train.ts", ["--config", yaml, ...SMALL, "--steps", "1", "--backend", BACKEND, "--json", "--out", join(tmp, "growth")]);
  expect(r.code, r.err).toBe(0);
  const summary = JSON.parse(await Bun.file(join(tmp, "growth", "summary.json")).text());
  expect(summary.config.encoding.perLevelScale).toBeUndefined();
  expect(summary.config.encoding.finestResolution).toBe(256);
});

test("train --help states each flag's default once (from the schema, not also in the help text)", async () => {
  const help = await run("cli/train.ts", ["--help"]);
  expect(help.code).toBe(0);
  const twice = help.out.split("\n").filter((l) => /^\s+--/.test(l) && /\[[^\]]*\]\s*\[[^\]]*\]\s*$/.test(l));
  expect(twice).toEqual([]);
});

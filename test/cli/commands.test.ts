// The command-line tools, run as a user runs them: exit status, what they print.
import { afterAll, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { chmodSync, cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsageError } from "../../dsl/errors.ts";
import { readInputFile } from "../../runtime/files.ts";
import { ROOT, runCommand } from "../util.ts";


/** `bun args` (or `prefix` then bun) from `cwd`; killed after 60 s, so a hang fails. */
const runIn = (cwd: string, prefix: string[], ...args: string[]) => runCommand([...prefix, process.execPath, ...args], { cwd, timeout: 60_000 });
const run = (...args: string[]) => runIn(ROOT, [], ...args);

test("bun run compile prints the generated CUDA", async () => {
  const r = await run("cli/compile.ts", "dsl/examples/saxpy.ts", "--target", "cuda");
  expect(r.code).toBe(0);
  expect(r.out).toContain("__global__ void saxpy_kernel(");
  expect(r.out).toContain('extern "C" int32_t saxpy(');
});

test("bun run compile reports diagnostics with exit status 1", async () => {
  const r = await run("cli/compile.ts", "test/fixtures/errors/ternary.ts");
  expect(r.code).toBe(1);
  expect(r.err).toContain("error[NGP1001]");
  expect(r.err).toContain("test/fixtures/errors/ternary.ts:6:13");
  expect(r.err).toContain("hint: use select(cond, a, b)");
});

test("bun run compile refuses a bad --target and a missing config, saying why", async () => {
  const bad = await run("cli/compile.ts", "dsl/examples/saxpy.ts", "--target", "metal");
  expect(bad.code).toBe(2);
  expect(bad.err).toContain("--target must be cpu, cuda or js");
  const noConfig = await run("cli/compile.ts", "dsl/examples/polynomial.ts");
  expect(noConfig.code).toBe(1);
  expect(noConfig.err).toContain("NGP1022");
});

test("bun run grid prints the levels and the parameter count", async () => {
  const r = await run("cli/params.ts", "--finest", "2048");
  expect(r.code).toBe(0);
  expect(r.out).toContain("5522000 parameters");
  expect(r.out).toMatch(/15 {2}2048 x 2048 +524288 {2}hashed/);
});

test("bun run grid accounts learned probing's memory: training, and inference with the indices packed", async () => {
  // 2^17 entries per level; hashed levels 11 to 15 probed with N_p = 4: 5 x 4096 rows of 2 bits.
  const r = await run("cli/params.ts", "--finest", "2048", "--log2-table", "17", "--probing-range", "4", "--codebook-size", "4096", "--json");
  expect(r.code).toBe(0);
  const j = JSON.parse(r.out);
  const hashed = j.levels.filter((lv: { hashed: boolean }) => lv.hashed).length;
  expect(j.logits).toBe(hashed * 4096 * 4);
  expect(j.indexBytes).toBe((hashed * 4096 * 2) / 8);
  expect(j.inferenceBytes.f16).toBe(j.params * 2 + j.indexBytes);
  expect(j.trainingBytes).toBe(j.params * 16 + j.logits * 20 + hashed * 4096 * 4);
  const text = await run("cli/params.ts", "--finest", "2048", "--log2-table", "17", "--probing-range", "4", "--codebook-size", "4096");
  expect(text.out).toMatch(/15 {2}2048 x 2048 +131072 {2}hashed, learned probing: 32768 buckets of 4, 4096 codebook rows/);
  expect(text.out).toContain("inference:");
});

test("bun run grid names the flag of a bad setting, the value given and what is allowed", async () => {
  const cases: [string[], string][] = [
    [["--levels", "0"], "error: --levels: 0 is out of range (allowed: an integer >= 1 (as many as the indices and the memory allow))"],
    [["--log2-table", "30"], "error: --log2-table: 30 is out of range (allowed: an integer from 8 to 24)"],
    [["--features", "3"], "error: --features: 3 is not allowed (allowed: 1, 2, 4, 8)"],
    [["--base", "nan"], 'error: --base: "nan" is not a number (allowed: a number > 0, or one per axis)'],
    [["--base", "16,Infinity"], "error: --base[1]: Infinity is not a finite number"],
    [["--levels", ""], 'error: --levels: "" is not a number'],
    [["--grid-type", "octree"], 'error: --grid-type: "octree" is not allowed (allowed: hash, dense, tiled)'],
    [["--base", "16,16,4"], "error: --base: has 3 values but --dims is 2"],
    [["--per-level-scale", "2", "--finest", "512"], "error: --per-level-scale: give --per-level-scale or --finest, not both"],
    [["--base", "512", "--finest", "16"], "error: --finest: 16 is below the base resolution 512: the resolutions would go down"],
    [["--finest", "1e9"], "lower --finest or --levels"],
    [["--probing-range", "3"], "error: --probing-range: 3 is not allowed (allowed: a power of two from 1 to 64)"],
    [["--codebook-size", "0"], "error: --codebook-size: 0 is out of range (allowed: an integer from 1 to 16777216 (2^24))"],
  ];
  for (const [args, message] of cases) {
    const r = await run("cli/params.ts", ...args);
    expect(r.code, args.join(" ")).toBe(2);
    expect(r.err).toContain(message);
    expect(r.err).not.toMatch(/hashGrid\.|log2HashmapSize|baseResolution|finestResolution|perLevelScale|featuresPerLevel|gridType/);
  }
});

// Bad file arguments: a directory, a FIFO (opening it would block), a device, an unreadable file.
const tmp = mkdtempSync(join(tmpdir(), "ngpk-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const fifo = join(tmp, "fifo");
execFileSync("mkfifo", [fifo]);
const unreadable = join(tmp, "unreadable.ts");
writeFileSync(unreadable, "{}");
chmodSync(unreadable, 0o000);
// Root reads a mode-000 file anyway: drop the capabilities that let it (setpriv, util-linux).
const asUser = process.getuid?.() === 0 ? ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"] : [];
const canDeny = asUser.length === 0 || Bun.which("setpriv") !== null;

test("readInputFile names the file and the problem", () => {
  const problem = (path: string) => {
    try {
      readInputFile(path, "input file");
    } catch (e) {
      expect(e).toBeInstanceOf(UsageError);
      return (e as Error).message;
    }
    return "read";
  };
  expect(problem(join(ROOT, "dsl/examples/saxpy.ts"))).toBe("read");
  expect(problem(tmp)).toBe(`input file ${tmp} is a directory`);
  expect(problem(fifo)).toBe(`input file ${fifo} is not a regular file (a FIFO)`);
  expect(problem("/dev/null")).toBe("input file /dev/null is not a regular file (a character device)");
  expect(problem(join(tmp, "nope.ts"))).toBe(`input file ${join(tmp, "nope.ts")} does not exist`);
  expect(problem(join(fifo, "x.ts"))).toBe(`input file ${join(fifo, "x.ts")} does not exist`);
});

test("bun run compile refuses a directory, a FIFO, a device or a missing file with status 2", async () => {
  for (const [path, problem] of [
    ["dsl", "is a directory"],
    [fifo, "is not a regular file (a FIFO)"],
    ["/dev/null", "is not a regular file (a character device)"],
    ["dsl/examples/nope.ts", "does not exist"],
  ]) {
    const r = await run("cli/compile.ts", path!);
    expect(r.code, path).toBe(2);
    expect(r.err.trim()).toBe(`error: input file ${path} ${problem}`);
  }
});

test("bun run compile --config refuses a directory, a FIFO and a file that is not JSON", async () => {
  const notJson = join(tmp, "config.json");
  writeFileSync(notJson, "{degree: 3");
  for (const [path, problem] of [
    ["dsl", "is a directory"],
    [fifo, "is not a regular file (a FIFO)"],
    [notJson, "is not valid JSON"],
  ]) {
    const r = await run("cli/compile.ts", "dsl/examples/polynomial.ts", "--config", path!);
    expect(r.code, path).toBe(2);
    expect(r.err).toStartWith(`error: --config file ${path} ${problem}`);
  }
  const text = await run("cli/compile.ts", "dsl/examples/polynomial.ts", "--config", "{degree: 3");
  expect(text.code).toBe(2);
  expect(text.err).toStartWith("error: --config is neither a JSON file nor valid JSON");
});

test.if(canDeny)("bun run compile refuses an unreadable file (input and --config) with status 2", async () => {
  const input = await runIn(ROOT, asUser, "cli/compile.ts", unreadable);
  expect(input.code).toBe(2);
  expect(input.err.trim()).toBe(`error: input file ${unreadable} cannot be read: EACCES`);
  const config = await runIn(ROOT, asUser, "cli/compile.ts", "dsl/examples/saxpy.ts", "--config", unreadable);
  expect(config.code).toBe(2);
  expect(config.err.trim()).toBe(`error: --config file ${unreadable} cannot be read: EACCES`);
});

test("bun run codegen refuses unknown flags and a directory in place of a generated file", async () => {
  const flag = await run("scripts/generate.ts", "--chek");
  expect(flag.code).toBe(2);
  expect(flag.err).toContain("Unknown option '--chek'");
  // A copy of the compiler whose generated/examples/saxpy.cpp is a directory.
  const copy = join(tmp, "repo");
  for (const dir of ["codegen", "runtime", "dsl", "modules", "scripts"]) cpSync(join(ROOT, dir), join(copy, dir), { recursive: true });
  cpSync(join(ROOT, "package.json"), join(copy, "package.json"));
  symlinkSync(join(ROOT, "node_modules"), join(copy, "node_modules"));
  mkdirSync(join(copy, "generated/examples/saxpy.cpp"), { recursive: true });
  const r = await runIn(copy, [], "scripts/generate.ts", "--check");
  expect(r.code).toBe(2);
  expect(r.err.trim()).toBe(`error: generated file ${join(copy, "generated/examples/saxpy.cpp")} is a directory`);
});

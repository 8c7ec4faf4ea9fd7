// `bun run params` (cli/params.ts, also `bun run grid`): the parameter calculator, run as a user
// runs it, against counts computed by hand. No kernels are built: the counts come from the
// encoder's derivation (gridLevels) and the network's layout (mlpLayout).
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { ConfigError, gridLevels, hashGridParamCount, parseHashGridOptions, type HashGridOptionsInput } from "../../modules/hashgrid.ts";
import { mlpLayout, mlpParamCount } from "../../modules/mlp.ts";
import { ROOT, runBun } from "../util.ts";


const params = (...args: string[]) => runBun("cli/params.ts", args, { timeout: 60_000 });
/** The JSON object the command prints last. */
async function json(...args: string[]) {
  const r = await params(...args, "--json");
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  return JSON.parse(r.out.trim().split("\n").at(-1)!);
}
/** A network of the trainer's default shape (width 64, 2 hidden layers, 3 outputs, no biases) on `inputs`. */
const net = (inputs: number) => inputs * 64 + 64 * 64 + 64 * 3;

test("the instant-ngp study's configuration L = 2, F = 2, T = 2^18, N_min = 64, b = 2: 40,960 parameters, as the study's formula says", async () => {
  // The study: F * sum_l min(N_l^2, T) with N_l = N_min b^l = 2 * (64^2 + 128^2) = 40,960.
  // Ours (tiny-cuda-nn's): scale_l = b^l N_min - 1 = 63, 127; res = ceil(scale) + 1 = 64, 128 (the
  // same N_l: the encoder's "- 1, ceil, + 1" changes nothing for integer N_min b^l); entries
  // min(next_multiple_of_8(res^2), 2^18) = 4096, 16384 (both multiples of 8, both below T: dense);
  // so 2 * (4096 + 16384) = 40,960 as well: no difference. The network adds its weights:
  // 4 inputs (L * F) -> 64 -> 64 -> 3 = 256 + 4096 + 192 = 4544, total 45,504.
  const j = await json("--dims", "2", "--levels", "2", "--features", "2", "--log2-table", "18", "--base", "64", "--per-level-scale", "2");
  expect(j.levels.map((lv: { resolution: number[] }) => lv.resolution)).toEqual([[64, 64], [128, 128]]);
  expect(j.levels.map((lv: { size: number }) => lv.size)).toEqual([4096, 16384]);
  expect(j.levels.map((lv: { hashed: boolean }) => lv.hashed)).toEqual([false, false]);
  expect(j.levels.map((lv: { params: number }) => lv.params)).toEqual([8192, 32768]);
  expect(j.levels.map((lv: { bytes: number }) => lv.bytes)).toEqual([32768, 131072]);
  expect(j.params).toBe(40960);
  expect(j.network.params).toBe(4544);
  expect(j.total).toBe(45504);
  const text = await params("--levels", "2", "--log2-table", "18", "--base", "64");
  expect(text.code).toBe(0);
  expect(text.out).toMatch(/ {4}0 {2}64 x 64 +4096 {2}dense +8192 +32768/);
  expect(text.out).toMatch(/ {4}1 {2}128 x 128 +16384 {2}dense +32768 +131072/);
  expect(text.out).toContain("encoding: 40960 parameters");
  expect(text.out).toContain("network: 4544 parameters (4 -> 64 -> 64 -> 3");
  expect(text.out).toContain("total: 45504 parameters (40,960 + 4,544 = 45,504)");
});

test("the next multiple of 8 and the cap: a level of 9 x 9 vertices takes 88 entries, a 2^9 table caps the finest", async () => {
  // N_min = 9, b = 2: res 9, 18, 36; 81 -> 88, 324 -> 328 (next multiples of 8), 1296 -> 512 (hashed).
  const j = await json("--levels", "3", "--base", "9", "--log2-table", "9", "--features", "4");
  expect(j.levels.map((lv: { size: number }) => lv.size)).toEqual([88, 328, 512]);
  expect(j.levels.map((lv: { hashed: boolean }) => lv.hashed)).toEqual([false, false, true]);
  expect(j.params).toBe(4 * (88 + 328 + 512));
  expect(j.total).toBe(4 * (88 + 328 + 512) + net(12));
});

// A 3D grid with per-axis base and finest resolutions: growth 32^(1/7) on x and y, 16^(1/7) on z.
const THREE_D = ["--dims", "3", "--base", "16,16,4", "--finest", "512,512,64", "--levels", "8", "--log2-table", "16"];

test("a 3D grid with per-axis resolutions, counted by hand", async () => {
  // Per level: res = ceil(N_min b^l - 1) + 1 on each axis (x, y: 16 * 1.6407^l; z: 4 * 1.4860^l):
  // level 1: 26.25 -> 27, 5.94 -> 6; 27 * 27 * 6 = 4374 -> 4376 entries (next multiple of 8);
  // level 2: 43.07 -> 44, 8.83 -> 9: 17424; level 3: 71 x 71 x 14 = 70574 > 2^16: hashed, 65536.
  const j = await json(...THREE_D);
  expect(j.levels.map((lv: { resolution: number[] }) => lv.resolution)).toEqual([
    [16, 16, 4], [27, 27, 6], [44, 44, 9], [71, 71, 14], [116, 116, 20], [191, 191, 29], [313, 313, 44], [512, 512, 64],
  ]);
  expect(j.levels.map((lv: { size: number }) => lv.size)).toEqual([1024, 4376, 17424, 65536, 65536, 65536, 65536, 65536]);
  expect(j.levels.map((lv: { hashed: boolean }) => lv.hashed)).toEqual([false, false, false, true, true, true, true, true]);
  expect(j.params).toBe(2 * (1024 + 4376 + 17424 + 5 * 65536)); // 701,008
  expect(j.params).toBe(hashGridParamCount({ dims: 3, baseResolution: [16, 16, 4], finestResolution: [512, 512, 64], levels: 8, log2HashmapSize: 16 }));
  expect(j.network.params).toBe(net(16)); // 5312
  expect(j.total).toBe(701008 + 5312);
  const text = await params(...THREE_D);
  expect(text.out).toMatch(/ {4}1 {2}27 x 27 x 6 +4376 {2}dense +8752 +35008/);
  expect(text.out).toMatch(/ {4}3 {2}71 x 71 x 14 +65536 {2}hashed +131072 +524288/);
});

test("a probed grid: the same features, the hashed levels probed, their logits listed apart and not counted", async () => {
  // Levels 3 to 7 are hashed: 5 levels x 1024 codebook rows of N_p = 8 logits; 65536 / 8 buckets.
  const j = await json(...THREE_D, "--probing-range", "8", "--codebook-size", "1024");
  expect(j.params).toBe(701008);
  expect(j.logits).toBe(5 * 1024 * 8);
  expect(j.indexBytes).toBe((5 * 1024 * 3) / 8); // 3-bit indices
  expect(j.total).toBe(701008 + 5312);
  expect(j.inferenceBytes.f16).toBe(701008 * 2 + 1920);
  expect(j.totalInferenceBytes.f16).toBe(701008 * 2 + 1920 + 5312 * 4);
  const text = await params(...THREE_D, "--probing-range", "8", "--codebook-size", "1024");
  expect(text.out).toMatch(/ {4}3 {2}71 x 71 x 14 +65536 {2}hashed, learned probing: 8192 buckets of 8, 1024 codebook rows +131072 +524288/);
  expect(text.out).toMatch(/ {4}2 {2}44 x 44 x 9 +17424 {2}dense  /);
  expect(text.out).toContain("learned probing: 40960 index logits (5120 rows of 8; trained, not counted), 1920 bytes as packed 3-bit indices");
});

test("the network's count: flags --width --layers --outputs --biases, its inputs levels x features", async () => {
  // 8 levels x 4 features = 32 inputs -> 32 -> 32 -> 32 -> 1 with biases: 3 * 32 * 32 + 32 weights, 3 * 32 + 1 biases.
  const j = await json("--levels", "8", "--features", "4", "--width", "32", "--layers", "3", "--outputs", "1", "--biases");
  const byHand = 3 * 32 * 32 + 32 + (3 * 32 + 1);
  expect(j.network.params).toBe(byHand); // 3201
  // Mlp.create compiles kernels; its paramCount is mlpLayout's, which the trainer's Mlp uses.
  expect(byHand).toBe(mlpParamCount({ inputs: 32, outputs: 1, width: 32, hiddenLayers: 3, biases: true }));
  expect(j.network.fanIn).toEqual(mlpLayout({ inputs: 32, outputs: 1, width: 32, hiddenLayers: 3, biases: true }).fanIn);
  expect(j.total).toBe(j.params + byHand);
  // The defaults: 64 wide, 2 hidden layers, 3 outputs, no biases.
  const d = await json();
  expect(d.network.params).toBe(net(32));
  expect(d.network.params).toBe(mlpParamCount({ inputs: 32, outputs: 3 }));
});

/** The encoding's and the total count of a configuration, recomputed in process. */
function counts(o: Omit<HashGridOptionsInput, "dims"> & { dims?: number }) {
  const encoding = hashGridParamCount({ dims: 2, ...o });
  const s = parseHashGridOptions({ dims: 2, ...o });
  return { encoding, total: encoding + mlpParamCount({ inputs: s.levels * s.featuresPerLevel, outputs: 3 }) };
}

test("--solve log2T: the nearest feasible table sizes below and above a budget, verified", async () => {
  // 8 levels of 16 * 2^l: 256, 1024, 4096, 16384 entries dense, then 4 levels at the cap T.
  // T = 2^15: 2 * (21760 + 4 * 32768) = 305,664 <= 524,288 < T = 2^16: 2 * (21760 + 4 * 65536) = 567,808.
  const j = await json("--levels", "8", "--solve", "log2T", "--budget", "524288", "--budget-of", "encoding");
  expect(j.solve.below.choice).toMatchObject({ value: 15, encoding: 305664, counted: 305664 });
  expect(j.solve.above.choice).toMatchObject({ value: 16, encoding: 567808, counted: 567808 });
  expect(counts({ levels: 8, log2HashmapSize: 15 }).encoding).toBe(305664);
  expect(counts({ levels: 8, log2HashmapSize: 16 }).encoding).toBe(567808);
  // Counting the total (the default): the network (5312) moves nothing here.
  const t = await json("--levels", "8", "--solve", "log2T", "--budget", "2^19");
  expect(t.solve.budgetOf).toBe("total");
  expect(t.solve.below.choice).toMatchObject({ value: 15, total: counts({ levels: 8, log2HashmapSize: 15 }).total });
  expect(t.solve.above.choice).toMatchObject({ value: 16, total: counts({ levels: 8, log2HashmapSize: 16 }).total });
  const text = await params("--levels", "8", "--solve", "log2T", "--budget", "524288");
  expect(text.out).toContain("below: log2T 15  ->  305,664 + 5,312 = 310,976 parameters  (budget - 213,312)");
  expect(text.out).toContain("above: log2T 16  ->  567,808 + 5,312 = 573,120 parameters  (budget + 48,832)");
  // Past the finest level's vertex count a larger table buys nothing: the smallest is chosen.
  const plateau = await json("--levels", "4", "--solve", "log2T", "--budget", "1e6");
  expect(plateau.solve.below.choice).toMatchObject({ value: 14, same: [15, 16, 17, 18, 19, 20, 21, 22, 23, 24] });
  expect(plateau.solve.above.none).toContain("within the budget");
});

test("--solve levels: the nearest feasible level counts either side of a budget, the network growing with them", async () => {
  // Defaults (T = 2^19, N_min = 16, b = 2): 6 levels 2 * 349440 = 698,880 + network 12 -> 64 -> 64 -> 3
  // (5056); 7 levels add 2^19 entries (2048^2 capped): 1,747,456 + 5184.
  const j = await json("--solve", "levels", "--budget", "2^20");
  expect(j.solve.below.choice).toMatchObject({ value: 6, encoding: 698880, network: 5056, total: 703936 });
  expect(j.solve.above.choice).toMatchObject({ value: 7, encoding: 1747456, network: 5184, total: 1752640 });
  expect(counts({ levels: 6 }).total).toBe(703936);
  expect(counts({ levels: 7 }).total).toBe(1752640);
  // Levels whose finest resolution passes 2^23 are refused; the encoder's reason is given.
  const big = await params("--solve", "levels", "--budget", "1e9");
  expect(big.code).toBe(0);
  expect(big.out).toContain("below: levels 20");
  expect(big.out).toContain("above: none (levels 21 and above are refused: --base: level 20 would have resolution 16777216 on axis 0, above 8388608 (2^23)");
});

test("--solve base and scale: continuous, bisected; the values reported give the counts reported", async () => {
  // The study's grid: base in (63.5, 64] gives res 64, 128: 40,960 exactly; just above 64 level 0
  // has 65^2 = 4225 -> 4232 entries and level 1 129^2 = 16641 -> 16648: 41,760. At 63.5 level 1
  // has scale 126, res 127: 127^2 = 16129 -> 16136 entries.
  const j = await json("--levels", "2", "--log2-table", "18", "--solve", "base", "--budget", "40960", "--budget-of", "encoding");
  const { below, above } = j.solve;
  expect(below.choice).toMatchObject({ value: 64, encoding: 40960, interval: { from: 63.5, to: 64, fromOpen: true, toOpen: false } });
  expect(above.choice).toMatchObject({ encoding: 41760, interval: { from: 64, to: 64.5, fromOpen: true, toOpen: false } });
  for (const [v, count] of [[below.choice.value, 40960], [above.choice.value, 41760], [63.5, 2 * (4096 + 16136)], [64.5, 41760]] as const)
    expect(counts({ levels: 2, log2HashmapSize: 18, baseResolution: v }).encoding, `base ${v}`).toBe(count);
  expect(counts({ levels: 2, log2HashmapSize: 18, baseResolution: 64.6 }).encoding).toBeGreaterThan(41760);
  // scale, counting the total, on several budgets: below <= budget < above, nothing in between.
  for (const budget of [50000, 100000, 300000]) {
    const s = (await json("--levels", "2", "--log2-table", "18", "--base", "64", "--solve", "scale", "--budget", String(budget))).solve;
    const at = (b: number) => counts({ levels: 2, log2HashmapSize: 18, baseResolution: 64, perLevelScale: b }).total;
    expect(at(s.below.choice.value)).toBe(s.below.choice.total);
    expect(at(s.above.choice.value)).toBe(s.above.choice.total);
    expect(s.below.choice.total).toBeLessThanOrEqual(budget);
    expect(s.above.choice.total).toBeGreaterThan(budget);
    // Between the two values there is no other count.
    for (let i = 0; i <= 16; i++) {
      const v = s.below.choice.value + ((s.above.choice.value - s.below.choice.value) * i) / 16;
      expect([s.below.choice.total, s.above.choice.total]).toContain(at(v));
    }
  }
  const text = await params("--levels", "2", "--log2-table", "18", "--solve", "base", "--budget", "40960", "--budget-of", "encoding");
  expect(text.out).toContain("below: base 64  ->  40,960 (total 45,504) parameters  (exactly the budget; any base in (63.5, 64] gives this count)");
});

test("a configuration the encoder refuses: its message, flags for fields, exit status 2, no stack trace", async () => {
  let message = "";
  try {
    gridLevels(parseHashGridOptions({ dims: 2, finestResolution: 1e9 }));
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    message = (e as Error).message;
  }
  expect(message).toContain("hashGrid.finestResolution: level 12 would have resolution 27594593");
  const r = await params("--finest", "1e9");
  expect(r.code).toBe(2);
  expect(r.out).toBe("");
  expect(r.err.trim()).toBe(`error: ${message.replace("hashGrid.finestResolution", "--finest").replace("lower finestResolution or levels", "lower --finest or --levels")}`);
  expect(r.err).not.toMatch(/\n\s+at /);
  // Refused for every value of the free parameter.
  const s = await params("--finest", "1e7", "--levels", "3", "--solve", "log2T", "--budget", "1e6");
  expect(s.code).toBe(2);
  expect(s.err).toContain("error: every log2T from 8 to 24 is refused; log2T 8: --finest: level 2 would have resolution 10000000 on axis 0, above 8388608 (2^23)");
  expect(s.err).not.toMatch(/\n\s+at /);
});

test("bad flags name the flag, the value given and what is allowed", async () => {
  const cases: [string[], string][] = [
    [["--width", "48"], "error: --width: 48 is not allowed (allowed: 16, 32, 64, 128)"],
    [["--layers", "0"], "error: --layers: 0 is out of range (allowed: an integer from 1 to 8)"],
    [["--outputs", "x"], 'error: --outputs: "x" is not a number (allowed: an integer from 1 to 16)'],
    [["--features", "3", "--layers", "9"], "error: --features: 3 is not allowed (allowed: 1, 2, 4, 8)\nerror: --layers: 9 is out of range"],
    [["--biases=yes"], "error: --biases takes no value"],
    [["--bogus"], "error: unknown flag --bogus\n"],
    [["--levls", "4"], "error: unknown flag --levls; did you mean --levels?"],
    [["--scle", "2"], "error: unknown flag --scle; did you mean --per-level-scale?"],
    [["--levels"], "error: --levels needs a value"],
    [["--solve", "depth", "--budget", "5"], 'error: --solve: "depth" is not allowed (allowed: log2T, levels, base, scale)'],
    [["--solve", "levels"], "error: --solve needs --budget N"],
    [["--solve", "levels", "--budget", "lots"], 'error: --budget: "lots" is not allowed (allowed: a positive integer of parameters'],
    [["--solve", "levels", "--budget", "0"], 'error: --budget: "0" is not allowed'],
    [["--budget", "5"], "error: --budget and --budget-of need --solve"],
    [["--solve", "levels", "--budget", "5", "--budget-of", "network"], 'error: --budget-of: "network" is not allowed (allowed: total, encoding)'],
    [["--solve", "levels", "--budget", "5", "--levels", "4"], "error: --solve levels: --levels is the free parameter; drop --levels"],
    [["--solve", "scale", "--budget", "5", "--finest", "512"], "error: --solve scale: --finest fixes the growth"],
    [["--solve", "base", "--budget", "5", "--dims", "3", "--finest", "64,64"], "error: --finest: has 2 values but --dims is 3"],
  ];
  for (const [args, message] of cases) {
    const r = await params(...args);
    expect(r.code, args.join(" ")).toBe(2);
    expect(r.err).toContain(message);
    expect(r.err).not.toMatch(/hashGrid\.|mlp\.(width|hiddenLayers|outputs|inputs|biases)|log2HashmapSize|baseResolution|finestResolution|perLevelScale|featuresPerLevel|hiddenLayers|\n\s+at /);
  }
});

test("--help lists every flag with its default; bun run grid and bun run params are the same command", async () => {
  const r = await params("--help");
  expect(r.code).toBe(0);
  const flags = ["dims", "levels", "features", "log2-table", "base", "per-level-scale", "finest", "grid-type", "interpolation", "precision", "probing-range", "codebook-size", "width", "layers", "outputs", "biases", "solve", "budget", "budget-of", "json", "help"];
  for (const flag of flags) expect(r.out, flag).toMatch(new RegExp(`^ +(-h, )?--${flag}\\b.*${flag === "help" ? "" : "\\(.+\\)$"}`, "m"));
  const scripts = JSON.parse(readFileSync(resolve(ROOT, "package.json"), "utf8")).scripts;
  expect(scripts.params).toBe("bun cli/params.ts");
  expect(scripts.grid).toBe("bun cli/params.ts");
});

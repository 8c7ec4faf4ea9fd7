// `bun run params [options]` (also `bun run grid`): what a hash-grid encoding and its network
// amount to, before training with them: per level the resolution, table size, whether it is hashed
// (or probed) and its parameters and bytes; the encoding's, the network's and the total parameter
// count and memory; and, with `--solve P --budget N`, the values of one free parameter (log2T,
// levels, base or scale) whose count comes nearest to a budget from below and from above.
// Everything is derived by the encoder's own functions (modules/hashgrid.ts) and the network's
// layout (modules/mlp.ts), so the counts are the ones training uses, and a configuration the
// encoder refuses is refused here with its message (the fields named by their flags).
import {
  ConfigError,
  gridLevels,
  gridMemory,
  hashGridParamCount,
  MAX_RESOLUTION,
  parseHashGridOptions,
  probingLayout,
  type HashGridOptionsInput,
  type HashGridSettings,
} from "../modules/hashgrid.ts";
import { mlpLayout, parseMlpOptions, type MlpSettings } from "../modules/mlp.ts";
import { UsageError } from "../dsl/errors.ts";
import { flagsNamed, optionsOf, parseFlags } from "./flags.ts";
import { runCommand } from "./run.ts";

const USAGE = `usage: bun run params [encoding flags] [network flags] [--solve P --budget N [--budget-of W]] [--json]
       (bun run grid is the same command)

Prints the levels of a multiresolution hash grid (tiny-cuda-nn's tables: per level the resolution,
table entries, dense, hashed or probed, parameters and bytes), the encoding's parameter count, the
network's, their total, and the memory for training and for inference (learned probing's indices
packed at log2(N_p) bits). With --solve, prints instead the values of one free parameter whose
total comes nearest to --budget from below and from above, with their counts.

Encoding (HashGrid's options, modules/hashgrid.ts); per-axis values are comma-separated,
e.g. --dims 3 --base 16,16,4 --finest 2048,2048,64:
  --dims D                 input dimensions, 1 to 8 (2)
  --levels L               levels, 1 to 64 (16)
  --features F             features per level: 1, 2, 4, 8 (2)
  --log2-table T           log2 of the most table entries per level, 8 to 24 (19)
  --base N                 coarsest resolution N_min, or one per axis (16)
  --per-level-scale B      growth b between levels, >= 1, or one per axis (2)
  --finest R               finest resolution instead of --per-level-scale, or one per axis (none)
  --grid-type hash|dense|tiled  (hash)
  --interpolation nearest|linear|smoothstep  (linear)
  --precision f32|f16      parameter storage (f32)
  --probing-range N_p      learned probing: slots per bucket, a power of two 1 to 64 (1: none)
  --codebook-size N_c      learned probing: codebook rows per hashed level (4 per table entry)
Network (the trainer's MLP, modules/mlp.ts; its inputs are levels x features):
  --width W                16, 32, 64, 128 (64)
  --layers H               hidden layers, 1 to 8 (2)
  --outputs O              outputs, 1 to 16 (3: an RGB image)
  --biases                 a bias in every layer (off)
Solving:
  --solve P                the free parameter: log2T (--log2-table), levels, base or scale (--per-level-scale) (none)
  --budget N               the parameter budget, e.g. 524288 or 2^19 (required by --solve)
  --budget-of W            what the budget counts: total (encoding + network) or encoding (total)
Output:
  --json                   one JSON object instead of the text (off)
  -h, --help               this text

Parameters are the values a trained model stores: the encoding's features (with the encoder's
rounding: next multiple of 8, per-axis resolutions) and the network's weights. Learned probing's
index logits are trained but not stored (inference keeps their packed argmax indices); they are
listed apart and not counted in the totals or the budget. log2T and levels are solved over all
their values; base (from 1) and scale (from 1) by bisection over the count, which grows with
them; the solved value is one for every axis.`;

/** The encoding's flags (the trainer's, cli/flags.ts) and the network's. */
const GRID_FLAGS = flagsNamed(["levels", "features", "log2-table", "base", "per-level-scale", "finest", "grid-type", "interpolation", "precision", "probing-range", "codebook-size"]);
const NET_FLAGS = flagsNamed(["width", "layers", "biases"]);
/** Each flag's HashGrid field (the last part of its trainer path: encoding.probing.range is probing's range); errors name the flag again. */
const FIELDS: Record<string, string> = { dims: "dims", ...Object.fromEntries(GRID_FLAGS.map((f) => [f.flag, f.path.split(".").at(-1)!])) };

/** Fields of HashGrid's `probing` option. */
const PROBING = new Set(GRID_FLAGS.filter((f) => f.path.startsWith("encoding.probing.")).map((f) => f.flag));
const FLAGS = new Map(Object.entries(FIELDS).filter(([flag]) => !PROBING.has(flag)).map(([flag, field]) => [field as string, `--${flag}`]));
/** The network's fields by flag (its options are checked with `where` = "mlp"). */
const MLP_FLAGS: Record<string, string> = {
  ...Object.fromEntries(NET_FLAGS.map((f) => [f.path.split(".").at(-1)!, `--${f.flag}`])),
  outputs: "--outputs",
  inputs: "network inputs (--levels x --features)",
};
const toFlags = (message: string) =>
  message
    .replace(/\bmlp\.(\w+)/g, (m, field: string) => MLP_FLAGS[field] ?? m)
    .replace(/\bhashGrid\.probing\.(range|codebookSize)\b/g, (_, field: string) => (field === "range" ? "--probing-range" : "--codebook-size"))
    .replace(/\b(?:hashGrid\.)?(\w+)\b/g, (m, word: string) => FLAGS.get(word) ?? m);

// Text that is no number stays text, so that the error quotes what was typed.
const num = (v: string): number | string => (v.trim() !== "" && !Number.isNaN(Number(v)) ? Number(v) : v);
const NUMERIC = new Set(["dims", "levels", "features", "log2-table", "probing-range", "codebook-size"]);
const PER_AXIS = new Set(["base", "per-level-scale", "finest"]);
function parse(flag: string, v: string): unknown {
  if (!PER_AXIS.has(flag)) return NUMERIC.has(flag) ? num(v) : v;
  const parts = v.split(",").map(num);
  return parts.length === 1 ? parts[0] : parts;
}

/** The free parameters of --solve: their HashGrid field and flag. */
const SOLVABLE = {
  log2T: { field: "log2HashmapSize", flag: "log2-table", integer: true },
  levels: { field: "levels", flag: "levels", integer: true },
  base: { field: "baseResolution", flag: "base", integer: false },
  scale: { field: "perLevelScale", flag: "per-level-scale", integer: false },
} as const;
type Solvable = keyof typeof SOLVABLE;
const SOLVE_ALIASES: Record<string, Solvable> = { log2T: "log2T", log2t: "log2T", "log2-table": "log2T", levels: "levels", base: "base", scale: "scale", "per-level-scale": "scale" };

type Network = Pick<MlpSettings, "outputs" | "width" | "hiddenLayers" | "biases">;

/** A configuration's counts: the encoding's features, the network's weights, their total; learned probing's logits apart. */
interface Counts {
  encoding: number;
  network: number;
  total: number;
  logits: number;
}

/** Counts of a configuration by the encoder's derivation; throws the encoder's ConfigError if it refuses it. */
function countsOf(input: HashGridOptionsInput, net: Network): Counts & { settings: HashGridSettings } {
  const settings = parseHashGridOptions(input);
  const levels = gridLevels(settings);
  const last = levels[levels.length - 1]!;
  const encoding = (last.offset + last.size) * settings.featuresPerLevel;
  const network = mlpLayout({ ...net, inputs: settings.levels * settings.featuresPerLevel }).paramCount;
  const probe = probingLayout(settings, levels);
  return { settings, encoding, network, total: encoding + network, logits: probe.rows * probe.range };
}

/** One side of a solution: the value (and for base and scale the interval of values with the same count). */
interface Choice extends Counts {
  value: number;
  /** Every value in this interval gives the same count (continuous parameters: ends rounded to 7 digits, open or closed). */
  interval?: { from: number; to: number; fromOpen: boolean; toOpen: boolean };
  /** Integer parameters: the other values giving the same count. */
  same?: number[];
  /** The count the budget compares: total or encoding. */
  counted: number;
}
interface Side {
  choice?: Choice;
  /** Why there is no choice on this side. */
  none?: string;
}
interface Solution {
  parameter: Solvable;
  budget: number;
  budgetOf: "total" | "encoding";
  below: Side;
  above: Side;
}

function solve(parameter: Solvable, budget: number, budgetOf: "total" | "encoding", input: HashGridOptionsInput, net: Network): Solution {
  const { field, integer } = SOLVABLE[parameter];
  const errors = new Map<number, string>();
  const at = (v: number): (Counts & { counted: number }) | undefined => {
    try {
      const c = countsOf({ ...input, [field]: v } as HashGridOptionsInput, net);
      return { encoding: c.encoding, network: c.network, total: c.total, logits: c.logits, counted: budgetOf === "total" ? c.total : c.encoding };
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      errors.set(v, e.message);
      return undefined;
    }
  };
  const counted = (v: number) => at(v)?.counted ?? Infinity;
  const why = (v: number) => toFlags(errors.get(v) ?? "");
  const name = parameter;
  const result: Solution = { parameter, budget, budgetOf, below: {}, above: {} };

  if (integer) {
    const [lo, hi] = parameter === "log2T" ? [8, 24] : [1, 64];
    const rows: { v: number; c: Counts & { counted: number } }[] = [];
    for (let v = lo; v <= hi; v++) {
      const c = at(v);
      if (c) rows.push({ v, c });
    }
    if (!rows.length) throw new ConfigError(`every ${name} from ${lo} to ${hi} is refused; ${name} ${lo}: ${errors.get(lo)}`);
    const below = rows.filter((r) => r.c.counted <= budget);
    const above = rows.filter((r) => r.c.counted > budget);
    const pick = (side: typeof rows, best: number): Choice => {
      const same = side.filter((r) => r.c.counted === best);
      // Of values with the same count, the smallest: a larger one buys nothing.
      return { value: same[0]!.v, ...same[0]!.c, same: same.slice(1).map((r) => r.v) };
    };
    const refusedAbove = [...errors.keys()].filter((v) => v > rows[rows.length - 1]!.v);
    if (below.length) result.below.choice = pick(below, Math.max(...below.map((r) => r.c.counted)));
    else result.below.none = `the smallest count, ${sep(rows[0]!.c.counted)} (${name} ${rows[0]!.v}), is above the budget`;
    if (above.length) result.above.choice = pick(above, Math.min(...above.map((r) => r.c.counted)));
    else
      result.above.none = refusedAbove.length
        ? `${name} ${refusedAbove[0]} and above are refused: ${why(refusedAbove[0]!)}`
        : `the largest count, ${sep(rows[rows.length - 1]!.c.counted)} (${name} ${rows[rows.length - 1]!.v}), is within the budget`;
    return result;
  }

  // Continuous: the count is a nondecreasing step function of the value (a refusal counts as
  // infinite: refusals come from too fine a grid or too many parameters, so they grow with it too).
  const settings = parseHashGridOptions({ ...input, [field]: 1 } as HashGridOptionsInput);
  const bases = Array.isArray(settings.baseResolution) ? settings.baseResolution : [settings.baseResolution];
  const lo = 1;
  const hi = parameter === "base" ? 2 * MAX_RESOLUTION : Math.max(2, (2 * MAX_RESOLUTION / Math.min(...bases)) ** (1 / Math.max(1, settings.levels - 1)));
  /** Where a monotone predicate turns true between a (false) and b (true): [last false, first true], adjacent doubles. */
  const boundary = (a: number, b: number, pred: (v: number) => boolean): [number, number] => {
    for (let i = 0; i < 400; i++) {
      const mid = a + (b - a) / 2;
      if (mid <= a || mid >= b) break;
      if (pred(mid)) b = mid;
      else a = mid;
    }
    return [a, b];
  };
  const choice = (v: number): Choice => ({ value: v, ...at(v)! });
  const cLo = counted(lo);
  const cHi = counted(hi);
  let belowEnd: number | undefined; // the largest value with count <= budget
  let aboveStart: number | undefined; // the smallest value with count > budget
  // Refusals grow with the value: if the smallest is refused, every one is.
  if (!Number.isFinite(cLo)) throw new ConfigError(`every ${name} from ${lo} is refused; ${name} ${lo}: ${errors.get(lo)}`);
  if (cLo > budget) {
    aboveStart = lo;
    result.below.none = `the smallest count, ${sep(cLo)} (${name} ${lo}), is above the budget`;
  } else if (cHi <= budget) {
    belowEnd = hi;
    result.above.none = `the count does not exceed ${sep(cHi)} up to ${name} ${fmt(hi)}`;
  } else {
    [belowEnd, aboveStart] = boundary(lo, hi, (v) => counted(v) > budget);
  }
  if (belowEnd !== undefined) {
    const c = counted(belowEnd);
    const from = counted(lo) >= c ? lo : boundary(lo, belowEnd, (v) => counted(v) >= c)[1];
    // The shortest decimal of the interval, looked for from its top, nearest the budget (from its
    // bottom if no value reaches beyond the budget: a larger one buys nothing).
    const value = result.above.none === undefined ? inward(belowEnd, "down", (x) => counted(x) === c) : inward(from, "up", (x) => counted(x) === c);
    result.below.choice = { ...choice(value), interval: interval(from, belowEnd, c, counted) };
  }
  if (aboveStart !== undefined && result.above.none === undefined) {
    const c = counted(aboveStart);
    if (!Number.isFinite(c)) result.above.none = `${name} above ${fmt(belowEnd ?? lo)} is refused: ${why(aboveStart)}`;
    else {
      const to = counted(hi) <= c ? hi : boundary(aboveStart, hi, (v) => counted(v) > c)[0];
      const value = inward(aboveStart, "up", (x) => counted(x) === c);
      result.above.choice = { ...choice(value), interval: interval(aboveStart, to, c, counted) };
    }
  }
  return result;
}

/**
 * The shortest decimal (fewest significant digits) that `v` rounds to towards `dir` and that keeps
 * `ok` (the same count): the simplest value of the interval on its side of `v`; else v itself.
 */
function inward(v: number, dir: "up" | "down", ok: (x: number) => boolean): number {
  for (let p = 1; p <= 17; p++) {
    let x = Number(v.toPrecision(p));
    const ulp = 10 ** (Math.floor(Math.log10(Math.abs(v))) - p + 1);
    if (dir === "down" && x > v) x = Number((x - ulp).toPrecision(p));
    if (dir === "up" && x < v) x = Number((x + ulp).toPrecision(p));
    if (ok(x)) return x;
  }
  return v;
}

/** The interval [from, to] (found values with count c), its ends rounded to 7 digits and marked open where the rounded end is outside. */
function interval(from: number, to: number, c: number, counted: (v: number) => number) {
  const f = Number(from.toPrecision(7));
  const t = Number(to.toPrecision(7));
  return { from: f, to: t, fromOpen: counted(f) !== c, toOpen: counted(t) !== c };
}

const fmt = (v: number) => String(Number(v.toPrecision(7)));
const sep = (n: number) => n.toLocaleString("en-US");

function main(argv: string[]): number {
  const options = {
    ...optionsOf([...GRID_FLAGS, ...NET_FLAGS]),
    dims: { type: "string", default: "2" },
    outputs: { type: "string" },
    biases: { type: "boolean", default: false },
    solve: { type: "string" },
    budget: { type: "string" },
    "budget-of": { type: "string" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  } as const;
  const values = parseFlags(argv, options, { usage: `\n${USAGE}` }).values as { [flag: string]: string | undefined } & { biases: boolean; json: boolean; help: boolean };
  if (values.help) return console.log(USAGE), 0;
  // Fields not given take HashGrid's defaults.
  const given = (flags: [string, string][]) =>
    Object.fromEntries(flags.flatMap(([flag, field]) => {
      const v = values[flag];
      return v === undefined ? [] : [[field, parse(flag, v as string)]];
    }));
  const input = given(Object.entries(FIELDS).filter(([flag]) => !PROBING.has(flag))) as HashGridOptionsInput;
  const probing = given(Object.entries(FIELDS).filter(([flag]) => PROBING.has(flag)));
  if (Object.keys(probing).length) input.probing = probing as HashGridOptionsInput["probing"];
  const netInput = {
    inputs: 1, // checked per configuration: levels x features
    outputs: values.outputs === undefined ? 3 : num(values.outputs),
    width: values.width === undefined ? 64 : num(values.width),
    hiddenLayers: values.layers === undefined ? 2 : num(values.layers),
    biases: values.biases,
  };
  try {
    // Both modules' problems at once, each naming its flag.
    const problems: string[] = [];
    let settings: HashGridSettings | undefined;
    let net: Network | undefined;
    try {
      net = parseMlpOptions(netInput, "mlp");
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      problems.push(e.message);
    }
    const solving = values.solve !== undefined || values.budget !== undefined || values["budget-of"] !== undefined;
    if (solving) {
      const parameter = SOLVE_ALIASES[values.solve ?? ""];
      if (values.solve === undefined) throw new UsageError("--budget and --budget-of need --solve (log2T, levels, base or scale)");
      if (!parameter) throw new UsageError(`--solve: ${JSON.stringify(values.solve)} is not allowed (allowed: log2T, levels, base, scale)`);
      const { flag } = SOLVABLE[parameter];
      if (values[flag as keyof typeof values] !== undefined) throw new UsageError(`--solve ${parameter}: --${flag} is the free parameter; drop --${flag}`);
      if (parameter === "scale" && values.finest !== undefined) throw new UsageError("--solve scale: --finest fixes the growth; drop --finest (or solve for levels or base)");
      const budget = parseBudget(values.budget);
      const budgetOf = values["budget-of"] ?? "total";
      if (budgetOf !== "total" && budgetOf !== "encoding") throw new UsageError(`--budget-of: ${JSON.stringify(budgetOf)} is not allowed (allowed: total, encoding)`);
      // The other settings are checked with the free one at a valid value, so that only their problems show.
      try {
        parseHashGridOptions({ ...input, [SOLVABLE[parameter].field]: parameter === "log2T" ? 19 : parameter === "levels" ? 16 : 2 });
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        problems.unshift(e.message);
      }
      if (problems.length) throw new ConfigError(problems.join("\n"));
      const sol = solve(parameter, budget, budgetOf, input, net!);
      if (values.json) return console.log(JSON.stringify({ solve: sol })), 0;
      printSolution(sol);
      return 0;
    }
    try {
      settings = parseHashGridOptions(input);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      problems.unshift(e.message);
    }
    if (problems.length) throw new ConfigError(problems.join("\n"));
    return report(settings!, input, net!, values.json);
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(toFlags(e.message).replaceAll("\n", "\nerror: "));
    throw e;
  }
}

function parseBudget(v: string | undefined): number {
  if (v === undefined) throw new UsageError("--solve needs --budget N (parameters, e.g. 524288 or 2^19)");
  const pow = /^\s*2\s*\^\s*(\d+)\s*$/.exec(v);
  const n = pow ? 2 ** Number(pow[1]) : num(v);
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 1) throw new UsageError(`--budget: ${JSON.stringify(v)} is not allowed (allowed: a positive integer of parameters, e.g. 524288 or 2^19)`);
  return n;
}

/** The breakdown of one configuration. */
function report(settings: HashGridSettings, input: HashGridOptionsInput, net: Network, json: boolean): number {
  const levels = gridLevels(settings);
  const params = hashGridParamCount(input);
  const valueBytes = settings.precision === "f16" ? 2 : 4;
  const bytes = params * valueBytes;
  const probe = probingLayout(settings, levels);
  const memory = gridMemory(settings, levels);
  const inference = { f16: gridMemory(settings, levels, 2).inferenceBytes, f32: gridMemory(settings, levels, 4).inferenceBytes };
  const layout = mlpLayout({ ...net, inputs: settings.levels * settings.featuresPerLevel });
  const network = layout.paramCount;
  const total = params + network;
  // The network in f32: training keeps its gradient and Adam's two moments; inference the weights.
  const networkTraining = network * 16;
  const networkInference = network * 4;
  const perLevel = levels.map((lv) => ({ ...lv, params: lv.size * settings.featuresPerLevel, bytes: lv.size * settings.featuresPerLevel * valueBytes }));
  if (json)
    return (
      console.log(
        JSON.stringify({
          settings,
          levels: perLevel,
          params,
          bytes,
          logits: probe.rows * probe.range,
          trainingBytes: memory.trainingBytes,
          inferenceBytes: inference,
          indexBytes: memory.indexBytes,
          network: { ...net, inputs: settings.levels * settings.featuresPerLevel, params: network, fanIn: layout.fanIn, fanOut: layout.fanOut, trainingBytes: networkTraining, inferenceBytes: networkInference },
          total,
          totalTrainingBytes: memory.trainingBytes + networkTraining,
          totalInferenceBytes: { f16: inference.f16 + networkInference, f32: inference.f32 + networkInference },
        }),
      ),
      0
    );
  const kinds = levels.map((lv, l) =>
    probe.probed[l] ? `hashed, learned probing: ${lv.size / probe.range} buckets of ${probe.range}, ${probe.codebookSize} codebook rows` : lv.hashed ? "hashed" : settings.gridType === "tiled" ? "tiled" : "dense",
  );
  const kindWidth = Math.max(8, ...kinds.map((k) => k.length));
  const resWidth = Math.max(20, ...levels.map((lv) => lv.resolution.join(" x ").length));
  console.log(`level  ${"resolution".padEnd(resWidth)}  table entries  ${"indexing".padEnd(kindWidth)}   parameters          bytes`);
  for (const [l, lv] of perLevel.entries())
    console.log(`${String(l).padStart(5)}  ${lv.resolution.join(" x ").padEnd(resWidth)}  ${String(lv.size).padStart(13)}  ${kinds[l]!.padEnd(kindWidth)}  ${String(lv.params).padStart(11)}  ${String(lv.bytes).padStart(13)}`);
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;
  console.log(`\nencoding: ${params} parameters (${settings.featuresPerLevel} per entry), ${mib(bytes)} as ${settings.precision}; encoding width ${settings.levels * settings.featuresPerLevel}`);
  if (probe.rows) console.log(`learned probing: ${probe.rows * probe.range} index logits (${probe.rows} rows of ${probe.range}; trained, not counted), ${memory.indexBytes} bytes as packed ${Math.log2(probe.range)}-bit indices`);
  const shape = [layout.fanIn[0]!, ...layout.fanOut].join(" -> ");
  console.log(`network: ${network} parameters (${shape}, ${net.hiddenLayers} hidden layer${net.hiddenLayers > 1 ? "s" : ""} of ${net.width}, ${net.biases ? "with" : "no"} biases)`);
  console.log(`total: ${total} parameters (${sep(params)} + ${sep(network)} = ${sep(total)})`);
  console.log(`training: ${mib(memory.trainingBytes)} (parameters, f32 gradient and Adam moments${probe.rows ? "; logits likewise, their softmax and the probe table" : ""}) + network ${mib(networkTraining)} = ${mib(memory.trainingBytes + networkTraining)}`);
  console.log(`inference: ${mib(inference.f16)} with f16 features, ${mib(inference.f32)} with f32${probe.rows ? " (features and packed indices)" : ""}; + network ${mib(networkInference)} (f32)`);
  return 0;
}

function printSolution(s: Solution): void {
  const counts = s.budgetOf === "total" ? "total (encoding + network)" : "encoding";
  console.log(`solving ${s.parameter} for a budget of ${sep(s.budget)} parameters, counting the ${counts}:`);
  for (const [side, label] of [[s.below, "below"], [s.above, "above"]] as const) {
    const c = side.choice;
    if (!c) {
      console.log(`  ${label}: none (${side.none})`);
      continue;
    }
    const diff = c.counted - s.budget;
    const sum = s.budgetOf === "total" ? `${sep(c.encoding)} + ${sep(c.network)} = ${sep(c.total)}` : `${sep(c.encoding)} (total ${sep(c.total)})`;
    let note = "";
    if (c.interval) {
      const iv = c.interval;
      note = iv.from === iv.to ? "" : `; any ${s.parameter} in ${iv.fromOpen ? "(" : "["}${iv.from}, ${iv.to}${iv.toOpen ? ")" : "]"} gives this count`;
    } else if (c.same?.length) note = `; ${s.parameter} ${c.same.length === 1 ? c.same[0] : `${c.same[0]} to ${c.same[c.same.length - 1]}`} give${c.same.length === 1 ? "s" : ""} the same count`;
    console.log(`  ${label}: ${s.parameter} ${c.value}  ->  ${sum} parameters  (${diff === 0 ? "exactly the budget" : `budget ${diff < 0 ? "-" : "+"} ${sep(Math.abs(diff))}`}${note})`);
  }
}

await runCommand(main);

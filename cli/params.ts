// `bun run params [options]` (also `bun run grid`): what a hash-grid encoding and its network
// amount to, before training with them: per level the resolution, table size, whether it is hashed
// (or probed) and its parameters and bytes; the encoding's, the network's and the total parameter
// count and memory; and, with `--solve P --budget N`, the values of one free parameter (log2T,
// levels, base or scale) whose count comes nearest to a budget from below and from above.
// Everything is derived by the encoder's own functions (modules/hashgrid_config.ts), the network's
// layout (modules/mlp.ts) and the budget solver (modules/budget.ts), so the counts are the ones
// training uses, and a configuration the encoder refuses is refused here with its message (the
// fields named by their flags).
import { UsageError } from "../dsl/errors.ts";
import { sep, SOLVABLE, solve, type Network, type Solution, type Solvable } from "../modules/budget.ts";
import { ConfigError, gridLevels, gridMemory, hashGridParamCount, parseHashGridOptions, probingLayout, type HashGridOptionsInput, type HashGridSettings } from "../modules/hashgrid_config.ts";
import { mlpLayout, parseMlpOptions } from "../modules/mlp_config.ts";
import { ENCODING_PRESETS, encodingMembers, memberParamCount, memberTrainingBytes, type MemberOptions } from "../modules/encoding_config.ts";
import { flagsNamed, optionsOf, parseFlags, type Flag } from "./flags.ts";
import { runCommand } from "./run.ts";

const USAGE = `usage: bun run params [--encoding-preset NAME] [encoding flags] [network flags] [--solve P --budget N [--budget-of W]] [--json]
       (bun run grid is the same command)

Prints the levels of a multiresolution hash grid (tiny-cuda-nn's tables: per level the resolution,
table entries, dense, hashed or probed, parameters and bytes), the encoding's parameter count, the
network's, their total, and the memory for training and for inference (learned probing's indices
packed at log2(N_p) bits). With --solve, prints instead the values of one free parameter whose
total comes nearest to --budget from below and from above, with their counts.

Encoding (HashGrid's options, modules/hashgrid.ts); per-axis values are comma-separated,
e.g. --dims 3 --base 16,16,4 --finest 2048,2048,64:
  --encoding-preset NAME   a named encoding of several grids (earth4d); the flags below override
                           its fields for every grid; prints each grid and their total
  --dims D                 input dimensions, 1 to 8 (2; a preset: its axes')
  --levels L               levels, >= 1: as many as the indices and the memory allow (16)
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

/** Its flags, from the one table (cli/flags.ts): the encoding's (the trainer's), the network's and its own. */
const GRID_FLAGS = flagsNamed(["dims", "levels", "features", "log2-table", "base", "per-level-scale", "finest", "grid-type", "interpolation", "precision", "probing-range", "codebook-size"]);
const NET_FLAGS = flagsNamed(["width", "layers", "biases", "outputs"]);
const SOLVE_FLAGS = flagsNamed(["solve", "budget", "budget-of"]);
const PRESET_FLAG = flagsNamed(["encoding-preset"]);
/** A flag's option of its module: the last part of its path (encoding.probing.range is probing's range); errors name the flag again. */
const option = (f: Flag) => f.path.split(".").at(-1)!;
const byOption = (flags: Flag[]) => new Map(flags.map((f) => [option(f), `--${f.flag}`]));
/** Fields of HashGrid's `probing` option, and the others. */
const PROBING = GRID_FLAGS.filter((f) => f.path.startsWith("encoding.probing."));
const TOP = GRID_FLAGS.filter((f) => !PROBING.includes(f));
const GRID_NAMES = byOption(TOP);
const PROBING_NAMES = byOption(PROBING);
/** The network's fields by flag (its options are checked with `where` = "mlp"). */
const MLP_NAMES = new Map([...byOption(NET_FLAGS), ["inputs", "network inputs (--levels x --features)"]]);
const toFlags = (message: string) =>
  message
    .replace(/\bmlp\.(\w+)/g, (m, field: string) => MLP_NAMES.get(field) ?? m)
    .replace(/\bhashGrid\.probing\.(\w+)\b/g, (m, field: string) => PROBING_NAMES.get(field) ?? m)
    .replace(/\b(?:hashGrid\.)?(\w+)\b/g, (m, word: string) => GRID_NAMES.get(word) ?? m);

// Text that is no number stays text, so that the error quotes what was typed.
const num = (v: string): number | string => (v.trim() !== "" && !Number.isNaN(Number(v)) ? Number(v) : v);
/** A flag's value as its option: an integer, a number or one per axis (comma-separated), or text. */
function parse(f: Flag, v: string): unknown {
  if (f.kind !== "number") return f.kind === "int" ? num(v) : v;
  const parts = v.split(",").map(num);
  return parts.length === 1 ? parts[0] : parts;
}
/** The flag that sets each free parameter of --solve. */
const SOLVE_FLAG: Record<Solvable, string> = { log2T: "log2-table", levels: "levels", base: "base", scale: "per-level-scale" };
const SOLVE_ALIASES: Record<string, Solvable> = { log2T: "log2T", log2t: "log2T", "log2-table": "log2T", levels: "levels", base: "base", scale: "scale", "per-level-scale": "scale" };

function main(argv: string[]): number {
  const options = {
    ...optionsOf([...GRID_FLAGS, ...NET_FLAGS, ...SOLVE_FLAGS, ...PRESET_FLAG]),
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  } as const;
  const values = parseFlags(argv, options, { usage: `\n${USAGE}` }).values as { [flag: string]: string | undefined } & { biases?: boolean; json: boolean; help: boolean };
  if (values.help) return console.log(USAGE), 0;
  const dimsGiven = values.dims !== undefined;
  values.dims ??= "2";
  // Fields not given take HashGrid's defaults.
  const given = (flags: Flag[]) =>
    Object.fromEntries(flags.flatMap((f) => {
      const v = values[f.flag];
      return v === undefined ? [] : [[option(f), parse(f, v as string)]];
    }));
  const input = given(TOP) as HashGridOptionsInput;
  const probing = given(PROBING);
  if (Object.keys(probing).length) input.probing = probing as HashGridOptionsInput["probing"];
  const netInput = {
    inputs: 1, // checked per configuration: levels x features
    outputs: values.outputs === undefined ? 3 : num(values.outputs),
    width: values.width === undefined ? 64 : num(values.width),
    hiddenLayers: values.layers === undefined ? 2 : num(values.layers),
    biases: values.biases ?? false,
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
    const preset = values["encoding-preset"];
    if (preset !== undefined) {
      if (!Object.hasOwn(ENCODING_PRESETS, preset)) throw new UsageError(`--encoding-preset: ${JSON.stringify(preset)} is not a known preset (known: ${Object.keys(ENCODING_PRESETS).join(", ")})`);
      if (values.solve !== undefined) throw new UsageError("--solve: solves one grid; drop --encoding-preset");
      if (problems.length) throw new ConfigError(problems.join("\n"));
      return presetReport(preset as keyof typeof ENCODING_PRESETS, input, dimsGiven, net!, values.json);
    }
    const solving = values.solve !== undefined || values.budget !== undefined || values["budget-of"] !== undefined;
    if (solving) {
      const parameter = SOLVE_ALIASES[values.solve ?? ""];
      if (values.solve === undefined) throw new UsageError("--budget and --budget-of need --solve (log2T, levels, base or scale)");
      if (!parameter) throw new UsageError(`--solve: ${JSON.stringify(values.solve)} is not allowed (allowed: log2T, levels, base, scale)`);
      const flag = SOLVE_FLAG[parameter];
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
      const sol = solve(parameter, budget, budgetOf, input, net!, toFlags);
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
  if (probe.rows) {
    // The allocation of the inference bytes (f16 features): Compact NGP's best split is about 1/3 features, 2/3 codebook.
    const all = inference.f16 + networkInference;
    const pc = (b: number) => `${((100 * b) / all).toFixed(1)}%`;
    console.log(`inference split (f16 features): features ${pc(inference.f16 - memory.indexBytes)}, packed indices ${pc(memory.indexBytes)}, network ${pc(networkInference)} of ${all} bytes`);
  }
  return 0;
}

/**
 * The grids of a preset (its fields overridden by the flags given, for every grid), each counted
 * as HashGrid counts it, and their total: parameters, training bytes (parameters, f32 gradient,
 * Adam's moments, an f16 grid's master, probing's logits and probe table: memberTrainingBytes)
 * and inference bytes (features in f16 and f32, packed probe indices).
 */
function presetReport(name: keyof typeof ENCODING_PRESETS, input: HashGridOptionsInput, dimsGiven: boolean, net: Network, json: boolean): number {
  const { grids, probing, ...shared } = structuredClone(ENCODING_PRESETS[name]) as unknown as { grids: { axes: number[] }[]; probing: object } & HashGridOptionsInput;
  const { dims, probing: given, ...flags } = input;
  const inputDims = dimsGiven ? dims : Math.max(...grids.flatMap((g) => g.axes)) + 1;
  const options = (g: { axes: number[] }): MemberOptions => {
    const o = { ...shared, ...flags, probing: { ...probing, ...given }, axes: g.axes };
    // A growth factor given replaces the preset's finest resolution.
    if (flags.perLevelScale !== undefined) delete o.finestResolution;
    return o;
  };
  const members = encodingMembers(inputDims, grids.map(options), "encoding");
  const rows = members.map((m, i) => {
    const inference = { f16: gridMemory(m.settings, m.levels, 2).inferenceBytes, f32: gridMemory(m.settings, m.levels, 4).inferenceBytes };
    const p = probingLayout(m.settings, m.levels);
    return {
      grid: i, axes: m.place.axes, levels: m.settings.levels, featuresPerLevel: m.settings.featuresPerLevel, log2HashmapSize: m.settings.log2HashmapSize,
      resolutions: [m.levels[0]!.resolution, m.levels.at(-1)!.resolution], denseLevels: m.levels.filter((lv) => !lv.hashed).length,
      params: memberParamCount(m), logits: p.rows * p.range, trainingBytes: memberTrainingBytes(m), inferenceBytes: inference,
    };
  });
  const width = members[0]!.place.outputStride;
  const layout = mlpLayout({ ...net, inputs: width });
  const sum = (f: (r: (typeof rows)[number]) => number) => rows.reduce((a, r) => a + f(r), 0);
  const params = sum((r) => r.params);
  const total = {
    params, logits: sum((r) => r.logits), trainingBytes: sum((r) => r.trainingBytes), inferenceBytes: { f16: sum((r) => r.inferenceBytes.f16), f32: sum((r) => r.inferenceBytes.f32) },
    network: layout.paramCount, encodingWidth: width,
    totalTrainingBytes: sum((r) => r.trainingBytes) + 16 * layout.paramCount,
    totalInferenceBytes: { f16: sum((r) => r.inferenceBytes.f16) + 4 * layout.paramCount, f32: sum((r) => r.inferenceBytes.f32) + 4 * layout.paramCount },
  };
  if (json) return console.log(JSON.stringify({ preset: name, inputDims, grids: rows, ...total })), 0;
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  console.log(`preset ${name}: ${rows.length} grids over ${inputDims} input axes, concatenated (encoding width ${width})`);
  console.log(`grid  axes       levels  F  log2T  resolutions            dense   parameters  training   inference (f16)`);
  for (const r of rows)
    console.log(
      `${String(r.grid).padStart(4)}  ${r.axes.join(",").padEnd(9)}  ${String(r.levels).padStart(6)}  ${r.featuresPerLevel}  ${String(r.log2HashmapSize).padStart(5)}  ` +
        `${`${r.resolutions[0]![0]} .. ${r.resolutions[1]![0]}`.padEnd(21)}  ${String(r.denseLevels).padStart(5)}  ${sep(r.params).padStart(11)}  ${gib(r.trainingBytes).padStart(9)}  ${gib(r.inferenceBytes.f16).padStart(9)}`,
    );
  console.log(`\nencoding: ${params} parameters (${sep(params)})${total.logits ? `; learned probing: ${sep(total.logits)} index logits (trained, not counted)` : ""}`);
  console.log(`network: ${layout.paramCount} parameters; total ${params + layout.paramCount}`);
  console.log(`training: ${gib(total.trainingBytes)} for the encoding (parameters, f32 gradient, Adam's m and v${members.some((m) => m.settings.precision === "f16") ? ", f32 master of f16 grids" : ""}${total.logits ? ", probing's logits and probe table" : ""}) + network = ${gib(total.totalTrainingBytes)}`);
  console.log(`inference: ${gib(total.inferenceBytes.f16)} with f16 features, ${gib(total.inferenceBytes.f32)} with f32 (+ network ${sep(4 * layout.paramCount)} bytes)`);
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

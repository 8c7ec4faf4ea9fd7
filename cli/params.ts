// `bun run grid [options]`: what a hash-grid configuration amounts to, before training with it:
// per level the resolution, table size and whether it is hashed, and the parameter count and
// memory. Options are HashGrid's (modules/hashgrid.ts); a bad one is reported by the flag given.
import { parseArgs } from "node:util";
import { ConfigError, gridLevels, gridMemory, hashGridParamCount, parseHashGridOptions, probingLayout, type HashGridOptionsInput } from "../modules/hashgrid.ts";

const USAGE = `usage: bun run grid [--dims D] [--levels L] [--features F] [--log2-table T] [--base N]
                    [--scale B | --finest R] [--type hash|dense|tiled] [--interpolation I]
                    [--precision f32|f16] [--probing-range N_p] [--codebook-size N_c] [--json]

Prints the levels of a multiresolution hash grid (tiny-cuda-nn's tables), its parameter count and
its memory for training and for inference (learned probing's indices packed at log2(N_p) bits).
Per-axis values are comma-separated, e.g. --base 16,16,4 --finest 2048,2048,64.
Defaults: --dims 2 --levels 16 --features 2 --log2-table 19 --base 16 --scale 2 --type hash.`;

/** Each flag's HashGrid field; errors name the flag again. */
const FIELDS = {
  dims: "dims",
  levels: "levels",
  features: "featuresPerLevel",
  "log2-table": "log2HashmapSize",
  base: "baseResolution",
  scale: "perLevelScale",
  finest: "finestResolution",
  type: "gridType",
  interpolation: "interpolation",
  precision: "precision",
  "probing-range": "range",
  "codebook-size": "codebookSize",
} as const;

/** Fields of HashGrid's `probing` option. */
const PROBING = new Set(["probing-range", "codebook-size"]);
const FLAGS = new Map(Object.entries(FIELDS).filter(([flag]) => !PROBING.has(flag)).map(([flag, field]) => [field as string, `--${flag}`]));
const toFlags = (message: string) =>
  message
    .replace(/\bhashGrid\.probing\.(range|codebookSize)\b/g, (_, field: string) => (field === "range" ? "--probing-range" : "--codebook-size"))
    .replace(/\b(?:hashGrid\.)?(\w+)\b/g, (m, word: string) => FLAGS.get(word) ?? m);

// Text that is no number stays text, so that the error quotes what was typed.
const num = (v: string): number | string => (v.trim() !== "" && !Number.isNaN(Number(v)) ? Number(v) : v);
const NUMERIC = new Set(["dims", "levels", "features", "log2-table", "probing-range", "codebook-size"]);
const PER_AXIS = new Set(["base", "scale", "finest"]);
function parse(flag: string, v: string): unknown {
  if (!PER_AXIS.has(flag)) return NUMERIC.has(flag) ? num(v) : v;
  const parts = v.split(",").map(num);
  return parts.length === 1 ? parts[0] : parts;
}

function main(argv: string[]): number {
  let values;
  try {
    values = parseArgs({
      args: argv,
      options: {
        dims: { type: "string", default: "2" },
        levels: { type: "string" },
        features: { type: "string" },
        "log2-table": { type: "string" },
        base: { type: "string" },
        scale: { type: "string" },
        finest: { type: "string" },
        type: { type: "string" },
        interpolation: { type: "string" },
        precision: { type: "string" },
        "probing-range": { type: "string" },
        "codebook-size": { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) return console.log(USAGE), 0;
  // Fields not given take HashGrid's defaults.
  const given = (flags: [string, string][]) =>
    Object.fromEntries(flags.flatMap(([flag, field]) => {
      const v = values[flag as keyof typeof FIELDS];
      return v === undefined ? [] : [[field, parse(flag, v)]];
    }));
  const input = given(Object.entries(FIELDS).filter(([flag]) => !PROBING.has(flag))) as HashGridOptionsInput;
  const probing = given(Object.entries(FIELDS).filter(([flag]) => PROBING.has(flag)));
  if (Object.keys(probing).length) input.probing = probing as HashGridOptionsInput["probing"];
  try {
    const settings = parseHashGridOptions(input);
    const levels = gridLevels(settings);
    const params = hashGridParamCount(input);
    const bytes = params * (settings.precision === "f16" ? 2 : 4);
    const probe = probingLayout(settings, levels);
    const memory = gridMemory(settings, levels);
    const inference = { f16: gridMemory(settings, levels, 2).inferenceBytes, f32: gridMemory(settings, levels, 4).inferenceBytes };
    if (values.json)
      return console.log(JSON.stringify({ settings, levels, params, bytes, logits: probe.rows * probe.range, trainingBytes: memory.trainingBytes, inferenceBytes: inference, indexBytes: memory.indexBytes })), 0;
    console.log("level  resolution            table entries  indexing");
    for (const [l, lv] of levels.entries()) {
      const kind = probe.probed[l] ? `hashed, learned probing: ${lv.size / probe.range} buckets of ${probe.range}, ${probe.codebookSize} codebook rows` : lv.hashed ? "hashed" : settings.gridType === "tiled" ? "tiled" : "dense";
      console.log(`${String(l).padStart(5)}  ${lv.resolution.join(" x ").padEnd(20)}  ${String(lv.size).padStart(13)}  ${kind}`);
    }
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;
    console.log(`\n${params} parameters (${settings.featuresPerLevel} per entry), ${mib(bytes)} as ${settings.precision}; encoding width ${settings.levels * settings.featuresPerLevel}`);
    if (probe.rows) console.log(`learned probing: ${probe.rows * probe.range} index logits (${probe.rows} rows of ${probe.range}), ${memory.indexBytes} bytes as packed ${Math.log2(probe.range)}-bit indices`);
    console.log(`training: ${mib(memory.trainingBytes)} (parameters, f32 gradient and Adam moments${probe.rows ? "; logits likewise, their softmax and the probe table" : ""})`);
    console.log(`inference: ${mib(inference.f16)} with f16 features, ${mib(inference.f32)} with f32${probe.rows ? " (features and packed indices)" : ""}`);
    return 0;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(`error: ${toFlags(e.message).replaceAll("\n", "\nerror: ")}`);
    return 2;
  }
}

process.exit(main(process.argv.slice(2)));

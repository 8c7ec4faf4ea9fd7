// `bun run grid [options]`: what a hash-grid configuration amounts to, before training with it:
// per level the resolution, table size and whether it is hashed, and the parameter count and
// memory. Options are HashGrid's (modules/hashgrid.ts); a bad one is reported by the flag given.
import { parseArgs } from "node:util";
import { ConfigError, gridLevels, hashGridParamCount, parseHashGridOptions, type HashGridOptionsInput } from "../modules/hashgrid.ts";

const USAGE = `usage: bun run grid [--dims D] [--levels L] [--features F] [--log2-table T] [--base N]
                    [--scale B | --finest R] [--type hash|dense|tiled] [--interpolation I]
                    [--precision f32|f16] [--json]

Prints the levels of a multiresolution hash grid (tiny-cuda-nn's tables) and its parameter count.
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
} as const;
const FLAGS = new Map(Object.entries(FIELDS).map(([flag, field]) => [field as string, `--${flag}`]));
const toFlags = (message: string) => message.replace(/\b(?:hashGrid\.)?(\w+)\b/g, (m, word: string) => FLAGS.get(word) ?? m);

// Text that is no number stays text, so that the error quotes what was typed.
const num = (v: string): number | string => (v.trim() !== "" && !Number.isNaN(Number(v)) ? Number(v) : v);
const NUMERIC = new Set(["dims", "levels", "features", "log2-table"]);
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
  const input = Object.fromEntries(
    Object.entries(FIELDS).flatMap(([flag, field]) => {
      const v = values[flag as keyof typeof FIELDS];
      return v === undefined ? [] : [[field, parse(flag, v)]];
    }),
  ) as HashGridOptionsInput;
  try {
    const settings = parseHashGridOptions(input);
    const levels = gridLevels(settings);
    const params = hashGridParamCount(input);
    const bytes = params * (settings.precision === "f16" ? 2 : 4);
    if (values.json) return console.log(JSON.stringify({ settings, levels, params, bytes })), 0;
    console.log("level  resolution            table entries  indexing");
    for (const [l, lv] of levels.entries()) {
      console.log(`${String(l).padStart(5)}  ${lv.resolution.join(" x ").padEnd(20)}  ${String(lv.size).padStart(13)}  ${lv.hashed ? "hashed" : settings.gridType === "tiled" ? "tiled" : "dense"}`);
    }
    console.log(`\n${params} parameters (${settings.featuresPerLevel} per entry), ${(bytes / 2 ** 20).toFixed(1)} MiB as ${settings.precision}; encoding width ${settings.levels * settings.featuresPerLevel}`);
    return 0;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(`error: ${toFlags(e.message).replaceAll("\n", "\nerror: ")}`);
    return 2;
  }
}

process.exit(main(process.argv.slice(2)));

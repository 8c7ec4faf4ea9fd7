// `bun run grid [options]`: what a hash-grid configuration amounts to, before training with it:
// per level the resolution, table size and whether it is hashed, and the parameter count and
// memory. Options are HashGrid's (runtime/hashgrid.ts); a bad one is reported by field name.
import { parseArgs } from "node:util";
import { ConfigError, gridLevels, hashGridParamCount, parseHashGridOptions, type HashGridOptionsInput } from "./hashgrid.ts";

const USAGE = `usage: bun run grid [--dims D] [--levels L] [--features F] [--log2-table T] [--base N]
                    [--scale B | --finest R] [--type hash|dense|tiled] [--interpolation I]
                    [--precision f32|f16] [--json]

Prints the levels of a multiresolution hash grid (tiny-cuda-nn's tables) and its parameter count.
Per-axis values are comma-separated, e.g. --base 16,16,4 --finest 2048,2048,64.
Defaults: --dims 2 --levels 16 --features 2 --log2-table 19 --base 16 --scale 2 --type hash.`;

const perAxis = (v: string | undefined): number | number[] | undefined => {
  if (v === undefined) return undefined;
  const parts = v.split(",").map(Number);
  return parts.length === 1 ? parts[0] : parts;
};
const num = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v));

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
  // Undefined fields take HashGrid's defaults; the option names map onto HashGrid's fields.
  const input = Object.fromEntries(
    Object.entries({
      dims: num(values.dims),
      levels: num(values.levels),
      featuresPerLevel: num(values.features),
      log2HashmapSize: num(values["log2-table"]),
      baseResolution: perAxis(values.base),
      perLevelScale: perAxis(values.scale),
      finestResolution: perAxis(values.finest),
      gridType: values.type,
      interpolation: values.interpolation,
      precision: values.precision,
    }).filter(([, v]) => v !== undefined),
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
    console.error(`error: ${e.message.replaceAll("\n", "\nerror: ")}`);
    return 2;
  }
}

process.exit(main(process.argv.slice(2)));

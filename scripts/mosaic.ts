// `bun scripts/mosaic.ts [--width 56718] [--height 21450] [--seed 1] [--out FILE] [--kodak DIR] [--force]`:
// writes the Kodak mosaic (train/mosaic.ts, docs/gigapixel.md) and prints its path; by default
// the full-size one (56718 x 21450) into the cache, reused when it is already there.
import { parseArgs } from "node:util";
import { ExpectedError, UsageError } from "../dsl/errors.ts";
import { buildMosaic } from "../train/mosaic.ts";

async function main(argv: string[]): Promise<number> {
  const usage =
    "usage: bun scripts/mosaic.ts [--width 56718] [--height 21450] [--seed 1] [--out FILE.png|.tif|.v] [--kodak DIR] [--force]";
  try {
    const { values } = parseArgs({
      args: argv,
      options: {
        width: { type: "string" },
        height: { type: "string" },
        seed: { type: "string" },
        out: { type: "string" },
        kodak: { type: "string" },
        force: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
    if (values.help) return console.log(usage), 0;
    const int = (flag: string, s: string | undefined) => {
      if (s === undefined) return undefined;
      if (!/^\d+$/.test(s)) throw new UsageError(`--${flag}: ${JSON.stringify(s)} is not a non-negative integer`);
      return Number(s);
    };
    const t = performance.now();
    const path = await buildMosaic({
      width: int("width", values.width),
      height: int("height", values.height),
      seed: int("seed", values.seed),
      out: values.out,
      kodak: values.kodak,
      force: values.force,
      log: (m) => console.error(m),
    });
    console.error(`mosaic: ${path} (${((performance.now() - t) / 1000).toFixed(1)} s)`);
    console.log(path);
    return 0;
  } catch (e) {
    if (e instanceof ExpectedError || (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) return console.error(`error: ${(e as Error).message}\n${usage}`), 2;
    throw e;
  }
}

if (import.meta.main) process.exit(await main(process.argv.slice(2)));

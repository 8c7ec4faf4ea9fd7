// `bun scripts/earth4d_points.ts OUT.bin [--records N] [--seed S]`: a synthetic space-time
// observation set shaped like Earth4D's (DeepEarth), written as a binary points file
// (train/data/points.ts) to train the `earth4d` encoding preset on one machine.
//
// Coordinates (lat, lon, elevation, time) over a 1.5 x 2 degree region around Mount Fuji and
// Tokyo Bay, four years. The terrain is seeded fractal value noise (six octaves) plus a volcanic
// cone; every record is a LiDAR-like return at a random place and time: on the ground (70%), in
// the canopy or on a roof up to 30 m above it (25%), or up to 2 km above it (5%, cloud and
// aircraft returns). Its three values follow the place and the season:
//   - temperature (deg C): 16 minus 6.5 per km of elevation, cooler to the north, plus a seasonal
//     cycle of +-10 (warmest at the start of August), plus noise of 0.5;
//   - vegetation index (0..1): greener in summer, none above the tree line (2,400 m) or on snow;
//   - albedo (0..1): 0.15, up to 0.8 on snow, whose line falls from 3,400 m in summer to 1,000 m
//     in winter.
// The same seed gives the same file on every machine (modules/random.ts).
import { parseArgs } from "node:util";
import { seededUniform } from "../modules/random.ts";
import { PointsWriter } from "../train/data/points.ts";

const USAGE = `usage: bun scripts/earth4d_points.ts OUT.bin [--records N] [--seed S]
  --records N  observations to write (default 4194304; 28 bytes each)
  --seed S     the terrain's and the samples' seed (default 4)`;

/** The region: lat, lon in degrees, elevation in metres, time in years. */
export const EARTH4D_BOX = { min: [35.0, 138.5, -100, 2020], max: [36.5, 140.5, 5800, 2024] };
const OCTAVES = 6;
const LATTICE = 256;

/** The terrain's elevation in metres at (lat, lon), from a seed. */
export function terrain(seed: number): (lat: number, lon: number) => number {
  const next = seededUniform(seed);
  const lattice = Float32Array.from({ length: LATTICE * LATTICE }, () => next());
  const at = (i: number, j: number) => lattice[((i & (LATTICE - 1)) * LATTICE + (j & (LATTICE - 1)))]!;
  const smooth = (t: number) => t * t * (3 - 2 * t);
  const noise = (u: number, v: number) => {
    const i = Math.floor(u), j = Math.floor(v);
    const fu = smooth(u - i), fv = smooth(v - j);
    const a = at(i, j) + fu * (at(i + 1, j) - at(i, j));
    const b = at(i, j + 1) + fu * (at(i + 1, j + 1) - at(i, j + 1));
    return a + fv * (b - a);
  };
  const [lat0, lon0] = EARTH4D_BOX.min as [number, number];
  return (lat, lon) => {
    const u = (lat - lat0) * 6, v = (lon - lon0) * 6;
    let h = 0, amplitude = 1, frequency = 1, total = 0;
    for (let o = 0; o < OCTAVES; o++) {
      h += amplitude * noise(u * frequency + 17 * o, v * frequency + 31 * o);
      total += amplitude;
      amplitude *= 0.5;
      frequency *= 2;
    }
    // Hills up to 1,800 m, the sea below 0 clamped to the shore, and a cone of 3,776 m.
    const hills = Math.max(0, (h / total - 0.35) * 2800);
    const cone = 3776 * Math.exp(-Math.hypot((lat - 35.36) * 111, (lon - 138.73) * 91) / 9);
    return Math.max(hills, cone);
  };
}

/** The three values observed at a place and time (the generator's ground truth, before noise). */
export function observe(lat: number, elevation: number, year: number): [number, number, number] {
  const season = Math.cos(2 * Math.PI * (year - Math.floor(year) - 0.58)); // 1 at the start of August
  const temperature = 16 - 0.0065 * elevation - 4 * (lat - 35) + 10 * season;
  const snowLine = 2200 + 1200 * season;
  const snow = 1 / (1 + Math.exp((snowLine - elevation) / 150));
  const treeLine = 1 / (1 + Math.exp((elevation - 2400) / 120));
  const vegetation = treeLine * (1 - snow) * (0.5 + 0.3 * season);
  const albedo = 0.15 + 0.65 * snow;
  return [temperature, vegetation, albedo];
}

export function writeEarth4dPoints(path: string, records: number, seed: number, progress?: (done: number) => void): void {
  const height = terrain(seed);
  const next = seededUniform(seed ^ 0x5eed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  const { min, max } = EARTH4D_BOX;
  const w = new PointsWriter(path, { dims: 4, channels: 3, box: { min, max } });
  const CHUNK = 1 << 16;
  const buf = new Float32Array(CHUNK * 7);
  try {
    for (let done = 0; done < records; ) {
      const n = Math.min(CHUNK, records - done);
      for (let r = 0; r < n; r++) {
        const lat = min[0]! + (max[0]! - min[0]!) * next();
        const lon = min[1]! + (max[1]! - min[1]!) * next();
        const year = min[3]! + (max[3]! - min[3]!) * next();
        const ground = height(lat, lon);
        const kind = next();
        const above = kind < 0.7 ? 2 * gauss() : kind < 0.95 ? 30 * next() : 2000 * next();
        const elevation = Math.min(max[2]!, ground + above);
        const [t, v, a] = observe(lat, elevation, year);
        buf.set([lat, lon, elevation, year, t + 0.5 * gauss(), Math.max(0, v + 0.02 * gauss()), Math.min(1, a + 0.02 * gauss())], r * 7);
      }
      w.write(buf.subarray(0, n * 7));
      done += n;
      progress?.(done);
    }
  } finally {
    w.close();
  }
}

function main(argv: string[]): number {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { records: { type: "string" }, seed: { type: "string" }, help: { type: "boolean", short: "h" } } });
  } catch (e) {
    return console.error(`${(e as Error).message}\n\n${USAGE}`), 2;
  }
  if (parsed.values.help) return console.log(USAGE), 0;
  const [out, ...extra] = parsed.positionals;
  if (!out || extra.length) return console.error(`give one output file\n\n${USAGE}`), 2;
  const records = Number(parsed.values.records ?? 4194304);
  const seed = Number(parsed.values.seed ?? 4);
  if (!Number.isInteger(records) || records < 64 || records > 2 ** 40) return console.error(`--records: ${parsed.values.records} is not an integer from 64 to 2^40`), 2;
  if (!Number.isInteger(seed)) return console.error(`--seed: ${parsed.values.seed} is not an integer`), 2;
  const t0 = performance.now();
  let shown = 0;
  writeEarth4dPoints(out, records, seed, (done) => {
    if (done - shown >= records / 10 || done === records) (shown = done), process.stderr.write(`\r${done} / ${records} records`);
  });
  console.error(`\nwrote ${out}: ${records} records of (lat, lon, elevation, time) -> (temperature, vegetation, albedo) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return 0;
}

if (import.meta.main) process.exit(main(process.argv.slice(2)));

// HashGrid option errors: each names the field, the value given and what is allowed, for every
// field and every kind of bad value (NaN, Infinity, wrong type, non-integer, out of range).
import { expect, test } from "bun:test";
import { ConfigError, parseHashGridOptions } from "../../modules/hashgrid.ts";

function message(input: unknown): string {
  try {
    parseHashGridOptions(input);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(input)}`);
}

const INT = (min: number, max: number) => `(allowed: an integer from ${min} to ${max})`;
/** The levels are bounded by the indices and the memory, not a fixed count (modules/hashgrid_config.ts). */
const LEVELS = "(allowed: an integer >= 1 (as many as the indices and the memory allow))";
const AXIS = "(allowed: a number > 0, or one per axis)";
const SCALE = "(allowed: a number >= 1, or one per axis)";
const SEED = "(allowed: an integer of at most 2^53 in magnitude)";

const cases: [Record<string, unknown>, string][] = [
  [{ featuresPerLevel: 3 }, "hashGrid.featuresPerLevel: 3 is not allowed (allowed: 1, 2, 4, 8)"],
  [{ featuresPerLevel: NaN }, "hashGrid.featuresPerLevel: NaN is not allowed (allowed: 1, 2, 4, 8)"],
  [{ featuresPerLevel: "2" }, 'hashGrid.featuresPerLevel: "2" is not allowed (allowed: 1, 2, 4, 8)'],
  [{ baseResolution: NaN }, `hashGrid.baseResolution: NaN is not a finite number ${AXIS}`],
  [{ baseResolution: Infinity }, `hashGrid.baseResolution: Infinity is not a finite number ${AXIS}`],
  [{ baseResolution: 0 }, `hashGrid.baseResolution: 0 is out of range ${AXIS}`],
  [{ baseResolution: "16" }, `hashGrid.baseResolution: "16" is not a number ${AXIS}`],
  [{ baseResolution: [16, NaN] }, `hashGrid.baseResolution[1]: NaN is not a finite number ${AXIS}`],
  [{ baseResolution: [] }, `hashGrid.baseResolution: [] has 0 values ${AXIS}`],
  [{ finestResolution: -Infinity }, `hashGrid.finestResolution: -Infinity is not a finite number ${AXIS}`],
  [{ finestResolution: [2048, -1] }, `hashGrid.finestResolution[1]: -1 is out of range ${AXIS}`],
  [{ perLevelScale: 0.5 }, `hashGrid.perLevelScale: 0.5 is out of range ${SCALE}`],
  [{ perLevelScale: [2, 0.5] }, `hashGrid.perLevelScale[1]: 0.5 is out of range ${SCALE}`],
  [{ perLevelScale: NaN }, `hashGrid.perLevelScale: NaN is not a finite number ${SCALE}`],
  [{ dims: NaN }, `hashGrid.dims: NaN is not a finite number ${INT(1, 8)}`],
  [{ dims: 2.5 }, `hashGrid.dims: 2.5 is not an integer ${INT(1, 8)}`],
  [{ dims: "2" }, `hashGrid.dims: "2" is not a number ${INT(1, 8)}`],
  [{ dims: 9 }, `hashGrid.dims: 9 is out of range ${INT(1, 8)}`],
  [{ dims: undefined }, `hashGrid.dims: is required ${INT(1, 8)}`],
  [{ levels: Infinity }, `hashGrid.levels: Infinity is not a finite number ${LEVELS}`],
  [{ levels: null }, `hashGrid.levels: null is not a number ${LEVELS}`],
  [{ levels: 0 }, `hashGrid.levels: 0 is out of range ${LEVELS}`],
  [{ log2HashmapSize: 19.5 }, `hashGrid.log2HashmapSize: 19.5 is not an integer ${INT(8, 24)}`],
  [{ log2HashmapSize: NaN }, `hashGrid.log2HashmapSize: NaN is not a finite number ${INT(8, 24)}`],
  [{ log2HashmapSize: 30 }, `hashGrid.log2HashmapSize: 30 is out of range ${INT(8, 24)}`],
  [{ gridType: "octree" }, 'hashGrid.gridType: "octree" is not allowed (allowed: hash, dense, tiled)'],
  [{ interpolation: 1 }, "hashGrid.interpolation: 1 is not allowed (allowed: nearest, linear, smoothstep)"],
  [{ precision: "f64" }, 'hashGrid.precision: "f64" is not allowed (allowed: f32, f16)'],
  [{ seed: 1.5 }, `hashGrid.seed: 1.5 is not an integer ${SEED}`],
  [{ seed: NaN }, `hashGrid.seed: NaN is not a finite number ${SEED}`],
  [{ seed: 2 ** 60 }, `hashGrid.seed: ${2 ** 60} is out of range ${SEED}`],
];

for (const [bad, expected] of cases) {
  test(`${expected.split(":")[0]}: ${String(Object.values(bad)[0])}`, () => {
    expect(message({ dims: 2, ...bad })).toBe(expected);
  });
}

test("a wrong-length per-axis value is reported once, against dims", () => {
  expect(message({ dims: 3, baseResolution: [16, 16] })).toBe("hashGrid.baseResolution: has 2 values but dims is 3");
  expect(message({ dims: 2, baseResolution: [] })).toBe(`hashGrid.baseResolution: [] has 0 values ${AXIS}`);
});

test("every bad field is reported, one line each", () => {
  expect(message({ dims: 2, levels: NaN, featuresPerLevel: 3 }).split("\n")).toEqual([
    `hashGrid.levels: NaN is not a finite number ${LEVELS}`,
    "hashGrid.featuresPerLevel: 3 is not allowed (allowed: 1, 2, 4, 8)",
  ]);
});

test("unknown options and a non-object are named, with the options there are", () => {
  expect(message({ dims: 2, level: 4 })).toStartWith('hashGrid: unknown option "level" (options: dims, levels, featuresPerLevel, log2HashmapSize,');
  expect(message(null)).toBe("hashGrid: the options must be an object (got null)");
  expect(message([2])).toBe("hashGrid: the options must be an object (got [2])");
});

test("good options still parse, with their defaults", () => {
  const s = parseHashGridOptions({ dims: 3, baseResolution: [16, 16, 4], perLevelScale: 1.5 });
  expect(s).toMatchObject({ dims: 3, levels: 16, featuresPerLevel: 2, log2HashmapSize: 19, baseResolution: [16, 16, 4], perLevelScale: 1.5, gridType: "hash" });
});

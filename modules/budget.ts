// The parameter budget of a hash-grid encoding and its network: a configuration's counts (the
// encoder's own derivation, hashgrid_config.ts, and the network's layout), and the values of one free
// parameter (log2T, levels, base or scale) whose count comes nearest to a budget from below and from
// above (`bun run params --solve`).
import { ConfigError, gridLevels, gridParamCount, MAX_RESOLUTION, parseHashGridOptions, probingLayout, type HashGridOptionsInput, type HashGridSettings } from "./hashgrid_config.ts";
import { mlpLayout, type MlpSettings } from "./mlp_config.ts";

/** The free parameters: their HashGrid field. */
export const SOLVABLE = {
  log2T: { field: "log2HashmapSize", integer: true },
  levels: { field: "levels", integer: true },
  base: { field: "baseResolution", integer: false },
  scale: { field: "perLevelScale", integer: false },
} as const;
export type Solvable = keyof typeof SOLVABLE;

export type Network = Pick<MlpSettings, "outputs" | "width" | "hiddenLayers" | "biases">;

/** A configuration's counts: the encoding's features, the network's weights, their total; learned probing's logits apart. */
export interface Counts {
  encoding: number;
  network: number;
  total: number;
  logits: number;
}

/** Counts of a configuration by the encoder's derivation; throws the encoder's ConfigError if it refuses it. */
function countsOf(input: HashGridOptionsInput, net: Network): Counts & { settings: HashGridSettings } {
  const settings = parseHashGridOptions(input);
  const levels = gridLevels(settings);
  const encoding = gridParamCount(settings, levels);
  const network = mlpLayout({ ...net, inputs: settings.levels * settings.featuresPerLevel }).paramCount;
  const probe = probingLayout(settings, levels);
  return { settings, encoding, network, total: encoding + network, logits: probe.rows * probe.range };
}

/** One side of a solution: the value (and for base and scale the interval of values with the same count). */
export interface Choice extends Counts {
  value: number;
  /** Every value in this interval gives the same count (continuous parameters: ends rounded to 7 digits, open or closed). */
  interval?: { from: number; to: number; fromOpen: boolean; toOpen: boolean };
  /** Integer parameters: the other values giving the same count. */
  same?: number[];
  /** The count the budget compares: total or encoding. */
  counted: number;
}
export interface Side {
  choice?: Choice;
  /** Why there is no choice on this side. */
  none?: string;
}
export interface Solution {
  parameter: Solvable;
  budget: number;
  budgetOf: "total" | "encoding";
  below: Side;
  above: Side;
}

/**
 * The values of `parameter` (the other settings `input` and the network `net`) whose count of
 * `budgetOf` comes nearest to `budget` from below and from above. `explain` rewrites the encoder's
 * refusals quoted in the answer (the command names its flags); a ConfigError when every value is
 * refused.
 */
export function solve(parameter: Solvable, budget: number, budgetOf: "total" | "encoding", input: HashGridOptionsInput, net: Network, explain: (message: string) => string = (m) => m): Solution {
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
  const why = (v: number) => explain(errors.get(v) ?? "");
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
export const sep = (n: number) => n.toLocaleString("en-US");

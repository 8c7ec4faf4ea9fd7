// `bun run gradcheck --encoding <variant.ts> [grid flags] [--points N] [--seed S] [--json]`:
// checks the gradients of an encoding (a variant's, or the default one without --encoding), the
// ones the compiler derives or a variant declares, against central finite differences of its
// forward, on random points and parameters, on the JS backend (exact f32 semantics, no build).
// L = <dy, encode(x)> for a random dy; for each checked parameter and each input coordinate,
// (L(v + h) - L(v - h)) / 2h is compared with the gradient. Points where the forward has a kink
// inside the difference (a cell boundary, a clamp; detected by the second difference) are skipped
// and counted. Exit status 0 when everything agrees, 1 when something disagrees (listed), 2 on bad
// input.
import { ConfigError, HashGrid, checkVariant, type HashGridOptionsInput } from "../modules/hashgrid.ts";
import { seededUniform } from "../modules/random.ts";
import { backendRequest } from "../runtime/backend.ts";
import { UsageError } from "../dsl/errors.ts";
import { byFlag, flagConfig, flagsNamed, optionsOf, parseFlags, type Flag } from "./flags.ts";
import { runCommand } from "./run.ts";

export interface GradcheckOptions {
  grid: HashGridOptionsInput;
  /** Points to check at (default 8). */
  points?: number;
  seed?: number;
  /** Parameters checked (default 96: the ones the points touch first). */
  params?: number;
  /** Changes the gradients before they are checked (to test the checker itself). */
  tamper?: (grad: Float32Array, dx: Float32Array) => void;
}

export interface Disagreement {
  what: string;
  analytic: number;
  numeric: number;
  /** The f32 rounding the numeric value may carry (absolute), allowed on top of the tolerance. */
  rounding?: number;
}

export interface GradcheckReport {
  params: { checked: number; skipped: number; worst: number; bad: Disagreement[] };
  inputs: { checked: number; skipped: number; worst: number; bad: Disagreement[] };
  ok: boolean;
}

/** Relative tolerance of a check (f32 forward, central differences). */
export const TOLERANCE = 2e-2;

export async function gradcheck(o: GradcheckOptions): Promise<GradcheckReport> {
  const grid = await HashGrid.create(o.grid, { backend: "js" });
  try {
    const rand = seededUniform(o.seed ?? 1);
    const n = o.points ?? 8;
    const D = grid.settings.dims;
    const x = Float32Array.from({ length: n * D }, () => 0.05 + 0.9 * rand());
    const params = Float32Array.from({ length: grid.paramCount }, () => rand() * 2 - 1);
    const dy = Float32Array.from({ length: n * grid.outputDim }, () => rand() * 2 - 1);
    grid.params.upload(params);
    const loss = (xs: Float32Array): number => {
      const y = grid.forward(xs).download();
      let s = 0;
      for (let k = 0; k < y.length; k++) s += dy[k]! * y[k]!;
      return s;
    };
    const y0 = grid.forward(x).download().slice();
    const { params: g, inputs } = grid.backward(dy, { inputs: true });
    const grad = g.download();
    const dx = inputs!.download();
    o.tamper?.(grad, dx);

    // Parameters: the touched ones (non-zero gradient) and as many untouched, up to o.params.
    const touched = [...grad.keys()].filter((k) => grad[k] !== 0);
    const untouched = Array.from({ length: 16 }, () => Math.floor(rand() * grid.paramCount)).filter((k) => grad[k] === 0);
    const pick = [...touched.slice(0, o.params ?? 96), ...untouched];
    const p = { checked: 0, skipped: 0, worst: 0, bad: [] as Disagreement[] };
    const paramPairs: Disagreement[] = [];
    const h = 1e-2;
    for (const k of pick) {
      const v = params[k]!;
      const at = (delta: number) => {
        params[k] = v + delta;
        grid.params.upload(params);
        return loss(x);
      };
      const [up, mid, down] = [at(h), at(0), at(-h)];
      params[k] = v;
      grid.params.upload(params);
      const numeric = (up - down) / (2 * h);
      if (Math.abs(up - 2 * mid + down) > 1e-3 * (Math.abs(up - down) + 1e-3)) {
        p.skipped++;
        continue;
      }
      paramPairs.push({ what: `parameter ${k} (level ${levelOf(grid, k)})`, analytic: grad[k]!, numeric });
    }
    judge(p, paramPairs);
    // Inputs: every coordinate of every point.
    const q = { checked: 0, skipped: 0, worst: 0, bad: [] as Disagreement[] };
    const inputPairs: Disagreement[] = [];
    const hx = 2e-4;
    const samples: { what: string; analytic: number; up: number; mid: number; down: number; rounding: number }[] = [];
    const outputs = grid.outputDim;
    for (let i = 0; i < n; i++) {
      // Moving point i changes only its own outputs, each an f32 rounded to within 2^-24 of its
      // size: the two evaluations' difference carries up to 2 * sum_k |dy_k y_k| * 2^-24.
      let size = 0;
      for (let k = i * outputs; k < (i + 1) * outputs; k++) size += Math.abs(dy[k]! * y0[k]!);
      const rounding = (2 * size * 2 ** -24) / (2 * hx);
      for (let d = 0; d < D; d++) {
        const k = i * D + d;
        const v = x[k]!;
        const at = (delta: number) => {
          x[k] = v + delta;
          return loss(x);
        };
        samples.push({ what: `point ${i} axis ${d}`, analytic: dx[k]!, up: at(hx), mid: at(0), down: at(-hx), rounding });
        x[k] = v;
      }
    }
    // A kink (a cell boundary within the step) or strong curvature: the one-sided slopes differ by
    // more than half the tolerance, relative to the slope itself or, for slopes near 0, to a
    // thousandth of the largest (as judge compares them), not to an absolute floor that would let
    // a kink through at a small slope.
    const scale = samples.reduce((m, s) => Math.max(m, Math.abs(s.up - s.down) / (2 * hx)), 0);
    for (const s of samples) {
      const slope = Math.max(Math.abs(s.up - s.down) / (2 * hx), 1e-3 * scale, 1e-6);
      if (Math.abs(s.up - 2 * s.mid + s.down) / hx > (TOLERANCE / 2) * slope) {
        q.skipped++;
        continue;
      }
      inputPairs.push({ what: s.what, analytic: s.analytic, numeric: (s.up - s.down) / (2 * hx), rounding: s.rounding });
    }
    judge(q, inputPairs);
    return { params: p, inputs: q, ok: p.bad.length === 0 && q.bad.length === 0 };
  } finally {
    grid.close();
  }
}

/**
 * Relative errors of the pairs checked: |analytic - numeric|, less the numeric value's f32
 * rounding, over |numeric|, or over a thousandth of the largest |numeric| of the set for values
 * near 0 (whose differences are mostly rounding).
 */
function judge(r: GradcheckReport["params"], pairs: Disagreement[]): void {
  const scale = pairs.reduce((m, p) => Math.max(m, Math.abs(p.numeric)), 0);
  for (const p of pairs) {
    r.checked++;
    const err = Math.max(0, Math.abs(p.analytic - p.numeric) - (p.rounding ?? 0)) / Math.max(Math.abs(p.numeric), 1e-3 * scale, 1e-6);
    r.worst = Math.max(r.worst, err);
    if (err > TOLERANCE) r.bad.push(p);
  }
}

function levelOf(grid: HashGrid, k: number): number {
  const entry = Math.floor(k / grid.settings.featuresPerLevel);
  return grid.levels.findIndex((lv) => entry >= lv.offset && entry < lv.offset + lv.size);
}

const USAGE = `usage: bun run gradcheck [--encoding variant.ts] [--dims D] [--levels L] [--features F] [--log2-table T]
                         [--base N] [--per-level-scale B] [--points N] [--seed S] [--json]

Checks an encoding's gradients (with respect to its parameters and to its inputs) against central
finite differences of its forward, on random points, on the JS backend. Defaults: --dims 2
--levels 4 --features 2 --log2-table 12 --base 8 --per-level-scale 2 --points 8 --seed 1.`;

/** The grid's flags (the trainer's, cli/flags.ts, and --dims: the grid's here), and gradcheck's own. */
const GRID_FLAGS: Flag[] = [
  ...flagsNamed(["encoding", "levels", "features", "log2-table", "base", "per-level-scale"]),
  { flag: "dims", path: "encoding.dims", kind: "int", help: "input dimensions" },
];
const OWN_FLAGS: Flag[] = [
  { flag: "points", path: "points", kind: "int", help: "points to check at" },
  { flag: "seed", path: "seed", kind: "int", help: "seed of the points and parameters" },
];

async function main(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { ...optionsOf([...GRID_FLAGS, ...OWN_FLAGS]), json: { type: "boolean" }, help: { type: "boolean" } }, { usage: USAGE });
  if (values.help) return console.log(USAGE), 0;
  const given = flagConfig(values, [...GRID_FLAGS, ...OWN_FLAGS]) as { encoding?: HashGridOptionsInput; points?: number; seed?: number };
  try {
    const grid = { dims: 2, levels: 4, featuresPerLevel: 2, log2HashmapSize: 12, baseResolution: 8, perLevelScale: 2, ...given.encoding } as HashGridOptionsInput;
    await checkVariant({ variant: grid.variant, dims: grid.dims!, levels: grid.levels! }, { dims: "--dims", levels: "--levels" });
    const points = given.points ?? 8;
    if (points < 1 || points > 1024) throw new UsageError(`--points: ${points} is out of range (allowed: an integer from 1 to 1024)`);
    const requested = backendRequest(undefined, "js"); // NGPK_BACKEND, checked
    if (requested !== "js" && requested !== "auto") console.error(`note: NGPK_BACKEND=${requested} is not used: gradcheck runs on the js backend (exact f32 semantics)`);
    const r = await gradcheck({ grid, points, seed: given.seed ?? 1 });
    const line = (name: string, c: GradcheckReport["params"]) =>
      `${name}: ${c.checked} checked, ${c.skipped} skipped (a kink within the difference), worst relative error ${c.worst.toExponential(2)}${c.bad.length ? `, ${c.bad.length} DISAGREE` : ""}`;
    console.log(`gradcheck of ${values.encoding ?? "the default encoding"} (tolerance ${TOLERANCE})`);
    console.log(line("parameter gradient", r.params));
    console.log(line("input gradient", r.inputs));
    for (const b of [...r.params.bad, ...r.inputs.bad].slice(0, 20)) console.log(`  ${b.what}: gradient ${b.analytic.toPrecision(6)}, finite difference ${b.numeric.toPrecision(6)}`);
    console.log(r.ok ? "OK: the gradients agree with finite differences" : "the gradients DISAGREE with finite differences");
    if (values.json) console.log(JSON.stringify(r));
    return r.ok ? 0 : 1;
  } catch (e) {
    // Every field of the grid is a flag's (given, or its default here).
    if (e instanceof ConfigError) throw new ConfigError(byFlag(e.message.replace(/\bhashGrid\./g, "encoding."), new Set(GRID_FLAGS.map((f) => f.flag)), GRID_FLAGS));
    throw e;
  }
}

if (import.meta.main) await runCommand(main);

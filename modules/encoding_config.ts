// An encoding made of several hash grids, as pure arithmetic: each member grid reads a subset of the
// input axes and writes its levels' features into its part of the concatenated output row (its
// placement); the members' settings, validated, their parameter counts and the memory training
// them takes, checked against the machine before anything is allocated. The Encoding module
// (encoding.ts) builds the grids; `bun run params` and the trainer's configuration need only this.
import { totalmem } from "node:os";
import { ConfigError, type GridPlacement, type HashGridOptionsInput, type HashGridSettings, type GridLevel, gridLevels, gridParamCount, parseHashGridOptions, probingLayout, touchedWords } from "./hashgrid_config.ts";

/** One member grid's options: HashGrid's, without dims (the count of its axes). */
export type MemberOptions = Omit<HashGridOptionsInput, "dims"> & { axes?: number[] };

/** A member grid, validated: its settings, levels and where it sits. */
export interface Member {
  settings: HashGridSettings;
  levels: GridLevel[];
  place: GridPlacement;
}

/**
 * The members of an encoding over `inputDims` axes: each member's axes (default: all, in order)
 * checked (in range, none repeated, at least one), its options validated and its levels derived,
 * and its placement: the output rows concatenate the members' levels x features in order. Errors
 * name the member's field: `${where}.grids.${i}.axes` (a lone member without axes: `${where}`).
 */
export function encodingMembers(inputDims: number, members: MemberOptions[], where = "encoding"): Member[] {
  if (members.length === 0) throw new ConfigError(`${where}.grids: is empty (allowed: at least one grid)`);
  const out: Member[] = [];
  let offset = 0;
  for (const [i, { axes: given, ...options }] of members.entries()) {
    const field = members.length === 1 && given === undefined ? where : `${where}.grids.${i}`;
    const axes = given ?? Array.from({ length: inputDims }, (_, d) => d);
    const show = JSON.stringify(axes);
    if (axes.length === 0) throw new ConfigError(`${field}.axes: [] is empty (allowed: one or more of the data's axes 0 to ${inputDims - 1})`);
    const bad = axes.find((a) => !Number.isInteger(a) || a < 0 || a >= inputDims);
    if (bad !== undefined) throw new ConfigError(`${field}.axes: ${show} names axis ${bad}, outside the data's ${inputDims} dimension${inputDims === 1 ? "" : "s"} (allowed: 0 to ${inputDims - 1})`);
    const twice = axes.find((a, k) => axes.indexOf(a) !== k);
    if (twice !== undefined) throw new ConfigError(`${field}.axes: ${show} repeats axis ${twice} (allowed: each axis once)`);
    const settings = parseHashGridOptions({ ...options, dims: axes.length }, members.length === 1 ? "hashGrid" : `${where}.grids.${i}`);
    const levels = gridLevels(settings);
    const width = settings.levels * settings.featuresPerLevel;
    out.push({ settings, levels, place: { inputDims, axes, outputStride: 0, outputOffset: offset } });
    offset += width;
  }
  for (const m of out) m.place.outputStride = offset;
  return out;
}

/** Per member, its parameter count; their sum is the encoding's. */
export const memberParamCount = (m: Member): number => gridParamCount(m.settings, m.levels);

/** What training holds besides the parameters: the optimizer's moments (Adam) and the EMA. */
export interface TrainingState {
  adam: boolean;
  ema: boolean;
  /** Sparse updates: a bit per table entry (the touched bitmap), a u32 stamp and list slot per codebook row (HashGrid.trackTouched). */
  sparse?: boolean;
}

/**
 * Bytes a member takes in training: its parameters in their precision and, per parameter in f32,
 * the gradient, Adam's m and v, the EMA and an f16 grid's master copy; learned probing's logits
 * with their gradient (and moments), and the probe table. (What the trainer reports as bytesTraining.)
 */
export function memberTrainingBytes(m: Member, state: TrainingState = { adam: true, ema: false }): number {
  const p = memberParamCount(m);
  const half = m.settings.precision === "f16";
  const probing = probingLayout(m.settings, m.levels);
  const logits = probing.rows * probing.range;
  return (
    (half ? 2 : 4) * p + 4 * p * (1 + (state.adam ? 2 : 0) + (state.ema ? 1 : 0)) + (half ? 4 * p : 0) +
    (logits ? 4 * logits * (2 + (state.adam ? 2 : 0)) + 4 * probing.rows : 0) +
    (state.sparse ? 4 * touchedWords(m.levels).reduce((a, b) => a + b, 0) + 8 * probing.rows : 0)
  );
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;

/**
 * Refuses an encoding whose training memory exceeds the machine's (os.totalmem), before anything
 * is allocated: the figure, and the largest log2HashmapSize that would fit. (f16 storage is no
 * such option: it trains through an f32 master copy, 18 bytes per parameter against f32's 16.)
 * `field`: the field the message names (where the table size is set).
 */
export function checkTrainingMemory(members: Member[], state: TrainingState, field = "encoding", available = totalmem()): void {
  const need = members.reduce((a, m) => a + memberTrainingBytes(m, state), 0);
  if (need <= available) return;
  const fits = (change: (o: HashGridOptionsInput) => HashGridOptionsInput): boolean => {
    try {
      const changed = members.map((m) => ({ ...m, settings: parseHashGridOptions(change({ ...m.settings })) })).map((m) => ({ ...m, levels: gridLevels(m.settings) }));
      return changed.reduce((a, m) => a + memberTrainingBytes(m, state), 0) <= available;
    } catch {
      return false;
    }
  };
  const options: string[] = [];
  const largest = Math.max(...members.map((m) => m.settings.log2HashmapSize));
  for (let t = largest - 1; t >= 8; t--)
    if (fits((o) => ({ ...o, log2HashmapSize: Math.min(o.log2HashmapSize ?? 19, t) }))) {
      options.push(`log2HashmapSize ${t}`);
      break;
    }
  throw new ConfigError(
    `${field}: training needs ${gib(need)} (parameters, gradient${state.adam ? ", Adam moments" : ""}${state.ema ? ", EMA" : ""} and probing), more than this machine's ${gib(available)} of memory; ` +
      (options.length ? `${options[0]} would fit` : "lower levels or featuresPerLevel"),
  );
}

/**
 * Named encodings (the trainer's `encoding.preset`, `--encoding-preset`): the fields of the
 * training configuration's `encoding` section they set, which fields given with them override.
 *   earth4d: DeepEarth's Earth4D space-time encoder over (x, y, z, t): four 3D grids over
 *     (x, y, z), (x, y, t), (y, z, t) and (x, z, t), 24 levels each, F = 2, 2^22 entries per
 *     level, with learned probing N_p = 32, N_c = 512 (DeepEarth's; outside Compact NGP's
 *     recommended N_p <= 16). Resolutions: 32 to 2^23 on every axis (b = 2^(18/23), about 1.72):
 *     the coarsest 32 as Earth4D's about 724M parameters imply (3 dense coarse levels per grid);
 *     the finest the most f32 coordinates in [0, 1] resolve (docs/encoding.md says why not b = 2).
 */
export const ENCODING_PRESETS = {
  earth4d: {
    levels: 24,
    featuresPerLevel: 2,
    log2HashmapSize: 22,
    baseResolution: 32,
    finestResolution: 2 ** 23,
    probing: { range: 32, codebookSize: 512 },
    grids: [{ axes: [0, 1, 2] }, { axes: [0, 1, 3] }, { axes: [1, 2, 3] }, { axes: [0, 2, 3] }],
  },
} as const;

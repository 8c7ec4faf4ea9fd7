// Learning-rate schedules as pure, serializable objects: a schedule gives the factor (relative to
// the base learning rate) for each 0-based step, and plateau, the only one with memory, observes
// held-out losses. state() is plain JSON, so a checkpoint continues a schedule exactly.
//
// - none: 1.
// - cosine: linear warmup from 0 to 1 over warmupSteps (step / warmupSteps, as Hugging Face's
//   get_cosine_schedule_with_warmup), then cosine from 1 to minFactor at totalSteps:
//   minFactor + (1 - minFactor) * (1 + cos(pi * (step - warmupSteps) / (totalSteps - warmupSteps))) / 2.
// - onecycle: PyTorch's OneCycleLR (two phases, cosine annealing), factors relative to max_lr:
//   from 1/divFactor at step 0 to 1 at step pctStart * totalSteps - 1, then to
//   1/(divFactor * finalDivFactor) at step totalSteps - 1 (held after).
// - plateau: PyTorch's ReduceLROnPlateau, mode "min", threshold_mode "rel", no cooldown: a loss
//   improves when it is < best * (1 - threshold); after more than `patience` observations in a row
//   without improvement (PyTorch's num_bad_epochs > patience) the factor is multiplied by `factor`,
//   never going below minFactor, and the count restarts.
import { z } from "zod";
import { ConfigError } from "../modules/options.ts";

export type ScheduleSpec =
  | { kind: "none" }
  | { kind: "cosine"; warmupSteps: number; minFactor: number }
  | { kind: "onecycle"; pctStart: number; divFactor: number; finalDivFactor: number }
  | { kind: "plateau"; patience: number; factor: number; minFactor: number; threshold: number };

export type ScheduleKind = ScheduleSpec["kind"];
export const SCHEDULE_KINDS: readonly ScheduleKind[] = ["none", "cosine", "onecycle", "plateau"];

const show = (v: unknown): string => (typeof v === "string" ? JSON.stringify(v) : v !== null && typeof v === "object" ? JSON.stringify(v) : String(v));

/**
 * A number field whose every zod error reads "<field>: <value> <problem> (allowed: <allowed>)".
 * `lo`/`hi` bounds, inclusive unless given as { gt } / { lt }.
 */
function num(field: string, allowed: string, o: { int?: boolean; min?: number; gt?: number; max?: number; lt?: number }) {
  const msg = (problem: string) => (iss: { input?: unknown }) => `${field}: ${iss.input === undefined ? "" : `${show(iss.input)} `}${problem} (allowed: ${allowed})`;
  let s = z.number({ error: (iss) => msg(iss.input === undefined ? "missing" : typeof iss.input !== "number" ? "is not a number" : "is not a finite number")(iss) });
  if (o.int) s = s.int({ error: msg("is not an integer") });
  if (o.min !== undefined) s = s.min(o.min, { error: msg("is out of range") });
  if (o.gt !== undefined) s = s.gt(o.gt, { error: msg("is out of range") });
  if (o.max !== undefined) s = s.max(o.max, { error: msg("is out of range") });
  if (o.lt !== undefined) s = s.lt(o.lt, { error: msg("is out of range") });
  return s;
}

function spec<K extends ScheduleKind, S extends z.ZodRawShape>(kind: K, shape: S) {
  const fields = ["kind", ...Object.keys(shape)];
  return z.strictObject({ kind: z.literal(kind), ...shape }, {
    error: (iss) =>
      iss.code === "unrecognized_keys"
        ? `unknown option${iss.keys.length > 1 ? "s" : ""} ${iss.keys.map(show).join(", ")} (options of a ${kind} schedule: ${fields.join(", ")})`
        : `${show(iss.input)} is not an object`,
  });
}

export const NoneScheduleSchema = spec("none", {});
export const CosineScheduleSchema = spec("cosine", {
  warmupSteps: num("warmupSteps", "an integer >= 0", { int: true, min: 0 }).default(0),
  minFactor: num("minFactor", "a number in [0, 1]", { min: 0, max: 1 }).default(0.01),
});
export const OneCycleScheduleSchema = spec("onecycle", {
  pctStart: num("pctStart", "a number in (0, 1)", { gt: 0, lt: 1 }).default(0.3),
  divFactor: num("divFactor", "a number >= 1", { min: 1, max: 1e12 }).default(25),
  finalDivFactor: num("finalDivFactor", "a number >= 1", { min: 1, max: 1e12 }).default(1e4),
});
export const PlateauScheduleSchema = spec("plateau", {
  patience: num("patience", "an integer >= 0", { int: true, min: 0, max: 1e9 }).default(3),
  factor: num("factor", "a number in (0, 1)", { gt: 0, lt: 1 }).default(0.5),
  minFactor: num("minFactor", "a number in [0, 1]", { min: 0, max: 1 }).default(1e-3),
  threshold: num("threshold", "a number in [0, 1)", { min: 0, lt: 1 }).default(1e-4),
});

/** Any schedule, chosen by `kind`; omitted fields take their defaults. Error messages name the field. */
export const ScheduleSpecSchema = z.discriminatedUnion("kind", [NoneScheduleSchema, CosineScheduleSchema, OneCycleScheduleSchema, PlateauScheduleSchema], {
  error: (iss) => {
    const input = iss.input as { kind?: unknown } | undefined;
    if (input === null || typeof input !== "object") return `${show(input)} is not an object (allowed: { kind: ${SCHEDULE_KINDS.join(" | ")}, ... })`;
    return `kind: ${input.kind === undefined ? "missing" : `${show(input.kind)} is not allowed`} (allowed: ${SCHEDULE_KINDS.join(", ")})`;
  },
});

export type ScheduleSpecInput = z.input<typeof ScheduleSpecSchema>;
// The schema's output is exactly ScheduleSpec (checked here at compile time).
const _sameType: [ScheduleSpec, z.output<typeof ScheduleSpecSchema>] = [null! as z.output<typeof ScheduleSpecSchema>, null! as ScheduleSpec];
void _sameType;

/**
 * `input` validated, defaults filled; otherwise a ConfigError, one line per problem:
 * "<where>.<field>: <value> <problem> (allowed: ...)" (the schema's own messages, which start with
 * the field's name, prefixed with `where`).
 */
export function parseScheduleSpec(input: unknown, where = "schedule"): ScheduleSpec {
  const r = ScheduleSpecSchema.safeParse(input);
  if (r.success) return r.data;
  // Field messages start with the field's name; the others (not an object, unknown options) do not.
  throw new ConfigError(r.error.issues.map((i) => (i.path.length > 0 ? `${where}.${i.message}` : `${where}: ${i.message}`)).join("\n"));
}

/** The schedules whose factors span the run's steps: a time budget alone needs its step count decided. */
export const spansSteps = (kind: ScheduleKind): boolean => kind === "cosine" || kind === "onecycle";

/**
 * The steps a cosine or onecycle schedule spans, and how they were decided: the run's steps, or
 * (a time budget and no steps) the steps estimated to fit the `budget` seconds: `warmupSteps` steps
 * in `warmupSeconds` measured `stepsPerSecond` (the median step of the later half of its steps: the
 * first ones pay for first use, the first touch of every buffer's pages, and ran 25% slower than
 * the rest), and the steps are what the rest of the budget holds at that rate. The warm-up is then undone and
 * the run starts over, as if given these steps: a rerun given them gives the same parameters.
 */
export type ScheduleSpan =
  | { steps: number; from: "steps" }
  | { steps: number; from: "seconds"; budget: number; warmupSteps: number; warmupSeconds: number; stepsPerSecond: number };

/** The warm-up measuring the steps per second ends after this many steps and this share of the budget, or at the larger share. */
const WARMUP = { steps: 10, share: 0.04, maxShare: 0.1 };

/** A time budget's warm-up: step() after each step, until it says the warm-up is over; then span(). */
export class Warmup {
  #ends: number[] = []; // seconds into the warm-up at the end of each step

  /** `budget`: the run's seconds; `start`: the seconds already spent (a resumed run's) when the warm-up starts. */
  constructor(readonly budget: number, readonly start: number) {}

  /** A warm-up step ended at `seconds` (of the run): whether the warm-up is over. */
  step(seconds: number): boolean {
    this.#ends.push(seconds - this.start);
    const share = this.#seconds / this.budget;
    return (this.steps >= WARMUP.steps && share >= WARMUP.share) || share >= WARMUP.maxShare;
  }

  /** The warm-up's steps so far. */
  get steps(): number {
    return this.#ends.length;
  }

  get #seconds(): number {
    return this.#ends[this.#ends.length - 1] ?? 0;
  }

  /**
   * The measured steps per second: 1 / the median duration of the later half's steps (after step
   * floor(n / 2); the median, so that one step slowed by another process does not set the span),
   * or the one step's.
   */
  get rate(): number {
    const h = Math.floor(this.steps / 2);
    if (h === 0) return this.steps / Math.max(1e-9, this.#seconds);
    const d = this.#ends.slice(h).map((end, k) => end - this.#ends[h - 1 + k]!).sort((a, b) => a - b);
    const m = d.length % 2 ? d[(d.length - 1) / 2]! : (d[d.length / 2 - 1]! + d[d.length / 2]!) / 2;
    return 1 / Math.max(1e-9, m);
  }

  /** The span, for `left` seconds of the budget at `rate` steps per second (0 steps: nothing fits). */
  span(left: number, rate = this.rate): Extract<ScheduleSpan, { from: "seconds" }> {
    return { steps: Math.max(0, Math.floor(left * rate)), from: "seconds", budget: this.budget, warmupSteps: this.steps, warmupSeconds: this.#seconds, stepsPerSecond: rate };
  }
}

/** "cosine over 2077 steps, estimated after 20 warm-up steps (0.85 s) at 34.6 steps/s for the 60 s budget". */
export function describeSpan(kind: ScheduleKind, span: ScheduleSpan): string {
  const over = `${kind} over ${span.steps} steps`;
  if (span.from === "steps") return over;
  return `${over}, estimated after ${span.warmupSteps} warm-up step${span.warmupSteps === 1 ? "" : "s"} (${span.warmupSeconds.toFixed(2)} s) at ${span.stepsPerSecond.toPrecision(3)} steps/s for the ${span.budget} s budget`;
}

/** tiny-cuda-nn's learning rate, the default where the span does not set one. */
export const FLAT_LR = 1e-2;

/**
 * The base learning rate when none is given (`optimizer.lr` unset): 1e-2, tiny-cuda-nn's, except
 * for a cosine or onecycle schedule spanning `steps` on data the field can fit exactly (`exact`:
 * the encoding has at least as many parameters as the data has values, a photograph at the default
 * sizes), where the best peak rate falls with the span: 2e-2 * (400 / steps)^1.3, at most 1.6e-2
 * (spans up to 475 steps). Measured on kodim01 (onecycle, pixel centres, plain L2; AMD EPYC Zen 5,
 * 7 December 2026): at 2400 steps 1e-2 gave 89.0 dB, 5e-3 98.5, 2.5e-3 108.6, 1.5e-3 110.8 and
 * 1e-3 95.3 (kodim05 alike). At 400 steps the four Kodak photographs of bench:defaults disagree
 * by more than the rate matters (1.6e-2 was the best of 1e-2, 1.4e-2, 1.6e-2, 1.8e-2 and 2e-2 on
 * kodim05 and kodim13, 0.35 and 0.43 dB below 2e-2 on kodim01 and kodim23; docs/training.md). Such a fit converges
 * geometrically, and Adam moves every parameter by about the rate per step whatever its gradient:
 * the rate that reaches a good fit soonest also ends a long run furthest from the exact one. Where
 * the field cannot fit its data exactly (scattered points, a photograph with more values than the
 * encoding has parameters) none of this was measured, and the rate stays 1e-2.
 */
export function defaultLearningRate(kind: ScheduleKind, steps: number | undefined, exact: boolean): number {
  if (!exact || steps === undefined || !spansSteps(kind)) return FLAT_LR;
  return Math.min(1.6e-2, 2e-2 * (400 / Math.max(1, steps)) ** 1.3);
}

/** A schedule's memory, as JSON: only plateau has any. best is null before the first observation. */
export type ScheduleState =
  | { kind: "none" | "cosine" | "onecycle" }
  | { kind: "plateau"; best: number | null; badEpochs: number; factor: number; observations: number };

export interface Schedule {
  readonly spec: ScheduleSpec;
  readonly totalSteps: number;
  /** The factor of the base learning rate for 0-based `step` (the step about to run). */
  factor(step: number): number;
  /** A held-out loss (plateau reacts; the others ignore it). */
  observe(heldOutLoss: number): void;
  state(): ScheduleState;
}

function checkStep(step: number): void {
  if (!Number.isSafeInteger(step) || step < 0) throw new RangeError(`schedule: step ${step} is not an integer >= 0`);
}

/** PyTorch's _annealing_cos: from start (pct 0) to end (pct 1). */
const annealCos = (start: number, end: number, pct: number) => end + ((start - end) / 2) * (Math.cos(Math.PI * pct) + 1);

/** The cosine schedule's factor at `step` (pure). */
export function cosineFactor(s: { warmupSteps: number; minFactor: number }, totalSteps: number, step: number): number {
  if (step < s.warmupSteps) return step / s.warmupSteps;
  const progress = Math.min(1, (step - s.warmupSteps) / Math.max(1, totalSteps - s.warmupSteps));
  return s.minFactor + (1 - s.minFactor) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

/** PyTorch's OneCycleLR (anneal_strategy "cos", three_phase false) divided by max_lr (pure). */
export function oneCycleFactor(s: { pctStart: number; divFactor: number; finalDivFactor: number }, totalSteps: number, step: number): number {
  const initial = 1 / s.divFactor;
  const min = initial / s.finalDivFactor;
  const phases = [
    { end: s.pctStart * totalSteps - 1, from: initial, to: 1 },
    { end: totalSteps - 1, from: 1, to: min },
  ];
  const t = Math.min(step, totalSteps - 1); // PyTorch raises past the end; we hold the final value
  let start = 0;
  for (let k = 0; k < phases.length; k++) {
    const p = phases[k]!;
    if (t <= p.end || k === phases.length - 1) {
      const span = p.end - start;
      return annealCos(p.from, p.to, span > 0 ? (t - start) / span : 1);
    }
    start = p.end;
  }
  throw new Error("unreachable");
}

/**
 * A schedule for `spec` over `totalSteps` steps; `state` (from state()) continues one exactly. The
 * spec is validated (defaults filled), so a ScheduleSpecInput works too.
 */
export function makeSchedule(spec: ScheduleSpec | ScheduleSpecInput, totalSteps: number, state?: ScheduleState): Schedule {
  const s = parseScheduleSpec(spec);
  if (!Number.isSafeInteger(totalSteps) || totalSteps < 1) throw new ConfigError(`schedule: totalSteps ${totalSteps} is not allowed (allowed: an integer >= 1)`);
  if (state !== undefined && (state === null || typeof state !== "object" || state.kind !== s.kind))
    throw new Error(`schedule state: it is for a ${show((state as { kind?: unknown } | null)?.kind)} schedule, this schedule is ${s.kind}`);
  switch (s.kind) {
    case "none":
      return pure(s, totalSteps, () => 1);
    case "cosine":
      return pure(s, totalSteps, (step) => cosineFactor(s, totalSteps, step));
    case "onecycle":
      return pure(s, totalSteps, (step) => oneCycleFactor(s, totalSteps, step));
    case "plateau":
      return new Plateau(s, totalSteps, state as Extract<ScheduleState, { kind: "plateau" }> | undefined);
  }
}

function pure(spec: ScheduleSpec, totalSteps: number, f: (step: number) => number): Schedule {
  return {
    spec, totalSteps,
    factor(step) {
      checkStep(step);
      return f(step);
    },
    observe() {},
    state: () => ({ kind: spec.kind as "none" | "cosine" | "onecycle" }),
  };
}

class Plateau implements Schedule {
  #best: number; // Infinity before the first observation (null in the JSON state)
  #bad = 0;
  #factor = 1;
  #observations = 0;

  constructor(readonly spec: Extract<ScheduleSpec, { kind: "plateau" }>, readonly totalSteps: number, state?: Extract<ScheduleState, { kind: "plateau" }>) {
    this.#best = Infinity;
    if (state) {
      const { best, badEpochs, factor, observations } = state;
      const ok = (best === null || typeof best === "number") && Number.isSafeInteger(badEpochs) && badEpochs >= 0 && typeof factor === "number" && factor > 0 && factor <= 1 && Number.isSafeInteger(observations) && observations >= 0;
      if (!ok) throw new Error(`schedule state: not a plateau state: ${JSON.stringify(state)}`);
      this.#best = best ?? Infinity;
      this.#bad = badEpochs;
      this.#factor = factor;
      this.#observations = observations;
    }
  }

  factor(step: number): number {
    checkStep(step);
    return this.#factor;
  }

  observe(loss: number): void {
    this.#observations++;
    // NaN is never an improvement (it counts as a bad evaluation, as in PyTorch).
    if (loss < this.#best * (1 - this.spec.threshold)) {
      this.#best = loss;
      this.#bad = 0;
    } else this.#bad++;
    if (this.#bad > this.spec.patience) {
      this.#factor = Math.max(this.#factor * this.spec.factor, this.spec.minFactor);
      this.#bad = 0;
    }
  }

  state(): ScheduleState {
    return { kind: "plateau", best: this.#best === Infinity ? null : this.#best, badEpochs: this.#bad, factor: this.#factor, observations: this.#observations };
  }
}

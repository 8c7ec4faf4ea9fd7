// The learning-rate schedules of train/schedule.ts against their defining formulas (written here
// independently), at several steps including the boundaries; plateau over a sequence of held-out
// losses, as PyTorch's ReduceLROnPlateau (mode min, relative threshold); state() through JSON
// continuing identically; zod refusals naming the field.
import { describe, expect, test } from "bun:test";
import { ConfigError } from "../../modules/options.ts";
import { defaultLearningRate, describeSpan, makeSchedule, parseScheduleSpec, ScheduleSpecSchema, spansSteps, Warmup, type ScheduleState } from "../../train/schedule.ts";

const close = (got: number, want: number) => expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-12 * Math.max(1, Math.abs(want)));

describe("none", () => {
  test("is 1 at every step; observations change nothing", () => {
    const s = makeSchedule({ kind: "none" }, 10);
    s.observe(1);
    s.observe(2);
    for (const t of [0, 1, 9, 10, 1000]) expect(s.factor(t)).toBe(1);
    expect(s.state()).toEqual({ kind: "none" });
  });
});

describe("cosine", () => {
  test("linear warmup from 0 to 1 over warmupSteps, then cosine from 1 to minFactor at totalSteps (held after)", () => {
    const W = 10, T = 110, m = 0.1;
    const s = makeSchedule({ kind: "cosine", warmupSteps: W, minFactor: m }, T);
    expect(s.factor(0)).toBe(0);
    expect(s.factor(1)).toBe(0.1);
    expect(s.factor(5)).toBe(0.5);
    close(s.factor(9), 0.9);
    expect(s.factor(10)).toBe(1); // end of warmup: the peak
    close(s.factor(60), m + (1 - m) / 2); // halfway through the decay
    close(s.factor(35), m + (1 - m) * (1 + Math.SQRT1_2) / 2); // a quarter: cos(pi/4)
    close(s.factor(85), m + (1 - m) * (1 - Math.SQRT1_2) / 2);
    close(s.factor(T - 1), m + (1 - m) * (1 + Math.cos(Math.PI * 99 / 100)) / 2);
    close(s.factor(T), m);
    close(s.factor(T + 50), m);
    // Monotone: rising during warmup, falling after.
    for (let t = 1; t <= T; t++) {
      if (t <= W) expect(s.factor(t)).toBeGreaterThan(s.factor(t - 1));
      else expect(s.factor(t)).toBeLessThan(s.factor(t - 1));
    }
  });

  test("defaults: no warmup (1 at step 0), minFactor 0.01", () => {
    const s = makeSchedule({ kind: "cosine" }, 100);
    expect(s.spec).toEqual({ kind: "cosine", warmupSteps: 0, minFactor: 0.01 });
    expect(s.factor(0)).toBe(1);
    close(s.factor(50), 0.01 + 0.99 / 2);
    close(s.factor(100), 0.01);
  });

  test("warmup as long as the run, and a one-step run", () => {
    const s = makeSchedule({ kind: "cosine", warmupSteps: 20, minFactor: 0 }, 10);
    expect(s.factor(9)).toBe(0.45);
    expect(s.factor(20)).toBe(1);
    const one = makeSchedule({ kind: "cosine", minFactor: 0.5 }, 1);
    expect(one.factor(0)).toBe(1);
    close(one.factor(1), 0.5);
  });
});

describe("onecycle (PyTorch OneCycleLR, cosine annealing, two phases)", () => {
  // Independently: phase 1 rises from 1/div to 1 over steps 0..pct*T-1, phase 2 falls to
  // 1/(div*finalDiv) over the rest, each as a half cosine.
  function reference(t: number, T: number, pct: number, div: number, fin: number): number {
    const lo = 1 / div, end = lo / fin, peak = pct * T - 1;
    if (t <= peak) return lo + (1 - lo) * (1 - Math.cos(Math.PI * t / peak)) / 2;
    return end + (1 - end) * (1 + Math.cos(Math.PI * (t - peak) / (T - 1 - peak))) / 2;
  }

  test("defaults (pctStart 0.3, divFactor 25, finalDivFactor 1e4): start, peak, end and between", () => {
    const T = 100;
    const s = makeSchedule({ kind: "onecycle" }, T);
    expect(s.spec).toEqual({ kind: "onecycle", pctStart: 0.3, divFactor: 25, finalDivFactor: 1e4 });
    close(s.factor(0), 1 / 25);
    expect(s.factor(29)).toBe(1); // pct_start * total - 1
    close(s.factor(99), 1 / (25 * 1e4));
    close(s.factor(150), 1 / (25 * 1e4)); // held past the end (PyTorch raises)
    for (const t of [1, 7, 14, 28, 30, 31, 50, 64, 98]) close(s.factor(t), reference(t, T, 0.3, 25, 1e4));
    for (let t = 1; t < T; t++) {
      if (t <= 29) expect(s.factor(t)).toBeGreaterThan(s.factor(t - 1));
      else expect(s.factor(t)).toBeLessThan(s.factor(t - 1));
    }
  });

  test("other settings, a fractional peak step, and tiny runs stay finite", () => {
    const s = makeSchedule({ kind: "onecycle", pctStart: 0.25, divFactor: 10, finalDivFactor: 100 }, 50); // peak at 11.5
    for (const t of [0, 5, 11, 12, 30, 49]) close(s.factor(t), reference(t, 50, 0.25, 10, 100));
    for (const T of [1, 2, 3, 4]) {
      const tiny = makeSchedule({ kind: "onecycle" }, T);
      for (let t = 0; t <= T; t++) expect(Number.isFinite(tiny.factor(t))).toBe(true);
      close(tiny.factor(T - 1), 1 / 25e4);
    }
  });
});

describe("plateau (PyTorch ReduceLROnPlateau, mode min, relative threshold)", () => {
  test("a sequence of held-out losses: reductions after more than `patience` bad evaluations, floor at minFactor", () => {
    const s = makeSchedule({ kind: "plateau", patience: 2, factor: 0.5, minFactor: 0.2, threshold: 0.1 }, 1000);
    expect(s.state()).toEqual({ kind: "plateau", best: null, badEpochs: 0, factor: 1, observations: 0 });
    const seq: [number, number, number][] = [
      // loss, factor after, bad count after
      [1.0, 1, 0], // first: the best
      [0.95, 1, 1], // not below 1.0 * (1 - 0.1)
      [0.92, 1, 2],
      [0.91, 0.5, 0], // third bad evaluation > patience 2: reduce, count restarts
      [0.5, 0.5, 0], // an improvement
      [0.46, 0.5, 1], // 0.46 is not below 0.5 * 0.9 = 0.45
      [0.44, 0.5, 0], // but 0.44 is
      [0.6, 0.5, 1],
      [NaN, 0.5, 2], // NaN is never an improvement
      [0.6, 0.25, 0],
      [0.6, 0.25, 1], [0.6, 0.25, 2], [0.6, 0.2, 0], // 0.125 clamped to minFactor 0.2
      [0.6, 0.2, 1], [0.6, 0.2, 2], [0.6, 0.2, 0], // stays at the floor
    ];
    for (const [loss, f, bad] of seq) {
      s.observe(loss);
      expect(s.factor(123)).toBe(f);
      expect((s.state() as Extract<ScheduleState, { kind: "plateau" }>).badEpochs).toBe(bad);
    }
    expect(s.state()).toEqual({ kind: "plateau", best: 0.44, badEpochs: 0, factor: 0.2, observations: seq.length });
  });

  test("defaults: patience 3, factor 0.5, minFactor 1e-3, threshold 1e-4", () => {
    const s = makeSchedule({ kind: "plateau" }, 10);
    expect(s.spec).toEqual({ kind: "plateau", patience: 3, factor: 0.5, minFactor: 1e-3, threshold: 1e-4 });
    s.observe(1);
    for (let k = 0; k < 3; k++) s.observe(0.99995); // within the threshold: no improvement
    expect(s.factor(0)).toBe(1);
    s.observe(1);
    expect(s.factor(0)).toBe(0.5);
  });

  test("state through JSON continues identically (best, bad count, factor)", () => {
    const spec = { kind: "plateau", patience: 1, factor: 0.3, minFactor: 0.01, threshold: 0.05 } as const;
    const losses = [5, 4, 4.1, 4.2, 3, 3.5, 3.4, 2, 2.5, 2.4, 2.3, 1, 1, 1, 1, 1, 1, 1];
    const a = makeSchedule(spec, 100);
    for (const l of losses.slice(0, 7)) a.observe(l);
    const saved = JSON.parse(JSON.stringify(a.state()));
    const b = makeSchedule(spec, 100, saved);
    expect(b.state()).toEqual(a.state());
    for (const l of losses.slice(7)) {
      a.observe(l);
      b.observe(l);
      expect(b.factor(0)).toBe(a.factor(0));
      expect(b.state()).toEqual(a.state());
    }
    // Before any observation best is null (Infinity is not JSON), and restores as no best.
    const fresh = makeSchedule(spec, 100, JSON.parse(JSON.stringify(makeSchedule(spec, 100).state())));
    fresh.observe(1e30);
    expect((fresh.state() as { best: number }).best).toBe(1e30);
  });

  test("the pure schedules' state round trip gives the same factors; a state of another kind is refused", () => {
    for (const spec of [{ kind: "cosine", warmupSteps: 3 }, { kind: "onecycle" }, { kind: "none" }] as const) {
      const a = makeSchedule(spec, 40);
      const b = makeSchedule(spec, 40, JSON.parse(JSON.stringify(a.state())));
      for (let t = 0; t <= 40; t++) expect(b.factor(t)).toBe(a.factor(t));
    }
    expect(() => makeSchedule({ kind: "plateau" }, 10, { kind: "cosine" })).toThrow(/for a "cosine" schedule, this schedule is plateau/);
  });
});

describe("validation", () => {
  const refused = (input: unknown, message: RegExp) => {
    expect(() => parseScheduleSpec(input)).toThrow(ConfigError);
    expect(() => parseScheduleSpec(input)).toThrow(message);
    // The schema's own messages name the field too (for a config schema that embeds it).
    const r = ScheduleSpecSchema.safeParse(input);
    expect(r.success).toBe(false);
  };

  test("each bad field is named, with its value and what is allowed", () => {
    refused({ kind: "step" }, /^schedule\.kind: "step" is not allowed \(allowed: none, cosine, onecycle, plateau\)$/);
    refused({}, /^schedule\.kind: missing/);
    refused(7, /^schedule: 7 is not an object/);
    refused({ kind: "cosine", warmupSteps: -1 }, /^schedule\.warmupSteps: -1 is out of range \(allowed: an integer >= 0\)$/);
    refused({ kind: "cosine", warmupSteps: 2.5 }, /^schedule\.warmupSteps: 2\.5 is not an integer/);
    refused({ kind: "cosine", minFactor: 1.5 }, /^schedule\.minFactor: 1\.5 is out of range \(allowed: a number in \[0, 1\]\)$/);
    refused({ kind: "onecycle", pctStart: 1 }, /^schedule\.pctStart: 1 is out of range \(allowed: a number in \(0, 1\)\)$/);
    refused({ kind: "onecycle", divFactor: 0.5 }, /^schedule\.divFactor: 0\.5 is out of range/);
    refused({ kind: "onecycle", finalDivFactor: "big" }, /^schedule\.finalDivFactor: "big" is not a number/);
    refused({ kind: "plateau", patience: -2 }, /^schedule\.patience: -2 is out of range/);
    refused({ kind: "plateau", factor: 1 }, /^schedule\.factor: 1 is out of range \(allowed: a number in \(0, 1\)\)$/);
    refused({ kind: "plateau", threshold: NaN }, /^schedule\.threshold: NaN is not a finite number/);
    refused({ kind: "plateau", minFactor: -1 }, /^schedule\.minFactor: -1 is out of range/);
    refused({ kind: "plateau", patience: 3, lr: 1 }, /^schedule: unknown option "lr" \(options of a plateau schedule: kind, patience, factor, minFactor, threshold\)$/);
    // Every problem, one line each.
    expect(() => parseScheduleSpec({ kind: "plateau", patience: -1, factor: 2 }, "train.schedule")).toThrow(/^train\.schedule\.patience: .*\ntrain\.schedule\.factor: /);
    expect(ScheduleSpecSchema.safeParse({ kind: "plateau", factor: 2 }).error?.issues[0]?.message).toBe("factor: 2 is out of range (allowed: a number in (0, 1))");
  });

  test("makeSchedule validates its spec, totalSteps and steps", () => {
    expect(() => makeSchedule({ kind: "cosine", warmupSteps: -1 } as never, 10)).toThrow(/warmupSteps/);
    expect(() => makeSchedule({ kind: "none" }, 0)).toThrow(/totalSteps 0/);
    expect(() => makeSchedule({ kind: "none" }, 1.5)).toThrow(/totalSteps 1.5/);
    expect(() => makeSchedule({ kind: "none" }, 10).factor(-1)).toThrow(/step -1/);
  });
});

describe("a time budget's span (Warmup): the steps the budget has left at the rate measured in a warm-up", () => {
  test("the warm-up ends after 10 steps and 4% of the budget, or at 10%; the rate is the later half's median step", () => {
    const w = new Warmup(100, 10); // a 100 s budget, 10 s already spent (a resumed run)
    // The first step takes 1 s (first use), the others 0.1 s: step k ends at 1.0 + 0.1 (k - 1) s.
    for (let k = 1; k < 31; k++) expect(w.step(10 + 1.0 + 0.1 * (k - 1))).toBe(false); // 10 steps at 1.9 s: under 4%
    expect(w.step(10 + 4.0)).toBe(true); // step 31 at 4 s: 4% of the budget
    close(w.rate, 10); // the median step of steps 16..31: 0.1 s
    expect(w.span(80)).toMatchObject({ steps: 800, from: "seconds", budget: 100, warmupSteps: 31, warmupSeconds: 4 });
    close(w.span(80).stepsPerSecond, 10);
    expect(w.span(80.2, 0.5).steps).toBe(40); // floor; a rate given (tests)
    expect(w.span(-1).steps).toBe(0); // no room: the trainer refuses it
    const slow = new Warmup(60, 0);
    expect(slow.step(3)).toBe(false);
    expect(slow.step(6.5)).toBe(true); // 2 steps, past 10% of the budget
    close(slow.rate, 1 / 3.5);
    // One slow step (another process) in the later half does not move the median.
    const hiccup = new Warmup(100, 0);
    for (let k = 1; k <= 20; k++) hiccup.step(0.5 + 0.05 * k + (k >= 15 ? 1 : 0)); // step 15 took 1.05 s
    close(hiccup.rate, 20);
    const one = new Warmup(10, 0);
    expect(one.step(2)).toBe(true); // one step past 10%: its own rate
    close(one.rate, 0.5);
  });

  test("a cosine schedule over the decided steps reaches its floor at the last of them; described for the log", () => {
    const span = new Warmup(60, 0);
    for (let k = 1; k <= 20; k++) span.step(0.3 + (k - 1) / 34.6);
    const s = span.span(60 - span.span(0).warmupSeconds);
    const c = makeSchedule({ kind: "cosine" }, s.steps);
    expect(c.factor(s.steps)).toBe(0.01);
    expect(c.factor(s.steps - 1)).toBeGreaterThan(0.01);
    expect(describeSpan("cosine", s)).toMatch(/^cosine over \d+ steps, estimated after 20 warm-up steps \(0\.85 s\) at 34\.6 steps\/s for the 60 s budget$/);
    expect(describeSpan("onecycle", { steps: 50, from: "steps" })).toBe("onecycle over 50 steps");
    expect([spansSteps("cosine"), spansSteps("onecycle"), spansSteps("plateau"), spansSteps("none")]).toEqual([true, true, false, false]);
  });
});

describe("the default learning rate (defaultLearningRate)", () => {
  test("1e-2 unless a cosine or onecycle schedule spans known steps on data the field can fit exactly; then 2e-2 * (400 / steps)^1.3, at most 1.6e-2", () => {
    expect(defaultLearningRate("onecycle", 400, true)).toBe(1.6e-2);
    expect(defaultLearningRate("onecycle", 50, true)).toBe(1.6e-2);
    expect(defaultLearningRate("onecycle", 500, true)).toBeCloseTo(2e-2 * 0.8 ** 1.3, 15);
    expect(defaultLearningRate("cosine", 2400, true)).toBeCloseTo(2e-2 * 6 ** -1.3, 15);
    expect(defaultLearningRate("onecycle", 2400, true)).toBeLessThan(2.5e-3);
    expect(defaultLearningRate("onecycle", 2400, true)).toBeGreaterThan(1.5e-3);
    for (const [kind, steps, exact] of [["none", 400, true], ["plateau", 400, true], ["onecycle", undefined, true], ["onecycle", 400, false]] as const)
      expect(defaultLearningRate(kind, steps, exact)).toBe(1e-2);
  });
});

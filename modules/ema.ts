// An exponential moving average of parameter groups (the encoding, the network), used for
// evaluation and outputs: after each optimizer step, ema = decay * ema + (1 - decay) * param
// (dsl/kernels/ema.ts, one launch per group). swap() exchanges the parameters and the averages in
// place on the device, so evaluation runs on the averaged weights with no copy to the host; a
// second swap() puts the trained weights back. A group with `touched` (sparse updates) is averaged
// on the rows its step touched only: an untouched row's average stays as it is (the dense update
// would move it toward its parameters, which did not change).
import { resolve } from "node:path";
import { z } from "zod";
import type { DeviceBuffer } from "../runtime/buffer.ts";
import { loadKernels, type KernelModule } from "./load.ts";
import { touchedRuns, type LoadSettings, type TouchedBits, type TouchedSource } from "./common.ts";
import { ConfigError, parseOptions } from "./options.ts";

export const EMA_KERNELS = resolve(import.meta.dir, "../dsl/kernels/ema.ts");

export const EmaOptions = z
  .object({
    /** tiny-cuda-nn's and the research pipeline's default. */
    decay: z.number().min(0).lt(1).default(0.999),
  })
  .strict();

const ALLOWED: Record<string, string> = { decay: "a number in [0, 1)" };

export type EmaOptionsInput = z.input<typeof EmaOptions>;
export type EmaSettings = z.output<typeof EmaOptions>;

/** A group of parameters to average. */
export interface EmaGroup {
  name: string;
  params: DeviceBuffer<"f32">;
  /** Sparse updates: the rows the step touched, as a bitmap (asked once per update). */
  touched?: TouchedSource<TouchedBits>;
}

/** Everything a checkpoint needs to continue the average exactly. */
export interface EmaState {
  decay: number;
  /** Updates so far. */
  steps: number;
  groups: { name: string; ema: Float32Array }[];
}

interface Group extends EmaGroup {
  ema: DeviceBuffer<"f32">;
}

export class Ema {
  #steps = 0;
  #swapped = false;
  #decay: number;

  private constructor(
    settings: EmaSettings,
    private readonly groups: Group[],
    private readonly mod: KernelModule,
    /** Per row width of the sparse groups, emaUpdateSparse specialized for it. */
    private readonly rowMods: Map<number, KernelModule>,
  ) {
    this.#decay = settings.decay;
  }

  /**
   * An average of `groups` starting equal to their parameters now. The kernels run on `load.backend`
   * (default: the parameters' backend).
   */
  static async create(groups: EmaGroup[], options: EmaOptionsInput = {}, load: LoadSettings = {}): Promise<Ema> {
    const s = parseOptions(EmaOptions, options, "ema", ALLOWED);
    const names = new Set<string>();
    for (const g of groups) {
      if (names.has(g.name)) throw new ConfigError(`ema: two parameter groups are named ${JSON.stringify(g.name)}`);
      names.add(g.name);
      if (g.params.elem !== "f32") throw new ConfigError(`ema: group ${g.name} holds ${g.params.elem} parameters (allowed: f32)`);
      if (g.params.backend !== groups[0]!.params.backend) throw new ConfigError(`ema: group ${g.name} is on ${g.params.backend}, group ${groups[0]!.name} on ${groups[0]!.params.backend}`);
    }
    const backend = load.backend ?? groups[0]?.params.backend;
    // Unchecked: every launch covers exactly the group's elements, and the EMA has the same length.
    const mod = await loadKernels(EMA_KERNELS, { kernels: ["emaUpdate", "swapBuffers", "copyBuffer"], backend, cacheDir: load.cacheDir, log: load.log, boundsChecks: false });
    const rowMods = new Map<number, KernelModule>();
    for (const width of new Set(groups.flatMap((g) => (g.touched ? [g.touched.width] : []))))
      rowMods.set(width, await loadKernels(EMA_KERNELS, { config: { width }, kernels: ["emaUpdateSparse"], backend, cacheDir: load.cacheDir, log: load.log, boundsChecks: false }));
    const full = groups.map((g): Group => {
      const ema = mod.alloc("f32", g.params.length);
      if (g.params.length > 0) mod.kernels.copyBuffer!(g.params.length, g.params, ema);
      return { ...g, ema };
    });
    return new Ema(s, full, mod, rowMods);
  }

  get decay(): number {
    return this.#decay;
  }

  /** Updates so far. */
  get steps(): number {
    return this.#steps;
  }

  /** Whether the parameter buffers hold the averages now (between two swap() calls). */
  get swapped(): boolean {
    return this.#swapped;
  }

  /** The kernels' backend. */
  get backend(): string {
    return this.mod.backend;
  }

  /** One update of every group, after each optimizer step. */
  update(): void {
    if (this.#swapped) throw new Error("ema: update() while the averages are swapped in (call swap() again first)");
    this.#steps++;
    const decay = this.effectiveDecay(this.#steps);
    for (const g of this.groups) {
      if (g.touched) {
        const t = g.touched.get();
        const k = this.rowMods.get(t.width)!.kernels;
        for (const { first, word, words } of touchedRuns(t)) k.emaUpdateSparse!(words, t.bitmap, word, first, g.params, g.ema, decay);
      } else if (g.params.length > 0) this.mod.kernels.emaUpdate!(g.params.length, g.params, g.ema, decay);
    }
  }

  /**
   * The decay at update `t` (1-based): min(decay, (1 + t) / (10 + t)), as TensorFlow's moving
   * average with num_updates, so that early in a run the average follows the parameters instead of
   * staying near their initial values (a 0.999 average needs thousands of steps to forget them).
   * The product of these decays weighs update s of t by about 9 s^8 / t^9: until the decay is
   * reached (t near 9,000) the average is of the last tenth of the run and lags it by about t/10
   * steps, which costs more than it smooths while the parameters still improve fast. The trainer
   * therefore evaluates and writes the average only where its held-out error is the lower
   * (train/trainer.ts chooseWeights).
   */
  effectiveDecay(t: number): number {
    return Math.min(this.#decay, (1 + t) / (10 + t));
  }

  /** Exchanges the parameters and the averages of every group; call again to swap back. */
  swap(): void {
    for (const g of this.groups) if (g.params.length > 0) this.mod.kernels.swapBuffers!(g.params.length, g.params, g.ema);
    this.#swapped = !this.#swapped;
  }

  /** The averages (wherever they are: swapped in or not). */
  state(): EmaState {
    return { decay: this.#decay, steps: this.#steps, groups: this.averages().map((g) => ({ name: g.name, ema: g.ema.download() })) };
  }

  /** The buffers that hold the averages now (swapped in or not), for a checkpoint to download one at a time. */
  averages(): { name: string; ema: DeviceBuffer<"f32"> }[] {
    return this.groups.map((g) => ({ name: g.name, ema: this.#swapped ? g.params : g.ema }));
  }

  /** Continue from a saved state: every group, same sizes (the decay and the step count too). */
  restore(state: EmaState): void {
    if (this.#swapped) throw new Error("ema: restore() while the averages are swapped in (call swap() again first)");
    if (!(typeof state.decay === "number" && state.decay >= 0 && state.decay < 1)) throw new Error(`ema state: decay ${state.decay} is not a number in [0, 1)`);
    if (!(Number.isSafeInteger(state.steps) && state.steps >= 0)) throw new Error(`ema state: steps ${state.steps} is not an integer >= 0`);
    for (const saved of state.groups) {
      if (!this.groups.some((g) => g.name === saved.name)) throw new Error(`ema state: group ${JSON.stringify(saved.name)} is not one of this average's (${this.groups.map((g) => g.name).join(", ")})`);
    }
    const data = this.groups.map((g) => {
      const saved = state.groups.find((x) => x.name === g.name);
      if (!saved) throw new Error(`ema state: no values for group ${g.name}`);
      if (!(saved.ema instanceof Float32Array) || saved.ema.length !== g.ema.length)
        throw new Error(`ema state: group ${g.name} has ${saved.ema?.length ?? 0} values, expected ${g.ema.length}`);
      return saved.ema;
    });
    this.groups.forEach((g, k) => g.ema.upload(data[k]!));
    this.#decay = state.decay;
    this.#steps = state.steps;
  }

  close(): void {
    for (const g of this.groups) g.ema.dispose();
    this.mod.close();
    for (const m of this.rowMods.values()) m.close();
  }
}

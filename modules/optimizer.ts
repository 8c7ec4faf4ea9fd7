// Optimizers over parameter groups (the encoding, the network, later the probing logits), each
// with its own learning rate and L2 weight decay. One launch per group per step; the gradient is
// zeroed in the same pass (dsl/kernels/optimizer.ts), ready for the next step's backward passes.
// With `sparse`, a group that lists the rows its step touched (`touched`: the encoding's table
// entries, the probing logits' codebook rows) is updated on those rows only, one launch per range:
// lazy Adam (see dsl/kernels/optimizer.ts and docs/training.md, "Sparse updates").
import { resolve } from "node:path";
import { z } from "zod";
import type { DeviceBuffer } from "../runtime/buffer.ts";
import { loadKernels, type KernelModule } from "./load.ts";
import { touchedRuns, type LoadSettings, type TouchedBits, type TouchedRows, type TouchedSource } from "./common.ts";
import { ConfigError, parseOptions } from "./options.ts";

export const OPTIMIZER_KERNELS = resolve(import.meta.dir, "../dsl/kernels/optimizer.ts");

export const OptimizerOptions = z
  .object({
    kind: z.enum(["adam", "sgd"]).default("adam"),
    /** Defaults as tiny-cuda-nn's image sample. */
    lr: z.number().positive().max(1e6).default(1e-2),
    beta1: z.number().min(0).lt(1).default(0.9),
    beta2: z.number().min(0).lt(1).default(0.99),
    eps: z.number().positive().max(1).default(1e-15),
    weightDecay: z.number().min(0).max(1e6).default(0),
    /** Sparse (lazy) updates of the groups that list their touched rows; dense (PyTorch's semantics) otherwise. */
    sparse: z.boolean().default(false),
  })
  .strict();

const ALLOWED: Record<string, string> = {
  kind: "adam, sgd",
  lr: "a number > 0",
  beta1: "a number in [0, 1)",
  beta2: "a number in [0, 1)",
  eps: "a number in (0, 1]",
  weightDecay: "a number >= 0",
  sparse: "true, false",
};

export type OptimizerOptionsInput = z.input<typeof OptimizerOptions>;
export type OptimizerSettings = z.output<typeof OptimizerOptions>;

/**
 * A group of parameters with its gradient; lr and weightDecay default to the optimizer's. f16
 * parameters (mixed precision) are updated through f32 master weights that the optimizer keeps:
 * the step runs on the master, then rounds it into the parameters.
 */
export interface ParamGroup {
  name: string;
  params: DeviceBuffer<"f32"> | DeviceBuffer<"f16">;
  grad: DeviceBuffer<"f32">;
  lr?: number;
  weightDecay?: number;
  /**
   * Rows of `width` parameters whose argmax and softmax the step writes in the same pass
   * (learned probing's logits, probe table and slot probabilities). The group's gradient is taken
   * with respect to each row's softmax; the step applies the softmax's Jacobian per row. f32 groups only.
   */
  rows?: { width: number; argmax: DeviceBuffer<"u32">; softmax: DeviceBuffer<"f32"> };
  /**
   * Sparse updates (settings.sparse): the rows of the group whose gradient the step's backward
   * passes wrote, asked once per step (a bitmap; a list for a group with `rows`); only they are
   * updated and their gradient cleared (the rest of the gradient must be zero). Without it, or
   * with sparse false, the whole group is updated.
   */
  touched?: TouchedSource;
}

/** Everything a checkpoint needs to continue the optimizer exactly (`master`: of f16 groups). */
export interface OptimizerState {
  step: number;
  groups: { name: string; lr: number; m?: Float32Array; v?: Float32Array; master?: Float32Array }[];
}

interface Group extends Required<Omit<ParamGroup, "rows" | "touched">>, Pick<ParamGroup, "rows" | "touched"> {
  /** The f32 weights the step updates: the parameters themselves, or an f16 group's master copy. */
  master: DeviceBuffer<"f32">;
  m?: DeviceBuffer<"f32">;
  v?: DeviceBuffer<"f32">;
}

const isHalf = (g: ParamGroup): boolean => g.params.elem === "f16";

export class Optimizer {
  #step = 0;
  private constructor(
    readonly settings: OptimizerSettings,
    private readonly groups: Group[],
    private readonly mod: KernelModule,
    /** Per row width of `rows` and sparse groups, the kernels specialized for it. */
    private readonly rowMods: Map<number, KernelModule>,
  ) {}

  static async create(groups: ParamGroup[], options: OptimizerOptionsInput = {}, load: LoadSettings = {}): Promise<Optimizer> {
    const s = parseOptions(OptimizerOptions, options, "optimizer", ALLOWED);
    const names = new Set<string>();
    for (const g of groups) {
      if (names.has(g.name)) throw new ConfigError(`optimizer: two parameter groups are named ${JSON.stringify(g.name)}`);
      names.add(g.name);
      if (g.params.length !== g.grad.length) throw new ConfigError(`optimizer: group ${g.name} has ${g.params.length} parameters but ${g.grad.length} gradient values`);
      for (const [k, v] of [["lr", g.lr], ["weightDecay", g.weightDecay]] as const)
        if (v !== undefined && !(Number.isFinite(v) && v >= 0)) throw new ConfigError(`optimizer: group ${g.name}: ${k} ${v} is not allowed (allowed: a finite number >= 0)`);
      const a = g.rows;
      if (a && (isHalf(g) || !Number.isInteger(a.width) || a.width < 1 || g.params.length !== a.width * a.argmax.length || a.softmax.length !== g.params.length))
        throw new ConfigError(`optimizer: group ${g.name}: rows need f32 parameters in rows of width ${a.width}, an argmax per row and a softmax per parameter (${g.params.length} parameters, ${a.argmax.length} and ${a.softmax.length} outputs)`);
    }
    const kernels = [s.kind === "adam" ? "adamStep" : "sgdStep", ...(groups.some(isHalf) ? ["storeHalf"] : [])];
    const mod = await loadKernels(OPTIMIZER_KERNELS, { kernels, backend: load.backend, cacheDir: load.cacheDir, log: load.log, boundsChecks: false });
    // Per width, the row kernels the groups need: rows (probing's logits), sparse (touched rows), sparse f16.
    const perWidth = new Map<number, Set<string>>();
    const need = (width: number, kernel: string) => perWidth.set(width, (perWidth.get(width) ?? new Set()).add(kernel));
    for (const g of groups) {
      const sparse = s.sparse && g.touched !== undefined;
      const width = g.rows?.width ?? (sparse ? g.touched!.width : 0);
      if (g.rows || sparse) need(width, `${s.kind}Step${g.rows ? "Rows" : ""}${sparse ? "Sparse" : ""}`);
      if (sparse && isHalf(g)) need(width, "storeHalfSparse");
    }
    const rowMods = new Map<number, KernelModule>();
    for (const [width, rowKernels] of perWidth)
      rowMods.set(width, await loadKernels(OPTIMIZER_KERNELS, { config: { width }, kernels: [...rowKernels], backend: load.backend, cacheDir: load.cacheDir, log: load.log, boundsChecks: false }));
    const full = groups.map((g): Group => ({
      ...g, lr: g.lr ?? s.lr, weightDecay: g.weightDecay ?? s.weightDecay, touched: s.sparse ? g.touched : undefined,
      master: isHalf(g) ? mod.upload("f32", g.params.download()) : (g.params as DeviceBuffer<"f32">),
      ...(s.kind === "adam" ? { m: mod.alloc("f32", g.params.length), v: mod.alloc("f32", g.params.length) } : {}),
    }));
    return new Optimizer(s, full, mod, rowMods);
  }

  /** Steps taken so far. */
  get step(): number {
    return this.#step;
  }

  learningRate(group: string): number {
    return this.group(group).lr;
  }

  /** Set a group's learning rate (schedules call this before each step). */
  setLearningRate(group: string, lr: number): void {
    if (!(Number.isFinite(lr) && lr >= 0)) throw new RangeError(`optimizer: learning rate ${lr} for group ${group} is not a finite number >= 0`);
    this.group(group).lr = lr;
  }

  private group(name: string): Group {
    const g = this.groups.find((x) => x.name === name);
    if (!g) throw new Error(`optimizer: no parameter group ${JSON.stringify(name)} (groups: ${this.groups.map((x) => x.name).join(", ")})`);
    return g;
  }

  /**
   * One step of every group; zeroes the gradients. `gradScale` multiplies the gradients (e.g.
   * K / j for a last group of j accumulated micro-batches whose losses were scaled by 1 / K).
   */
  update(opts: { gradScale?: number } = {}): void {
    const gradScale = opts.gradScale ?? 1;
    if (!(Number.isFinite(gradScale) && gradScale > 0)) throw new RangeError(`optimizer: gradScale ${gradScale} is not a finite number > 0`);
    this.#step++;
    const { beta1, beta2, eps } = this.settings;
    // tiny-cuda-nn folds both bias corrections into the step size (in double here, then f32).
    const correction = Math.sqrt(1 - beta2 ** this.#step) / (1 - beta1 ** this.#step);
    const adam = this.settings.kind === "adam";
    for (const g of this.groups) {
      if (g.touched) {
        this.sparseStep(g, g.touched.get(), adam ? g.lr * correction : g.lr, gradScale);
        continue;
      }
      if (g.rows) {
        const k = this.rowMods.get(g.rows.width)!.kernels;
        const { argmax, softmax } = g.rows;
        if (adam) k.adamStepRows!(argmax.length, g.master, g.grad, g.m!, g.v!, argmax, softmax, g.lr * correction, beta1, beta2, eps, g.weightDecay, gradScale);
        else k.sgdStepRows!(argmax.length, g.master, g.grad, argmax, softmax, g.lr, g.weightDecay, gradScale);
      } else if (adam) this.mod.kernels.adamStep!(g.master.length, g.master, g.grad, g.m!, g.v!, g.lr * correction, beta1, beta2, eps, g.weightDecay, gradScale);
      else this.mod.kernels.sgdStep!(g.master.length, g.master, g.grad, g.lr, g.weightDecay, gradScale);
    }
    this.sync(true);
  }

  /** One sparse step of group g on the rows `t` marks or lists (see the kernels' semantics, dsl/kernels/optimizer.ts). */
  private sparseStep(g: Group, t: TouchedRows | TouchedBits, rate: number, gradScale: number): void {
    const k = this.rowMods.get(t.width)!.kernels;
    const { beta1, beta2, eps } = this.settings;
    const adam = this.settings.kind === "adam";
    if ("list" in t) {
      if (!g.rows) throw new Error(`optimizer: group ${g.name}: a list of touched rows is for rows groups (table entries come as a bitmap)`);
      const { argmax, softmax } = g.rows;
      for (const { first, count } of touchedRuns(t)) {
        if (adam) k.adamStepRowsSparse!(count, t.list, first, g.master, g.grad, g.m!, g.v!, argmax, softmax, rate, beta1, beta2, eps, g.weightDecay, gradScale);
        else k.sgdStepRowsSparse!(count, t.list, first, g.master, g.grad, argmax, softmax, rate, g.weightDecay, gradScale);
      }
      return;
    }
    if (g.rows) throw new Error(`optimizer: group ${g.name}: a rows group's touched rows come as a list`);
    for (const { first, word, words } of touchedRuns(t)) {
      if (adam) k.adamStepSparse!(words, t.bitmap, word, first, words, g.master, g.grad, g.m!, g.v!, rate, beta1, beta2, eps, g.weightDecay, gradScale);
      else k.sgdStepSparse!(words, t.bitmap, word, first, g.master, g.grad, rate, g.weightDecay, gradScale);
      if (g.master !== g.params) k.storeHalfSparse!(words, t.bitmap, word, first, g.master, g.params);
    }
  }

  /** The f32 weights of a group: its parameters, or an f16 group's master copy. */
  master(group: string): DeviceBuffer<"f32"> {
    return this.group(group).master;
  }

  /**
   * Rounds f16 groups' master weights into their parameters (after the master changed, e.g. an EMA
   * swap); `stepped`: after a step, which rounded the sparse groups' touched rows itself.
   */
  sync(stepped = false): void {
    for (const g of this.groups) if (g.master !== g.params && !(stepped && g.touched)) this.mod.kernels.storeHalf!(g.master.length, g.master, g.params);
  }

  state(): OptimizerState {
    const { step, groups } = this.stateBuffers();
    return { step, groups: groups.map((g) => ({ name: g.name, lr: g.lr, m: g.m?.download(), v: g.v?.download(), ...(g.master ? { master: g.master.download() } : {}) })) };
  }

  /** What state() copies, as the buffers themselves (a checkpoint downloads them one at a time). */
  stateBuffers(): { step: number; groups: { name: string; lr: number; m?: DeviceBuffer<"f32">; v?: DeviceBuffer<"f32">; master?: DeviceBuffer<"f32"> }[] } {
    return { step: this.#step, groups: this.groups.map((g) => ({ name: g.name, lr: g.lr, m: g.m, v: g.v, ...(g.master !== g.params ? { master: g.master } : {}) })) };
  }

  /** Continue from a saved state (same groups, same sizes). */
  restore(state: OptimizerState): void {
    for (const saved of state.groups) {
      const g = this.group(saved.name);
      for (const [k, buf] of [["m", g.m], ["v", g.v]] as const) {
        const data = saved[k];
        if (!buf) continue;
        if (!data || data.length !== buf.length) throw new Error(`optimizer state: group ${saved.name} has ${data?.length ?? 0} values of ${k}, expected ${buf.length}`);
        buf.upload(data);
      }
      if (g.master !== g.params) {
        if (saved.master?.length !== g.master.length) throw new Error(`optimizer state: f16 group ${saved.name} has ${saved.master?.length ?? 0} master weights, expected ${g.master.length}`);
        g.master.upload(saved.master);
      }
      g.lr = saved.lr;
    }
    this.#step = state.step;
    this.sync();
  }

  close(): void {
    this.mod.close();
    for (const m of this.rowMods.values()) m.close();
  }
}

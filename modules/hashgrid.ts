// The multiresolution hash-grid encoding as a module: compiles the kernels of dsl/kernels/grid.ts
// for a configuration (hashgrid_config.ts: the settings, validated, and the per-level tables derived
// from them, re-exported here) and owns the parameters and their gradient.
import { isAbsolute, relative, resolve } from "node:path";
import { COUNT_STRIDE } from "../dsl/kernels/grid.ts";
import type { Backend } from "../runtime/backend.ts";
import { HostBuffer, type DeviceBuffer } from "../runtime/buffer.ts";
import { hostOrDevice, type LoadSettings, type TouchedBits, type TouchedRows, type TouchedSource } from "./common.ts";
import { ConfigError, type HashGridOptionsInput, type HashGridSettings, type GridLevel, type GridConfigValue, type GridPlacement, parseHashGridOptions, gridLevels, gridParamCount, gridConfig, gridKernels, lonePlacement, type ProbingLayout, probingLayout, type GridMemory, gridMemory, touchedWords } from "./hashgrid_config.ts";
import { loadKernels, type KernelModule } from "./load.ts";
import { seededUniform } from "./random.ts";

export * from "./hashgrid_config.ts";

export const GRID_KERNELS = resolve(import.meta.dir, "../dsl/kernels/grid.ts");

/**
 * Reads the settings' variant (codegen/parse.ts readVariant: its parts, a misspelled or missing
 * one refused as NGP1026) and checks what it declares it needs against the settings, before
 * anything is compiled or launched. `flags`: how the command's user sets each field, for the
 * message ("examples/variants/spacetime.ts needs --dims 4 (got 2)").
 */
export async function checkVariant(s: { variant?: string; dims: number; levels: number }, flags: { dims: string; levels: string } = { dims: "dims", levels: "levels" }): Promise<void> {
  if (s.variant === undefined) return;
  parseHashGridOptions({ dims: s.dims, levels: s.levels, variant: s.variant }); // a file that exists, first
  // The compiler's front end (ts-morph) is loaded when a variant is read, not by every command that imports this file.
  const { readVariant } = await import("../codegen/parse.ts");
  const { requires } = readVariant(s.variant, GRID_KERNELS);
  const near = relative(process.cwd(), s.variant);
  const file = near.startsWith("..") || isAbsolute(near) ? s.variant : near;
  if (requires.dims !== undefined && s.dims !== requires.dims) throw new ConfigError(`${file} needs ${flags.dims} ${requires.dims} (got ${s.dims})`);
  const m = requires.levelsMultipleOf;
  if (m !== undefined && s.levels % m !== 0) throw new ConfigError(`${file} needs ${flags.levels} a multiple of ${m} (got ${s.levels})`);
}

/**
 * Which kernels a grid builds: "all", or "training": all but the input gradient and the collision
 * statistics (a trainer never launches them, and each costs C++ build time).
 */
export type GridUse = "all" | "training";

/** Per level: distinct grid vertices touched and the fraction of them sharing a slot with another. */
export interface LevelCollisions {
  level: number;
  hashed: boolean;
  vertices: number;
  collidingFraction: number;
}


/** The index of the largest of each row of `width` values (the first of equals). */
export function argmaxRows(values: Float32Array, width: number): Uint32Array {
  const out = new Uint32Array(values.length / width);
  for (let r = 0; r < out.length; r++) {
    let best = 0;
    for (let p = 1; p < width; p++) if (values[r * width + p]! > values[r * width + best]!) best = p;
    out[r] = best;
  }
  return out;
}

/** Uniform(-1e-4, 1e-4) values from a seeded generator (mulberry32), so runs are reproducible. */
export function initParams(out: Float32Array, seed: number): void {
  const next = seededUniform(seed);
  for (let i = 0; i < out.length; i++) out[i] = (next() * 2 - 1) * 1e-4;
}

export class HashGrid {
  /** Parameters, level after level, [entry][feature], in the configured precision. */
  readonly params: DeviceBuffer<"f32" | "f16">;
  /** Gradient of the loss with respect to params (written by backward). */
  readonly grad: DeviceBuffer<"f32">;
  readonly paramCount: number;
  /** Encoding width: levels * featuresPerLevel. */
  readonly outputDim: number;
  /** Learned probing's layout (rows 0 without probing). */
  readonly probing: ProbingLayout;
  /**
   * Learned probing: the index codebooks' logits, [row][N_p] (rows of all probed levels); their
   * gradient as the backward accumulates it, with respect to each row's softmax (d loss / d s_p:
   * the straight-through gradient of the soft lookup sum_p s_p E[bucket + p]), which the
   * optimizer step maps to the logits through the softmax's Jacobian once per row (give it
   * `probeRows`; logitGradient() computes that map here); `probe`, the argmax slot of each row,
   * which the forward reads; and `softmax`, the rows' softmax. The optimizer step refreshes probe
   * and softmax from the logits; after changing the logits otherwise, call refreshProbes.
   * Placeholders of one element without probing.
   */
  readonly logits: DeviceBuffer<"f32">;
  readonly logitGrad: DeviceBuffer<"f32">;
  readonly probe: DeviceBuffer<"u32">;
  readonly softmax: DeviceBuffer<"f32">;
  /** The kernels it runs (see gridKernels). */
  readonly kernels: ReturnType<typeof gridKernels>;
  #lastX: DeviceBuffer<"f32"> | undefined;
  #lastN = 0;
  /** Sparse updates (trackTouched): the touched entries' bitmap and the lists of touched codebook rows. */
  #touch: TouchState | undefined;

  private constructor(
    readonly settings: HashGridSettings,
    readonly levels: GridLevel[],
    readonly config: GridConfigValue,
    private readonly mod: KernelModule,
    /** Where it sits in its encoding (a lone grid: the whole input and output rows). */
    readonly place: GridPlacement,
  ) {
    this.paramCount = gridParamCount(settings, levels);
    this.outputDim = settings.levels * settings.featuresPerLevel;
    const init = new Float32Array(this.paramCount);
    initParams(init, settings.seed);
    this.params = mod.upload(settings.precision, init);
    this.grad = mod.alloc("f32", this.paramCount);
    this.probing = probingLayout(settings, levels);
    this.kernels = gridKernels(settings);
    const logits = new Float32Array(Math.max(1, this.logitCount));
    // Small random logits: every row starts at a (seeded) random slot of its bucket.
    initParams(logits, settings.seed ^ 0x10c1);
    this.logits = mod.upload("f32", logits);
    this.logitGrad = mod.alloc("f32", logits.length);
    this.probe = mod.alloc("u32", Math.max(1, this.probing.rows));
    this.softmax = mod.alloc("f32", logits.length);
    this.refreshProbes();
  }

  /** The logits' rows as an Optimizer group's `rows`: the step keeps probe and softmax up to date. */
  get probeRows(): { width: number; argmax: DeviceBuffer<"u32">; softmax: DeviceBuffer<"f32"> } {
    return { width: this.probing.range, argmax: this.probe, softmax: this.softmax };
  }

  /**
   * d loss / d logits of the gradient accumulated in logitGrad: per row s_p (G_p - sum_q s_q G_q),
   * with s the rows' softmax (what the optimizer step applies, dsl/kernels/probe.ts logitGradRow),
   * computed here in float64 for inspection.
   */
  logitGradient(): Float64Array {
    const [g, s] = [this.logitGrad.download(), this.softmax.download()];
    const NP = this.probing.range;
    const out = new Float64Array(this.logitCount);
    for (let row = 0; row < this.probing.rows; row++) {
      let mean = 0;
      for (let p = 0; p < NP; p++) mean += s[row * NP + p]! * g[row * NP + p]!;
      for (let p = 0; p < NP; p++) out[row * NP + p] = s[row * NP + p]! * (g[row * NP + p]! - mean);
    }
    return out;
  }

  /** Logits of the index codebooks (0 without probing). */
  get logitCount(): number {
    return this.probing.rows * this.probing.range;
  }

  /** probe = the argmax (first of equals) and softmax = the softmax of each codebook row's logits. */
  refreshProbes(): void {
    if (this.probing.rows) this.mod.kernels.gridRefreshProbes!(this.probing.rows, this.logits, this.probe, this.softmax);
  }

  /** Memory of the encoding (see gridMemory). */
  memory(featureBytes: 2 | 4 = this.settings.precision === "f16" ? 2 : 4): GridMemory {
    return gridMemory(this.settings, this.levels, featureBytes);
  }

  /**
   * Validate `options`, derive the levels, and compile (or load from cache) the kernels. `place`:
   * where the grid reads its axes and writes its features in an encoding of several (Encoding,
   * modules/encoding.ts); by default a lone grid's (its dims in order, the whole output row).
   */
  static async create(options: HashGridOptionsInput, load: LoadSettings = {}, place?: GridPlacement, use: GridUse = "all"): Promise<HashGrid> {
    const settings = parseHashGridOptions(options);
    await checkVariant(settings);
    const levels = gridLevels(settings);
    place ??= lonePlacement(settings);
    const config = gridConfig(settings, levels, place);
    // Compile only the kernels this precision (and, for training, the trainer) uses: each costs C++ build time.
    const { derived: _, ...names } = gridKernels(settings);
    const kernels = Object.values(names).filter((k) => use === "all" || (k !== names.inputGrad && k !== names.slots));
    // Unchecked: every index is in range by construction (table offsets and sizes come from the
    // levels; forward and backward check the lengths of x, dy and out before each launch). A
    // variant's indices are the variant author's: checked.
    const mod = await loadKernels(GRID_KERNELS, {
      config, kernels, variant: settings.variant, backend: load.backend, cacheDir: load.cacheDir, log: load.log, boundsChecks: settings.variant !== undefined,
    });
    return new HashGrid(settings, levels, config, mod, place);
  }

  get backend(): Backend {
    return this.mod.backend;
  }

  /** A zeroed f32 buffer on this module's backend (e.g. for forward outputs reused across calls). */
  alloc(length: number): DeviceBuffer<"f32"> {
    return this.mod.alloc("f32", length);
  }

  /** x on this module's backend (a host array copied, a buffer as it is). */
  toDevice(x: Float32Array | DeviceBuffer<"f32">): DeviceBuffer<"f32"> {
    return hostOrDevice(this.mod, x);
  }

  close(): void {
    this.mod.close();
  }
  /** Why this backend was chosen. */
  get backendReason(): string {
    return this.mod.reason;
  }

  /** Refuses a kernel this grid did not build (created for "training", see GridUse). */
  private built(kernel: string): void {
    if (!this.mod.kernels[kernel]) throw new Error(`HashGrid: ${kernel} was not built (the grid was created for training only: HashGrid.create's use "all" builds it)`);
  }

  private points(x: Float32Array | DeviceBuffer<"f32">): { n: number; buf: DeviceBuffer<"f32"> } {
    const d = this.place.inputDims;
    if (x.length % d !== 0) throw new RangeError(`HashGrid.forward: ${x.length} input values are not a whole number of ${d}-D points`);
    return { n: x.length / d, buf: this.toDevice(x) };
  }

  /**
   * Encode points x ([n][inputDims], its axes clamped to [0, 1], NaN as 0) into its part of out
   * ([n][outputStride]; a lone grid: [n][outputDim]), returned.
   */
  forward(x: Float32Array | DeviceBuffer<"f32">, out?: DeviceBuffer<"f32">): DeviceBuffer<"f32"> {
    const { n, buf } = this.points(x);
    const width = this.place.outputStride;
    out ??= this.mod.alloc("f32", n * width);
    if (out.length !== n * width) throw new RangeError(`HashGrid.forward: out has ${out.length} values, expected ${n * width}`);
    this.mod.kernels[this.kernels.forward]!(n, buf, this.params, this.probe, this.softmax, out);
    this.#lastX = buf;
    this.#lastN = n;
    return out;
  }

  /**
   * Gradients for dLdy ([n][outputStride], for the points of the last forward; the grid reads its
   * part): writes `grad` and, with probing, `logitGrad` (the gradient with respect to the rows'
   * softmax, see there), both overwritten unless `accumulate`, and with `inputs` returns dL/dx
   * ([n][inputDims]) too: added into `inputs` when it is a buffer (grids sharing axes sum there).
   */
  backward(dLdy: Float32Array | DeviceBuffer<"f32">, opts: { inputs?: boolean | DeviceBuffer<"f32">; accumulate?: boolean } = {}): { params: DeviceBuffer<"f32">; inputs?: DeviceBuffer<"f32"> } {
    const x = this.#lastX;
    if (!x) throw new Error("HashGrid.backward: call forward first (backward uses its inputs)");
    const n = this.#lastN;
    const width = this.place.outputStride;
    if (dLdy.length !== n * width) throw new RangeError(`HashGrid.backward: dLdy has ${dLdy.length} values, expected ${n * width} (n = ${n})`);
    const dy = dLdy instanceof Float32Array ? this.mod.upload("f32", dLdy) : dLdy;
    if (!opts.accumulate) {
      this.grad.zero();
      this.logitGrad.zero();
    }
    this.#listTouched(n, x, !opts.accumulate);
    const k = this.kernels;
    if (opts.inputs) this.built(k.inputGrad);
    // Derived or hand-written: (x, params, probe, softmax, dy, grad, the logits' gradient w.r.t. the softmax).
    this.mod.kernels[k.paramGrad]!(n, x, this.params, this.probe, this.softmax, dy, this.grad, this.logitGrad);
    if (!opts.inputs) return { params: this.grad };
    // Zeroed, or the caller's: both kernels add to it.
    const dx = opts.inputs === true ? this.mod.alloc("f32", n * this.place.inputDims) : opts.inputs;
    if (dx.length !== n * this.place.inputDims) throw new RangeError(`HashGrid.backward: inputs has ${dx.length} values, expected ${n * this.place.inputDims} (n = ${n})`);
    if (k.derived) this.mod.kernels[k.inputGrad]!(n, x, this.params, this.probe, this.softmax, dy, dx);
    else this.mod.kernels[k.inputGrad]!(n, x, this.params, this.probe, dy, dx);
    return { params: this.grad, inputs: dx };
  }

  /**
   * Sparse updates: from now on every backward also marks the table entries (and, with learned
   * probing, lists the codebook rows) whose gradient it writes (dsl/kernels/grid.ts gridTouched:
   * its cost follows the batch, not the table), for touched(). Allocates a bitmap of one bit per
   * table entry, each level's bits from a word of their own (so that no two levels share a word),
   * and a stamp and a list slot per codebook row (u32 each). Variants that replace encodeLevel may
   * read other entries than entry(): refused.
   */
  async trackTouched(): Promise<void> {
    if (this.#touch) return;
    if (this.settings.variant !== undefined) {
      const { readVariant } = await import("../codegen/parse.ts");
      if (readVariant(this.settings.variant, GRID_KERNELS).parts.includes("encodeLevel"))
        throw new ConfigError(`sparse updates: ${this.settings.variant} replaces encodeLevel, so the entries a step touches are not known (use dense updates)`);
    }
    const words = touchedWords(this.levels);
    const firstWord = words.map((_, l) => words.slice(0, l).reduce((a, b) => a + b, 0));
    const rows = Math.max(1, this.probing.rows);
    const u32 = (n: number) => this.mod.alloc("u32", n);
    const wordBase = this.mod.upload("u32", Uint32Array.from(firstWord));
    const bitmap = u32(Math.max(1, words.reduce((a, b) => a + b, 0)));
    this.#touch = { bitmap, wordBase, firstWord, words, rowStamp: u32(rows), rowList: u32(rows), counts: u32(2 * this.settings.levels * COUNT_STRIDE), epoch: 0, taken: true };
  }

  /**
   * What the backward passes since the last optimizer step wrote (their gradient; see
   * trackTouched): `entries`, table entries of featuresPerLevel values, as a bitmap with one range
   * per level, and `rows`, codebook rows of N_p logits (none without probing), listed, one range
   * per probed level, the ranges one after another from the start of the list. The set stays the
   * same (for the optimizer and then the EMA) until the next backward, which starts a new one.
   */
  touched(): { entries: TouchedBits; rows: TouchedRows } {
    const t = this.#touch;
    if (!t) throw new Error("HashGrid.touched: call trackTouched() first");
    // The levels' row lists, moved to the front of the buffer once per set (one launch for the optimizer).
    if (!t.taken && this.probing.rows) this.mod.kernels[this.kernels.packTouched]!(1, t.rowList, t.counts);
    t.taken = true;
    const counts = t.counts.download();
    const L = this.settings.levels;
    const entries = this.levels.map((lv, l) => ({ first: lv.offset, count: counts[l * COUNT_STRIDE]!, word: t.firstWord[l]!, words: t.words[l]! }));
    const rowCounts = this.probing.probed.flatMap((p, l) => (p ? [counts[(L + l) * COUNT_STRIDE]!] : []));
    const rows = rowCounts.map((count, k) => ({ first: rowCounts.slice(0, k).reduce((a, b) => a + b, 0), count }));
    return { entries: { width: this.settings.featuresPerLevel, bitmap: t.bitmap, ranges: entries }, rows: { width: this.probing.range, list: t.rowList, ranges: rows } };
  }

  /**
   * Sparse updates over MPI ranks: the current set (what the backward passes since the last step
   * marked and listed, before touched() takes it) as `bitmap`, its table entries' bits (one per
   * entry, in table order, each level's from a word of its own: the same layout on every rank; a
   * cpu or js grid's own memory, a CUDA grid's copy), for a bitwise or over the ranks, and `rows`,
   * its codebook rows, level after level in the order listed, for the others' unionTouched().
   */
  touchedSet(): { bitmap: Uint32Array; rows: Uint32Array } {
    const { t, counts } = this.#openSet("touchedSet");
    const L = this.settings.levels;
    const all = onHost(t.rowList).data;
    const count = (l: number) => (this.probing.probed[l] ? counts[(L + l) * COUNT_STRIDE]! : 0);
    const rows = new Uint32Array(this.levels.reduce((a, _, l) => a + count(l), 0));
    let k = 0;
    for (let l = 0; l < L; l++) (rows.set(all.subarray(this.probing.rowOffset[l]!, this.probing.rowOffset[l]! + count(l)), k), (k += count(l)));
    return { bitmap: onHost(t.bitmap).data, rows };
  }

  /**
   * Makes the current set the union of every rank's: `bitmap`, the bitwise or of every rank's
   * touchedSet().bitmap (the entries marked), and `rows`, every rank's touchedSet().rows by rank,
   * each level's rows listed where they first appear in that order (a new stamp). Every rank then
   * lists the same rows in the same order, which the logits' step's results depend on (a row's
   * place decides whether it runs in a vector lane or the scalar remainder), and the order one
   * process with --accumulate N lists: its micro-batch r is rank r's.
   */
  unionTouched(union: { bitmap: Uint32Array; rows: Uint32Array[] }): void {
    const { t } = this.#openSet("unionTouched");
    if (union.bitmap.length !== t.bitmap.length) throw new RangeError(`HashGrid.unionTouched: the bitmap has ${union.bitmap.length} words, this grid's ${t.bitmap.length}`);
    this.#newSet(t, { keepBitmap: true });
    if (!(t.bitmap instanceof HostBuffer && t.bitmap.data === union.bitmap)) t.bitmap.upload(union.bitmap);
    const L = this.settings.levels;
    const counts = new Uint32Array(2 * L * COUNT_STRIDE);
    this.levels.forEach((_, l) => {
      let n = 0;
      for (let w = t.firstWord[l]!, end = w + t.words[l]!; w < end; w++) n += bitCount(union.bitmap[w]!);
      counts[l * COUNT_STRIDE] = n;
    });
    const probed = this.probing.probed.flatMap((p, l) => (p ? [l] : []));
    if (probed.length) {
      const [stamp, list] = [onHost(t.rowStamp), onHost(t.rowList)];
      const starts = probed.map((l) => this.probing.rowOffset[l]!);
      for (const rows of union.rows) {
        // The level of a set's next row is this one or a later one (a set lists its levels in order).
        let k = 0;
        for (const row of rows) {
          if (row < starts[k]!) k = 0;
          while (k < starts.length - 1 && starts[k + 1]! <= row) k++;
          if (stamp.data[row] === t.epoch) continue;
          const l = probed[k]!;
          stamp.data[row] = t.epoch;
          list.data[this.probing.rowOffset[l]! + counts[(L + l) * COUNT_STRIDE]!] = row;
          counts[(L + l) * COUNT_STRIDE]! += 1;
        }
      }
      stamp.done();
      list.done();
    }
    t.counts.upload(counts);
  }

  /** A new, empty set: a clear bitmap (unless kept: unionTouched), a new stamp for the rows (on wrap-around, after 2^32 - 1 sets, the stamps start over). */
  #newSet(t: TouchState, opts: { keepBitmap?: boolean } = {}): void {
    if (t.epoch === 0xffffffff) (t.rowStamp.zero(), (t.epoch = 0));
    t.epoch++;
    if (!opts.keepBitmap) t.bitmap.zero();
    t.counts.zero();
    t.taken = false;
  }

  /** The current touched set, not yet taken by touched(), and its counts. */
  #openSet(method: string) {
    const t = this.#touch;
    if (!t) throw new Error(`HashGrid.${method}: call trackTouched() first`);
    if (t.taken) throw new Error(`HashGrid.${method}: no backward since the last touched() (the set is taken)`);
    return { t, counts: t.counts.download() };
  }

  /** The touched table entries as an Optimizer or Ema group's `touched` (after trackTouched). */
  get touchedEntries(): TouchedSource<TouchedBits> {
    return { width: this.settings.featuresPerLevel, get: () => this.touched().entries };
  }

  /** The touched codebook rows as the probing logits' Optimizer group's `touched` (after trackTouched). */
  get touchedCodebookRows(): TouchedSource<TouchedRows> {
    return { width: this.probing.range, get: () => this.touched().rows };
  }

  /** Marks the entries and lists the rows the points of the last forward touch in the current set (a new set after touched()). */
  #listTouched(n: number, x: DeviceBuffer<"f32">, fresh: boolean): void {
    const t = this.#touch;
    if (!t) return;
    if (fresh || t.taken) this.#newSet(t);
    const args = [t.epoch, t.bitmap, t.wordBase, t.rowStamp, t.rowList, t.counts] as const;
    if (this.mod.backend === "cuda") this.mod.kernels[this.kernels.touchedLevels]!(this.settings.levels, x, n, this.probe, ...args);
    else this.mod.kernels[this.kernels.touched]!(n, x, this.probe, ...args);
  }

  /** Per level, the fraction of distinct vertices touched by x that share a table slot. */
  collisionStats(x: Float32Array): LevelCollisions[] {
    const { n, buf } = this.points(x);
    const { dims, levels } = this.settings;
    const corners = 1 << dims;
    this.built(this.kernels.slots);
    const cells = this.mod.alloc("u32", n * levels * dims);
    const slots = this.mod.alloc("u32", n * levels * corners);
    this.mod.kernels.gridSlots!(n, buf, this.probe, cells, slots);
    const [c, s] = [cells.download(), slots.download()];
    return this.levels.map((lv, l) => {
      const slotOf = new Map<string, number>();
      for (let i = 0; i < n; i++) {
        const cell = c.subarray((i * levels + l) * dims, (i * levels + l + 1) * dims);
        for (let k = 0; k < corners; k++) {
          const key = Array.from(cell, (v, d) => v + ((k >> d) & 1)).join(",");
          slotOf.set(key, s[(i * levels + l) * corners + k]!);
        }
      }
      const perSlot = new Map<number, number>();
      for (const slot of slotOf.values()) perSlot.set(slot, (perSlot.get(slot) ?? 0) + 1);
      let colliding = 0;
      for (const count of perSlot.values()) if (count > 1) colliding += count;
      return { level: l, hashed: lv.hashed, vertices: slotOf.size, collidingFraction: slotOf.size ? colliding / slotOf.size : 0 };
    });
  }
}

/**
 * Sparse updates' state (HashGrid.trackTouched): the entries' bitmap (level l's `words[l]` words
 * from word firstWord[l], also on the device as wordBase), the rows' stamps and lists, the counts
 * per level (COUNT_STRIDE apart), the current set's stamp.
 */
interface TouchState {
  bitmap: DeviceBuffer<"u32">;
  wordBase: DeviceBuffer<"u32">;
  firstWord: number[];
  words: number[];
  rowStamp: DeviceBuffer<"u32">;
  rowList: DeviceBuffer<"u32">;
  counts: DeviceBuffer<"u32">;
  epoch: number;
  taken: boolean;
}

/**
 * A u32 buffer's values on the host: a cpu or js buffer's own array (done() does nothing), else a
 * copy that done() writes back (a CUDA buffer: the whole buffer crosses, twice).
 */
/** The number of bits set in a u32. */
function bitCount(w: number): number {
  w -= (w >>> 1) & 0x55555555;
  w = (w & 0x33333333) + ((w >>> 2) & 0x33333333);
  return (Math.imul((w + (w >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}

function onHost(b: DeviceBuffer<"u32">): { data: Uint32Array; done(): void } {
  if (b instanceof HostBuffer) return { data: b.data, done() {} };
  const data = b.download();
  return { data, done: () => b.upload(data) };
}

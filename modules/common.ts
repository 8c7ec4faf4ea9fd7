// Pieces the modules share: the codes of activations and losses (as dsl/kernels/ numbers them),
// and accepting host arrays where a device buffer is expected (seeded values: random.ts).
import type { BackendRequest } from "../runtime/backend.ts";
import type { DeviceBuffer } from "../runtime/buffer.ts";
import type { KernelModule } from "../runtime/module.ts";
import * as act from "../dsl/kernels/activation.ts";
import * as loss from "../dsl/kernels/loss.ts";

export const ACTIVATIONS = {
  none: act.NONE, relu: act.RELU, leaky_relu: act.LEAKY_RELU, sigmoid: act.SIGMOID, tanh: act.TANH, softplus: act.SOFTPLUS, exponential: act.EXPONENTIAL,
} as const;
export const LOSSES = { l2: loss.L2, relative_l2: loss.RELATIVE_L2, l1: loss.L1, huber: loss.HUBER } as const;

/** An f32 input: a host array (copied to the module's backend) or a buffer of it. */
export type Input = Float32Array | DeviceBuffer<"f32">;

export function hostOrDevice(mod: KernelModule, x: Input): DeviceBuffer<"f32"> {
  return x instanceof Float32Array ? mod.upload("f32", x) : x;
}

/** Where a module's kernels run and are cached, and where first-use build messages go. */
export interface LoadSettings {
  backend?: BackendRequest;
  cacheDir?: string;
  log?: (message: string) => void;
}

/**
 * Sparse updates: the rows of `width` values that a step touched, listed in `list` at ranges (one
 * per level) that the Optimizer runs one launch each (a grid's codebook rows: HashGrid.touched()).
 */
export interface TouchedRows {
  width: number;
  list: DeviceBuffer<"u32">;
  ranges: { first: number; count: number }[];
}

/**
 * Sparse updates: the rows of `width` values that a step touched as a bitmap (a grid's table
 * entries: HashGrid.touched()), one range per level: row first + 32 k + b was touched when bit b of
 * word `word + k` is set (k < words); `count` rows in all. The Optimizer and the Ema run a range
 * (adjacent ranges joined) in one launch, thread k on word k, so they walk the rows in order.
 */
export interface TouchedBits {
  width: number;
  bitmap: DeviceBuffer<"u32">;
  ranges: { first: number; count: number; word: number; words: number }[];
}

/** The ranges of `t` with adjacent ones joined (and empty ones left out): what one launch each covers. */
export function touchedRuns<R extends { first: number; count: number; word?: number; words?: number }>(t: { ranges: R[] }): R[] {
  const runs: R[] = [];
  for (const r of t.ranges) {
    if (r.count === 0) continue;
    const last = runs.at(-1);
    if (last && r.words === undefined && last.first + last.count === r.first) last.count += r.count;
    else if (last && r.words !== undefined && last.word! + last.words! === r.word && last.first + 32 * last.words! === r.first) {
      last.count += r.count;
      last.words! += r.words;
    } else runs.push({ ...r });
  }
  return runs;
}

/** Where a group's touched rows come from (of `width` values each): `get`, asked once per step. */
export interface TouchedSource<T extends TouchedRows | TouchedBits = TouchedRows | TouchedBits> {
  width: number;
  get: () => T;
}

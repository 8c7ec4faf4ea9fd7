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
 * Sparse updates: the rows of `width` values (a grid's table entries, or its codebook rows) that a
 * step touched, listed in `list` at ranges (one per level) that the Optimizer and the Ema run one
 * launch each (HashGrid.touched()).
 */
export interface TouchedRows {
  width: number;
  list: DeviceBuffer<"u32">;
  ranges: { first: number; count: number }[];
}

/** The ranges of `t` with adjacent ones joined: what one launch each covers. */
export function touchedRuns(t: TouchedRows): { first: number; count: number }[] {
  const runs: { first: number; count: number }[] = [];
  for (const r of t.ranges) {
    if (r.count === 0) continue;
    const last = runs.at(-1);
    if (last && last.first + last.count === r.first) last.count += r.count;
    else runs.push({ ...r });
  }
  return runs;
}

/** Where a group's touched rows come from (of `width` values each): `get`, asked once per step. */
export interface TouchedSource {
  width: number;
  get: () => TouchedRows;
}

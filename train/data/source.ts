// What the trainer's step loop trains on: a data source hands out micro-batches of (coordinates,
// targets), evaluates the field it fits, and owns what a run reports and writes about its data (the
// summary's fields, the checkpoint's metadata, its own files in the out directory). The trainer
// (train/trainer.ts) knows nothing else about the data: the photograph (image.ts), the stream of
// scattered N-D points read from disk in shards (points.ts) and a 3D volume (volume.ts) are
// sources; open.ts picks the configuration's.
import type { BackendRequest } from "../../runtime/backend.ts";
import type { DeviceBuffer } from "../../runtime/buffer.ts";
import type { Ranks } from "../../runtime/mpi.ts";
import type { Loss } from "../../modules/loss.ts";
import type { Checkpoint } from "../checkpoint.ts";
import type { Field } from "../eval.ts";
import type { MetricsRow } from "../outputs.ts";

/** The sampling seed of micro-batch `k`: a counter-based mix, so any micro-batch can be redrawn. */
export function microSeed(seed: number, k: number): number {
  let h = (seed ^ Math.imul(k + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  return (h ^ (h >>> 13)) >>> 0;
}

/** One micro-batch: [n][dims] coordinates in [0, 1] and [n][channels] targets, on the model's backend. */
export interface Batch {
  coords: DeviceBuffer<"f32">;
  targets: DeviceBuffer<"f32">;
}

/** What a source gets from the trainer once the model exists. */
export interface SourceContext {
  backend: BackendRequest;
  log: (message: string) => void;
  /** An f32 buffer on the model's backend. */
  alloc(length: number): DeviceBuffer<"f32">;
  /** The model's prediction (the weights the trainer swapped in: the average when evaluating). */
  field: Field;
  /** The configured loss, for held-out losses. */
  loss: Loss;
}

export interface SourceEvaluation {
  /** The source's quality figure in dB (the image: full-image PSNR; points: PSNR of the held-out split). */
  psnr: number;
  /** The loss on held-out data (what the plateau schedule watches); NaN when not computed. */
  heldOutLoss: number;
  /** The image's reconstruction, with `final` (written as reconstruction.png). */
  pixels?: Uint8Array | Uint16Array;
}

export interface EvaluateRequest {
  final: boolean;
  wantHeldOut: boolean;
  signal?: AbortSignal;
}

export interface DataSource {
  /** What the data is, in messages ("check the image and the loss"). */
  readonly kind: "image" | "points" | "volume";
  /** Coordinate dimensions (the hash grid's dims). */
  readonly dims: number;
  /** Target values per sample (the network's outputs). */
  readonly channels: number;
  /**
   * The values the data holds, when it is a fixed set a field can fit exactly (a photograph's
   * pixels x channels); absent for data sampled without end or streamed (points, a volume). The
   * default learning rate depends on it (train/schedule.ts defaultLearningRate).
   */
  readonly values?: number;
  /** Called once, after the model is built and before the first batch. */
  attach(ctx: SourceContext): Promise<void>;
  /**
   * Micro-batch number `micro` of n samples: a pure function of (configuration, seed, micro), so
   * that a resumed run draws what the uninterrupted one did. The buffers may be reused by the next call.
   */
  sample(n: number, micro: number): Batch;
  /**
   * Evaluates the field (ctx.field, with the weights the trainer swapped in). `final`: the end of
   * the run; `wantHeldOut`: someone reads the held-out loss; `signal`: when aborted, the evaluation
   * stops between tiles (letting the event loop run between them) and gives undefined.
   */
  evaluate(step: number, opts: EvaluateRequest): Promise<SourceEvaluation | undefined>;
  /**
   * The mean squared error of the field (the weights swapped in) on a fixed held-out batch: cheap,
   * what picks the EMA or the raw weights for evaluation and outputs. Absent: the EMA is always used.
   */
  heldOutMse?(): number;
  /** What the checkpoint's meta records about the data (checked on resume). */
  meta(): Record<string, unknown>;
  /** The result's (and summary.json's) fields about the data: `image` or `points`. */
  summaryFields(): Record<string, unknown>;
  /**
   * Writes the source's own files at the end of a run into the out directory (those of
   * SOURCE_OUTPUTS, open.ts): reconstruction.png from the final evaluation's pixels (`final`
   * undefined: interrupted), validation.csv. Gives them by their key in the result's files.
   */
  writeOutputs(out: string, final: SourceEvaluation | undefined): Promise<Record<string, string>>;
  /** Writes the plot of the metrics (absent: the trainer's, train/outputs.ts writePlot). */
  writePlot?(path: string, rows: MetricsRow[]): Promise<void>;
  /**
   * Data-parallel training: this process is rank `rank` of `size` and draws from its own part of
   * the data (points: every size-th training block), read once per epoch over all the ranks.
   * Absent: rank r draws micro-batches k size + r of the one stream (the image).
   */
  split?(rank: number, size: number): void;
  /**
   * Data-parallel training, a collective every rank calls after opening: completes what each rank
   * measured of its own share of the data when opened with one (openSource's `share`; points: the
   * first pass's box, value range and non-finite check), so that the file is read once between
   * the ranks.
   */
  gather?(ranks: Ranks): void;
  /** A digest of the data itself (the ranks check they train on the same), where meta() does not tell. */
  fingerprint?(): string;
  /** Refuses a checkpoint trained on other data (a CheckpointError naming `path`). */
  checkResume(ck: Checkpoint, path: string): void;
  close(): void;
}

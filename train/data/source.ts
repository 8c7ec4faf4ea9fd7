// What the trainer's step loop trains on: a data source hands out micro-batches of (coordinates,
// targets) and evaluates the field it fits. The loop (train/trainer.ts) knows nothing else about
// the data: the photograph's sampler (ImageSource in train/trainer.ts) is one source, the stream of
// scattered N-D points read from disk in shards (train/points.ts) another.
import type { BackendRequest } from "../../runtime/backend.ts";
import type { DeviceBuffer } from "../../runtime/buffer.ts";
import type { Loss } from "../../modules/loss.ts";
import type { Checkpoint } from "../checkpoint.ts";
import type { Field } from "../eval.ts";

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
  readonly kind: "image" | "points";
  /** Coordinate dimensions (the hash grid's dims). */
  readonly dims: number;
  /** Target values per sample (the network's outputs). */
  readonly channels: number;
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
  /** Refuses a checkpoint trained on other data (a CheckpointError naming `path`). */
  checkResume(ck: Checkpoint, path: string): void;
  close(): void;
}

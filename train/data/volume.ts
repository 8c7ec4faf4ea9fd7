// A 3D volume as a data source of the trainer: a stack of 8-bit frames, sampled at random
// continuous points in [0, 1]^3 (x, y, frame) with the values trilinearly interpolated on the host,
// and evaluated by the PSNR over every voxel centre. bench:probing's 3D case trains on one (train()
// with TrainHooks.source); it writes no file of its own.
import type { DeviceBuffer } from "../../runtime/buffer.ts";
import { seededUniform } from "../../modules/random.ts";
import { CheckpointError, trainedOn, type Checkpoint } from "../checkpoint.ts";
import { interruptible } from "../eval.ts";
import { microSeed, type Batch, type DataSource, type EvaluateRequest, type SourceContext, type SourceEvaluation } from "./source.ts";

export interface Volume {
  width: number;
  height: number;
  /** Frames (at least 2, as width and height). */
  depth: number;
  channels: number;
  /** [frame][y][x][channel], 8-bit. */
  data: Uint8Array;
}

/** Voxels per evaluation chunk. */
const EVAL_CHUNK = 1 << 16;

export class VolumeSource implements DataSource {
  readonly kind = "volume";
  readonly dims = 3;
  #ctx: SourceContext | undefined;
  #batch: { n: number; coords: DeviceBuffer<"f32">; targets: DeviceBuffer<"f32">; c: Float32Array; t: Float32Array } | undefined;

  readonly channels: number;

  /** `seed`: the run's (the configuration's), which with the micro-batch number picks the batch's points. */
  constructor(
    readonly volume: Volume,
    private readonly seed: number,
  ) {
    this.channels = volume.channels;
  }

  async attach(ctx: SourceContext): Promise<void> {
    this.#ctx = ctx;
  }

  sample(n: number, micro: number): Batch {
    if (this.#batch?.n !== n) {
      this.#disposeBatch();
      const ctx = this.#ctx!;
      this.#batch = { n, coords: ctx.alloc(3 * n), targets: ctx.alloc(n * this.channels), c: new Float32Array(3 * n), t: new Float32Array(n * this.channels) };
    }
    const b = this.#batch;
    this.#fill(n, microSeed(this.seed, micro), b.c, b.t);
    b.coords.upload(b.c);
    b.targets.upload(b.t);
    return { coords: b.coords, targets: b.targets };
  }

  /** n random continuous points in [0, 1]^3 and the trilinearly interpolated values there (voxel centres at (i + 0.5) / size). */
  #fill(n: number, seed: number, coords: Float32Array, targets: Float32Array): void {
    const r = seededUniform(seed);
    const { width: W, height: H, depth: F, channels: C, data } = this.volume;
    const sy = W * C;
    const sf = W * H * C;
    for (let i = 0; i < n; i++) {
      const u = r(), w = r(), t = r();
      coords[3 * i] = u;
      coords[3 * i + 1] = w;
      coords[3 * i + 2] = t;
      const px = Math.min(W - 1, Math.max(0, u * W - 0.5));
      const py = Math.min(H - 1, Math.max(0, w * H - 0.5));
      const pf = Math.min(F - 1, Math.max(0, t * F - 0.5));
      const x0 = Math.min(W - 2, Math.floor(px)), y0 = Math.min(H - 2, Math.floor(py)), f0 = Math.min(F - 2, Math.floor(pf));
      const ax = px - x0, ay = py - y0, af = pf - f0;
      const base = f0 * sf + y0 * sy + x0 * C;
      for (let c = 0; c < C; c++) {
        const b = base + c;
        const c00 = data[b]! + ax * (data[b + C]! - data[b]!);
        const c10 = data[b + sy]! + ax * (data[b + sy + C]! - data[b + sy]!);
        const c01 = data[b + sf]! + ax * (data[b + sf + C]! - data[b + sf]!);
        const c11 = data[b + sf + sy]! + ax * (data[b + sf + sy + C]! - data[b + sf + sy]!);
        const c0 = c00 + ay * (c10 - c00);
        const c1 = c01 + ay * (c11 - c01);
        targets[C * i + c] = (c0 + af * (c1 - c0)) / 255;
      }
    }
  }

  /** The PSNR over every voxel centre (values on [0, 1]); no held-out loss. */
  async evaluate(_step: number, opts: EvaluateRequest): Promise<SourceEvaluation | undefined> {
    const ctx = this.#ctx!;
    const stopped = interruptible(opts.signal);
    const { width: W, height: H, depth: F, channels: C, data } = this.volume;
    const total = W * H * F;
    const x = new Float32Array(3 * EVAL_CHUNK);
    let sum = 0;
    for (let first = 0; first < total; first += EVAL_CHUNK) {
      const n = Math.min(EVAL_CHUNK, total - first);
      for (let k = 0; k < n; k++) {
        const i = first + k;
        const f = Math.floor(i / (W * H)), rest = i - f * W * H, y = Math.floor(rest / W), xx = rest - y * W;
        x[3 * k] = (xx + 0.5) / W;
        x[3 * k + 1] = (y + 0.5) / H;
        x[3 * k + 2] = (f + 0.5) / F;
      }
      const coords = ctx.alloc(3 * n);
      let pred: Float32Array;
      try {
        coords.upload(x.subarray(0, 3 * n));
        pred = ctx.field(coords, n);
      } finally {
        coords.dispose();
      }
      for (let k = 0; k < n * C; k++) {
        const d = pred[k]! - data[C * first + k]! / 255;
        sum += d * d;
      }
      if (await stopped()) return undefined;
    }
    return { psnr: 10 * Math.log10(1 / (sum / (total * C))), heldOutLoss: NaN };
  }

  #shape() {
    const { width, height, depth, channels } = this.volume;
    return { width, height, depth, channels };
  }

  meta(): Record<string, unknown> {
    return { volume: this.#shape() };
  }

  summaryFields(): Record<string, unknown> {
    return { volume: this.#shape() };
  }

  async writeOutputs(): Promise<Record<string, string>> {
    return {};
  }

  checkResume(ck: Checkpoint, path: string): void {
    const { width, height, depth, channels } = this.volume;
    if (JSON.stringify(ck.meta.volume) !== JSON.stringify(this.#shape()))
      throw new CheckpointError(`${path}: the checkpoint was trained on ${trainedOn(ck.meta)}, not on a ${width}x${height}x${depth} volume with ${channels} channels`);
  }

  #disposeBatch(): void {
    if (this.#batch) (this.#batch.coords.dispose(), this.#batch.targets.dispose());
    this.#batch = undefined;
  }

  close(): void {
    this.#disposeBatch();
  }
}

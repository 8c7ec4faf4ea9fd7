// The fully fused MLP as a module: initializes the parameters (tiny-cuda-nn's scheme) laid out by
// its configuration (mlp_config.ts: the options, validated, and the layout, re-exported here),
// compiles dsl/kernels/mlp.ts for the configuration, and runs inference, the fused training step
// (forward + loss + backward) and the backward pass from a given gradient.
import { resolve } from "node:path";
import { chooseBackend } from "../runtime/backend.ts";
import type { DeviceBuffer } from "../runtime/buffer.ts";
import { ACTIVATIONS, LOSSES, type Input, type LoadSettings, hostOrDevice } from "./common.ts";
import { loadKernels, type KernelModule } from "./load.ts";
import { mlpLayout, parseMlpOptions, type MlpLayout, type MlpOptionsInput, type MlpSettings } from "./mlp_config.ts";
import { seededUniform } from "./random.ts";

export * from "./mlp_config.ts";

export const MLP_KERNELS = resolve(import.meta.dir, "../dsl/kernels/mlp.ts");

/** tiny-cuda-nn's initialization: W_l uniform in ±sqrt(6 / (fanIn + fanOut)) (Xavier), biases 0. */
export function initMlpParams(layout: MlpLayout, seed: number): Float32Array {
  const out = new Float32Array(layout.paramCount);
  const next = seededUniform(seed);
  layout.weightOffset.forEach((off, l) => {
    const scale = Math.sqrt(6 / (layout.fanIn[l]! + layout.fanOut[l]!));
    for (let i = 0; i < layout.fanIn[l]! * layout.fanOut[l]!; i++) out[off + i] = (next() * 2 - 1) * scale;
  });
  return out;
}

export class Mlp {
  readonly params: DeviceBuffer<"f32">;
  /** Gradient of the loss with respect to params: the training step and backward add into it. */
  readonly grad: DeviceBuffer<"f32">;
  readonly paramCount: number;
  readonly #loss: DeviceBuffer<"f32">;
  /** d_loss of the derived training step: 1. */
  readonly #one: DeviceBuffer<"f32">;

  private constructor(
    readonly settings: MlpSettings,
    readonly layout: MlpLayout,
    readonly rows: number,
    private readonly mod: KernelModule,
  ) {
    this.paramCount = layout.paramCount;
    this.params = mod.upload("f32", initMlpParams(layout, settings.seed));
    this.grad = mod.alloc("f32", this.paramCount);
    this.#loss = mod.alloc("f32", 1);
    this.#one = mod.upload("f32", [1]);
  }

  static async create(options: MlpOptionsInput, load: LoadSettings = {}): Promise<Mlp> {
    const s = parseMlpOptions(options);
    const layout = mlpLayout(s);
    const rows = chooseBackend({ backend: load.backend }).backend === "cuda" ? await cudaMlpRows(s, layout) : (s.rows ?? 64);
    // Unchecked: the kernels index only within the layout and the rows the launch covers.
    const mod = await loadKernels(MLP_KERNELS, { config: mlpConfig(s, layout, rows), kernels: mlpKernels(s), backend: load.backend, cacheDir: load.cacheDir, log: load.log, boundsChecks: false });
    return new Mlp(s, layout, rows, mod);
  }

  get backend() {
    return this.mod.backend;
  }
  get backendReason(): string {
    return this.mod.reason;
  }

  private items(x: Input, what: string): { n: number; buf: DeviceBuffer<"f32"> } {
    const w = this.settings.inputs;
    if (x.length % w !== 0) throw new RangeError(`Mlp.${what}: ${x.length} input values are not a whole number of items of ${w}`);
    return { n: x.length / w, buf: hostOrDevice(this.mod, x) };
  }

  private check(buf: Input, n: number, width: number, what: string): DeviceBuffer<"f32"> {
    if (buf.length !== n * width) throw new RangeError(`Mlp: ${what} has ${buf.length} values, expected ${n * width} (${n} items of ${width})`);
    return hostOrDevice(this.mod, buf);
  }

  /** Inference: [n][outputs] for inputs x ([n][inputs]). */
  forward(x: Input, out?: DeviceBuffer<"f32">): DeviceBuffer<"f32"> {
    const { n, buf } = this.items(x, "forward");
    const o = out ?? this.mod.alloc("f32", n * this.settings.outputs);
    this.check(o, n, this.settings.outputs, "out");
    this.mod.kernels.mlpForward!(n, buf, this.params, o);
    return o;
  }

  /**
   * The fused training step: forward, the loss against target ([n][outputs]), backward. Adds the
   * gradient of (loss * scale) to grad (and writes dL/d x into `inputGrad` when the module was
   * created with inputGrad); returns the mean loss over the n * outputs values.
   */
  trainStep(x: Input, target: Input, opts: { scale?: number; inputGrad?: DeviceBuffer<"f32"> } = {}): number {
    const { n, buf } = this.items(x, "trainStep");
    const t = this.check(target, n, this.settings.outputs, "target");
    const dx = this.inputGradBuffer(n, opts.inputGrad);
    const mean = 1 / Math.max(1, n * this.settings.outputs);
    const scale = (opts.scale ?? 1) * mean;
    this.#loss.upload([0]);
    const k = this.mod.kernels;
    if (dx) k.mlpTrainStepInputGrad!(n, buf, t, this.params, this.#loss, scale, this.#one, this.grad, dx);
    else k.mlpTrainStep!(n, buf, t, this.params, this.#loss, scale, this.#one, this.grad);
    return this.#loss.download()[0]! / (opts.scale ?? 1);
  }

  /** Backward from dL/dy ([n][outputs]): adds the parameter gradient to grad (and writes dL/dx, with inputGrad). */
  backward(x: Input, dy: Input, opts: { inputGrad?: DeviceBuffer<"f32"> } = {}): void {
    const { n, buf } = this.items(x, "backward");
    const d = this.check(dy, n, this.settings.outputs, "dy");
    const dx = this.inputGradBuffer(n, opts.inputGrad);
    if (dx) this.mod.kernels.mlpForwardGrad!(n, buf, this.params, d, this.grad, dx);
    else this.mod.kernels.mlpForwardParamGrad!(n, buf, this.params, d, this.grad);
  }

  /** The input gradient's buffer, zeroed (the derived kernels add to it), or none without inputGrad. */
  private inputGradBuffer(n: number, given: DeviceBuffer<"f32"> | undefined): DeviceBuffer<"f32"> | undefined {
    if (!this.settings.inputGrad) {
      if (given) throw new Error("Mlp: an input gradient needs the option inputGrad: true (it is compiled in)");
      return undefined;
    }
    if (!given) throw new Error("Mlp: created with inputGrad: true, so pass opts.inputGrad ([n][inputs])");
    const dx = this.check(given, n, this.settings.inputs, "inputGrad");
    dx.zero();
    return dx;
  }

  close(): void {
    this.mod.close();
  }
}

/** The compile-time configuration of dsl/kernels/mlp.ts. */
export function mlpConfig(s: MlpSettings, layout: MlpLayout, rows: number) {
  return {
    rows, inputs: s.inputs, width: s.width, outputs: s.outputs, hiddenLayers: s.hiddenLayers,
    hidden: ACTIVATIONS[s.activation], output: ACTIVATIONS[s.outputActivation], leak: s.leak, biases: s.biases,
    weightOffset: layout.weightOffset, biasOffset: layout.biasOffset,
    loss: LOSSES[s.loss], huberDelta: s.huberDelta,
  };
}

/** CUDA keeps a block's tiles in static shared memory: at most 48 KiB per thread block. */
export const CUDA_TILE_BYTES = 48 * 1024;

/**
 * Rows per block on CUDA: the given ones, or the most of 16, 8, 4, 2, 1 whose tiles fit in
 * CUDA_TILE_BYTES (a wide, deep network keeps many tiles: 128 wide needs fewer rows than 16).
 */
export async function cudaMlpRows(s: MlpSettings, layout: MlpLayout): Promise<number> {
  const { compileFile } = await import("../codegen/compile.ts"); // loaded on first use (modules/load.ts loadKernels)
  const bytes = (rows: number) => Math.max(...compileFile(MLP_KERNELS, "cuda", { config: mlpConfig(s, layout, rows), kernels: mlpKernels(s) }).kernels.map((k) => k.tileBytes ?? 0));
  if (s.rows !== undefined) {
    const need = bytes(s.rows);
    if (need > CUDA_TILE_BYTES) throw new RangeError(`mlp.rows: ${s.rows} rows per block need ${need} bytes of CUDA shared memory for this network's tiles, over the ${CUDA_TILE_BYTES} allowed; choose fewer rows (or leave rows unset to choose them)`);
    return s.rows;
  }
  for (const rows of [16, 8, 4, 2]) if (bytes(rows) <= CUDA_TILE_BYTES) return rows;
  return 1;
}

/**
 * The kernels a network runs: the forward, and the compiler's adjoints of the loss (the training
 * step) and of the forward (the backward from a given output gradient), with the input gradient
 * when the network trains an encoding below it.
 */
export function mlpKernels(s: Pick<MlpSettings, "inputGrad">): string[] {
  return s.inputGrad ? ["mlpForward", "mlpTrainStepInputGrad", "mlpForwardGrad"] : ["mlpForward", "mlpTrainStep", "mlpForwardParamGrad"];
}

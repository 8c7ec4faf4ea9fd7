// A loss on its own (the fused Mlp.trainStep has it built in): value and gradient in one pass (the
// compiler's adjoint of dsl/kernels/loss.ts's lossSum), for predictions and targets of `width`
// values per item.
import { resolve } from "node:path";
import { z } from "zod";
import type { DeviceBuffer } from "../runtime/buffer.ts";
import { loadKernels, type KernelModule } from "./load.ts";
import { LOSSES, hostOrDevice, type Input } from "./common.ts";
import type { LoadSettings } from "./common.ts";
import { parseOptions } from "./options.ts";

export const LOSS_KERNELS = resolve(import.meta.dir, "../dsl/kernels/loss.ts");

export const LossOptions = z
  .object({
    kind: z.enum(Object.keys(LOSSES) as [keyof typeof LOSSES, ...(keyof typeof LOSSES)[]]).default("l2"),
    /** Values per item. */
    width: z.number().int().min(1).max(1024),
    huberDelta: z.number().positive().max(1e30).default(1),
  })
  .strict();

const ALLOWED: Record<string, string> = { kind: Object.keys(LOSSES).join(", "), width: "an integer from 1 to 1024", huberDelta: "a number > 0" };

export class Loss {
  readonly #sum: DeviceBuffer<"f32">;
  /** d_loss of the derived lossAndGrad: 1. */
  readonly #one: DeviceBuffer<"f32">;
  private constructor(
    readonly settings: z.output<typeof LossOptions>,
    private readonly mod: KernelModule,
  ) {
    this.#sum = mod.alloc("f32", 1);
    this.#one = mod.upload("f32", [1]);
  }

  static async create(options: z.input<typeof LossOptions>, load: LoadSettings = {}): Promise<Loss> {
    const s = parseOptions(LossOptions, options, "loss", ALLOWED);
    const config = { rows: 256, width: s.width, kind: LOSSES[s.kind], huberDelta: s.huberDelta };
    return new Loss(s, await loadKernels(LOSS_KERNELS, { config, kernels: ["lossAndGrad"], backend: load.backend, cacheDir: load.cacheDir, log: load.log, boundsChecks: false }));
  }

  /**
   * The mean loss of pred against target ([n][width] each); writes d(mean loss * scale)/d pred into
   * grad (allocated if not given).
   */
  evaluate(pred: Input, target: Input, opts: { grad?: DeviceBuffer<"f32">; scale?: number } = {}): { loss: number; grad: DeviceBuffer<"f32"> } {
    const w = this.settings.width;
    if (pred.length % w !== 0) throw new RangeError(`Loss: ${pred.length} predictions are not a whole number of items of ${w}`);
    if (target.length !== pred.length) throw new RangeError(`Loss: target has ${target.length} values, pred ${pred.length}`);
    const grad = opts.grad ?? this.mod.alloc("f32", pred.length);
    if (grad.length !== pred.length) throw new RangeError(`Loss: grad has ${grad.length} values, pred ${pred.length}`);
    const n = pred.length / w;
    const scale = (opts.scale ?? 1) / Math.max(1, pred.length);
    this.#sum.upload([0]);
    grad.zero(); // the derived kernel adds to it
    this.mod.kernels.lossAndGrad!(n, hostOrDevice(this.mod, pred), hostOrDevice(this.mod, target), this.#sum, scale, this.#one, grad);
    return { loss: this.#sum.download()[0]! / (opts.scale ?? 1), grad };
  }

  close(): void {
    this.mod.close();
  }
}

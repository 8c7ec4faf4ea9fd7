// The fully fused MLP's configuration, as pure arithmetic: its options and their validation, and
// the parameters' layout and count. It loads no kernels and imports no compiler, so that `bun run
// params` needs neither; the Mlp module (mlp.ts) builds on it and re-exports it.
import { z } from "zod";
import { ACTIVATIONS, LOSSES } from "./common.ts";
import { parseOptions } from "./options.ts";

const activation = z.enum(Object.keys(ACTIVATIONS) as [keyof typeof ACTIVATIONS, ...(keyof typeof ACTIVATIONS)[]]);

export const MlpOptions = z
  .object({
    inputs: z.number().int().min(1).max(1024),
    outputs: z.number().int().min(1).max(16),
    width: z.literal([16, 32, 64, 128]).default(64),
    hiddenLayers: z.number().int().min(1).max(8).default(2),
    activation: activation.default("relu"),
    outputActivation: activation.default("none"),
    /** Slope of the leaky ReLU for negative inputs. */
    leak: z.number().min(0).max(1).default(0.01),
    biases: z.boolean().default(false),
    loss: z.enum(Object.keys(LOSSES) as [keyof typeof LOSSES, ...(keyof typeof LOSSES)[]]).default("l2"),
    huberDelta: z.number().positive().max(1e30).default(1),
    /** Also compute dL/d input in the training step and backward (to train an encoding below). */
    inputGrad: z.boolean().default(false),
    /** Seed of the weight initialization. */
    seed: z.number().int().default(1337),
    /** Items per block of the fused kernel (default: 64, or 16 on CUDA where tiles live in shared memory). */
    rows: z.number().int().min(1).max(1024).optional(),
  })
  .strict();

const ALLOWED: Record<string, string> = {
  inputs: "an integer from 1 to 1024",
  outputs: "an integer from 1 to 16",
  width: "16, 32, 64, 128",
  hiddenLayers: "an integer from 1 to 8",
  activation: Object.keys(ACTIVATIONS).join(", "),
  outputActivation: Object.keys(ACTIVATIONS).join(", "),
  leak: "a number in [0, 1]",
  biases: "true or false",
  loss: Object.keys(LOSSES).join(", "),
  huberDelta: "a number > 0",
  inputGrad: "true or false",
  seed: "an integer",
  rows: "an integer from 1 to 1024",
};

export type MlpOptionsInput = z.input<typeof MlpOptions>;
export type MlpSettings = z.output<typeof MlpOptions>;

export function parseMlpOptions(input: unknown, where = "mlp"): MlpSettings {
  return parseOptions(MlpOptions, input, where, ALLOWED);
}

/** Where each layer's parameters live: W_l is [fanOut][fanIn] at weightOffset[l]; biases after all weights. */
export interface MlpLayout {
  fanIn: number[];
  fanOut: number[];
  weightOffset: number[];
  biasOffset: number[];
  paramCount: number;
}

export function mlpLayout(s: Pick<MlpSettings, "inputs" | "outputs" | "width" | "hiddenLayers" | "biases">): MlpLayout {
  const layers = s.hiddenLayers + 1;
  const fanIn = Array.from({ length: layers }, (_, l) => (l === 0 ? s.inputs : s.width));
  const fanOut = Array.from({ length: layers }, (_, l) => (l === s.hiddenLayers ? s.outputs : s.width));
  const weightOffset: number[] = [];
  let n = 0;
  for (let l = 0; l < layers; l++) (weightOffset.push(n), (n += fanIn[l]! * fanOut[l]!));
  const biasOffset = fanOut.map((o) => (s.biases ? ((n += o), n - o) : 0));
  return { fanIn, fanOut, weightOffset, biasOffset, paramCount: n };
}

export function mlpParamCount(input: MlpOptionsInput): number {
  return mlpLayout(parseMlpOptions(input)).paramCount;
}

// The fully fused MLP (tiny-cuda-nn's FullyFusedMLP, in the kernel language): one block kernel per
// batch tile runs every layer, with the activations kept in the block's tiles. Layer l computes
// y = act(x · W_lᵀ (+ b_l)) with W_l stored row-major [outputs][inputs] at params[weightOffset[l]];
// the last layer is the output layer. Only the forward direction is written here: the backward
// passes (the training step, the backward from a given output gradient) are the compiler's
// adjoints of these kernels (`@adjoint`, codegen/adjoint.ts). modules/mlp.ts computes the layout
// and initializes the parameters.
import { type Buf, type Const, type bool, type f32, type i32, type u32, select } from "../index.ts";
import { type Tile, type Tiles, accumulate, loadRows, loadTile, matmulNT, rowMask, storeRows, tileMap, tileSum, tiles } from "../tiles.ts";
import { activate } from "./activation.ts";
import { maskedLoss } from "./loss.ts";

export interface MlpConfig {
  /** Items per block. */
  rows: i32;
  inputs: i32;
  width: i32;
  outputs: i32;
  /** Hidden layers (1 to 8); the network has hiddenLayers + 1 weight matrices. */
  hiddenLayers: i32;
  /** Activation codes (activation.ts) of the hidden layers and of the output. */
  hidden: i32;
  output: i32;
  /** Slope of the leaky ReLU for x < 0. */
  leak: f32;
  biases: bool;
  /** [l], l = 0 .. hiddenLayers: first parameter of W_l and (with biases) of b_l. */
  weightOffset: i32[];
  biasOffset: i32[];
  /** Loss code (loss.ts) and the Huber loss's delta. */
  loss: i32;
  huberDelta: f32;
}

export function add(a: f32, b: f32): f32 {
  return a + b;
}

// Per layer l (constant once the loops over layers unroll): rows and columns of W_l, activation.
export function fanOut(cfg: Const<MlpConfig>, l: i32): i32 {
  return select(l === cfg.hiddenLayers, cfg.outputs, cfg.width);
}
export function fanIn(cfg: Const<MlpConfig>, l: i32): i32 {
  return select(l === 0, cfg.inputs, cfg.width);
}
export function activation(cfg: Const<MlpConfig>, l: i32): i32 {
  return select(l === cfg.hiddenLayers, cfg.output, cfg.hidden);
}

/** Every layer forward from x: ws[l] = W_l, acts[l] = the output of layer l; returns the output. */
export function forward(cfg: Const<MlpConfig>, params: Buf<f32>, x: Tile, ws: Tiles, acts: Tiles): Tile {
  for (let l = 0; l <= cfg.hiddenLayers; l++) {
    ws[l] = loadTile(params, cfg.weightOffset[l], fanOut(cfg, l), fanIn(cfg, l));
    let h: Tile = x;
    if (l > 0) h = acts[l - 1];
    h = matmulNT(h, ws[l]);
    if (cfg.biases) h = tileMap(add, h, loadTile(params, cfg.biasOffset[l], 1, fanOut(cfg, l)));
    acts[l] = tileMap(activate, h, activation(cfg, l), cfg.leak);
  }
  return acts[cfg.hiddenLayers];
}

/**
 * Inference: output[i] = mlp(input[i]), `inputs` values per item in, `outputs` out. Its derived
 * adjoints (codegen/adjoint.ts) give the backward pass from d_output: into d_params, and into
 * d_input as well.
 * @kernel
 * @block rows
 * @adjoint mlpForwardParamGrad params
 * @adjoint mlpForwardGrad params,input
 */
export function mlpForward(block: u32, cfg: Const<MlpConfig>, input: Buf<f32>, params: Buf<f32>, output: Buf<f32>): void {
  const ws = tiles(9);
  const acts = tiles(9);
  storeRows(output, cfg.outputs, 0, forward(cfg, params, loadRows(input, cfg.inputs, 0, cfg.inputs), ws, acts));
}

/**
 * The loss of the network against target on this block's items (times scale: the sum is added to
 * loss[0]). Its derived adjoints, which also write the loss (`outputs`), are the training step:
 * forward, loss and backward fused in one kernel per batch tile, from d_loss[0] = 1, adding the
 * parameter gradient to d_params (and dL/d input to d_input).
 * @kernel
 * @block rows
 * @adjoint mlpTrainStep params outputs
 * @adjoint mlpTrainStepInputGrad params,input outputs
 */
export function mlpLoss(block: u32, cfg: Const<MlpConfig>, input: Buf<f32>, target: Buf<f32>, params: Buf<f32>, loss: Buf<f32>, scale: f32): void {
  const ws = tiles(9);
  const acts = tiles(9);
  const y = forward(cfg, params, loadRows(input, cfg.inputs, 0, cfg.inputs), ws, acts);
  const t = loadRows(target, cfg.outputs, 0, cfg.outputs);
  accumulate(loss, 0, tileSum(tileSum(tileMap(maskedLoss, y, t, rowMask(), cfg.loss, cfg.huberDelta, scale), 0), 1));
}

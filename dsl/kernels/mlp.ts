// The fully fused MLP (tiny-cuda-nn's FullyFusedMLP, in the kernel language): one block kernel per
// batch tile runs every layer forward, the loss gradient and every layer backward, with the
// activations kept in the block's tiles. Layer l computes y = act(x · W_lᵀ (+ b_l)) with W_l
// stored row-major [outputs][inputs] at params[weightOffset[l]]; the last layer is the output layer.
// runtime/mlp.ts computes the layout and initializes the parameters.
import { type Buf, type Const, type bool, type f32, type i32, type u32, select } from "../index.ts";
import { type Tile, type Tiles, accumulate, loadRows, loadTile, matmul, matmulNT, matmulTN, rowMask, storeRows, tileMap, tileSum, tiles } from "../tiles.ts";
import { activate, activationGrad } from "./activation.ts";
import { maskedLoss, maskedLossGrad } from "./loss.ts";

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
  /** Also write dL/d input (for the encoding's backward pass). */
  inputGrad: bool;
}

function add(a: f32, b: f32): f32 {
  return a + b;
}

// Per layer l (constant once the loops over layers unroll): rows and columns of W_l, activation.
function fanOut(cfg: Const<MlpConfig>, l: i32): i32 {
  return select(l === cfg.hiddenLayers, cfg.outputs, cfg.width);
}
function fanIn(cfg: Const<MlpConfig>, l: i32): i32 {
  return select(l === 0, cfg.inputs, cfg.width);
}
function activation(cfg: Const<MlpConfig>, l: i32): i32 {
  return select(l === cfg.hiddenLayers, cfg.output, cfg.hidden);
}

/** Every layer forward from x: ws[l] = W_l, acts[l] = the output of layer l; returns the output. */
function forward(cfg: Const<MlpConfig>, params: Buf<f32>, x: Tile, ws: Tiles, acts: Tiles): Tile {
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
 * Every layer backward from g = dL/dy of the output: accumulates the parameter gradients into
 * grads and returns dL/d x.
 */
function backward(cfg: Const<MlpConfig>, grads: Buf<f32>, x: Tile, ws: Tiles, acts: Tiles, dy: Tile): Tile {
  let g: Tile = dy;
  for (let l = cfg.hiddenLayers; l >= 0; l--) {
    g = tileMap(activationGrad, g, acts[l], activation(cfg, l), cfg.leak); // dL/d (pre-activation)
    let input: Tile = x;
    if (l > 0) input = acts[l - 1];
    accumulate(grads, cfg.weightOffset[l], matmulTN(g, input));
    if (cfg.biases) accumulate(grads, cfg.biasOffset[l], tileSum(g, 0));
    g = matmul(g, ws[l]);
  }
  return g;
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
 * One training step's network part, fused: forward, the loss against target (times scale: its sum
 * is added to loss[0]), backward into grads (+=), and with inputGrad dL/d input into dinput.
 * @kernel
 * @block rows
 */
export function mlpTrain(block: u32, cfg: Const<MlpConfig>, input: Buf<f32>, target: Buf<f32>, params: Buf<f32>, grads: Buf<f32>, dinput: Buf<f32>, loss: Buf<f32>, scale: f32): void {
  const ws = tiles(9);
  const acts = tiles(9);
  const x = loadRows(input, cfg.inputs, 0, cfg.inputs);
  const y = forward(cfg, params, x, ws, acts);
  const t = loadRows(target, cfg.outputs, 0, cfg.outputs);
  const mask = rowMask();
  accumulate(loss, 0, tileSum(tileSum(tileMap(maskedLoss, y, t, mask, cfg.loss, cfg.huberDelta, scale), 0), 1));
  const dx = backward(cfg, grads, x, ws, acts, tileMap(maskedLossGrad, y, t, mask, cfg.loss, cfg.huberDelta, scale));
  if (cfg.inputGrad) storeRows(dinput, cfg.inputs, 0, dx);
}

/**
 * The backward pass from a given output gradient dy (rows past the batch read as 0): recomputes
 * the forward pass, accumulates into grads and, with inputGrad, writes dL/d input.
 * @kernel
 * @block rows
 */
export function mlpBackward(block: u32, cfg: Const<MlpConfig>, input: Buf<f32>, dy: Buf<f32>, params: Buf<f32>, grads: Buf<f32>, dinput: Buf<f32>): void {
  const ws = tiles(9);
  const acts = tiles(9);
  const x = loadRows(input, cfg.inputs, 0, cfg.inputs);
  forward(cfg, params, x, ws, acts);
  const dx = backward(cfg, grads, x, ws, acts, loadRows(dy, cfg.outputs, 0, cfg.outputs));
  if (cfg.inputGrad) storeRows(dinput, cfg.inputs, 0, dx);
}

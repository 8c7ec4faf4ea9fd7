// The MLP's hand-written backward passes, kept as the oracles of the derived ones (test/adjoint.test.ts):
// the product runs the compiler's adjoints of dsl/kernels/mlp.ts (mlpTrainStep, mlpForwardGrad),
// which matched these and ran faster on the CPU (README, "Automatic differentiation").
import { type Buf, type Const, type f32, type u32 } from "../../dsl/index.ts";
import { type Tile, type Tiles, accumulate, loadRows, matmul, matmulTN, rowMask, storeRows, tileMap, tileSum, tiles } from "../../dsl/tiles.ts";
import { activationGrad } from "../../dsl/kernels/activation.ts";
import { maskedLoss, maskedLossGrad } from "../../dsl/kernels/loss.ts";
import { type MlpConfig, activation, forward } from "../../dsl/kernels/mlp.ts";

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
 * One training step, fused: forward, the loss against target (times scale: its sum is added to
 * loss[0]), backward into grads (+=), dL/d input written into dinput.
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
  storeRows(dinput, cfg.inputs, 0, backward(cfg, grads, x, ws, acts, tileMap(maskedLossGrad, y, t, mask, cfg.loss, cfg.huberDelta, scale)));
}

/**
 * The backward pass from a given output gradient dy (rows past the batch read as 0): recomputes
 * the forward pass, accumulates into grads and writes dL/d input.
 * @kernel
 * @block rows
 */
export function mlpBackward(block: u32, cfg: Const<MlpConfig>, input: Buf<f32>, dy: Buf<f32>, params: Buf<f32>, grads: Buf<f32>, dinput: Buf<f32>): void {
  const ws = tiles(9);
  const acts = tiles(9);
  const x = loadRows(input, cfg.inputs, 0, cfg.inputs);
  forward(cfg, params, x, ws, acts);
  storeRows(dinput, cfg.inputs, 0, backward(cfg, grads, x, ws, acts, loadRows(dy, cfg.outputs, 0, cfg.outputs)));
}

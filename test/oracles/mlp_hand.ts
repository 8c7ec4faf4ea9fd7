// The MLP's and the losses' hand-written backward passes, kept as the oracles of the derived ones
// (test/codegen/adjoint.test.ts): the product runs the compiler's adjoints of dsl/kernels/mlp.ts
// (mlpTrainStep, mlpForwardGrad) and dsl/kernels/loss.ts (lossAndGrad), which match these and run
// as fast on the CPU (docs/autodiff.md).
import { type Buf, type Const, type f32, type i32, type u32, abs, select } from "../../dsl/index.ts";
import { type Tile, type Tiles, accumulate, loadRows, matmul, matmulTN, rowMask, storeRows, tileMap, tileSum, tiles } from "../../dsl/tiles.ts";
import { activationGrad } from "../../dsl/kernels/activation.ts";
import { HUBER, L1, RELATIVE_L2, maskedLoss } from "../../dsl/kernels/loss.ts";
import { type MlpConfig, activation, forward } from "../../dsl/kernels/mlp.ts";

/** d loss / d p of one element, times scale (the hand-written loss gradient). */
export function lossGrad(p: f32, t: f32, kind: i32, delta: f32, scale: f32): f32 {
  const d = p - t;
  let g = 2.0 * d;
  if (kind === RELATIVE_L2) {
    g = 2.0 * d / (p * p + 0.01);
  } else if (kind === L1) {
    g = select(d > 0.0, 1.0, select(d < 0.0, -1.0, 0.0));
  } else if (kind === HUBER) {
    g = select(abs(d) <= delta, d, select(d > 0.0, delta, -delta));
  }
  return g * scale;
}

/** The loss gradient of a masked element. */
export function maskedLossGrad(p: f32, t: f32, mask: f32, kind: i32, delta: f32, scale: f32): f32 {
  return select(mask > 0.0, lossGrad(p, t, kind, delta, scale), 0.0);
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

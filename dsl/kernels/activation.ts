// Activations of the network, as tiny-cuda-nn defines them, and their derivatives written in terms
// of the activation's *output* y (so the backward pass needs only the stored activations).
import { type f32, type i32, exp, log, max, select, tanh } from "../index.ts";

export const NONE = 0;
export const RELU = 1;
export const LEAKY_RELU = 2;
export const SIGMOID = 3;
export const TANH = 4;
export const SOFTPLUS = 5;
export const EXPONENTIAL = 6;

/** y = act(x); `kind` is a compile-time constant, so only its branch is emitted. */
export function activate(x: f32, kind: i32, leak: f32): f32 {
  let y = x;
  if (kind === RELU) {
    y = max(x, 0.0);
  } else if (kind === LEAKY_RELU) {
    y = select(x > 0.0, x, x * leak);
  } else if (kind === SIGMOID) {
    y = 1.0 / (1.0 + exp(-x));
  } else if (kind === TANH) {
    y = tanh(x);
  } else if (kind === SOFTPLUS) {
    // log(1 + e^x) without overflow: max(x, 0) + log(1 + e^-|x|).
    y = max(x, 0.0) + log(1.0 + exp(-max(x, -x)));
  } else if (kind === EXPONENTIAL) {
    y = exp(x);
  }
  return y;
}

/** dL/dx from dL/dy = g and the output y = act(x). */
export function activationGrad(g: f32, y: f32, kind: i32, leak: f32): f32 {
  let d = g;
  if (kind === RELU) {
    d = select(y > 0.0, g, 0.0);
  } else if (kind === LEAKY_RELU) {
    d = select(y > 0.0, g, g * leak);
  } else if (kind === SIGMOID) {
    d = g * y * (1.0 - y);
  } else if (kind === TANH) {
    d = g * (1.0 - y * y);
  } else if (kind === SOFTPLUS) {
    // d/dx log(1 + e^x) = sigmoid(x) = 1 - e^-y.
    d = g * (1.0 - exp(-y));
  } else if (kind === EXPONENTIAL) {
    d = g * y;
  }
  return d;
}

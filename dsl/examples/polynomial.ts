// A loop over a compile-time configuration: the coefficient loop unrolls and the coefficients
// become literals in the generated code.
import { type Buf, type Const, type f32, type i32, type u32, clamp, fma } from "../index.ts";

export interface PolyConfig {
  degree: i32;
  coefficients: f32[];
  /** Clamp the input to [0, 1] before evaluating. */
  clampInput: boolean;
}

/** @kernel */
export function polynomial(i: u32, cfg: Const<PolyConfig>, x: Buf<f32>, out: Buf<f32>): void {
  let t = x[i];
  if (cfg.clampInput) {
    t = clamp(t, 0.0, 1.0);
  }
  // Horner's scheme, highest coefficient first.
  let acc: f32 = cfg.coefficients[cfg.degree];
  for (let k = cfg.degree - 1; k >= 0; k--) {
    acc = fma(acc, t, cfg.coefficients[k]);
  }
  out[i] = acc;
}

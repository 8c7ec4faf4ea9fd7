// Interpolation weights along one axis. Given the fraction f of a point inside its cell and
// omf = 1 - f (each computed with one rounding, see grid.ts), the weight of the upper corner is
// s(f) and of the lower corner s(omf), where s is the identity (linear) or smoothstep.
import { type f32, type i32 } from "../index.ts";

export const NEAREST = 0;
export const LINEAR = 1;
export const SMOOTHSTEP = 2;

/** Hermite smoothstep s(t) = t^2 (3 - 2t); s(1 - t) = 1 - s(t). */
export function smoothstep(t: f32): f32 {
  return t * t * (3.0 - 2.0 * t);
}

/** s(t) for the interpolation `mode` (NEAREST and LINEAR both use the identity). */
export function weight(mode: i32, t: f32): f32 {
  if (mode === SMOOTHSTEP) {
    return smoothstep(t);
  } else {
    return t;
  }
}

/** ds/dt at fraction t (omt = 1 - t): 6 t (1 - t) for smoothstep, 1 otherwise. */
export function weightDerivative(mode: i32, t: f32, omt: f32): f32 {
  if (mode === SMOOTHSTEP) {
    return 6.0 * t * omt;
  } else {
    return 1.0;
  }
}

// Helper functions: they are inlined into the kernel, and may take the configuration along.
import { type Buf, type Const, type f32, type u32, clamp, select } from "../index.ts";

export interface BlendConfig {
  smooth: boolean;
}

/** Hermite smoothstep s(t) = t^2 (3 - 2t). */
function smoothstep(t: f32): f32 {
  return t * t * (3.0 - 2.0 * t);
}

function weight(cfg: Const<BlendConfig>, t: f32): f32 {
  const c = clamp(t, 0.0, 1.0);
  if (cfg.smooth) {
    return smoothstep(c);
  } else {
    return c;
  }
}

/** @kernel */
export function blend(i: u32, cfg: Const<BlendConfig>, t: Buf<f32>, a: Buf<f32>, b: Buf<f32>, out: Buf<f32>): void {
  const w = weight(cfg, t[i]);
  const lerp = a[i] + w * (b[i] - a[i]);
  out[i] = select(t[i] < 0.0, a[i], lerp);
}

// A space-time encoding for (x, y, z, t), as Earth4D builds it: instead of one 4D grid (16
// corners per cell, and tables that collide at the fine levels), four 3D grids over (x, y, z),
// (x, y, t), (y, z, t) and (x, z, t), whose features are concatenated. Configure a 4D grid whose
// level count is 4 x the levels of each 3D grid; level l is grid l % 4 at resolution level l / 4
// (that level's scales, so give perLevelScale for the 3D grids' growth), with its own table.
// `requires` below says so: every command refuses other dims or levels before it compiles.
//
//   HashGrid.create({ dims: 4, levels: 4 * 8, perLevelScale: 1.5, variant: "examples/variants/spacetime.ts" })
//   bun run gradcheck --encoding examples/variants/spacetime.ts --dims 4
//   bun run train --points field4d.bin --encoding examples/variants/spacetime.ts --levels 16 --per-level-scale 2
import { type Buf, type Const, type Float, type f32, type i32, floor, fma, localArray, max, min, select, u32 } from "ngp-kernels/dsl";
import { coherentHash } from "ngp-kernels/dsl/kernels/hash.ts";
import { type GridConfig, inputIndex, outputIndex } from "ngp-kernels/dsl/kernels/lookup.ts";

/** What it needs of the grid: (x, y, z, t), and levels in fours (one per 3D grid). */
export const requires = { dims: 4, levelsMultipleOf: 4 };

/** The axes of the four 3D grids: xyz, xyt, yzt, xzt. */
export const AXES: i32[] = [0, 1, 2, 0, 1, 3, 1, 2, 3, 0, 2, 3];

/** Replaces lookup.ts's encodeLevel: trilinear interpolation in grid l % 4 at level l / 4. */
export function encodeLevel(cfg: Const<GridConfig>, l: i32, x: Buf<f32>, i: u32, params: Buf<Float>, probe: Buf<u32>, softmax: Buf<f32>, out: Buf<f32>): void {
  const grid = l % 4;
  const level = l / 4;
  const cell = localArray<u32>(3);
  const w0 = localArray<f32>(3);
  const w1 = localArray<f32>(3);
  for (let a = 0; a < 3; a++) {
    const d = AXES[grid * 3 + a];
    // As the default lookup: clamped to [0, 1] (NaN counts as 0), cell = floor(x * scale + 0.5).
    const xd = min(max(0.0, x[inputIndex(cfg, i, d)]), 1.0);
    const pos = fma(xd, cfg.scale[level * cfg.dims + d], 0.5);
    const c = floor(pos);
    cell[a] = u32(c);
    w1[a] = pos - c;
    w0[a] = 1.0 - w1[a];
  }
  const acc = localArray<f32>(cfg.features);
  for (let c = 0; c < 8; c++) {
    const coords = localArray<u32>(3);
    let w: f32 = 1.0;
    for (let a = 0; a < 3; a++) {
      coords[a] = cell[a] + u32((c >> a) & 1);
      w *= select(((c >> a) & 1) === 1, w1[a], w0[a]);
    }
    const base = (cfg.offset[l] + coherentHash(coords, 3) % cfg.size[l]) * u32(cfg.features);
    for (let f = 0; f < cfg.features; f++) {
      acc[f] = fma(w, params[base + u32(f)], acc[f]);
    }
  }
  const o = outputIndex(cfg, i, l);
  for (let f = 0; f < cfg.features; f++) {
    out[o + u32(f)] = acc[f];
  }
}

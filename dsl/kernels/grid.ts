// The multiresolution hash-grid encoding (Instant-NGP), per point and per level, with
// tiny-cuda-nn's indexing: per level l a scale, a table of size[l] entries of `features` values at
// params[(offset[l] + slot) * features], dense indexing where the level's grid fits its table,
// the coherent-prime hash where it does not. modules/hashgrid.ts computes the configuration
// (scales, strides, sizes, offsets) from the user's settings; everything here is baked in.
//
// Inputs are clamped to [0, 1] (the gradient with respect to a clamped coordinate is 0), and a NaN
// coordinate counts as 0, so that it encodes like any point and keeps NaN out of the gradient.
import { type Buf, type Const, type Float, type bool, type f16, type f32, type i32, atomicAdd, floor, fma, localArray, max, min, select, u32 } from "../index.ts";
import { coherentHash } from "./hash.ts";
import { NEAREST, weight, weightDerivative } from "./interpolate.ts";

export interface GridConfig {
  dims: i32;
  levels: i32;
  features: i32;
  /** NEAREST, LINEAR or SMOOTHSTEP (interpolate.ts). */
  interpolation: i32;
  /** [l * dims + d]: scale of axis d at level l (resolution - 1 cells across [0, 1]). */
  scale: f32[];
  /** [l * dims + d]: dense stride of axis d (0 for axes tiny-cuda-nn leaves out of the index). */
  stride: u32[];
  /** [l]: table entries of level l. */
  size: u32[];
  /** [l]: first entry of level l. */
  offset: u32[];
  /** [l]: the level is hashed (its grid has more vertices than its table). */
  hashed: bool[];
}

/**
 * Cell of point i at level l, and per axis the weights of its lower (w0) and upper (w1) corner and
 * dw = d w1 / d x. The cell is floor(x * scale + 0.5) as in tiny-cuda-nn, but of the exact value:
 * the f32 sum can round up onto the next integer, which a negative fraction reveals and one step
 * back corrects. The fraction and its complement are then each one rounding of the exact
 * x * scale + 0.5 - cell (fma), in [0, 1], rather than the f32 difference pos - floor(pos), which
 * loses 11 bits at resolution 2048. (0.5 - g is exact: resolutions are at most 2^23.)
 */
function locate(cfg: Const<GridConfig>, l: i32, x: Buf<f32>, i: u32, cell: u32[], w0: f32[], w1: f32[], dw: f32[]): void {
  for (let d = 0; d < cfg.dims; d++) {
    // max(a, b) returns a when either is NaN: max(0, NaN) is 0 at no extra cost (clamp(NaN) is NaN).
    const xd = min(max(0.0, x[i * u32(cfg.dims) + u32(d)]), 1.0);
    const s = cfg.scale[l * cfg.dims + d];
    const rounded = floor(fma(xd, s, 0.5));
    const g = select(fma(xd, s, 0.5 - rounded) < 0.0, rounded - 1.0, rounded);
    cell[d] = u32(g);
    const f = fma(xd, s, 0.5 - g);
    const omf = fma(-xd, s, g + 0.5);
    w1[d] = weight(cfg.interpolation, f);
    w0[d] = weight(cfg.interpolation, omf);
    dw[d] = s * weightDerivative(cfg.interpolation, f, omf);
  }
}

/** Table entry (times `features`, plus the level offset) of corner `corner` of the cell. */
function entry(cfg: Const<GridConfig>, l: i32, cell: u32[], corner: i32, coords: u32[]): u32 {
  for (let d = 0; d < cfg.dims; d++) {
    coords[d] = cell[d] + u32((corner >> d) & 1);
  }
  let index: u32 = 0;
  if (cfg.hashed[l]) {
    index = coherentHash(coords, cfg.dims);
  } else {
    for (let d = 0; d < cfg.dims; d++) {
      index += coords[d] * cfg.stride[l * cfg.dims + d];
    }
  }
  return (cfg.offset[l] + index % cfg.size[l]) * u32(cfg.features);
}

/** Interpolation weight of corner `corner`: the product over axes of w1 or w0. */
function cornerWeight(cfg: Const<GridConfig>, corner: i32, w0: f32[], w1: f32[]): f32 {
  let w: f32 = 1.0;
  for (let d = 0; d < cfg.dims; d++) {
    w *= select(((corner >> d) & 1) === 1, w1[d], w0[d]);
  }
  return w;
}

/** out[i][l][f]: the encoding of point i, levels concatenated ([n][levels * features]). */
function forward(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, params: Buf<Float>, out: Buf<f32>): void {
  for (let l = 0; l < cfg.levels; l++) {
    const cell = localArray<u32>(cfg.dims);
    const coords = localArray<u32>(cfg.dims);
    const w0 = localArray<f32>(cfg.dims);
    const w1 = localArray<f32>(cfg.dims);
    const dw = localArray<f32>(cfg.dims);
    locate(cfg, l, x, i, cell, w0, w1, dw);
    const acc = localArray<f32>(cfg.features);
    if (cfg.interpolation === NEAREST) {
      const base = entry(cfg, l, cell, 0, coords);
      for (let f = 0; f < cfg.features; f++) {
        acc[f] = params[base + u32(f)];
      }
    } else {
      for (let c = 0; c < 1 << cfg.dims; c++) {
        const w = cornerWeight(cfg, c, w0, w1);
        const base = entry(cfg, l, cell, c, coords);
        for (let f = 0; f < cfg.features; f++) {
          acc[f] = fma(w, params[base + u32(f)], acc[f]);
        }
      }
    }
    const o = (i * u32(cfg.levels) + u32(l)) * u32(cfg.features);
    for (let f = 0; f < cfg.features; f++) {
      out[o + u32(f)] = acc[f];
    }
  }
}

/**
 * grad += d loss / d params: every corner receives weight * dy (a scatter-add). Levels write
 * disjoint parts of grad, so on the CPU each level is owned by one thread (no atomics). The
 * gradient is f32 whatever the parameters' storage.
 * @kernel
 * @schedule owner
 */
export function gridBackward(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, dy: Buf<f32>, grad: Buf<f32>): void {
  for (let l = 0; l < cfg.levels; l++) {
    const cell = localArray<u32>(cfg.dims);
    const coords = localArray<u32>(cfg.dims);
    const w0 = localArray<f32>(cfg.dims);
    const w1 = localArray<f32>(cfg.dims);
    const dw = localArray<f32>(cfg.dims);
    locate(cfg, l, x, i, cell, w0, w1, dw);
    const o = (i * u32(cfg.levels) + u32(l)) * u32(cfg.features);
    if (cfg.interpolation === NEAREST) {
      const base = entry(cfg, l, cell, 0, coords);
      for (let f = 0; f < cfg.features; f++) {
        atomicAdd(grad, base + u32(f), dy[o + u32(f)]);
      }
    } else {
      for (let c = 0; c < 1 << cfg.dims; c++) {
        const w = cornerWeight(cfg, c, w0, w1);
        const base = entry(cfg, l, cell, c, coords);
        for (let f = 0; f < cfg.features; f++) {
          atomicAdd(grad, base + u32(f), w * dy[o + u32(f)]);
        }
      }
    }
  }
}

/** dx[i][d] = d loss / d x[i][d] (0 where x was clamped or NaN; 0 everywhere for NEAREST). */
function inputGrad(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, params: Buf<Float>, dy: Buf<f32>, dx: Buf<f32>): void {
  const acc = localArray<f32>(cfg.dims);
  if (cfg.interpolation !== NEAREST) {
    for (let l = 0; l < cfg.levels; l++) {
      const cell = localArray<u32>(cfg.dims);
      const coords = localArray<u32>(cfg.dims);
      const w0 = localArray<f32>(cfg.dims);
      const w1 = localArray<f32>(cfg.dims);
      const dw = localArray<f32>(cfg.dims);
      locate(cfg, l, x, i, cell, w0, w1, dw);
      const o = (i * u32(cfg.levels) + u32(l)) * u32(cfg.features);
      for (let c = 0; c < 1 << cfg.dims; c++) {
        const base = entry(cfg, l, cell, c, coords);
        // g = <dy, E[corner]>: how much the loss moves per unit of this corner's weight.
        let g: f32 = 0.0;
        for (let f = 0; f < cfg.features; f++) {
          g = fma(dy[o + u32(f)], params[base + u32(f)], g);
        }
        for (let d = 0; d < cfg.dims; d++) {
          // d weight / d x_d = (product of the other axes' weights) * (+dw or -dw on axis d).
          let w: f32 = g * dw[d];
          for (let k = 0; k < cfg.dims; k++) {
            if (k !== d) {
              w *= select(((c >> k) & 1) === 1, w1[k], w0[k]);
            }
          }
          acc[d] += select(((c >> d) & 1) === 1, w, -w);
        }
      }
    }
  }
  for (let d = 0; d < cfg.dims; d++) {
    const xd = x[i * u32(cfg.dims) + u32(d)];
    dx[i * u32(cfg.dims) + u32(d)] = select(xd >= 0.0 && xd <= 1.0, acc[d], 0.0);
  }
}

// The kernels, for f32 parameters and for f16 storage (computed in f32).

/**
 * @kernel
 * @schedule split
 */
export function gridForward(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, params: Buf<f32>, out: Buf<f32>): void {
  forward(i, cfg, x, params, out);
}

/**
 * @kernel
 * @schedule split
 */
export function gridForwardHalf(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, params: Buf<f16>, out: Buf<f32>): void {
  forward(i, cfg, x, params, out);
}

/** @kernel */
export function gridInputGrad(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, params: Buf<f32>, dy: Buf<f32>, dx: Buf<f32>): void {
  inputGrad(i, cfg, x, params, dy, dx);
}

/** @kernel */
export function gridInputGradHalf(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, params: Buf<f16>, dy: Buf<f32>, dx: Buf<f32>): void {
  inputGrad(i, cfg, x, params, dy, dx);
}

/**
 * For collision statistics: cells[i][l][d] (the lower corner of the cell) and slots[i][l][c], the
 * table slot (within the level) of every corner.
 */
/** @kernel */
export function gridSlots(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, cells: Buf<u32>, slots: Buf<u32>): void {
  for (let l = 0; l < cfg.levels; l++) {
    const cell = localArray<u32>(cfg.dims);
    const coords = localArray<u32>(cfg.dims);
    const w0 = localArray<f32>(cfg.dims);
    const w1 = localArray<f32>(cfg.dims);
    const dw = localArray<f32>(cfg.dims);
    locate(cfg, l, x, i, cell, w0, w1, dw);
    const il = i * u32(cfg.levels) + u32(l);
    for (let d = 0; d < cfg.dims; d++) {
      cells[il * u32(cfg.dims) + u32(d)] = cell[d];
    }
    for (let c = 0; c < 1 << cfg.dims; c++) {
      slots[il * u32(1 << cfg.dims) + u32(c)] = entry(cfg, l, cell, c, coords) / u32(cfg.features) - cfg.offset[l];
    }
  }
}

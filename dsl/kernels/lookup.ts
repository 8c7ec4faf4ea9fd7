// The hash grid's lookup, in parts: locating a point's cell and its corners' weights, a corner's
// table entry (dense, hashed or learned-probing index), and the default per-level lookup that
// combines them. grid.ts builds the kernels from these.
//
// The parts a variant may replace are the functions tagged `@replaceable` (spatialHash,
// interpolationWeight, cornerSlot, encodeLevel). A variant is a kernel file that exports functions
// with these names and signatures (any of them); compiled with it (HashGrid's `variant` option,
// `bun run train --encoding file.ts`), every call of a part resolves to the variant's function
// instead, inlined into the fused kernels like the default, so replacing one changes every default
// that uses it, and the gradients come from the compiler (codegen/adjoint.ts). The defaults live
// here and in hash.ts under other names, so that a variant can call them (import from
// "ngp-kernels/dsl/kernels/lookup.ts"): e.g. a variant's encodeLevel may blend defaultEncodeLevel's
// features with its own.
import { type Buf, type Const, type Float, type bool, type f32, type i32, atomicAdd, floor, fma, localArray, max, min, select, u32 } from "../index.ts";
import { coherentHash, indexHash } from "./hash.ts";
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
  /** N_p: slots per bucket of a probed level (a power of two; 1: no probing). */
  probeRange: i32;
  /** N_c: rows of a probed level's index codebook. */
  codebookSize: i32;
  /** [l]: the level uses learned probing (hashed, and probeRange > 1). */
  probed: bool[];
  /** [l]: first codebook row of level l (rows of probe[], of N_p logits each). */
  rowOffset: u32[];
  /**
   * Where the grid sits in an encoding of several (modules/encoding.ts): values per input row (the
   * data's dimension), [d] the input axis of the grid's axis d, values per output row (the
   * concatenated encoding's width) and the first of them the grid writes. A lone grid: dims, the
   * axes in order, levels * features and 0.
   */
  inputDims: i32;
  axes: i32[];
  outputStride: i32;
  outputOffset: i32;
}

/** Index in x of point i's coordinate on the grid's axis d (the input row holds every axis). */
export function inputIndex(cfg: Const<GridConfig>, i: u32, d: i32): u32 {
  return i * u32(cfg.inputDims) + u32(cfg.axes[d]);
}

/**
 * Index in the output (and its gradient dy) of point i's first feature at level l: the grid's
 * part of row i of the concatenated encoding ((i * levels + l) * features for a lone grid, the
 * form it folds to there).
 */
export function outputIndex(cfg: Const<GridConfig>, i: u32, l: i32): u32 {
  return select(cfg.outputStride === cfg.levels * cfg.features && cfg.outputOffset === 0, (i * u32(cfg.levels) + u32(l)) * u32(cfg.features), i * u32(cfg.outputStride) + u32(l * cfg.features + cfg.outputOffset));
}

/**
 * Cell of point i at level l, and per axis the weights of its lower (w0) and upper (w1) corner and
 * dw = d w1 / d x. The cell is floor(x * scale + 0.5) as in tiny-cuda-nn, but of the exact value:
 * the f32 sum can round up onto the next integer, which a negative fraction reveals and one step
 * back corrects. The fraction and its complement are then each one rounding of the exact
 * x * scale + 0.5 - cell (fma), in [0, 1], rather than the f32 difference pos - floor(pos), which
 * loses 11 bits at resolution 2048. (0.5 - g is exact: resolutions are at most 2^23.)
 */
export function locate(cfg: Const<GridConfig>, l: i32, x: Buf<f32>, i: u32, cell: u32[], w0: f32[], w1: f32[], dw: f32[]): void {
  for (let d = 0; d < cfg.dims; d++) {
    // max(a, b) returns a when either is NaN: max(0, NaN) is 0 at no extra cost (clamp(NaN) is NaN).
    const xd = min(max(0.0, x[inputIndex(cfg, i, d)]), 1.0);
    const s = cfg.scale[l * cfg.dims + d];
    const rounded = floor(fma(xd, s, 0.5));
    const g = select(fma(xd, s, 0.5 - rounded) < 0.0, rounded - 1.0, rounded);
    cell[d] = u32(g);
    const f = fma(xd, s, 0.5 - g);
    const omf = fma(-xd, s, g + 0.5);
    w1[d] = interpolationWeight(cfg.interpolation, f);
    w0[d] = interpolationWeight(cfg.interpolation, omf);
    dw[d] = s * weightDerivative(cfg.interpolation, f, omf);
  }
}

/** coords = the grid vertex of corner `corner` of the cell. */
export function cornerCoords(cfg: Const<GridConfig>, cell: u32[], corner: i32, coords: u32[]): void {
  for (let d = 0; d < cfg.dims; d++) {
    coords[d] = cell[d] + u32((corner >> d) & 1);
  }
}

/**
 * The default index scheme: the slot of vertex `coords` within level l's table (an unprobed
 * level): dense indexing where the level's grid fits its table, the spatial hash otherwise
 * (variants replace it as `cornerSlot`).
 */
export function defaultCornerSlot(cfg: Const<GridConfig>, l: i32, coords: u32[]): u32 {
  let index: u32 = 0;
  if (cfg.hashed[l]) {
    index = spatialHash(coords, cfg.dims);
  } else {
    for (let d = 0; d < cfg.dims; d++) {
      index += coords[d] * cfg.stride[l * cfg.dims + d];
    }
  }
  return index % cfg.size[l];
}

/** First entry of the bucket of vertex `coords` at probed level l (its N_p slots follow). */
export function bucket(cfg: Const<GridConfig>, l: i32, coords: u32[]): u32 {
  return cfg.offset[l] + spatialHash(coords, cfg.dims) % (cfg.size[l] / u32(cfg.probeRange)) * u32(cfg.probeRange);
}

/** Codebook row (over all levels) of vertex `coords` at probed level l. */
export function codebookRow(cfg: Const<GridConfig>, l: i32, coords: u32[]): u32 {
  return cfg.rowOffset[l] + indexHash(coords, cfg.dims) % u32(cfg.codebookSize);
}

/** Table entry (times `features`, plus the level offset) of corner `corner` of the cell. */
export function entry(cfg: Const<GridConfig>, l: i32, cell: u32[], corner: i32, coords: u32[], probe: Buf<u32>): u32 {
  cornerCoords(cfg, cell, corner, coords);
  if (cfg.probed[l]) {
    return (bucket(cfg, l, coords) + probe[codebookRow(cfg, l, coords)]) * u32(cfg.features);
  } else {
    return (cfg.offset[l] + cornerSlot(cfg, l, coords)) * u32(cfg.features);
  }
}

/** Interpolation weight of corner `corner`: the product over axes of w1 or w0. */
export function cornerWeight(cfg: Const<GridConfig>, corner: i32, w0: f32[], w1: f32[]): f32 {
  let w: f32 = 1.0;
  for (let d = 0; d < cfg.dims; d++) {
    w *= select(((corner >> d) & 1) === 1, w1[d], w0[d]);
  }
  return w;
}

/**
 * Feature f of the table entry at `base` (entry() * features), read for corner `coords` of level l.
 * Its declared derivative (featureGrad) is what the compiler's adjoint uses: the entry's feature
 * receives the adjoint, and at a probed level the logits of the vertex's codebook row receive
 * learned probing's straight-through gradient.
 * @grad featureGrad
 */
export function feature(cfg: Const<GridConfig>, l: i32, coords: u32[], base: u32, f: i32, params: Buf<Float>, softmax: Buf<f32>): f32 {
  return params[base + u32(f)];
}

/**
 * The derivative of feature(): d_params[base + f] += adj and, at a probed level, the derivative of
 * the soft lookup sum_p s_p E[bucket + p][f] with respect to the slot weights s = softmax(logits of
 * the row): d_softmax[row][p] += adj * E[bucket + p][f] (straight-through: the forward reads the
 * argmax slot). It depends on p through slot p's feature: with one value for every p the logits
 * would get exactly 0. d_softmax is what HashGrid accumulates for the logits; the optimizer step
 * maps it through the softmax's Jacobian once per row (optimizer.ts, adamStepRows).
 */
export function featureGrad(cfg: Const<GridConfig>, l: i32, coords: u32[], base: u32, f: i32, params: Buf<Float>, softmax: Buf<f32>, adj: f32, d_params: Buf<f32>, d_softmax: Buf<f32>): void {
  atomicAdd(d_params, base + u32(f), adj);
  if (cfg.probed[l]) {
    const first = bucket(cfg, l, coords);
    const row = codebookRow(cfg, l, coords) * u32(cfg.probeRange);
    for (let p = 0; p < cfg.probeRange; p++) {
      atomicAdd(d_softmax, row + u32(p), adj * params[(first + u32(p)) * u32(cfg.features) + u32(f)]);
    }
  }
}

/**
 * acc[f] = the features of point i at level l: the interpolation, over the corners of its cell,
 * of their table entries.
 */
export function levelFeatures(cfg: Const<GridConfig>, l: i32, x: Buf<f32>, i: u32, params: Buf<Float>, probe: Buf<u32>, softmax: Buf<f32>, acc: f32[]): void {
  const cell = localArray<u32>(cfg.dims);
  const coords = localArray<u32>(cfg.dims);
  const w0 = localArray<f32>(cfg.dims);
  const w1 = localArray<f32>(cfg.dims);
  const dw = localArray<f32>(cfg.dims);
  locate(cfg, l, x, i, cell, w0, w1, dw);
  if (cfg.interpolation === NEAREST) {
    const base = entry(cfg, l, cell, 0, coords, probe);
    for (let f = 0; f < cfg.features; f++) {
      acc[f] = feature(cfg, l, coords, base, f, params, softmax);
    }
  } else {
    for (let c = 0; c < 1 << cfg.dims; c++) {
      const w = cornerWeight(cfg, c, w0, w1);
      const base = entry(cfg, l, cell, c, coords, probe);
      for (let f = 0; f < cfg.features; f++) {
        acc[f] = fma(w, feature(cfg, l, coords, base, f, params, softmax), acc[f]);
      }
    }
  }
}

/**
 * The default per-level lookup: out[i][l][f] = levelFeatures (variants replace it as
 * `encodeLevel`).
 */
export function defaultEncodeLevel(cfg: Const<GridConfig>, l: i32, x: Buf<f32>, i: u32, params: Buf<Float>, probe: Buf<u32>, softmax: Buf<f32>, out: Buf<f32>): void {
  const acc = localArray<f32>(cfg.features);
  levelFeatures(cfg, l, x, i, params, probe, softmax, acc);
  const o = outputIndex(cfg, i, l);
  for (let f = 0; f < cfg.features; f++) {
    out[o + u32(f)] = acc[f];
  }
}

// ---- the parts a variant may replace -------------------------------------------------------------

/**
 * The spatial hash of a grid vertex (hashed levels): any u32, reduced modulo the table size.
 * @replaceable
 */
export function spatialHash(coords: u32[], dims: i32): u32 {
  return coherentHash(coords, dims);
}

/**
 * The weight of a corner along one axis, given the fraction t toward it (in [0, 1]).
 * @replaceable
 */
export function interpolationWeight(mode: i32, t: f32): f32 {
  return weight(mode, t);
}

/**
 * The index scheme: the slot of vertex `coords` in level l's table (in [0, cfg.size[l])).
 * @replaceable
 */
export function cornerSlot(cfg: Const<GridConfig>, l: i32, coords: u32[]): u32 {
  return defaultCornerSlot(cfg, l, coords);
}

/**
 * The whole per-level lookup: writes out[(i * levels + l) * features + f] for f < features,
 * reading params[(offset[l] + slot) * features + f] (probe and softmax: learned probing's table
 * and slot probabilities, for feature()).
 * @replaceable
 */
export function encodeLevel(cfg: Const<GridConfig>, l: i32, x: Buf<f32>, i: u32, params: Buf<Float>, probe: Buf<u32>, softmax: Buf<f32>, out: Buf<f32>): void {
  defaultEncodeLevel(cfg, l, x, i, params, probe, softmax, out);
}

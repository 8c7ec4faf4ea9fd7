// The multiresolution hash-grid encoding (Instant-NGP), per point and per level, with
// tiny-cuda-nn's indexing: per level l a scale, a table of size[l] entries of `features` values at
// params[(offset[l] + slot) * features], dense indexing where the level's grid fits its table,
// the coherent-prime hash where it does not. modules/hashgrid.ts computes the configuration
// (scales, strides, sizes, offsets) from the user's settings; everything here is baked in.
//
// Inputs are clamped to [0, 1] (the gradient with respect to a clamped coordinate is 0), and a NaN
// coordinate counts as 0, so that it encodes like any point and keeps NaN out of the gradient.
//
// Learned hash probing (Compact NGP, Takikawa et al. 2023) on the hashed levels when
// probeRange N_p > 1: the level's table is N_f = size / N_p buckets of N_p slots, and a vertex's
// entry is N_p * (hash % N_f) + probe[row], where row = hash2 % codebookSize selects a row of the
// level's index codebook (N_p logits per row) and probe[row] is that row's argmax, kept up to date
// by the optimizer step (optimizer.ts, adamStepRows) with the row's softmax. The forward reads the
// argmax slot; the backward also gives each slot of the row the gradient of a softmax-weighted
// lookup over the row (straight-through), with respect to the slot's weight: the optimizer step
// takes it through the softmax to the logits, once per row. With N_p = 1 no level is probed and
// every probing statement folds away: the plain grid.
import { type Buf, type Const, type Float, type f16, type f32, i32, atomicAdd, fma, localArray, select, u32 } from "../index.ts";
import { NEAREST } from "./interpolate.ts";
import { type GridConfig, bucket, codebookRow, cornerWeight, encodeLevel, entry, inputIndex, locate, outputIndex } from "./lookup.ts";
import { refreshRow } from "./probe.ts";

/** out[i][l][f]: the encoding of point i, levels concatenated ([n][levels * features]). */
function forward(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, params: Buf<Float>, probe: Buf<u32>, softmax: Buf<f32>, out: Buf<f32>): void {
  for (let l = 0; l < cfg.levels; l++) {
    encodeLevel(cfg, l, x, i, params, probe, softmax, out);
  }
}

/**
 * The gradient of corner `corner` (weight w) of point i at level l: its entry's features receive
 * w * dy; at a probed level, slot p of the vertex's codebook row receives
 * g_p = w * <dy, E[bucket + p]>, the derivative of the soft lookup sum_p s_p E[bucket + p] with
 * respect to the slot's weight s_p (straight-through: the forward reads the argmax slot). g_p
 * depends on p through the feature row, so the logits do learn (an implementation that uses one
 * g for every p gets exactly 0). The softmax's Jacobian, d loss / d logit_p = s_p (G_p - sum_q s_q G_q)
 * with G the row's sum of g over the batch, is linear and the same for every lookup of the row:
 * the optimizer step applies it once per row (optimizer.ts, adamStepRows), not once per lookup.
 */
function cornerBackward(cfg: Const<GridConfig>, l: i32, cell: u32[], corner: i32, coords: u32[], w: f32, o: u32, params: Buf<Float>, probe: Buf<u32>, dy: Buf<f32>, grad: Buf<f32>, slotGrad: Buf<f32>): void {
  const base = entry(cfg, l, cell, corner, coords, probe);
  for (let f = 0; f < cfg.features; f++) {
    atomicAdd(grad, base + u32(f), w * dy[o + u32(f)]);
  }
  if (cfg.probed[l]) {
    const first = bucket(cfg, l, coords);
    const row = codebookRow(cfg, l, coords) * u32(cfg.probeRange);
    // Over the bucket's slots: a loop at run time (its bound is the bucket's end), not unrolled N_p
    // times per corner and level, which made the C++ of N_p = 32 (Earth4D) take minutes to build.
    for (let slot = first; slot < first + u32(cfg.probeRange); slot++) {
      let gp: f32 = 0.0;
      for (let f = 0; f < cfg.features; f++) {
        gp = fma(dy[o + u32(f)], params[slot * u32(cfg.features) + u32(f)], gp);
      }
      atomicAdd(slotGrad, row + (slot - first), w * gp);
    }
  }
}

/**
 * grad += d loss / d params and slotGrad += d loss / d softmax (the probed levels' slot weights,
 * see cornerBackward).
 */
function backward(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, params: Buf<Float>, probe: Buf<u32>, dy: Buf<f32>, grad: Buf<f32>, slotGrad: Buf<f32>): void {
  for (let l = 0; l < cfg.levels; l++) {
    const cell = localArray<u32>(cfg.dims);
    const coords = localArray<u32>(cfg.dims);
    const w0 = localArray<f32>(cfg.dims);
    const w1 = localArray<f32>(cfg.dims);
    const dw = localArray<f32>(cfg.dims);
    locate(cfg, l, x, i, cell, w0, w1, dw);
    const o = outputIndex(cfg, i, l);
    if (cfg.interpolation === NEAREST) {
      cornerBackward(cfg, l, cell, 0, coords, 1.0, o, params, probe, dy, grad, slotGrad);
    } else {
      for (let c = 0; c < 1 << cfg.dims; c++) {
        cornerBackward(cfg, l, cell, c, coords, cornerWeight(cfg, c, w0, w1), o, params, probe, dy, grad, slotGrad);
      }
    }
  }
}

/**
 * dx[i][axes[d]] += d loss / d x[i][axes[d]] (0 where x was clamped or NaN; 0 everywhere for
 * NEAREST): added, as the derived gradient does, so that grids sharing an axis sum into it.
 */
function inputGrad(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, params: Buf<Float>, probe: Buf<u32>, dy: Buf<f32>, dx: Buf<f32>): void {
  const acc = localArray<f32>(cfg.dims);
  if (cfg.interpolation !== NEAREST) {
    for (let l = 0; l < cfg.levels; l++) {
      const cell = localArray<u32>(cfg.dims);
      const coords = localArray<u32>(cfg.dims);
      const w0 = localArray<f32>(cfg.dims);
      const w1 = localArray<f32>(cfg.dims);
      const dw = localArray<f32>(cfg.dims);
      locate(cfg, l, x, i, cell, w0, w1, dw);
      const o = outputIndex(cfg, i, l);
      for (let c = 0; c < 1 << cfg.dims; c++) {
        const base = entry(cfg, l, cell, c, coords, probe);
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
    const xd = x[inputIndex(cfg, i, d)];
    dx[inputIndex(cfg, i, d)] += select(xd >= 0.0 && xd <= 1.0, acc[d], 0.0);
  }
}

// The kernels, for f32 parameters and for f16 storage (computed in f32). `probe` (the argmax slot
// of every codebook row) and, in the backward, `logitGrad` (d loss / d softmax of every codebook
// row, see cornerBackward) are read and written only at probed levels: a grid without probing
// passes placeholders. `softmax` (the rows' softmax) is for variants (lookup.ts's @replaceable
// parts) and the optimizer: the default lookup does not read it.

/**
 * The forward, and its adjoints derived by the compiler (codegen/adjoint.ts): the parameter
 * gradient, one level per thread like gridBackward, with learned probing's gradient with respect
 * to the rows' softmax (the straight-through estimator declared by lookup.ts's feature();
 * d_softmax receives it, as gridBackward's logitGrad), and the input gradient. The hand-written
 * gridBackward and gridInputGrad are their oracles in the tests.
 * @kernel
 * @schedule split
 * @adjoint gridForwardParamGrad params,softmax owner
 * @adjoint gridForwardInputGrad x
 */
export function gridForward(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, params: Buf<f32>, probe: Buf<u32>, softmax: Buf<f32>, out: Buf<f32>): void {
  forward(i, cfg, x, params, probe, softmax, out);
}

/**
 * @kernel
 * @schedule split
 * @adjoint gridForwardHalfParamGrad params,softmax owner
 * @adjoint gridForwardHalfInputGrad x
 */
export function gridForwardHalf(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, params: Buf<f16>, probe: Buf<u32>, softmax: Buf<f32>, out: Buf<f32>): void {
  forward(i, cfg, x, params, probe, softmax, out);
}

/**
 * Levels write disjoint parts of grad and logitGrad, so on the CPU each level is owned by one
 * thread (no atomics). The gradients are f32 whatever the parameters' storage. logitGrad receives
 * d loss / d softmax (cornerBackward); `softmax` is not read (the derived gradient's arguments).
 * @kernel
 * @schedule owner
 */
export function gridBackward(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, params: Buf<f32>, probe: Buf<u32>, softmax: Buf<f32>, dy: Buf<f32>, grad: Buf<f32>, logitGrad: Buf<f32>): void {
  backward(i, cfg, x, params, probe, dy, grad, logitGrad);
}

/**
 * @kernel
 * @schedule owner
 */
export function gridBackwardHalf(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, params: Buf<f16>, probe: Buf<u32>, softmax: Buf<f32>, dy: Buf<f32>, grad: Buf<f32>, logitGrad: Buf<f32>): void {
  backward(i, cfg, x, params, probe, dy, grad, logitGrad);
}

/** @kernel */
export function gridInputGrad(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, params: Buf<f32>, probe: Buf<u32>, dy: Buf<f32>, dx: Buf<f32>): void {
  inputGrad(i, cfg, x, params, probe, dy, dx);
}

/** @kernel */
export function gridInputGradHalf(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, params: Buf<f16>, probe: Buf<u32>, dy: Buf<f32>, dx: Buf<f32>): void {
  inputGrad(i, cfg, x, params, probe, dy, dx);
}

/**
 * probe and softmax of codebook row i from its logits (after changing the logits other than by an
 * optimizer step, which refreshes them itself).
 * @kernel
 * @schedule lanes
 */
export function gridRefreshProbes(i: u32, cfg: Const<GridConfig>, logits: Buf<f32>, probe: Buf<u32>, softmax: Buf<f32>): void {
  refreshRow(cfg.probeRange, i, logits, probe, softmax);
}

/**
 * Sparse updates: the counts of touched entries and rows, one per level, are COUNT_STRIDE values
 * apart in `counts` (a cache line each: the levels' passes run on different threads at once, and
 * counters sharing a line made every new entry a transfer of the line between cores).
 */
export const COUNT_STRIDE = 16;

/**
 * Sparse updates: marks the table entry (offset[l] + slot) of each corner of point i at level l in
 * the touched bitmap, bit slot & 31 of word wordBase[l] + slot / 32 (a level's bits start a word of
 * their own, so levels never share a word: see HashGrid.trackTouched), counting it in
 * counts[l * COUNT_STRIDE] when it was not marked yet; at a probed level it appends the codebook
 * row to the level's row list unless already listed in this `epoch`: at rowList[rowOffset[l] + c]
 * with c = counts[(levels + l) * COUNT_STRIDE] when rowStamp[row] is not `epoch` (then
 * rowStamp[row] = epoch). A level's row list has room for all its rows, so it never overflows. The cost is a few operations per point and corner, whatever the
 * table's size, and the bitmap (1 bit per entry: 512 KB for 2^22 entries) stays in the caches.
 */
function touchLevel(cfg: Const<GridConfig>, l: i32, x: Buf<f32>, i: u32, probe: Buf<u32>, epoch: u32, bitmap: Buf<u32>, wordBase: Buf<u32>, rowStamp: Buf<u32>, rowList: Buf<u32>, counts: Buf<u32>): void {
  const cell = localArray<u32>(cfg.dims);
  const coords = localArray<u32>(cfg.dims);
  const w0 = localArray<f32>(cfg.dims);
  const w1 = localArray<f32>(cfg.dims);
  const dw = localArray<f32>(cfg.dims);
  locate(cfg, l, x, i, cell, w0, w1, dw);
  const corners = select(cfg.interpolation === NEAREST, 1, 1 << cfg.dims);
  for (let c = 0; c < corners; c++) {
    const slot = entry(cfg, l, cell, c, coords, probe) / u32(cfg.features) - cfg.offset[l];
    const word = wordBase[l] + (slot >> 5);
    const bit = u32(1) << (slot & 31);
    if ((bitmap[word] & bit) === 0) {
      bitmap[word] = bitmap[word] | bit;
      counts[l * COUNT_STRIDE] += 1;
    }
    if (cfg.probed[l]) {
      const row = codebookRow(cfg, l, coords);
      if (rowStamp[row] !== epoch) {
        rowStamp[row] = epoch;
        rowList[cfg.rowOffset[l] + counts[(cfg.levels + l) * COUNT_STRIDE]] = row;
        counts[(cfg.levels + l) * COUNT_STRIDE] += 1;
      }
    }
  }
}

/**
 * Sparse updates (modules/hashgrid.ts trackTouched): marks the table entries the points read in
 * the level's bitmap and lists the codebook rows, per level in the order of the points and their
 * corners, each row once per `epoch` (see touchLevel); called again with the same epoch for more
 * points (accumulated micro-batches), it adds only what is not marked or listed yet. On the CPU
 * each level is one pass over the points on one thread (a level writes only its own part of every
 * buffer), so the row lists are the same on every run and equal to the JS backend's. CUDA runs
 * gridTouchedLevels instead (this body, one thread per point, would race).
 * @kernel
 * @schedule owner
 */
export function gridTouched(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, probe: Buf<u32>, epoch: u32, bitmap: Buf<u32>, wordBase: Buf<u32>, rowStamp: Buf<u32>, rowList: Buf<u32>, counts: Buf<u32>): void {
  for (let l = 0; l < cfg.levels; l++) {
    touchLevel(cfg, l, x, i, probe, epoch, bitmap, wordBase, rowStamp, rowList, counts);
  }
}

/**
 * gridTouched for CUDA: thread l walks points [0, n) of level l in order (the same bitmap and row
 * lists). Correct but serial within a level: the language has no atomic that returns the old value
 * (to claim row list slots in parallel) nor an atomic or (to mark bits from several threads).
 * @kernel
 */
export function gridTouchedLevels(l: u32, cfg: Const<GridConfig>, x: Buf<f32>, n: u32, probe: Buf<u32>, epoch: u32, bitmap: Buf<u32>, wordBase: Buf<u32>, rowStamp: Buf<u32>, rowList: Buf<u32>, counts: Buf<u32>): void {
  for (let i: u32 = 0; i < n; i++) {
    touchLevel(cfg, i32(l), x, i, probe, epoch, bitmap, wordBase, rowStamp, rowList, counts);
  }
}

/**
 * Sparse updates: moves the probed levels' row lists (gridTouched: level l's at rowOffset[l],
 * counts[(levels + l) * COUNT_STRIDE] rows) to the front of `rowList`, level after level, so that
 * the logits' step runs them in one launch. In place: level l moves to the sum of the earlier levels' counts, which
 * is at most rowOffset[l], so copying in ascending order never overwrites what is still to move.
 * One thread (launch 1): serial on every backend, a copy of the touched rows' indices.
 * @kernel
 */
export function gridPackTouched(i: u32, cfg: Const<GridConfig>, rowList: Buf<u32>, counts: Buf<u32>): void {
  let rowAt = i;
  for (let l = 0; l < cfg.levels; l++) {
    if (cfg.probed[l]) {
      for (let k: u32 = 0; k < counts[(cfg.levels + l) * COUNT_STRIDE]; k++) {
        rowList[rowAt + k] = rowList[cfg.rowOffset[l] + k];
      }
      rowAt += counts[(cfg.levels + l) * COUNT_STRIDE];
    }
  }
}

/**
 * For collision statistics: cells[i][l][d] (the lower corner of the cell) and slots[i][l][c], the
 * table slot (within the level) of every corner.
 * @kernel
 */
export function gridSlots(i: u32, cfg: Const<GridConfig>, x: Buf<f32>, probe: Buf<u32>, cells: Buf<u32>, slots: Buf<u32>): void {
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
      slots[il * u32(1 << cfg.dims) + u32(c)] = entry(cfg, l, cell, c, coords, probe) / u32(cfg.features) - cfg.offset[l];
    }
  }
}

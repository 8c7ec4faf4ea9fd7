// The neural field the trainer fits: the hash grid and the MLP on top, made for a training
// configuration (createField), evaluated at coordinates (fieldOf), and given the weights a
// checkpoint holds (the EMA's or the raw ones: checkpointUses, loadCheckpointWeights). The trainer,
// render, export, the points' field and the benches share it.
import type { BackendRequest } from "../runtime/backend.ts";
import type { DeviceBuffer } from "../runtime/buffer.ts";
import { Encoding, concat, encodingMembers, groupName, type Member, type MemberOptions } from "../modules/encoding.ts";
import { checkVariant, type GridUse } from "../modules/hashgrid.ts";
import { Mlp } from "../modules/mlp.ts";
import { CheckpointError, type Checkpoint } from "./checkpoint.ts";
import type { TrainConfig } from "./config.ts";
import type { Field } from "./eval.ts";

/**
 * The weights evaluation and outputs use: the EMA's or the raw ones, whichever has the lower mean
 * squared error on the source's held-out batch (both given), so that the average never costs what
 * it lags early in a run (modules/ema.ts); "raw" without an EMA.
 */
export type Weights = "ema" | "raw";

/**
 * The member grids of a configuration's encoding over `dims` axes (encodingMembers: axes checked,
 * options validated, levels derived; nothing is built): `encoding.grids`, each with the section's
 * other fields as its defaults, or one grid over every axis. Member i's seed is the run's + 65537 i (the network takes the run's + 1).
 */
export function fieldMembers(cfg: TrainConfig, dims: number): Member[] {
  const { lr: _encLr, preset: _preset, grids, probing: { lr: _probingLr, ...probing }, ...shared } = cfg.encoding;
  const member = (m: Omit<MemberOptions, "seed">, i: number): MemberOptions => {
    const { perLevelScale, finestResolution, ...rest } = { ...shared, ...m, probing: { ...probing, ...m.probing } };
    // perLevelScale, when given, replaces finestResolution (the grid takes one or the other).
    return { ...rest, ...(perLevelScale === undefined ? { finestResolution } : { perLevelScale }), seed: cfg.seed + 65537 * i };
  };
  return encodingMembers(dims, (grids ?? [{}]).map(member));
}

/**
 * The field a configuration describes: the encoding and the MLP on top, freshly initialized. `use`:
 * "training" builds no kernel that training and rendering never launch (the encoding's input
 * gradient, its collision statistics); "all" builds them too.
 */
export async function createField(cfg: TrainConfig, channels: number, load: { backend?: BackendRequest; log?: (m: string) => void }, dims = 2, use: GridUse = "training"): Promise<{ encoding: Encoding; mlp: Mlp }> {
  const members = fieldMembers(cfg, dims);
  const flags = { dims: cfg.points ? "--dims" : "--points with --dims", levels: "--levels" };
  for (const m of members) await checkVariant(m.settings, flags);
  const { lr: _netLr, weightDecay: _wd, ...network } = cfg.network;
  const inputs = members[0]!.place.outputStride; // the encoding's width
  // Built side by side (each a compiler process of its own); the trainer needs no input gradient of the encoding.
  const [encoding, mlp] = await Promise.allSettled([
    Encoding.fromMembers(members, load, use),
    Mlp.create({ inputs, outputs: channels, ...network, loss: cfg.loss, huberDelta: cfg.huberDelta, inputGrad: true, seed: cfg.seed + 1 } as never, load),
  ]);
  if (encoding.status === "rejected" || mlp.status === "rejected") {
    for (const m of [encoding, mlp]) if (m.status === "fulfilled") m.value.close();
    throw encoding.status === "rejected" ? encoding.reason : (mlp as PromiseRejectedResult).reason;
  }
  return { encoding: encoding.value, mlp: mlp.value };
}

/** The model's prediction at coordinates: encoding -> MLP, downloaded. */
export function fieldOf(m: { encoding: Encoding; mlp: Mlp }): Field {
  // Output buffers per tile size (a full tile and the last one), reused: evaluating a large image
  // allocates nothing per tile but the downloaded values.
  const buffers = new Map<number, { enc: DeviceBuffer<"f32">; out: DeviceBuffer<"f32"> }>();
  return (coords, n) => {
    let b = buffers.get(n);
    if (!b) {
      if (buffers.size >= 2) {
        for (const old of buffers.values()) (old.enc.dispose(), old.out.dispose());
        buffers.clear();
      }
      b = { enc: m.encoding.alloc(n * m.encoding.outputDim), out: m.encoding.alloc(n * m.mlp.settings.outputs) };
      buffers.set(n, b);
    }
    return m.mlp.forward(m.encoding.forward(coords, b.enc), b.out).download() as Float32Array;
  };
}

/**
 * The weights to render and export with: the average's when the checkpoint has one and chose it
 * (meta.weights, by the held-out loss; older checkpoints: always), unless raw.
 */
export function checkpointUses(ck: Checkpoint, raw = false): Weights {
  return !raw && ck.meta.weights !== "raw" && ck.arrays["ema.network"] ? "ema" : "raw";
}

/** A group's weights to render with (checkpointUses): "network", or an encoding member's group (groupName). */
export function checkpointWeights(ck: Checkpoint, group: string, raw = false): Float32Array {
  const a = ck.arrays[checkpointUses(ck, raw) === "ema" ? `ema.${group}` : `${group}.params`];
  if (!a) throw new CheckpointError(`${ck.path ?? "the checkpoint"} holds no ${group} parameters`);
  return a;
}

/** The encoding's weights to render with, its members' concatenated (`members`: how many). */
export function checkpointEncoding(ck: Checkpoint, members: number, raw = false): Float32Array {
  return concat(Array.from({ length: members }, (_, i) => checkpointWeights(ck, groupName("encoding", i, members), raw)));
}

/** A field's weights from a checkpoint (the averages unless `raw`), with learned probing's logits and probe table. */
export function loadCheckpointWeights(f: { encoding: Encoding; mlp: Mlp }, ck: Checkpoint, raw = false): void {
  const { grids } = f.encoding;
  f.encoding.upload(checkpointEncoding(ck, grids.length, raw));
  f.mlp.params.upload(checkpointWeights(ck, "network", raw));
  for (const [i, g] of grids.entries()) {
    if (!g.logitCount) continue;
    const name = f.encoding.name("probing", i);
    const logits = ck.arrays[`${name}.params`];
    if (logits?.length !== g.logitCount) throw new CheckpointError(`${ck.path ?? "the checkpoint"} holds ${logits?.length ?? 0} ${name} logits, the model needs ${g.logitCount}`);
    g.logits.upload(logits);
    g.refreshProbes();
  }
}

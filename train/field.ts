// The neural field the trainer fits: the hash grid and the MLP on top, made for a training
// configuration (createField), evaluated at coordinates (fieldOf), and given the weights a
// checkpoint holds (the EMA's or the raw ones: checkpointUses, loadCheckpointWeights). The trainer,
// render, export, the points' field and the benches share it.
import type { BackendRequest } from "../runtime/backend.ts";
import type { DeviceBuffer } from "../runtime/buffer.ts";
import { HashGrid, checkVariant } from "../modules/hashgrid.ts";
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

/** The field a configuration describes: the hash grid and the MLP on top, freshly initialized. */
export async function createField(cfg: TrainConfig, channels: number, load: { backend?: BackendRequest; log?: (m: string) => void }, dims = 2): Promise<{ grid: HashGrid; mlp: Mlp }> {
  const { lr: _encLr, probing: { lr: _probingLr, ...probing }, perLevelScale, finestResolution, ...rest } = cfg.encoding;
  // perLevelScale, when given, replaces finestResolution (the grid takes one or the other).
  const encoding = perLevelScale === undefined ? { ...rest, finestResolution } : { ...rest, perLevelScale };
  const { lr: _netLr, weightDecay: _wd, ...network } = cfg.network;
  await checkVariant({ ...encoding, dims }, { dims: cfg.points ? "--dims" : "--points with --dims", levels: "--levels" });
  const grid = await HashGrid.create({ dims, ...encoding, probing, seed: cfg.seed }, load);
  const mlp = await Mlp.create(
    { inputs: grid.outputDim, outputs: channels, ...network, loss: cfg.loss, huberDelta: cfg.huberDelta, inputGrad: true, seed: cfg.seed + 1 } as never,
    load,
  );
  return { grid, mlp };
}

/** The model's prediction at coordinates: grid -> MLP, downloaded. */
export function fieldOf(m: { grid: HashGrid; mlp: Mlp }): Field {
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
      b = { enc: m.grid.alloc(n * m.grid.outputDim), out: m.grid.alloc(n * m.mlp.settings.outputs) };
      buffers.set(n, b);
    }
    return m.mlp.forward(m.grid.forward(coords, b.enc), b.out).download() as Float32Array;
  };
}

/**
 * The weights to render and export with: the average's when the checkpoint has one and chose it
 * (meta.weights, by the held-out loss; older checkpoints: always), unless raw.
 */
export function checkpointUses(ck: Checkpoint, raw = false): Weights {
  return !raw && ck.meta.weights !== "raw" && ck.arrays["ema.encoding"] && ck.arrays["ema.network"] ? "ema" : "raw";
}

/** A group's weights to render with (checkpointUses). */
export function checkpointWeights(ck: Checkpoint, group: "encoding" | "network", raw = false): Float32Array {
  const a = ck.arrays[checkpointUses(ck, raw) === "ema" ? `ema.${group}` : `${group}.params`];
  if (!a) throw new CheckpointError(`${ck.path ?? "the checkpoint"} holds no ${group} parameters`);
  return a;
}

/** A field's weights from a checkpoint (the averages unless `raw`), with learned probing's logits and probe table. */
export function loadCheckpointWeights(f: { grid: HashGrid; mlp: Mlp }, ck: Checkpoint, raw = false): void {
  f.grid.params.upload(checkpointWeights(ck, "encoding", raw));
  f.mlp.params.upload(checkpointWeights(ck, "network", raw));
  if (f.grid.logitCount) {
    const logits = ck.arrays["probing.params"];
    if (logits?.length !== f.grid.logitCount) throw new CheckpointError(`${ck.path ?? "the checkpoint"} holds ${logits?.length ?? 0} probing logits, the model needs ${f.grid.logitCount}`);
    f.grid.logits.upload(logits);
    f.grid.refreshProbes();
  }
}

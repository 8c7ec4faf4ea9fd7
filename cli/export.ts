// `bun run export --checkpoint <file> --out model.ngp [--precision f16|f32] [--raw]`: writes the
// inference model of a checkpoint (train/model_file.ts): the configuration and image, the
// encoding's features in f16 (default) or f32 (the EMA weights unless --raw, as render picks
// them), learned probing's argmax indices packed at log2(N_p) bits per codebook row, and the
// network's f32 parameters. No logits, no optimizer state. Prints the file's size and what it holds.
import { stat } from "node:fs/promises";
import { UsageError } from "../dsl/errors.ts";
import { checkOutputFile } from "../runtime/files.ts";
import { readCheckpoint } from "../train/checkpoint.ts";
import { exportModel, fileKind, writeModelFile } from "../train/model_file.ts";
import { parseFlags } from "./flags.ts";
import { runCommand } from "./run.ts";

const USAGE = `usage: bun run export --checkpoint FILE --out MODEL.ngp [--precision f16|f32] [--raw]
  --checkpoint FILE   a training checkpoint (out/checkpoint.ngpk)
  --out FILE          the model file to write (replaced atomically)
  --precision P       the features' storage: f16 (default; half the size) or f32 (renders exactly as the checkpoint)
  --raw               the trained weights rather than their average (EMA), as render --raw
  --help              this text
Render the model with: bun run render --model MODEL.ngp --out IMAGE.png`;

const n = (x: number) => x.toLocaleString("en-US");

export async function main(argv: string[]): Promise<number> {
  const values = parseFlags(argv, { checkpoint: { type: "string" }, out: { type: "string" }, precision: { type: "string" }, raw: { type: "boolean" }, help: { type: "boolean" } }).values as Record<string, string | boolean | undefined>;
  if (values.help) return console.log(USAGE), 0;
  if (typeof values.checkpoint !== "string") throw new UsageError("--checkpoint is required");
  if (typeof values.out !== "string") throw new UsageError("--out is required");
  checkOutputFile({ flag: "--out", path: values.out }, [{ flag: "--checkpoint", path: values.checkpoint }]);
  const precision = values.precision ?? "f16";
  if (precision !== "f16" && precision !== "f32") throw new UsageError(`--precision: ${JSON.stringify(precision)} is not allowed (allowed: f16, f32)`);
  const source = values.checkpoint;
  if ((await fileKind(source)) === "model") throw new UsageError(`--checkpoint: ${source} is already an exported model (render it with: bun run render --model ${source})`);
  const ck = await readCheckpoint(source);
  const { model, accounting: a } = await exportModel(ck, { precision, raw: values.raw === true });
  await writeModelFile(values.out, model);
  const size = (await stat(values.out)).size;
  const header = size - a.payloadBytes;
  const featureBytes = a.features * a.featureBytes;
  const rows: [string, number, string][] = [
    ["header", header, "configuration and image (JSON), checksums"],
    ["features", featureBytes, `${n(a.features)} x ${precision}`],
    ...(a.probingRows ? [["probing indices", a.indexBytes, `${n(a.probingRows)} codebook rows x ${a.bitsPerIndex} bit${a.bitsPerIndex > 1 ? "s" : ""}, packed`] as [string, number, string]] : []),
    ["network", 4 * a.networkParams, `${n(a.networkParams)} x f32`],
  ];
  const w = Math.max(...rows.map((r) => n(r[1]).length));
  console.log(`${values.out}: ${n(size)} bytes, from ${source} (step ${ck.step}, ${model.source.weights === "ema" ? "EMA" : "trained"} weights, ${precision} features)`);
  for (const [what, bytes, detail] of rows) console.log(`  ${what.padEnd(16)} ${n(bytes).padStart(w)} B  ${detail}`);
  console.log(`  = ${n(header)} B header + ${n(a.inferenceBytes)} B HashGrid.memory(${a.featureBytes}).inferenceBytes + ${n(4 * a.networkParams)} B network (4 x ${n(a.networkParams)})`);
  return 0;
}

if (import.meta.main) await runCommand(main, { usage: USAGE });

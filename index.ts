// The public entry point: `import { HashGrid, Mlp, train } from "ngp-kernels"`. The kernel language
// itself is `ngp-kernels/dsl`.
export { HashGrid, hashGridParamCount, type HashGridOptionsInput } from "./modules/hashgrid.ts";
export { Encoding, ENCODING_PRESETS, type MemberOptions } from "./modules/encoding.ts";
export { Mlp, mlpParamCount, type MlpOptionsInput } from "./modules/mlp.ts";
export { Loss } from "./modules/loss.ts";
export { Optimizer, type ParamGroup, type OptimizerOptionsInput } from "./modules/optimizer.ts";
export { Ema } from "./modules/ema.ts";
export { ConfigError } from "./modules/options.ts";
export { train, TrainError, type TrainHooks, type TrainResult } from "./train/trainer.ts";
export { parseTrainConfig, type TrainConfigInput } from "./train/config.ts";
export { loadPointField, openPointSource, PointsError, PointsWriter, writePointsFile, type BoundingBox, type PointsHeader, type PointsSummary } from "./train/data/points.ts";
export type { DataSource } from "./train/data/source.ts";
export { loadKernels, type KernelModule } from "./modules/load.ts";
export { compileFile } from "./codegen/compile.ts";
export { exportModel, loadModelWeights, ModelFileError, readModelFile, writeModelFile, type ModelFile } from "./train/model_file.ts";

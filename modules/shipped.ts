// The configurations we ship generated code for. `bun run codegen` writes their CUDA, C++ and JS
// into generated/ (committed, so reviewers see what the compiler writes); the snapshot test fails
// when generated/ is out of date with the compiler.
import { resolve } from "node:path";
import type { ConfigValue } from "../codegen/specialize.ts";
import type { Target } from "../dsl/abi.ts";
import { gridConfig, parseHashGridOptions } from "./hashgrid.ts";
import { mlpConfig, mlpLayout, parseMlpOptions } from "./mlp.ts";

export interface Shipped {
  /** Base name of the files in generated/. */
  name: string;
  /** The kernel file, relative to the repository root. */
  file: string;
  config?: ConfigValue;
  /** Only these kernels (default: all of the file's). */
  kernels?: string[];
  /** Only these targets (default: all). */
  targets?: Target[];
}

/** The default configurations of the benchmark: L=16, F=2, T=2^19, N_min=16, finest 2048 (2D) / 512 (3D). */
export const DEFAULT_GRID_2D = { dims: 2, levels: 16, featuresPerLevel: 2, log2HashmapSize: 19, baseResolution: 16, finestResolution: 2048 } as const;
export const DEFAULT_GRID_3D = { ...DEFAULT_GRID_2D, dims: 3, finestResolution: 512 } as const;
/** The 2D grid with learned probing: a quarter of the table in buckets of 4 slots. */
export const PROBED_GRID_2D = { ...DEFAULT_GRID_2D, log2HashmapSize: 17, probing: { range: 4, codebookSize: 4096 } } as const;
const GRID_KERNELS = ["gridForward", "gridBackward", "gridInputGrad"];

export const ROOT = resolve(import.meta.dir, "..");

/** The default network: 32 inputs (the 2D grid's encoding), two hidden layers of 64, ReLU, 3 outputs. */
export const DEFAULT_MLP = { inputs: 32, outputs: 3, width: 64, hiddenLayers: 2 } as const;
const mlp = parseMlpOptions(DEFAULT_MLP);
/** Items per block as the Mlp module chooses them: 64 on the CPU, 16 on CUDA (tiles in shared memory). */
const mlpShipped = (rows: number) => mlpConfig(mlp, mlpLayout(mlp), rows);
const MLP_KERNELS_SHIPPED = ["mlpForward", "mlpTrainStep", "mlpTrainStepInputGrad", "mlpForwardGrad"];

export const SHIPPED: Shipped[] = [
  { name: "examples/saxpy", file: "dsl/examples/saxpy.ts" },
  { name: "examples/polynomial", file: "dsl/examples/polynomial.ts", config: { degree: 3, coefficients: [1, 0.5, 0.25, 0.125], clampInput: true } },
  { name: "examples/hash", file: "dsl/examples/hash.ts" },
  { name: "examples/scatter", file: "dsl/examples/scatter.ts" },
  { name: "examples/smoothstep", file: "dsl/examples/smoothstep.ts", config: { smooth: true } },
  { name: "examples/local_arrays", file: "dsl/examples/local_arrays.ts", config: { width: 5, weights: [0.1, 0.2, 0.4, 0.2, 0.1] } },
  { name: "grid/hashgrid_2d", file: "dsl/kernels/grid.ts", config: gridConfig(parseHashGridOptions(DEFAULT_GRID_2D)), kernels: GRID_KERNELS },
  // A derived backward (codegen/adjoint.ts): the forward's parameter gradient, beside the hand-written one.
  { name: "grid/hashgrid_2d_adjoint", file: "dsl/kernels/grid.ts", config: gridConfig(parseHashGridOptions(DEFAULT_GRID_2D)), kernels: ["gridForwardParamGrad", "gridForwardInputGrad"] },
  { name: "grid/hashgrid_2d_probed", file: "dsl/kernels/grid.ts", config: gridConfig(parseHashGridOptions(PROBED_GRID_2D)), kernels: ["gridForward", "gridBackward"] },
  // Sparse updates: the touched lists (the CPU's and JS's form, and CUDA's one thread per level).
  { name: "grid/hashgrid_2d_touched", file: "dsl/kernels/grid.ts", config: gridConfig(parseHashGridOptions(PROBED_GRID_2D)), kernels: ["gridTouched", "gridTouchedLevels", "gridPackTouched"] },
  { name: "grid/hashgrid_3d", file: "dsl/kernels/grid.ts", config: gridConfig(parseHashGridOptions(DEFAULT_GRID_3D)), kernels: GRID_KERNELS },
  // The forward as written, and the backward passes the compiler derives from it (the training step
  // from mlpLoss, the backward from a given output gradient from mlpForward).
  { name: "network/mlp", file: "dsl/kernels/mlp.ts", config: mlpShipped(64), kernels: MLP_KERNELS_SHIPPED, targets: ["cpu", "js"] },
  { name: "network/mlp_cuda", file: "dsl/kernels/mlp.ts", config: mlpShipped(16), kernels: MLP_KERNELS_SHIPPED, targets: ["cuda"] },
  { name: "network/optimizer", file: "dsl/kernels/optimizer.ts", config: { width: 4 } },
  { name: "network/ema", file: "dsl/kernels/ema.ts", config: { width: 2 } },
  { name: "network/loss", file: "dsl/kernels/loss.ts", config: { rows: 256, width: 3, kind: 1, huberDelta: 1 } },
  // Training data: the bundled photograph's configuration (8-bit RGB, trained as stored).
  { name: "data/sample", file: "dsl/kernels/sample.ts", config: { width: 512, height: 512, channels: 3, bits16: false, linear: false, partWords: 2 ** 30 } },
];

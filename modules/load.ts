// From a kernel file to callable kernels: compile it for the chosen backend (codegen/), then build
// or import and load it (runtime/module.ts). The one place that joins the compiler and the runtime,
// which do not import each other (docs/architecture.md).
import { basename } from "node:path";
import type { CompileOptions } from "../codegen/compile.ts";
import { version as packageVersion } from "../package.json";
import { chooseBackend, type BackendRequest } from "../runtime/backend.ts";
import { openModule, type ModuleOptions, type KernelModule } from "../runtime/module.ts";

export interface LoadOptions extends CompileOptions, ModuleOptions {
  // boundsChecks (CompileOptions) defaults to true here: a bad index in a user's kernel is reported
  // as an error instead of corrupting memory or killing the process. Proven kernels turn it off.
  /** Backend: auto (default: $NGPK_BACKEND, else cuda > cpu > js), cuda, cpu or js. */
  backend?: BackendRequest;
}

export async function loadKernels(file: string, opts: LoadOptions = {}): Promise<KernelModule> {
  const { backend, reason } = chooseBackend({ backend: opts.backend });
  // Always run the front end: diagnostics are raised even when a library is cached. The compiler
  // (ts-morph) is loaded here, on first use, so that a command's usage errors need none of it.
  const [{ compileFile }, { COMPILER_VERSION }] = await Promise.all([import("../codegen/compile.ts"), import("../codegen/emit/common.ts")]);
  const emitted = compileFile(file, backend, { ...opts, boundsChecks: opts.boundsChecks ?? true });
  // The compiler's identity in cache keys: its version plus the package version.
  const compilerId = `${COMPILER_VERSION}; package ${packageVersion}`;
  return openModule(emitted, basename(file).replace(/\.ts$/, ""), backend, reason, { ...opts, compilerId });
}

export type { KernelModule };

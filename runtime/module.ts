// From an emitted module to callable kernels: build (native) or import (JS) through the
// content-addressed cache, load, and wrap every kernel in a validating function. Callers never see
// which backend runs: `mod.kernels.saxpy(n, a, x, y, out)` works on all three. Compiling a kernel
// file first is modules/load.ts loadKernels, the layer above both the compiler and this runtime.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { ElemType, EmittedModule, KernelSignature } from "../dsl/abi.ts";
import type { Backend } from "./backend.ts";
import { allocBuffer, type ArrayOf, type DeviceBuffer } from "./buffer.ts";
import { buildCached, defaultCacheDir, removeStaleTemporaries, trustedCacheDir, untrustedProblem, writableCacheDir, writeAtomic, type BuildResult } from "./cache.ts";
import { closedModuleError, loadNativeModule, wrapKernel, type Kernel, type NativeModule } from "./ffi.ts";
import { CPU_FLAGS, cudaFlags, findCxx, findNvcc } from "./toolchain.ts";

export interface ModuleOptions {
  /**
   * Build cache directory (default $NGPK_CACHE_DIR, else ~/.cache/ngp-kernels; an unusable default
   * is replaced by a temporary directory with a warning, a chosen one is an error).
   */
  cacheDir?: string;
  /** CUDA architectures to build for (default: the present devices'). */
  cudaArchs?: string[];
  /**
   * Progress messages (a native build on first use takes seconds; default: stderr when it is a
   * terminal) and warnings (a temporary cache, a rebuilt library; default: stderr).
   */
  log?: (message: string) => void;
}

/** Progress messages go to stderr when it is a terminal (not into a log file or a pipe). */
export const progressLog = (message: string) => {
  if (process.stderr.isTTY) process.stderr.write(`${message}\n`);
};

export interface KernelModule {
  readonly backend: Backend;
  /** One line: why this backend was chosen. */
  readonly reason: string;
  readonly emitted: EmittedModule;
  /** The native build (cache hit or not, time); undefined for the JS backend. */
  readonly build: BuildResult | undefined;
  readonly kernels: Readonly<Record<string, Kernel>>;
  /** A zeroed buffer on this module's backend. */
  alloc<E extends ElemType>(elem: E, length: number): DeviceBuffer<E>;
  /** A buffer on this module's backend holding a copy of `data`. */
  upload<E extends ElemType>(elem: E, data: ArrayLike<number>): DeviceBuffer<E>;
  /** Waits for queued device work (CUDA); a no-op on host backends. */
  synchronize(): void;
  close(): void;
}

/**
 * The kernels of `emitted` (named `name` in the cache and in messages) on `backend`: a native
 * module built through the cache (`compilerId`, the compiler's identity, is part of its key), or
 * the JS module imported. `reason`: why this backend was chosen.
 */
export async function openModule(emitted: EmittedModule, name: string, backend: Backend, reason: string, opts: ModuleOptions & { compilerId: string }): Promise<KernelModule> {
  if (backend === "js") return jsModule(emitted, name, reason, opts);
  const build = await buildNative(emitted, name, opts);
  const native = loadNativeModule(build.path, emitted.kernels, backend);
  return nativeModule(native, emitted, backend, reason, build);
}

/** Build an emitted native module through the cache; throws BuildError with the compiler output. */
async function buildNative(emitted: EmittedModule, name: string, opts: ModuleOptions & { compilerId: string }): Promise<BuildResult> {
  const cuda = emitted.target === "cuda";
  const lookup = cuda ? findNvcc() : findCxx();
  if (!lookup.tool) throw new Error(`cannot build ${name} for ${emitted.target}: ${lookup.reason}`);
  return buildCached({
    source: emitted.source,
    lang: cuda ? "cu" : "cpp",
    tool: lookup.tool,
    flags: cuda ? cudaFlags(opts.cudaArchs) : CPU_FLAGS,
    compilerVersion: opts.compilerId,
    cacheDir: opts.cacheDir,
    name,
    log: opts.log,
    onCompile: () => (opts.log ?? progressLog)(`ngp-kernels: compiling ${name} for ${emitted.target} with ${lookup.tool!.path} (first use; cached afterwards)`),
  });
}

function nativeModule(native: NativeModule, emitted: EmittedModule, backend: Backend, reason: string, build: BuildResult): KernelModule {
  const memory = native.cuda?.memory;
  const alloc = <E extends ElemType>(elem: E, length: number) => allocBuffer(backend, elem, length, memory);
  return {
    backend,
    reason,
    emitted,
    build,
    kernels: native.kernels,
    alloc,
    upload: (elem, data) => uploaded(alloc(elem, data.length), data),
    synchronize: () => native.cuda?.synchronize(),
    close: () => native.close(),
  };
}

async function jsModule(emitted: EmittedModule, name: string, reason: string, opts: ModuleOptions): Promise<KernelModule> {
  // Content-addressed like native libraries: a module path is imported once per process. A file
  // whose text differs from the source (corrupted) is rewritten; a read-only cache still serves
  // what it holds.
  const file = `${name}-${createHash("sha256").update(emitted.source).digest("hex").slice(0, 24)}.mjs`;
  const holds = (path: string) => {
    try {
      return untrustedProblem(path) === undefined && readFileSync(path, "utf8") === emitted.source;
    } catch {
      return false;
    }
  };
  const chosen = trustedCacheDir(opts.cacheDir || defaultCacheDir(), opts.cacheDir, opts.log);
  let path = join(chosen, file);
  if (!holds(path)) {
    const dir = writableCacheDir(chosen, opts.cacheDir, opts.log);
    path = join(dir, file);
    if (!holds(path)) {
      removeStaleTemporaries(dir);
      writeAtomic(path, emitted.source);
    }
  }
  const functions = (await import(path)) as Record<string, (...args: unknown[]) => void>;
  let closed = false;
  const checkOpen = (kernel: string) => () => {
    if (closed) throw closedModuleError(kernel, path);
  };
  const kernels: Record<string, Kernel> = {};
  for (const k of emitted.kernels) kernels[k.name] = jsKernel(k, functions[k.name]!, checkOpen(k.name));
  const alloc = <E extends ElemType>(elem: E, length: number) => allocBuffer("js", elem, length);
  return {
    backend: "js",
    reason,
    emitted,
    build: undefined,
    kernels,
    alloc,
    upload: (elem, data) => uploaded(alloc(elem, data.length), data),
    synchronize: () => {},
    close: () => {
      closed = true; // like a native module: its kernels throw afterwards
    },
  };
}

function jsKernel(k: KernelSignature, fn: (...args: unknown[]) => void, checkOpen: () => void): Kernel {
  return wrapKernel(k, "js", (...args) => (fn(...args), 0), checkOpen, undefined);
}

function uploaded<E extends ElemType>(buf: DeviceBuffer<E>, data: ArrayLike<number>): DeviceBuffer<E> {
  buf.upload(data);
  return buf;
}

export type { ArrayOf, DeviceBuffer, Kernel };

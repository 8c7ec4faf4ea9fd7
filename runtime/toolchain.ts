// The native toolchains (C++ compiler, nvcc), the identity of this CPU, and the default flags.
//
// Everything here feeds the build cache key: a different compiler, compiler version, flag set or
// CPU (we compile with -march=native) must give a different library. Lookups never throw: a
// missing tool is an ordinary situation (the runtime falls back to another backend), so they
// return `tool: undefined` and a reason a person can act on.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { detectCudaDevices } from "./device.ts";

export interface Tool {
  path: string;
  /** The first line of `--version` that carries a version number. */
  version: string;
}

export interface ToolLookup {
  tool: Tool | undefined;
  /** What was found where, or why nothing was. */
  reason: string;
}

/**
 * CPU flags. f32 results must match the JS backend bit for bit, so no fast-math and no FP
 * contraction (an fma rounds once where JS rounds twice). `-fno-trapping-math` changes no value
 * (nothing reads FP exception flags) but lets GCC vectorize floorf and friends. `-z now` and
 * `-z defs` make an undefined symbol fail at link or load time instead of mid-call.
 */
export const CPU_FLAGS: readonly string[] = Object.freeze([
  "-O3", "-march=native", "-std=c++20", "-fopenmp", "-fPIC", "-shared",
  "-ffp-contract=off", "-fwrapv", "-fno-math-errno", "-fno-trapping-math", "-Wl,-z,now", "-Wl,-z,defs",
  // glibc's vector math (expf's vector variants, called by lane-form kernels: emit/cpu.ts).
  "-lmvec",
]);

/** nvcc code-generation flags; `--fmad=false` for the same reason as above. */
export const CUDA_COMPILE_FLAGS: readonly string[] = Object.freeze(["-O3", "-std=c++17", "--fmad=false"]);

/** CUDA flags for a loadable library, without the target architectures. */
export const CUDA_BASE_FLAGS: readonly string[] = Object.freeze([
  ...CUDA_COMPILE_FLAGS, "-shared", "-Xcompiler", "-fPIC", "-cudart", "shared", "-Xlinker", "-z,now",
]);

/** Targets when no device is present: nvcc 13's oldest (sm_75) to Hopper, plus PTX for newer GPUs. */
export const DEFAULT_CUDA_ARCHS: readonly string[] = Object.freeze(["sm_75", "sm_80", "sm_90", "compute_90"]);

const lookups = new Map<string, ToolLookup>();

/** The C++ compiler: $CXX, else the first of g++, c++, clang++ on PATH. */
export function findCxx(): ToolLookup {
  return findTool("CXX", ["g++", "c++", "clang++"]);
}

/** nvcc: $NVCC, else nvcc on PATH, else the default CUDA install. */
export function findNvcc(): ToolLookup {
  return findTool("NVCC", ["nvcc", "/usr/local/cuda/bin/nvcc"]);
}

// Memoized per value of the environment variable, so that setting it later (tests, a REPL) is seen.
function findTool(envVar: string, candidates: string[]): ToolLookup {
  const requested = process.env[envVar]?.trim() || undefined;
  const memoKey = `${envVar}=${requested ?? ""}`;
  let found = lookups.get(memoKey);
  if (!found) {
    found = requested ? probeRequested(envVar, requested) : probeFirst(candidates);
    lookups.set(memoKey, found);
  }
  return found;
}

// An explicit choice that does not work is reported, not silently replaced by another compiler.
function probeRequested(envVar: string, requested: string): ToolLookup {
  const path = Bun.which(requested);
  if (!path) return { tool: undefined, reason: `${envVar}=${requested} is not an executable file or on PATH` };
  return probeVersion(path);
}

function probeFirst(candidates: string[]): ToolLookup {
  for (const candidate of candidates) {
    const path = Bun.which(candidate);
    if (path) return probeVersion(path);
  }
  return { tool: undefined, reason: `none of ${candidates.join(", ")} found on PATH` };
}

function probeVersion(path: string): ToolLookup {
  try {
    const result = Bun.spawnSync([path, "--version"], { env: process.env, stdout: "pipe", stderr: "pipe", timeout: 30_000 });
    const text = result.stdout.toString() + result.stderr.toString();
    if (!result.success) {
      return { tool: undefined, reason: `${path} --version failed (exit ${result.exitCode}): ${firstLine(text)}` };
    }
    const version = versionLine(text);
    return { tool: { path, version }, reason: `${version} at ${path}` };
  } catch (error) {
    return { tool: undefined, reason: `${path} could not be run: ${(error as Error).message}` };
  }
}

// nvcc's first line ("nvcc: NVIDIA (R) Cuda compiler driver") is the same for every release, so
// take the first line with a version number in it ("Cuda compilation tools, release 13.0, V13.0.88").
function versionLine(text: string): string {
  const lines = text.split("\n").map((line) => line.trim()).filter(Boolean);
  return lines.find((line) => /\d+\.\d+/.test(line)) ?? lines[0] ?? "unknown version";
}

function firstLine(text: string): string {
  return text.trim().split("\n")[0] ?? "";
}

let cpu: string | undefined;

/**
 * A short identity of this CPU: model name plus a hash of its feature flags. `-march=native` code
 * may use instructions another CPU lacks, so a shared cache directory must not hand it over.
 */
export function cpuIdentity(): string {
  return (cpu ??= readCpuIdentity());
}

function readCpuIdentity(): string {
  let info: string;
  try {
    info = readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return `${process.platform}-${process.arch}`;
  }
  // x86 names the fields "model name"/"flags"; arm64 "CPU part"/"Features".
  const field = (name: string) => info.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, "m"))?.[1]?.trim();
  const model = field("model name") ?? field("CPU part") ?? process.arch;
  const flags = field("flags") ?? field("Features") ?? "";
  const flagsHash = createHash("sha256").update(flags).digest("hex").slice(0, 12);
  return `${model} (${process.arch}, flags ${flagsHash})`;
}

/** The architectures to build for: those of the present devices, else DEFAULT_CUDA_ARCHS. */
export function defaultCudaArchs(): string[] {
  const { archs } = detectCudaDevices();
  return archs.length > 0 ? [...new Set(archs)] : [...DEFAULT_CUDA_ARCHS];
}

/**
 * Full nvcc flags for `archs`: `sm_XY` embeds machine code for that GPU, `compute_XY` embeds PTX
 * that the driver compiles for newer GPUs.
 */
export function cudaFlags(archs: readonly string[] = defaultCudaArchs()): string[] {
  return [...CUDA_BASE_FLAGS, ...cudaGencode(archs)];
}

/** The `-gencode` flags for `archs`. */
export function cudaGencode(archs: readonly string[]): string[] {
  return archs.flatMap((arch) => {
    const match = /^(sm|compute)_(\d+[a-z]?)$/.exec(arch);
    if (!match) throw new Error(`bad CUDA architecture "${arch}": expected sm_XY or compute_XY (e.g. sm_80)`);
    return ["-gencode", `arch=compute_${match[2]},code=${arch}`];
  });
}

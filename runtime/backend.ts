// Which backend runs the kernels: an explicit option, else $NGPK_BACKEND, else the best available
// (cuda with nvcc and a device, cpu with a C++ compiler, js always).

import { ExpectedError } from "../dsl/errors.ts";
import { detectCudaDevices } from "./device.ts";
import { findCxx, findNvcc } from "./toolchain.ts";

export type Backend = "cuda" | "cpu" | "js";
export type BackendRequest = Backend | "auto";

export interface BackendChoice {
  backend: Backend;
  /** One line saying why, e.g. "cpu: no CUDA device (...); g++ ... found". */
  reason: string;
}

const REQUESTS: readonly BackendRequest[] = ["auto", "cuda", "cpu", "js"];

/** A value that is no backend, or a backend this machine cannot run (a one-line error, exit status 2). */
export class BackendError extends ExpectedError {}

/** `request` if it is a backend, else a BackendError naming where it came from and the allowed values. */
function checked(request: string, source: string): BackendRequest {
  if (!REQUESTS.includes(request as BackendRequest)) throw new BackendError(`${source}: ${JSON.stringify(request)} is not allowed (allowed: ${REQUESTS.join(", ")})`);
  return request as BackendRequest;
}

/**
 * The backend a command asks for: its --backend flag, else $NGPK_BACKEND, else `fallback` (what a
 * configuration or checkpoint says, else auto); a bad flag or NGPK_BACKEND is refused by name.
 */
export function backendRequest(flag: string | undefined, fallback: BackendRequest = "auto"): BackendRequest {
  const env = process.env.NGPK_BACKEND?.trim() || undefined;
  return flag !== undefined ? checked(flag, "--backend") : env !== undefined ? checked(env, "NGPK_BACKEND") : fallback;
}

/** Throws a BackendError if a backend is requested explicitly but cannot run here, saying what is missing. */
export function chooseBackend(opts: { backend?: BackendRequest } = {}): BackendChoice {
  const env = process.env.NGPK_BACKEND?.trim() || undefined;
  const source = opts.backend !== undefined ? "option backend" : env !== undefined ? "NGPK_BACKEND" : "default";
  const request = checked(opts.backend ?? env ?? "auto", source);
  switch (request) {
    case "auto":
      return chooseAuto();
    case "cuda":
      return requireCuda(source);
    case "cpu":
      return requireCpu(source);
    case "js":
      return { backend: "js", reason: `js: requested by ${source}` };
  }
}

function chooseAuto(): BackendChoice {
  const cuda = cudaUnavailable();
  if (cuda === undefined) return { backend: "cuda", reason: `cuda: ${cudaAvailable()}` };
  const cxx = findCxx();
  if (cxx.tool) return { backend: "cpu", reason: `cpu: ${cuda}; ${cxx.reason}` };
  return { backend: "js", reason: `js: ${cuda}; no C++ compiler (${cxx.reason})` };
}

function requireCuda(source: string): BackendChoice {
  const missing = cudaUnavailable();
  if (missing !== undefined) throw new BackendError(`backend cuda requested by ${source}, but ${missing}`);
  return { backend: "cuda", reason: `cuda: requested by ${source}; ${cudaAvailable()}` };
}

function requireCpu(source: string): BackendChoice {
  const cxx = findCxx();
  if (!cxx.tool) throw new BackendError(`backend cpu requested by ${source}, but no C++ compiler: ${cxx.reason}`);
  return { backend: "cpu", reason: `cpu: requested by ${source}; ${cxx.reason}` };
}

/** Why CUDA cannot be used, or undefined if it can. The device is probed only if nvcc exists. */
function cudaUnavailable(): string | undefined {
  const nvcc = findNvcc();
  if (!nvcc.tool) return `no nvcc (${nvcc.reason})`;
  const devices = detectCudaDevices();
  return devices.count > 0 ? undefined : `no CUDA device (${devices.reason})`;
}

function cudaAvailable(): string {
  return `${detectCudaDevices().reason}; nvcc ${findNvcc().reason}`;
}

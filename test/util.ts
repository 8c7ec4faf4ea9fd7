// Test utilities shared across suites: a seeded generator (the seed is printed, so a failure on
// fresh random inputs can be replayed with NGPK_TEST_SEED), ulp distances, the tests' build cache,
// and the one harness for child processes and environment swaps.

import { afterAll, beforeAll } from "bun:test";
import type { Subprocess } from "bun";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

/** The project's seeded generator (mulberry32, modules/random.ts). */
export { seededUniform as rng } from "../modules/random.ts";

/** A fresh seed per run (or NGPK_TEST_SEED), logged so that a failing run can be replayed. */
export function freshSeed(label: string): number {
  const seed = process.env.NGPK_TEST_SEED ? Number(process.env.NGPK_TEST_SEED) : (Math.random() * 2 ** 32) >>> 0;
  console.log(`[${label}] seed ${seed} (replay with NGPK_TEST_SEED=${seed})`);
  return seed;
}

export function uniformF32(r: () => number, n: number, lo: number, hi: number): Float32Array {
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * r());
}

const f32 = new Float32Array(1);
const i32 = new Int32Array(f32.buffer);
/** Distance in units in the last place between two f32 values (0 when bit-identical). */
export function ulpDistance(a: number, b: number): number {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b) ? 0 : Infinity;
  const ordered = (x: number) => {
    f32[0] = x;
    const bits = i32[0]!;
    return bits < 0 ? -2147483648 - bits : bits;
  };
  return Math.abs(ordered(a) - ordered(b));
}

/** The largest ulp distance between two f32 arrays (any difference for integer arrays), and where. */
export function maxUlp(a: ArrayLike<number>, b: ArrayLike<number>): { ulp: number; at: number } {
  const float = a instanceof Float32Array || a instanceof Float64Array;
  if (a.length !== b.length) return { ulp: Infinity, at: Math.min(a.length, b.length) };
  let worst = { ulp: 0, at: -1 };
  for (let i = 0; i < a.length; i++) {
    const d = float ? ulpDistance(a[i]!, b[i]!) : a[i] === b[i] ? 0 : Infinity;
    if (d > worst.ulp) worst = { ulp: d, at: i };
  }
  return worst;
}

/** The repository's root: the working directory of the commands the tests run. */
export const ROOT = resolve(import.meta.dir, "..");

/** The tests' kernel build cache: $NGPK_CACHE_DIR, else one under the temp dir that every test file shares. */
export const cacheDir = process.env.NGPK_CACHE_DIR ?? join(tmpdir(), "ngpk-test-cache");

type Env = Record<string, string | undefined>;

/** Called with the child's stderr so far after each piece of it arrives (to signal it at a given line, say). */
export type OnStderr = (err: string, proc: Subprocess) => void;

/**
 * A test's own time limit (ms), the one `bun run test` passes as --timeout: tests that build native
 * kernels or train take tens of seconds on 2 idle cores, and several times that when other
 * processes share the cores, which must not fail them. A hang still fails, after 5 minutes.
 */
export const TEST_TIMEOUT = 300_000;
/** A child process's time limit (ms) by default: within a test's own, so that the test reports the hang. */
export const CHILD_TIMEOUT = 280_000;

/** Where a child runs, its whole environment, its time limit (ms), and what watches its stderr. */
export interface ChildOptions {
  cwd?: string;
  env?: Env;
  timeout?: number;
  onStderr?: OnStderr;
}

/** What a child process left: its exit status, stdout, stderr, and how long it ran (ms). */
export interface ChildResult {
  code: number;
  out: string;
  err: string;
  ms: number;
}

/**
 * Runs `command` as a child process from `cwd` (default the repository's root) and collects its exit
 * status and output. `env` is its whole environment, default this process's as it is now (Bun.spawn
 * reads no later change to process.env by itself). After `timeout` ms (default CHILD_TIMEOUT) it is killed
 * with SIGKILL, so a hang fails the test instead of stalling it.
 */
export async function runCommand(command: string[], opts: ChildOptions = {}): Promise<ChildResult> {
  const start = performance.now();
  const proc = Bun.spawn(command, { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, stdout: "pipe", stderr: "pipe", timeout: opts.timeout ?? CHILD_TIMEOUT, killSignal: "SIGKILL" });
  const out = new Response(proc.stdout).text();
  let err = "";
  const decoder = new TextDecoder();
  for await (const chunk of proc.stderr) {
    err += decoder.decode(chunk, { stream: true });
    opts.onStderr?.(err, proc);
  }
  return { code: await proc.exited, out: await out, err, ms: performance.now() - start };
}

/** `bun <script> args` from the repository's root, with the tests' build cache unless `env` names another. */
export const runBun = (script: string, args: string[], opts: ChildOptions = {}) =>
  runCommand([process.execPath, script, ...args], { ...opts, env: { ...process.env, NGPK_CACHE_DIR: cacheDir, ...opts.env } });

/**
 * `bun cli/train.ts args` once, to build its native kernels into the tests' cache (from a fresh cache
 * on a loaded machine that takes minutes): for a beforeAll with a timeout of 600 s, so that the time
 * limits of the commands in the tests bound the commands, not the builds.
 */
export async function buildKernelsFor(args: string[]): Promise<void> {
  const r = await runBun("cli/train.ts", args, { timeout: 590_000 });
  if (r.code !== 0) throw new Error(`building the kernels of ${args.join(" ")} failed (exit ${r.code}):\n${r.err}`);
}

/** Sets environment variables (undefined = unset); returns what restores the previous values. */
function setEnv(vars: Env): () => void {
  const apply = (values: Env) => {
    for (const [name, value] of Object.entries(values)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
  const saved = Object.fromEntries(Object.keys(vars).map((name) => [name, process.env[name]]));
  apply(vars);
  return () => apply(saved);
}

/** Runs `body` with environment variables temporarily set (undefined = unset), until its promise settles if it returns one. */
export function withEnv<T>(vars: Env, body: () => T): T {
  const restore = setEnv(vars);
  let result: T;
  try {
    result = body();
  } catch (error) {
    restore();
    throw error;
  }
  if (result instanceof Promise) return result.finally(restore) as T;
  restore();
  return result;
}

/** Sets environment variables for the tests of this file: from its beforeAll to its afterAll. */
export function envForFile(vars: Env): void {
  let restore = () => {};
  beforeAll(() => void (restore = setEnv(vars)));
  afterAll(() => restore());
}

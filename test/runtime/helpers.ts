// Shared pieces of the runtime tests: fixture sources, temporary cache dirs, child processes.

import { afterAll } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BuildRequest } from "../../runtime/cache.ts";
import { findMpi } from "../../runtime/mpi.ts";
import { CPU_FLAGS, findCxx, type Tool } from "../../runtime/toolchain.ts";
import { runCommand, type ChildOptions, type ChildResult } from "../util.ts";

const FIXTURES = join(import.meta.dir, "fixtures");

export const fixture = (name: string): string => readFileSync(join(FIXTURES, name), "utf8");
export const fixturePath = (name: string): string => join(FIXTURES, name);

export const CXX: Tool | undefined = findCxx().tool;
export const NO_CXX = CXX ? "" : ` (skipped: ${findCxx().reason})`;

/** A fresh directory under the system temp dir, removed when the test file ends. */
export function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `ngpk-test-${label}-`));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A CPU build request for `source` with the real compiler and default flags. */
export function cpuRequest(source: string, cacheDir: string, tool: Tool = CXX!): BuildRequest {
  return { source, lang: "cpp", tool, flags: CPU_FLAGS, compilerVersion: "test", cacheDir, name: "test" };
}

/**
 * The C++ compiler behind a script that appends a line to `countFile` per invocation, so a test
 * can tell whether a request compiled. Its path is the tool path (and so part of the cache key).
 */
export function countingCompiler(dir: string): { tool: Tool; count: () => number } {
  const countFile = join(dir, "compiles");
  const path = join(dir, "counting-cxx");
  writeFileSync(path, `#!/bin/sh\necho compile >> '${countFile}'\nexec '${CXX!.path}' "$@"\n`);
  chmodSync(path, 0o755);
  const count = () => {
    try {
      return readFileSync(countFile, "utf8").split("\n").filter(Boolean).length;
    } catch {
      return 0;
    }
  };
  return { tool: { path, version: CXX!.version }, count };
}

/** Runs a fixture script in a child Bun, so that a native crash cannot take the test runner down. */
export const runFixture = (script: string, input: unknown): Promise<ChildResult> => runCommand([process.execPath, fixturePath(script), JSON.stringify(input)]);

/** The file byte range of the ELF section called `name` (e.g. ".text") in a 64-bit library. */
export function sectionRange(bytes: Uint8Array, name: string): { start: number; end: number } {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shoff = Number(v.getBigUint64(40, true));
  const [entsize, count, namesIndex] = [v.getUint16(58, true), v.getUint16(60, true), v.getUint16(62, true)];
  const field = (i: number, at: number) => Number(v.getBigUint64(shoff + i * entsize + at, true));
  const names = field(namesIndex, 24);
  for (let i = 0; i < count; i++) {
    const start = names + v.getUint32(shoff + i * entsize, true);
    const end = bytes.indexOf(0, start);
    if (new TextDecoder().decode(bytes.subarray(start, end)) === name) return { start: field(i, 24), end: field(i, 24) + field(i, 32) };
  }
  throw new Error(`no section ${name}`);
}

/** The variables by which runtime/mpi.ts's detectLaunch knows a launcher. */
export const LAUNCHER_VARS = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS", "PMIX_RANK"];
/** This environment without a launcher's variables (a test runner started by mpirun or srun). */
export const unlaunched = () => Object.fromEntries(Object.entries(process.env).filter(([name]) => !LAUNCHER_VARS.includes(name)));

export const MPIRUN = Bun.which("mpirun");
/** Empty where MPI and mpirun are here; else " (skipped: why)", for the names of multi-rank tests. */
export const NO_MPIRUN = findMpi().mpi && MPIRUN ? "" : ` (skipped: ${findMpi().mpi ? "mpirun is not on PATH" : findMpi().reason})`;

/** A child's result with the JSON lines of its stdout, every rank's. */
export type RanksResult = ChildResult & { lines: Record<string, unknown>[] };

/**
 * Root (CI) needs --allow-run-as-root; 2 cores need --oversubscribe beside another test; without
 * --bind-to none each rank would be bound to one core; yield: waiting ranks do not spin.
 */
export const mpirunArgs = (ranks: number) => [MPIRUN!, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "--mca", "mpi_yield_when_idle", "1", "-np", String(ranks)];

/** `command` alone or under mpirun with `ranks` ranks (environment: `env`, else this one without a launcher's variables). */
export async function runUnderMpirun(command: string[], opts: ChildOptions & { ranks?: number } = {}): Promise<RanksResult> {
  const r = await runCommand(opts.ranks ? [...mpirunArgs(opts.ranks), ...command] : command, { ...opts, env: opts.env ?? unlaunched() });
  return { ...r, lines: r.out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/** A fixture script with `input` (JSON, its argv[2]), alone or under mpirun. */
export const runRanks = (script: string, input: Record<string, unknown>, opts: { ranks?: number; env?: Record<string, string | undefined> } = {}) =>
  runUnderMpirun([process.execPath, fixturePath(script), JSON.stringify(input)], opts);

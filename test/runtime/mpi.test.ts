// Ranks (runtime/mpi.ts): the launcher's detection, the one-rank stand-in, the errors without MPI,
// and under mpirun (2 ranks on this machine) every collective, agree(), detachFromLauncher, the
// quiet barrier and a rank that dies. The
// ranks run test/runtime/fixtures/mpi_ranks.ts in child processes: MPI starts once per process.
import { describe, expect, test } from "bun:test";
import { detectLaunch, findMpi, openRanks } from "../../runtime/mpi.ts";
import { withEnv } from "../util.ts";
import { LAUNCHER_VARS, NO_MPIRUN, runRanks, tempDir, unlaunched } from "./helpers.ts";

const MPI = findMpi();
const NO_MPI = MPI.mpi ? "" : ` (skipped: ${MPI.reason})`;
if (NO_MPIRUN) console.log(`test/runtime/mpi.test.ts: multi-rank tests${NO_MPIRUN}`);

const cacheDir = tempDir("mpi");

/** The fixture with `input`, alone or under mpirun with `ranks` ranks. */
const run = (input: Record<string, unknown>, opts: { ranks?: number; env?: Record<string, string | undefined> } = {}) =>
  runRanks("mpi_ranks.ts", { cacheDir, ...input }, opts);

const byRank = (lines: Record<string, unknown>[]) => [...lines].sort((a, b) => (a.rank as number) - (b.rank as number));
const allPassed = (line: Record<string, unknown>) => Object.entries(line.checks as Record<string, boolean>).filter(([, ok]) => !ok).map(([name]) => name);

describe("detectLaunch", () => {
  test("reads mpirun's, PMI's, srun's and PMIx's variables; none is no launcher", () => {
    expect(detectLaunch({})).toBeUndefined();
    expect(detectLaunch({ OMPI_COMM_WORLD_SIZE: "4", OMPI_COMM_WORLD_RANK: "1" })).toEqual({ launcher: "Open MPI's mpirun", evidence: "OMPI_COMM_WORLD_SIZE=4", size: 4 });
    expect(detectLaunch({ PMI_SIZE: "3", PMI_RANK: "0" })?.size).toBe(3);
    expect(detectLaunch({ SLURM_STEP_NUM_TASKS: "8", SLURM_PROCID: "5", SLURM_NTASKS: "8" })).toEqual({ launcher: "srun", evidence: "SLURM_STEP_NUM_TASKS=8", size: 8 });
    expect(detectLaunch({ PMIX_RANK: "2" })).toEqual({ launcher: "a PMIx launcher", evidence: "PMIX_RANK=2", size: undefined });
  });

  test("a Slurm batch script (SLURM_NTASKS, SLURM_PROCID, no step) is not a launch: it runs as one process", () => {
    expect(detectLaunch({ SLURM_JOB_ID: "7", SLURM_NTASKS: "4", SLURM_PROCID: "0" })).toBeUndefined();
  });
});

describe("one process", () => {
  test("without a launcher: the stand-in (no MPI), rank 0 of 1, every collective returns its input", async () => {
    const { code, lines, err } = await run({ mode: "collectives", piece: 5 });
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ rank: 0, size: 1, localRank: 0, localSize: 1, description: "one process (no launcher)" });
    expect(allPassed(lines[0]!)).toEqual([]);
  });

  test("in this process: the stand-in needs no MPI; a piece size outside [1, 2^31) is refused; used after close() it throws", async () => {
    await withEnv(Object.fromEntries(LAUNCHER_VARS.map((name) => [name, undefined])), async () => {
      const ranks = await openRanks();
      expect([ranks.rank, ranks.size, ranks.pieceElements]).toEqual([0, 1, 2 ** 30]);
      const data = new Float32Array([1.5, -0, Number.NaN]);
      ranks.allReduceSum(data);
      expect([...data]).toEqual([1.5, -0, Number.NaN]);
      expect(ranks.any(true)).toBe(true);
      ranks.close();
      expect(() => ranks.barrier()).toThrow("Ranks.barrier called after close()");
      await expect(openRanks({ pieceElements: 2 ** 31 })).rejects.toThrow("pieceElements must be an integer in [1, 2^31), got 2147483648");
    });
  });

  test("started by a launcher without MPI: a clear error naming what to install, status 2", async () => {
    const env = { ...unlaunched(), OMPI_COMM_WORLD_SIZE: "2", PATH: "/nonexistent", MPICC: undefined };
    const { code, lines } = await run({ mode: "collectives" }, { env });
    expect(code).toBe(2);
    expect(lines[0]!.error).toBe(
      "started by Open MPI's mpirun (OMPI_COMM_WORLD_SIZE=2), but no MPI found: mpicc is not on PATH; pkg-config is not on PATH: " +
        "install Open MPI (apt-get install openmpi-bin libopenmpi-dev) or, on a cluster, load it (module load openmpi)",
    );
  });

  test("MPICC naming no program is reported, not replaced by another MPI", async () => {
    const { code, lines } = await run({ mode: "collectives" }, { env: { ...unlaunched(), SLURM_STEP_NUM_TASKS: "2", MPICC: "/nonexistent/mpicc" } });
    expect(code).toBe(2);
    expect(lines[0]!.error).toBe("started by srun (SLURM_STEP_NUM_TASKS=2), but no MPI found: MPICC=/nonexistent/mpicc is not an executable file or on PATH: install Open MPI (apt-get install openmpi-bin libopenmpi-dev) or, on a cluster, load it (module load openmpi)");
  });

  test.skipIf(!MPI.mpi)(`MPI without a launcher: one rank, every collective returns its input${NO_MPI}`, async () => {
    const { code, lines, err } = await run({ mode: "collectives", piece: 5, mpi: true });
    expect({ code, err }).toMatchObject({ code: 0 });
    expect(lines[0]).toMatchObject({ rank: 0, size: 1, localRank: 0, localSize: 1 });
    expect(lines[0]!.description).not.toBe("one process (no launcher)");
    expect(allPassed(lines[0]!)).toEqual([]);
  });

  test.skipIf(!MPI.mpi)(`a launcher's rank count that MPI does not see: the MPI found is not the launcher's${NO_MPI}`, async () => {
    const { code, lines } = await run({ mode: "collectives" }, { env: { ...unlaunched(), SLURM_STEP_NUM_TASKS: "3" } });
    expect(code).toBe(2);
    expect(lines[0]!.error).toMatch(/^started by srun \(SLURM_STEP_NUM_TASKS=3\), but MPI \(.+\) sees 1 rank: the MPI found is not the launcher's; launch with the mpirun of the MPI that mpicc belongs to/);
  });
});

describe.skipIf(!!NO_MPIRUN)(`2 ranks under mpirun${NO_MPIRUN}`, () => {
  test("rank, size, local rank; all-reduce sums bit for bit and bitwise ors across piece boundaries (arrays, host and CUDA buffers), broadcasts, reductions, any()", async () => {
    const { code, lines, err } = await run({ mode: "collectives", piece: 7 }, { ranks: 2 });
    // MPI may warn on stderr about the machine (shared memory, network devices): shown on failure only.
    expect({ code, err }).toMatchObject({ code: 0 });
    const [first, second] = byRank(lines);
    expect(first).toMatchObject({ rank: 0, size: 2, localRank: 0, localSize: 2 });
    expect(second).toMatchObject({ rank: 1, size: 2, localRank: 1, localSize: 2 });
    for (const line of [first!, second!]) expect(allPassed(line)).toEqual([]);
    expect(Object.keys(first!.checks as object)).toContain("allReduceSum 23"); // 3 pieces of 7 and 2
    expect(Object.keys(first!.checks as object)).toContain("allReduceOr u32 23");
  });

  test("agree() with a different configuration on rank 1: every rank names it, the job exits non-zero", async () => {
    const { code, lines } = await run({ mode: "agree" }, { ranks: 2 });
    expect(code).not.toBe(0);
    const message = "rank 1 of 2 has a different configuration than rank 0: start every rank with the same flags and files";
    expect(byRank(lines)).toEqual([{ rank: 0, error: message }, { rank: 1, error: message }]);
  });

  test("an MPI error is returned, not fatal: an MpiError naming the call (a broadcast whose sizes differ)", async () => {
    const { code, lines } = await run({ mode: "truncate" }, { ranks: 2 });
    expect(code).not.toBe(0);
    const failed = lines.find((l) => l.rank === 1)!;
    expect(failed.call).toBe("MPI_Bcast");
    expect(failed.error).toMatch(/^MPI_Bcast failed: .+ \(MPI error \d+\)$/);
  });

  test("detachFromLauncher: the launcher's variables leave process.env (a child started with it has none), openRanks() answers one process, the world still sums", async () => {
    const { code, lines, err } = await run({ mode: "detach" }, { ranks: 2 });
    expect({ code, err }).toMatchObject({ code: 0 });
    expect(byRank(lines)).toEqual([0, 1].map((rank) => ({ rank, removed: true, child: [], againSize: 1, sum: 3 })));
  });

  test("quietBarrier: a rank waits for a slower one asleep (little CPU time), not spinning", async () => {
    const { code, lines, err } = await run({ mode: "quiet" }, { ranks: 2 });
    expect({ code, err }).toMatchObject({ code: 0 });
    const first = byRank(lines)[0]!;
    expect(first.waitMs as number).toBeGreaterThan(500);
    expect(first.cpuMs as number).toBeLessThan(0.5 * (first.waitMs as number));
  });

  // mpirun ends the job when a rank exits non-zero, is killed or calls MPI_Abort (measured here:
  // about 1.1 s from the death to mpirun's exit under load); the bound leaves room for a loaded machine.
  const deaths = { exit: "exits with status 3", kill: "is killed (SIGKILL)", abort: "calls abort(4)" };
  for (const [mode, what] of Object.entries(deaths)) {
    test(`a rank that ${what} before a collective: rank 0 does not wait forever`, async () => {
      const { code, ms, lines } = await run({ mode }, { ranks: 2 });
      expect(code).not.toBe(0);
      if (mode === "abort") expect(code).toBe(4);
      expect(ms).toBeLessThan(30_000);
      expect(lines.filter((l) => l.completed)).toEqual([]);
      expect(lines.filter((l) => l.waiting).map((l) => l.rank)).toEqual([0]);
    }, 60_000);
  }
});

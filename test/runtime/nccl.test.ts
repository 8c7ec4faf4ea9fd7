// NCCL (runtime/nccl.ts) against a mock libnccl and libcudart (fixtures/mock_nccl.cpp) that records
// every call: the lookup's reasons, the bootstrap's order and arguments, the all-reduce (grouped
// for several buffers, in place, on the stream made for it), and openAllReduce's choice. Under
// mpirun, 2 ranks exchange rank 0's id over MPI and sum through the mock; one rank without NCCL
// sends both through MPI. The real library runs in `bun run check:gpu` (scripts/gpu_checks.ts nccl).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { dlopen } from "bun:ffi";
import { CudaBuffer } from "../../runtime/buffer.ts";
import { buildCached } from "../../runtime/cache.ts";
import { openCudaRuntime } from "../../runtime/cuda.ts";
import { openRanks, type Ranks } from "../../runtime/mpi.ts";
import { findNccl, NcclComm, NcclUnavailableError, openAllReduce } from "../../runtime/nccl.ts";
import { withEnv } from "../util.ts";
import { cpuRequest, CXX, fixture, LAUNCHER_VARS, NO_CXX, NO_MPIRUN, runRanks, tempDir } from "./helpers.ts";

describe("findNccl", () => {
  test("NGPK_NCCL: off, or a file that does not load, is the reason; none installed says so; nothing is thrown", async () => {
    await withEnv({ NGPK_NCCL: undefined }, () => {
      const { library, reason } = findNccl();
      if (!library) expect(reason).toBe("libnccl.so.2 is not installed (neither in the CUDA install nor on the loader's path; NGPK_NCCL names the file)");
      else expect(reason).toStartWith("NCCL 2.");
    });
    await withEnv({ NGPK_NCCL: "off" }, () => expect(findNccl()).toEqual({ library: undefined, reason: "NGPK_NCCL=off" }));
    await withEnv({ NGPK_NCCL: "/nonexistent/libnccl.so.2" }, () => {
      const { library, reason } = findNccl();
      expect(library).toBeUndefined();
      expect(reason).toStartWith("NGPK_NCCL=/nonexistent/libnccl.so.2 does not load: /nonexistent/libnccl.so.2: ");
    });
  });
});

describe.skipIf(!CXX)(`NCCL against the mock${NO_CXX}`, () => {
  const dir = tempDir("nccl");
  let mock = "";
  let mockCuda = "";
  let ranks: Ranks;
  let calls: () => string[];
  let reset: () => void;
  let setDevices: (n: number) => void;

  beforeAll(async () => {
    [mock, mockCuda] = (
      await Promise.all([buildCached({ ...cpuRequest(fixture("mock_nccl.cpp"), dir), name: "mock_nccl" }), buildCached({ ...cpuRequest(fixture("mock_cuda.cpp"), dir), name: "mock_cuda" })])
    ).map((r) => r.path) as [string, string];
    const lib = dlopen(mock, { mock_nccl_log: { args: [], returns: "cstring" }, mock_nccl_reset: { args: [], returns: "void" }, mock_set_devices: { args: ["i32"], returns: "void" } });
    calls = () => lib.symbols.mock_nccl_log()!.toString().split("\n").filter(Boolean);
    reset = () => lib.symbols.mock_nccl_reset();
    setDevices = (n) => lib.symbols.mock_set_devices(n);
    ranks = await withEnv(Object.fromEntries(LAUNCHER_VARS.map((v) => [v, undefined])), () => openRanks());
  });
  afterAll(() => ranks?.close());

  test("bootstrap: the device of the local rank, rank 0's id, ncclCommInitRank, a stream; several buffers in one group, one alone; destroy", async () => {
    reset();
    const comm = await NcclComm.open(ranks, { library: mock, cudart: mock, cacheDir: dir });
    expect(comm.description).toBe(`NCCL 2.23.4 (${mock}), 1 rank, this one on GPU 0`);
    const memory = openCudaRuntime(mockCuda).memory;
    const a = CudaBuffer.alloc(memory, "f32", 4);
    const b = CudaBuffer.alloc(memory, "f32", 2);
    a.upload([1, 2, 3, 4]);
    b.upload([-0.5, 2 ** 100]);
    comm.allReduceSum([a, b]);
    comm.allReduceSum([a]);
    comm.allReduceSum([CudaBuffer.alloc(memory, "f32", 0)]); // nothing to send: no call
    expect([...a.download()]).toEqual([1, 2, 3, 4]); // one rank: the identity
    expect([...b.download()]).toEqual([-0.5, 2 ** 100]);
    expect(() => comm.allReduceSum([CudaBuffer.alloc(memory, "u32", 2) as unknown as CudaBuffer<"f32">])).toThrow("NCCL all-reduce takes f32 CUDA buffers, got a cuda u32[2] buffer");
    comm.close();
    comm.close(); // a second close does nothing
    expect(() => comm.allReduceSum([a])).toThrow("NcclComm.allReduceSum called after close()");
    const stream = 0x5000 + 1;
    expect(calls()).toEqual([
      "cudaGetDeviceCount",
      "cudaSetDevice(0)",
      "ncclGetUniqueId",
      "ncclCommInitRank(nranks=1, rank=0, device=0, id=mock-nccl:)",
      `cudaStreamCreate -> ${stream}`,
      "ncclGroupStart",
      `ncclAllReduce(count=4, type=7, op=0, inPlace=1, stream=${stream}, grouped)`,
      `ncclAllReduce(count=2, type=7, op=0, inPlace=1, stream=${stream}, grouped)`,
      "ncclGroupEnd",
      `cudaStreamSynchronize(${stream})`,
      `ncclAllReduce(count=4, type=7, op=0, inPlace=1, stream=${stream})`,
      `cudaStreamSynchronize(${stream})`,
      "ncclCommDestroy",
      `cudaStreamDestroy(${stream})`,
    ]);
  });

  test("a local rank without a GPU of its own: NcclUnavailableError naming the rank and the count", async () => {
    setDevices(0);
    const error = await NcclComm.open(ranks, { library: mock, cudart: mock, cacheDir: dir }).catch((e) => e);
    setDevices(4);
    expect(error).toBeInstanceOf(NcclUnavailableError);
    expect(error.message).toBe("rank 0's local rank 0 has no GPU: this machine has 0 and NCCL needs one per rank (start at most 0 ranks per machine)");
  });

  test("openAllReduce with one rank: this rank's device is set, nothing is reduced, NCCL is not started", async () => {
    reset();
    const reduce = await openAllReduce(ranks, { cuda: true, library: mock, cudart: mock, cacheDir: dir });
    expect({ via: reduce.via, reason: reduce.reason, device: reduce.device }).toEqual({ via: "none", reason: "one rank: nothing to reduce", device: 0 });
    const data = new Float32Array([1, 2]);
    reduce.allReduceSum([data]);
    expect([...data]).toEqual([1, 2]);
    expect(calls()).toEqual(["cudaGetDeviceCount", "cudaSetDevice(0)"]);
    const off = await openAllReduce(ranks, { cuda: false });
    expect({ via: off.via, device: off.device }).toEqual({ via: "none", device: undefined });
  });

  describe.skipIf(!!NO_MPIRUN)(`2 ranks under mpirun${NO_MPIRUN}`, () => {
    test("rank 0's id reaches rank 1 over MPI; each rank on its own GPU; CUDA buffers summed through NCCL, a Float32Array through MPI", async () => {
      const { code, lines, err } = await runRanks("nccl_ranks.ts", { nccl: mock, mockCuda, cacheDir: dir }, { ranks: 2, env: { ...process.env, TMPDIR: dir } });
      expect({ code, err }).toMatchObject({ code: 0 });
      const [first, second] = [...lines].sort((x, y) => (x.rank as number) - (y.rank as number));
      for (const [r, line] of [first!, second!].entries()) {
        expect(line).toMatchObject({ rank: r, size: 2, via: "nccl", device: r, checks: { a: true, b: true, host: true } });
        expect(line.reason).toBe(`NCCL 2.23.4 (${mock}), 2 ranks, this one on GPU ${r}`);
      }
      const init = (r: number) => `ncclCommInitRank(nranks=2, rank=${r}, device=${r}, id=mock-nccl:)`;
      expect((first!.calls as string[]).slice(0, 5)).toEqual(["cudaGetDeviceCount", "cudaGetDeviceCount", `cudaSetDevice(0)`, "ncclGetUniqueId", init(0)]);
      expect((second!.calls as string[]).slice(0, 4)).toEqual(["cudaGetDeviceCount", "cudaGetDeviceCount", `cudaSetDevice(1)`, init(1)]); // no id of its own
    }, 60_000);

    test("one rank without NCCL: both go through MPI (host copies), the reason names the rank", async () => {
      const { code, lines, err } = await runRanks("nccl_ranks.ts", { nccl: mock, mockCuda, cacheDir: dir, without: [1] }, { ranks: 2, env: { ...process.env, NGPK_NCCL: undefined } });
      expect({ code, err }).toMatchObject({ code: 0 });
      const [first, second] = [...lines].sort((x, y) => (x.rank as number) - (y.rank as number));
      for (const line of [first!, second!]) {
        expect(line).toMatchObject({ via: "mpi", checks: { a: true, b: true, host: true } });
        expect(line.calls as string[]).not.toContain("ncclGetUniqueId");
      }
      // Every rank's reason names the rank without NCCL and why (rank 0 alone logs it).
      expect(second!.reason).toStartWith("MPI through host memory, not NCCL: rank 1: ");
      expect(first!.reason).toBe(second!.reason as string);
    }, 60_000);

    test("one rank with host buffers (a backend that is not CUDA): the same collectives on both, both through MPI; the CUDA rank's reason names the other", async () => {
      const { code, lines, err } = await runRanks("nccl_ranks.ts", { nccl: mock, mockCuda, cacheDir: dir, host: [1] }, { ranks: 2, env: { ...process.env, NGPK_NCCL: undefined } });
      expect({ code, err }).toMatchObject({ code: 0 });
      const [first, second] = [...lines].sort((x, y) => (x.rank as number) - (y.rank as number));
      for (const line of [first!, second!]) expect(line).toMatchObject({ via: "mpi", checks: { a: true, b: true, host: true } });
      expect(first!.reason).toBe("MPI through host memory, not NCCL: rank 1: its buffers are in host memory (not CUDA)");
      expect(second!.reason).toMatch(/^MPI \(.+\): host buffers$/);
      expect(first!.device).toBe(0);
      expect(second!.device).toBeUndefined();
    }, 60_000);
  });
});

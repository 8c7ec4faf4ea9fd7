// bench/dist.ts on a tiny configuration (batch 1024, a 2^12 table, 2 steps, one round): both
// layouts measured (2 ranks under mpirun where MPI is here, else skipped with the reason), the
// results equal, the model's rows and its JSON line; the model's arithmetic; bad flags. The real
// run takes about 2 minutes (docs/benchmarks.md); the tiny one up to a minute or two where its kernels are not yet built.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { ringSeconds, scalingModel, sparseCrossing, LINKS_GBPS, NODES } from "../../bench/dist.ts";
import { NO_MPIRUN, unlaunched } from "../runtime/helpers.ts";
import { ROOT, runCommand } from "../util.ts";

const bench = (args: string[]) => runCommand([process.execPath, join(ROOT, "bench/dist.ts"), ...args], { env: unlaunched(), timeout: 230_000 });

test(`a tiny run: both layouts, the results equal, the model, a JSON line last${NO_MPIRUN}`, async () => {
  const r = await bench(["--steps", "2", "--batch", "1024", "--log2-table", "12", "--rounds", "1", "--json"]);
  expect(r.code, r.err).toBe(0);
  const lines = r.out.trim().split("\n");
  expect(lines[0]).toMatch(/^CPU: /);
  expect(r.out).toMatch(/1 rank x 2 threads \(--accumulate 2\): +step \d+ ms, [\d,]+ samples\/s/);
  expect(r.out).toMatch(/Earth4D \(713,169,152 parameters \+ 1,376,256 probing logits/);
  expect(r.out).toMatch(/other processes used/);
  const j = JSON.parse(lines.at(-1)!);
  expect(j.model.links_gbps).toEqual(LINKS_GBPS);
  expect(j.model.earth4d.bytes).toBe(4 * (713_169_152 + 1_376_256 + j.model.earth4d.network));
  for (const m of [j.model.measured, j.model.earth4d]) {
    expect(m.rows).toHaveLength(LINKS_GBPS.length);
    for (const row of m.rows) expect(row.efficiency).toHaveLength(NODES.length);
  }
  if (NO_MPIRUN) {
    expect(j.skipped).toBeString();
    expect(j.measured.two).toBeNull();
    return;
  }
  expect(r.out).toMatch(/2 ranks x 1 thread: +step \d+ ms, [\d,]+ samples\/s; gradient all-reduce [\d.]+ ms \(\d+% of the step\)/);
  // The gradients all-reduced each step (counted as the trainer passes them): the grid's and the network's parameters, in f32.
  expect(j.measured.all_reduce_bytes).toBe(4 * j.measured.params);
  expect(j.measured.two.reduceShare).toBeGreaterThan(0);
  expect(j.measured.two.reduceShare).toBeLessThan(1);
  expect(j.measured.equal.lossRelative).toBeLessThanOrEqual(1e-5);
  expect(j.measured.equal.stateRelative).toBeLessThan(1e-5);
}, 240_000);

test("the model: a ring's 2 (N-1)/N x bytes over the link, the efficiency and where the all-reduce dominates", () => {
  // 1 GB at 8 Gb/s: 1 s per byte-pass; 2 nodes send it once, many nodes twice.
  expect(ringSeconds(1e9, 2, 8)).toBeCloseTo(1, 12);
  expect(ringSeconds(1e9, 4, 8)).toBeCloseTo(1.5, 12);
  expect(ringSeconds(1e9, Infinity, 8)).toBeCloseTo(2, 12);
  // A step of 1.3 s: at 10 Gb/s a 1 GB all-reduce takes 0.8 s (2 nodes), 1.2 s (4), 1.4 s (8).
  const [ten] = scalingModel(1.3, 1e9);
  expect(ten!.gbps).toBe(10);
  expect(ten!.efficiency[0]).toBeCloseTo(1.3 / 2.1, 12);
  expect(ten!.dominatesFrom).toBe(8);
  expect(scalingModel(1.3, 1e9).at(-1)!.dominatesFrom).toBeNull();
  // Sparse: 1000 entries of 2 features (12 bytes each) against 1 MB dense: fewer bytes below 166.7 nodes.
  expect(sparseCrossing(1e6, 1000, 2)).toEqual({ bytes: 12_000, nodes: 2e6 / 12_000 });
});

test("bad flags: the flag named, the usage, status 2", async () => {
  const r = await bench(["--steps", "0"]);
  expect(r.code).toBe(2);
  expect(r.err).toStartWith('bench:dist: --steps: "0" is not an integer in [1, 10000]');
  expect(r.err).toContain("usage: bun run bench:dist");
});

// bench/probing.ts on a tiny configuration (a 64x48 image, batch 256, 2 steps per run, the JS
// backend: no C++ build; the 3D case left out, its JS kernels take long to emit): every row and
// check is there and the --json line has its shape; --help and bad flags. The real run takes
// minutes (see the bench).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { ROOT, runCommand, TEST_TIMEOUT } from "../util.ts";

const BENCH = join(ROOT, "bench/probing.ts");
const dir = mkdtempSync(join(tmpdir(), "ngpk-test-bench-probing-"));
const frames = [join(dir, "a.png"), join(dir, "b.png"), join(dir, "c.png")];

beforeAll(async () => {
  const src = join(ROOT, "data/astronaut.png");
  await sharp(src).resize(64, 48, { fit: "cover" }).png().toFile(frames[0]!);
  await sharp(src).resize(64, 48, { fit: "fill" }).png().toFile(frames[1]!);
  await sharp(src).resize(64, 48, { fit: "cover", position: "top" }).negate().png().toFile(frames[2]!);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const bench = (args: string[]) => runCommand([process.execPath, BENCH, ...args], { timeout: 110_000 });

test("a tiny run prints every row, the collisions and the checks, and a JSON line last", async () => {
  const r = await bench(["--backend", "js", "--steps", "2", "--steps-3d", "2", "--batch", "256", "--log2t", "12", "--images", frames[0]!, "--no-3d", "--json"]);
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  const lines = r.out.trim().split("\n");
  expect(lines[0]).toMatch(/^CPU: /);
  expect(r.out).toMatch(/\[1\/5\] 2D a\.png: baseline T \(log2T 12\), 2 steps/);
  expect(r.out).toMatch(/ETA/);
  const j = JSON.parse(lines.at(-1)!);
  expect(j.mode).toBe("compare");
  expect(j.rows).toHaveLength(5);
  for (const row of j.rows) {
    for (const k of ["name", "log2T", "probing_range", "psnr", "inference_bytes", "steps_per_s", "step_ms", "dims"]) expect(row).toHaveProperty(k);
    expect(Number.isFinite(row.psnr)).toBe(true);
    expect(row.steps_per_s).toBeGreaterThan(0);
    expect(row.step_ms).toBeGreaterThan(0);
  }
  // Per row against the baseline at T: the fractions, the gap and the targets (issue 21) from them.
  expect(j.targets).toEqual({ bytes: 0.36, db: 0.5, step: 1.5 });
  const base = j.rows[0];
  for (const row of j.rows) {
    expect(row.bytes_vs_t).toBeCloseTo(row.inference_bytes / base.inference_bytes, 12);
    expect(row.db_vs_t).toBeCloseTo(row.psnr - base.psnr, 12);
    expect(row.step_vs_t).toBeCloseTo(row.step_ms / base.step_ms, 12);
    expect(row.targets).toEqual({
      bytes: row.bytes_vs_t <= 0.36, quality: row.db_vs_t >= -0.5, step: row.step_vs_t <= 1.5,
      all: row.bytes_vs_t <= 0.36 && row.db_vs_t >= -0.5 && row.step_vs_t <= 1.5,
    });
  }
  expect(j.rows[0].targets).toMatchObject({ quality: true, step: true, bytes: false });
  expect(j.rows.map((x: { dims: number; log2T: number; probing_range: number }) => [x.dims, x.log2T, x.probing_range])).toEqual([
    [2, 12, 1], [2, 10, 1], [2, 10, 4], [2, 10, 4], [2, 8, 16],
  ]);
  expect(j.rows[3].name).toBe("probing T/4 N_p=4 N_c=T/4");
  // Probing's packed indices add to the features, the default codebook's (4 rows per entry) more
  // than one row per entry's; a quarter of the table is smaller than T.
  const [T, T4, P4, P4small] = j.rows as { inference_bytes: number }[];
  expect(P4!.inference_bytes).toBeGreaterThan(P4small!.inference_bytes);
  expect(P4small!.inference_bytes).toBeGreaterThan(T4!.inference_bytes);
  expect(P4!.inference_bytes).toBeLessThan(T!.inference_bytes);
  expect(j.checks).toHaveLength(6);
  for (const c of j.checks) expect(typeof c.met).toBe("boolean");
  expect(j.collisions.map((c: { dims: number }) => c.dims)).toEqual([2]);
  for (const c of j.collisions) {
    expect(c.levels.length).toBeGreaterThan(0);
    for (const l of c.levels) for (const k of ["baseline", "probing_before", "probing_after"]) expect(l[k]).toBeWithin(0, 1.000001);
    expect(c.probes_moved).toBeWithin(0, 1.000001);
  }
  expect(r.out).toMatch(/step time probing T\/4 \/ baseline T\/4 <= 1\.5 +[\d.]+x: (met|NOT MET)/);
  expect(r.out).toMatch(/step time probing T\/4 \/ baseline T <= 1\.5 +[\d.]+x: (met|NOT MET)/);
  expect(r.out).toMatch(/inference bytes probing T\/4 \/ baseline T <= 0\.36 +[\d.]+x: (met|NOT MET)/);
  expect(r.out).toMatch(/bytes\/T \(<= 0\.36\) \| dB vs T \(>= -0\.5\) \| step\/T \(<= 1\.5\)/);
  expect(r.out).toMatch(/step times: 5 models, 10 steps each in turn/);
}, TEST_TIMEOUT);

test("--help, and bad flags are refused with exit status 2", async () => {
  const h = await bench(["--help"]);
  expect(h.code).toBe(0);
  expect(h.out).toMatch(/usage: bun run bench:probing/);
  for (const [args, msg] of [
    [["--steps", "0"], /--steps must be an integer from 1/],
    [["--log2t", "11"], /--log2t must be an integer from 12 to 24, got "11"/],
    [["--backend", "cuda"], /--backend must be cpu or js/],
    [["--images", join(dir, "missing.png")], /not found/],
    [["--volume", frames[0]!], /--volume needs at least 2 images/],
    [["--bogus"], /Unknown option '--bogus'/],
  ] as [string[], RegExp][]) {
    const r = await bench(args);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(msg);
  }
});

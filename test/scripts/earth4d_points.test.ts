// scripts/earth4d_points.ts: the synthetic Earth4D observations are reproducible, inside their
// box, and follow the terrain and the season as documented.
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EARTH4D_BOX, observe, terrain, writeEarth4dPoints } from "../../scripts/earth4d_points.ts";
import { POINTS_HEADER_BYTES } from "../../train/data/points.ts";

describe("earth4d_points", () => {
  const dir = mkdtempSync(join(tmpdir(), "e4d-"));
  beforeAll(() => {
    for (const [name, seed] of [["a", 4], ["b", 4], ["c", 5]] as const) writeEarth4dPoints(join(dir, `${name}.bin`), 5000, seed);
  });
  test("the same seed writes the same bytes; another seed other bytes", () => {
    const [a, b, c] = ["a", "b", "c"].map((n) => readFileSync(join(dir, `${n}.bin`)));
    expect(a!.length).toBe(POINTS_HEADER_BYTES + 16 * 4 + 5000 * 7 * 4);
    expect(Buffer.compare(a!, b!)).toBe(0);
    expect(Buffer.compare(a!, c!)).not.toBe(0);
  });
  test("records lie in the box, on or above the terrain, with values in their ranges", () => {
    const bytes = readFileSync(join(dir, "a.bin"));
    const rec = new Float32Array(bytes.buffer.slice(bytes.byteOffset + POINTS_HEADER_BYTES + 64, bytes.byteOffset + bytes.length));
    const height = terrain(4);
    let ground = 0;
    for (let r = 0; r < 5000; r++) {
      const [lat, lon, elev, year, , veg, albedo] = rec.subarray(r * 7, r * 7 + 7);
      for (let d = 0; d < 4; d++) {
        expect(rec[r * 7 + d]!).toBeGreaterThanOrEqual(EARTH4D_BOX.min[d]!);
        expect(rec[r * 7 + d]!).toBeLessThanOrEqual(EARTH4D_BOX.max[d]!);
      }
      expect(year!).toBeLessThan(2024);
      const h = height(lat!, lon!);
      expect(elev!).toBeGreaterThan(h - 12); // ground returns: noise of 2 m
      if (Math.abs(elev! - h) < 8) ground++;
      expect(veg!).toBeGreaterThanOrEqual(0);
      expect(albedo!).toBeLessThanOrEqual(1);
    }
    expect(ground / 5000).toBeGreaterThan(0.6);
  });
  test("temperature falls with elevation and peaks in summer; snow only high up or in winter", () => {
    expect(observe(35.5, 0, 2021.58)[0]).toBeGreaterThan(observe(35.5, 2000, 2021.58)[0]);
    expect(observe(35.5, 500, 2021.58)[0]).toBeGreaterThan(observe(35.5, 500, 2021.08)[0] + 15);
    expect(observe(35.5, 3700, 2021.08)[2]).toBeGreaterThan(0.7);
    expect(observe(35.5, 100, 2021.58)[2]).toBeLessThan(0.2);
  });
});

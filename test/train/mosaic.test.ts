// The gigapixel test photograph (scripts/mosaic.ts), built small: the same bytes twice, every cell
// a Kodak photograph turned and mirrored as the seeded layout says (the last column and row cropped).
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { buildMosaic, CELL, KODAK_DIR, mosaicLayout, orientedCell } from "../../train/mosaic.ts";

const dir = mkdtempSync(join(tmpdir(), "mosaic-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const kodak = existsSync(KODAK_DIR) ? KODAK_DIR : undefined;

test.skipIf(!kodak)("the mosaic is deterministic: the same bytes twice, another seed another image", async () => {
  const a = await buildMosaic({ width: 1700, height: 1100, seed: 7, out: join(dir, "a.png") });
  const b = await buildMosaic({ width: 1700, height: 1100, seed: 7, out: join(dir, "b.png") });
  const c = await buildMosaic({ width: 1700, height: 1100, seed: 8, out: join(dir, "c.png") });
  expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
  expect(readFileSync(a).equals(readFileSync(c))).toBe(false);
});

test.skipIf(!kodak)("every cell is a Kodak photograph in the layout's orientation, cropped at the right and bottom edges", async () => {
  const [width, height, seed] = [1700, 1100, 3];
  const path = await buildMosaic({ width, height, seed, out: join(dir, "m.tif") });
  const { data, info } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
  expect([info.width, info.height, info.channels]).toEqual([width, height, 3]);
  const files = (await Array.fromAsync(new Bun.Glob("*.png").scan(kodak!))).sort().map((n) => join(kodak!, n));
  const cells = mosaicLayout(width, height, seed, files.length);
  expect(cells.length).toBe(Math.ceil(width / CELL.width) * Math.ceil(height / CELL.height));
  for (const cell of cells) {
    const src = await orientedCell(files[cell.image]!, cell.orientation);
    const cols = Math.min(CELL.width, width - cell.x);
    for (let r = 0; r < Math.min(CELL.height, height - cell.y); r++) {
      const got = data.subarray(((cell.y + r) * width + cell.x) * 3, ((cell.y + r) * width + cell.x + cols) * 3);
      if (!got.equals(Buffer.from(src.subarray(r * CELL.width * 3, (r * CELL.width + cols) * 3)))) throw new Error(`cell at (${cell.x}, ${cell.y}) row ${r} differs from its source`);
    }
  }
  // The orientations are all drawn (a larger layout), portrait sources among the photographs.
  const many = mosaicLayout(56718, 21450, 1, files.length);
  expect(new Set(many.map((c) => c.orientation)).size).toBe(4);
  expect(new Set(many.map((c) => c.image)).size).toBe(files.length);
  // Orientation 3 of a landscape photograph is it turned 180 degrees; orientation 0 is the file's pixels.
  const a = await orientedCell(files[0]!, 0);
  const turned = await orientedCell(files[0]!, 3);
  expect(Buffer.from(a).equals(await sharp(files[0]!).removeAlpha().raw().toBuffer())).toBe(true);
  const n = CELL.width * CELL.height;
  for (let p = 0; p < n; p += 997) for (let c = 0; c < 3; c++) expect(turned[p * 3 + c]).toBe(a[(n - 1 - p) * 3 + c]!);
});

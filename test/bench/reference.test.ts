// bench/reference.ts: building, running and parsing the shared reference, on a stand-in program
// that prints a JSON line like the real one (the real run takes tens of seconds: see bench/).

import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { missingAvx512, runReference } from "../../bench/reference.ts";
import { findCxx } from "../../runtime/toolchain.ts";

const dir = mkdtempSync(join(tmpdir(), "ngpk-test-reference-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const usable = findCxx().tool !== undefined && missingAvx512().length === 0;

const STAND_IN = String.raw`#include <cstdio>
int main(int argc, char** argv) {
    std::printf("verification: ALL OK\n");
    std::printf("JSON {\"verified\":true,\"membw_gbs\":[30.5,60.1],"
                "\"D2_N65536_t2\":{\"fwd_pts_s\":6.5e+07,\"bwd_pts_s\":4.4e+07,\"fwdbwd_pts_s\":2e+07,"
                "\"fwd_best\":7e+07,\"bwd_best\":4.5e+07,\"fwdbwd_best\":2.1e+07,\"bwd_nozero_pts_s\":4.6e+07,"
                "\"zero_ms\":0.08,\"fwd_layout\":\"AoS\",\"bwd\":\"level-ownership(static)\"},"
                "\"train_D2_B65536\":{\"step_ms\":10.5,\"steps_per_s\":95.2,\"enc_fwd_ms\":1.8,\"enc_bwd_ms\":2.2,"
                "\"mlp_fwdbwd_ms\":5.0,\"adam_ms\":1.5}}\n");
    return argc > 1 ? 1 : 0;
}
`;

test("a missing source gives a reason, not an exception", async () => {
  const run = await runReference({ source: join(dir, "nope.cpp"), cacheDir: dir });
  expect(run.figures).toBeUndefined();
  expect(run.reason).toMatch(usable ? /not found/ : /lacks|compiler/);
});

test.skipIf(!usable)("builds once, runs, and parses the JSON line", async () => {
  const source = join(dir, "stand_in.cpp");
  writeFileSync(source, STAND_IN);
  const run = await runReference({ source, cacheDir: dir, args: [] });
  expect(run.reason).toBeUndefined();
  const f = run.figures!;
  expect(f.verified).toBe(true);
  expect(f.figures).toEqual([
    {
      dims: 2, n: 65536, threads: 2, fwd: 65, bwd: 44, bwdNoZero: 46, fwdBwd: 20,
      best: { fwd: 70, bwd: 45, fwdBwd: 21 }, fwdLayout: "AoS", bwdStrategy: "level-ownership(static)",
    },
  ]);
  expect(f.train?.stepsPerS).toBe(95.2);
  expect(f.memBandwidthGBs).toEqual([30.5, 60.1]);
  expect(f.buildMs).toBeGreaterThan(0);

  // Cached the second time; a failing exit status marks the figures unverified.
  const again = await runReference({ source, cacheDir: dir, args: ["fail"] });
  expect(again.figures?.buildMs).toBe(0);
  expect(again.figures?.verified).toBe(false);

  // A source that does not compile.
  const broken = join(dir, "broken.cpp");
  writeFileSync(broken, "int main( {");
  const bad = await runReference({ source: broken, cacheDir: dir });
  expect(bad.figures).toBeUndefined();
  expect(bad.reason).toMatch(/building the reference failed/);
}, 60_000);

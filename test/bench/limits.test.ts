// A benchmark's share of a physical limit (GFLOP/s of the FMA peak, GB/s of the triad) above 1
// cannot be real: it is flagged as a disturbed measurement with the reason, never printed as a
// result (bench:mlp once printed the MLP at 130% of the peak and Adam at 477% of the triad while
// another process shared the cores). And the closing lines every benchmark prints about the load.
import { expect, test } from "bun:test";
import { fmtShare, loadReport, shareOfLimit } from "../../bench/machine.ts";

test("a share of a physical limit above 1 is flagged with the reason, not returned as a result", () => {
  const loaded = shareOfLimit(130, 100, "the generated MLP (width 64)", 0.45);
  expect(loaded).toEqual({
    share: null,
    disturbed: "measurement disturbed: the generated MLP (width 64) came out at 130% of a limit that cannot be exceeded; other processes used 45% of the CPU time, so the limit was measured while they ran",
  });
  expect(fmtShare(loaded)).toBe("invalid");
  const quiet = shareOfLimit(477, 100, "Adam's bandwidth", 0.01);
  expect(quiet.share).toBeNull();
  expect(quiet.disturbed).toContain("477% of a limit that cannot be exceeded; the limit was measured low");
  expect(shareOfLimit(477, 100, "Adam's bandwidth", undefined).share).toBeNull();
});

test("a share within the limit is the result", () => {
  expect(shareOfLimit(70, 100, "x", 0.5)).toEqual({ share: 0.7 });
  expect(shareOfLimit(100, 100, "x", undefined)).toEqual({ share: 1 });
  expect(fmtShare({ share: 0.7 })).toBe("70.0%");
  expect(fmtShare({ share: 0.7 }, 0)).toBe("70%");
});

test("the load report: the other processes' share, and a warning above 5%", () => {
  expect(loadReport(0.01, 12.4)).toEqual(["(12 s; other processes used 1% of the machine's CPU time meanwhile)"]);
  expect(loadReport(undefined, 3)).toEqual(["(3 s; other processes used unknown (no /proc/stat) of the machine's CPU time meanwhile)"]);
  const loaded = loadReport(0.3, 60, { figures: "Steps/s understate the machine" });
  expect(loaded).toEqual([
    "(60 s; other processes used 30% of the machine's CPU time meanwhile)",
    "WARNING: other processes were running (30% of all CPU time). Steps/s understate the machine; run again when it is idle.",
  ]);
});

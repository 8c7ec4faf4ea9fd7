// The benchmarks' one argument parser (bench/args.ts): what it returns and prints, and that every
// benchmark but bench:train (being rewritten) parses its arguments with it.
import { expect, spyOn, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { benchArgs } from "../../bench/args.ts";

const BENCH = resolve(import.meta.dir, "../../bench");

test("values, or the usage with the status: 2 after a bad argument (on stderr), 0 for --help (on stdout)", () => {
  const options = { reps: { type: "string" }, quick: { type: "boolean" } } as const;
  expect(benchArgs("usage: x", options, { argv: ["--reps", "3", "--quick"] })).toEqual({ reps: "3", quick: true });
  const err = spyOn(console, "error").mockImplementation(() => {});
  const out = spyOn(console, "log").mockImplementation(() => {});
  try {
    expect(benchArgs("usage: x", options, { argv: ["--bogus"], prefix: "bench:x: " })).toBe(2);
    expect(String(err.mock.calls[0]![0])).toStartWith("bench:x: Unknown option '--bogus'");
    expect(String(err.mock.calls[0]![0])).toEndWith("\nusage: x");
    expect(benchArgs("usage: x", options, { argv: ["-h"] })).toBe(0);
    expect(out.mock.calls[0]![0]).toBe("usage: x");
  } finally {
    err.mockRestore();
    out.mockRestore();
  }
});

test("every benchmark with a command line but bench:train parses it with benchArgs, none by hand", () => {
  // reference.ts hands its arguments, unread, to the shared reference program.
  const entries = readdirSync(BENCH).filter((f) => f.endsWith(".ts") && !["args.ts", "train.ts", "reference.ts"].includes(f));
  const commands = entries.filter((f) => /import\.meta\.main|await main\(|process\.argv/.test(readFileSync(join(BENCH, f), "utf8")));
  expect(commands).toEqual(expect.arrayContaining(["defaults.ts", "gigapixel.ts", "hand_bench.ts", "hashgrid.ts", "mlp.ts", "probing.ts", "scale.ts", "sparse.ts"]));
  for (const f of commands) {
    const text = readFileSync(join(BENCH, f), "utf8");
    expect(text, f).toContain("benchArgs(");
    expect(text, f).not.toMatch(/\bparseArgs\(|process\.argv/);
  }
});

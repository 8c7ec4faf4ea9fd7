// An unusable cache directory, as a user who cannot write it meets it: every backend either works
// (a temporary cache when the directory was only the default, or hits a read-only cache already
// holding the modules) or stops with one clear message. Run as an unprivileged user in a child
// process, since root writes through file permissions.
import { describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { loadKernels } from "../../runtime/module.ts";
import { CXX, fixturePath, tempDir } from "./helpers.ts";

const root = process.getuid?.() === 0;
const setpriv = Bun.which("setpriv");
const SKIP = root && !setpriv ? " (skipped: running as root without setpriv to drop privileges)" : "";
const backends = CXX ? ["js", "cpu"] : ["js"];
const SAXPY = join(import.meta.dir, "../../dsl/examples/saxpy.ts");

interface Outcome {
  backend: string;
  hit?: boolean;
  out?: number[];
  error?: string;
}

/** Runs fixtures/load_saxpy.ts as user nobody (when we are root) with `env` as the cache settings. */
async function loadAsUser(env: Record<string, string>): Promise<{ outcomes: Outcome[]; stderr: string }> {
  const drop = root ? [setpriv!, "--reuid=65534", "--regid=65534", "--clear-groups"] : [];
  const tmp = tempDir("user-tmp"); // the system's may not be writable for nobody
  chmodSync(tmp, 0o777);
  const proc = Bun.spawn([...drop, process.execPath, fixturePath("load_saxpy.ts"), ...backends], {
    env: { PATH: process.env.PATH, HOME: "/nonexistent", TMPDIR: tmp, BUN_RUNTIME_TRANSPILER_CACHE_PATH: "0", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { outcomes: stdout.trim().split("\n").filter(Boolean).map((line) => JSON.parse(line) as Outcome), stderr };
}

/** A directory that the test user can read but not write. */
function readOnlyDir(label: string): string {
  const dir = tempDir(label);
  chmodSync(dir, 0o755); // mkdtemp's 0700 would hide it from nobody altogether
  const cache = join(dir, "cache");
  mkdirSync(cache);
  chmodSync(cache, 0o555);
  return cache;
}

describe.skipIf(SKIP !== "")(`a read-only cache directory${SKIP}`, () => {
  test("chosen by NGPK_CACHE_DIR: one clear error on every backend, no stack trace or raw EACCES", async () => {
    const cache = readOnlyDir("ro-env");
    const { outcomes, stderr } = await loadAsUser({ NGPK_CACHE_DIR: cache });
    expect(stderr).toBe("");
    expect(outcomes).toEqual(
      backends.map((backend) => ({
        backend,
        error: `CacheDirError: ngp-kernels: cache directory ${cache} cannot be written (permission denied); it was chosen by NGPK_CACHE_DIR: set NGPK_CACHE_DIR to a writable directory, or unset it for the default`,
      })),
    );
  });

  test("the default: every backend works from a temporary cache, after one warning", async () => {
    const xdg = readOnlyDir("ro-default");
    const { outcomes, stderr } = await loadAsUser({ XDG_CACHE_HOME: xdg });
    expect(outcomes).toEqual(backends.map((backend) => ({ backend, ...(backend === "cpu" ? { hit: false } : {}), out: [12, 24] })));
    expect(stderr).toMatch(
      new RegExp(`^ngp-kernels: cache directory ${xdg}/ngp-kernels cannot be written \\(permission denied\\); using a temporary cache \\S+/ngpk-cache-\\w+ for this process \\(set NGPK_CACHE_DIR to a writable directory to keep builds\\)\\n$`),
    );
  });

  test("holding the modules already: every backend loads them without writing", async () => {
    const cache = readOnlyDir("ro-full");
    chmodSync(cache, 0o755);
    for (const backend of backends) await loadKernels(SAXPY, { backend: backend as "js" | "cpu", cacheDir: cache });
    chmodSync(cache, 0o555);
    const { outcomes, stderr } = await loadAsUser({ NGPK_CACHE_DIR: cache });
    expect(stderr).toBe("");
    expect(outcomes).toEqual(backends.map((backend) => ({ backend, ...(backend === "cpu" ? { hit: true } : {}), out: [12, 24] })));
  });
});

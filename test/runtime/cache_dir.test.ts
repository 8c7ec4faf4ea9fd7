// An unusable cache directory, as a user who cannot write it meets it: every backend either works
// (a temporary cache when the directory was only the default, or hits a read-only cache already
// holding the modules) or stops with one clear message. Run as an unprivileged user in a child
// process, since root writes through file permissions.
import { describe, expect, test } from "bun:test";
import { chmodSync, chownSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { loadKernels } from "../../modules/load.ts";
import { runBun, runCommand } from "../util.ts";
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
async function loadAsUser(env: Record<string, string>, user = 65534): Promise<{ outcomes: Outcome[]; stderr: string }> {
  return load(env, root ? [setpriv!, `--reuid=${user}`, `--regid=${user}`, "--clear-groups"] : []);
}

/** Runs fixtures/load_saxpy.ts through `prefix` (a command that runs its arguments) with `env` as the cache settings. */
async function load(env: Record<string, string>, prefix: string[] = []): Promise<{ outcomes: Outcome[]; stderr: string }> {
  const tmp = tempDir("user-tmp"); // the system's may not be writable for nobody
  chmodSync(tmp, 0o1777);
  const r = await runCommand([...prefix, process.execPath, fixturePath("load_saxpy.ts"), ...backends], {
    env: { PATH: process.env.PATH, HOME: "/nonexistent", TMPDIR: tmp, BUN_RUNTIME_TRANSPILER_CACHE_PATH: "0", ...env },
  });
  return { outcomes: r.out.trim().split("\n").filter(Boolean).map((line) => JSON.parse(line) as Outcome), stderr: r.err };
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

// A cache directory that others can write lets them replace a library together with its recorded
// digest: their code would run in the next process. Refused as ssh refuses such keys; a cache
// that its owner keeps read-only may still be shared.
describe("a cache directory or library that other users could have written", () => {
  const loaded = backends.map((backend) => ({ backend, ...(backend === "cpu" ? { hit: false } : {}), out: [12, 24] }));

  for (const mode of [0o777, 0o1777, 0o775]) {
    const shown = mode.toString(8).padStart(4, "0");
    test(`chosen by NGPK_CACHE_DIR with mode ${shown}: refused on every backend, naming the directory and the fix`, async () => {
      const cache = join(tempDir("shared"), "cache");
      mkdirSync(cache);
      chmodSync(cache, mode);
      const { outcomes, stderr } = await load({ NGPK_CACHE_DIR: cache });
      expect(stderr).toBe("");
      const who = mode & 0o002 ? "all users" : "its group";
      expect(outcomes).toEqual(
        backends.map((backend) => ({
          backend,
          error: `CacheDirError: ngp-kernels: cache directory ${cache} is writable by ${who} (mode ${shown}); it was chosen by NGPK_CACHE_DIR: set NGPK_CACHE_DIR to a private directory (chmod 700 ${cache}), or unset it for the default`,
        })),
      );
      expect(readdirSync(cache)).toEqual([]); // nothing built there either
    });
  }

  test("passed as the cacheDir option: refused, naming the option", async () => {
    const cache = tempDir("shared-option");
    chmodSync(cache, 0o777);
    await expect(loadKernels(SAXPY, { backend: "js", cacheDir: cache })).rejects.toThrow(
      `ngp-kernels: cache directory ${cache} is writable by all users (mode 0777); it was passed as the cacheDir option: pass a private directory (chmod 700 ${cache}), or omit cacheDir to use $NGPK_CACHE_DIR or the default`,
    );
  });

  test("the default: every backend works from a temporary cache, after one warning naming the fix", async () => {
    const xdg = tempDir("shared-default");
    mkdirSync(join(xdg, "ngp-kernels"));
    chmodSync(join(xdg, "ngp-kernels"), 0o777);
    const { outcomes, stderr } = await load({ XDG_CACHE_HOME: xdg });
    expect(outcomes).toEqual(loaded);
    expect(stderr).toMatch(
      new RegExp(`^ngp-kernels: cache directory ${xdg}/ngp-kernels is writable by all users \\(mode 0777\\); using a temporary cache \\S+/ngpk-cache-\\w+ for this process \\(set NGPK_CACHE_DIR to a private directory \\(chmod 700 ${xdg}/ngp-kernels\\) to keep builds\\)\\n$`),
    );
    expect(readdirSync(join(xdg, "ngp-kernels"))).toEqual([]);
  });

  test("a library (or its digest) writable by others in a private cache is rebuilt, not loaded", async () => {
    const cache = tempDir("shared-library");
    expect((await load({ NGPK_CACHE_DIR: cache })).outcomes).toEqual(loaded);
    for (const name of readdirSync(cache).filter((n) => /\.(so|so\.sha256|mjs)$/.test(n))) chmodSync(join(cache, name), 0o666);
    const { outcomes, stderr } = await load({ NGPK_CACHE_DIR: cache });
    expect(outcomes).toEqual(loaded); // the CPU library was built again (hit: false)
    if (CXX) expect(stderr).toMatch(/^ngp-kernels: cached library \S+\.so failed verification \(is writable by all users \(mode 0666\)\); rebuilding\n$/);
    for (const name of readdirSync(cache).filter((n) => /\.(so|so\.sha256|mjs)$/.test(n))) expect(statSync(join(cache, name)).mode & 0o022).toBe(0);
  });

  test("builds under umask 002 are not group-writable, so the next process trusts them", async () => {
    const cache = tempDir("umask");
    const umask = ["sh", "-c", 'umask 002 && exec "$@"', "sh"];
    expect((await load({ NGPK_CACHE_DIR: join(cache, "new") }, umask)).outcomes).toEqual(loaded);
    const { outcomes, stderr } = await load({ NGPK_CACHE_DIR: join(cache, "new") }, umask);
    expect(stderr).toBe("");
    expect(outcomes).toEqual(backends.map((backend) => ({ backend, ...(backend === "cpu" ? { hit: true } : {}), out: [12, 24] })));
    expect(statSync(join(cache, "new")).mode & 0o777).toBe(0o700);
  });

  const OTHER = !root ? " (skipped: needs root to give a cache to another user)" : !setpriv ? " (skipped: needs setpriv to run as another user)" : "";
  test.skipIf(OTHER !== "")(`owned by another user${OTHER}: root refuses it; another user loads it read-only`, async () => {
    const dir = tempDir("other-owner");
    chmodSync(dir, 0o755);
    const cache = join(dir, "cache");
    mkdirSync(cache);
    for (const backend of backends) await loadKernels(SAXPY, { backend: backend as "js" | "cpu", cacheDir: cache });
    for (const name of ["", ...readdirSync(cache)]) chownSync(join(cache, name), 65534, 65534);
    const refused = await load({ NGPK_CACHE_DIR: cache });
    expect(refused.outcomes).toEqual(
      backends.map((backend) => ({
        backend,
        error: `CacheDirError: ngp-kernels: cache directory ${cache} is owned by another user (uid 65534) and this process runs as root; it was chosen by NGPK_CACHE_DIR: set NGPK_CACHE_DIR to a private directory (chmod 700 ${cache}), or unset it for the default`,
      })),
    );
    const shared = await loadAsUser({ NGPK_CACHE_DIR: cache }, 65533);
    expect(shared.stderr).toBe("");
    expect(shared.outcomes).toEqual(backends.map((backend) => ({ backend, ...(backend === "cpu" ? { hit: true } : {}), out: [12, 24] })));
  });
});

test("every command that loads kernels reports an untrusted NGPK_CACHE_DIR in one line, with exit status 2", async () => {
  const cache = tempDir("shared-cli");
  chmodSync(cache, 0o777);
  const T = ["--steps", "3", "--batch", "1024", "--levels", "4", "--log2-table", "12", "--finest", "256", "--width", "16"];
  for (const args of [["cli/gradcheck.ts"], ["cli/train.ts", "data/astronaut.png", ...T, "--out", join(cache, "o")]]) {
    const { err: stderr, code } = await runBun(args[0]!, args.slice(1), { env: { NGPK_CACHE_DIR: cache } });
    expect({ args: args[0], stderr, code }).toEqual({
      args: args[0],
      stderr: `error: ngp-kernels: cache directory ${cache} is writable by all users (mode 0777); it was chosen by NGPK_CACHE_DIR: set NGPK_CACHE_DIR to a private directory (chmod 700 ${cache}), or unset it for the default\n`,
      code: 2,
    });
  }
});

import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, truncateSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { BuildError, buildCached, cacheKey, defaultCacheDir, type BuildRequest } from "../../runtime/cache.ts";
import { validateSharedLibrary } from "../../runtime/elf.ts";
import { countingCompiler, cpuRequest, CXX, fixture, NO_CXX, runChild, tempDir, withEnv } from "./helpers.ts";

const SOURCE = fixture("kernels.cpp");

describe("cacheKey", () => {
  const base: BuildRequest = {
    source: "int x;",
    lang: "cpp",
    tool: { path: "/usr/bin/g++", version: "g++ 12.2.0" },
    flags: ["-O3"],
    compilerVersion: "1",
  };

  test("is a sha256 that ignores the name, cache dir and rebuild hints", () => {
    expect(cacheKey(base)).toMatch(/^[0-9a-f]{64}$/);
    expect(cacheKey({ ...base, name: "other", cacheDir: "/elsewhere", rebuild: true })).toBe(cacheKey(base));
  });

  test("changes with source, lang, tool path, tool version, flags and compiler version", () => {
    const variants: BuildRequest[] = [
      { ...base, source: "int y;" },
      { ...base, lang: "cu" },
      { ...base, tool: { ...base.tool, path: "/usr/bin/clang++" } },
      { ...base, tool: { ...base.tool, version: "g++ 13.1.0" } },
      { ...base, flags: ["-O2"] },
      { ...base, flags: ["-O3", "-g"] },
      { ...base, compilerVersion: "2" },
    ];
    const keys = new Set([base, ...variants].map(cacheKey));
    expect(keys.size).toBe(variants.length + 1);
  });
});

describe("defaultCacheDir", () => {
  test("prefers NGPK_CACHE_DIR, then XDG_CACHE_HOME, then ~/.cache", () => {
    withEnv({ NGPK_CACHE_DIR: "/a/b", XDG_CACHE_HOME: "/xdg" }, () => expect(defaultCacheDir()).toBe("/a/b"));
    withEnv({ NGPK_CACHE_DIR: undefined, XDG_CACHE_HOME: "/xdg" }, () => expect(defaultCacheDir()).toBe("/xdg/ngp-kernels"));
    withEnv({ NGPK_CACHE_DIR: undefined, XDG_CACHE_HOME: undefined }, () => {
      expect(defaultCacheDir()).toBe(join(homedir(), ".cache", "ngp-kernels"));
    });
  });
});

describe.skipIf(!CXX)(`buildCached${NO_CXX}`, () => {
  const dir = tempDir("cache");
  const compiler = countingCompiler(dir);
  const request = (source: string, extra: Partial<BuildRequest> = {}): BuildRequest => ({
    ...cpuRequest(source, `${dir}/cache`, compiler.tool),
    ...extra,
  });

  test("builds on a miss, then hits without running the compiler", async () => {
    const before = compiler.count();
    const miss = await buildCached(request(SOURCE));
    expect(miss.hit).toBe(false);
    expect(compiler.count()).toBe(before + 1);
    expect(validateSharedLibrary(miss.path)).toBeUndefined();
    expect(miss.path).toContain(miss.key);
    // The source and the build log stay beside the library for people to read.
    const stem = miss.path.slice(0, -".so".length);
    expect(existsSync(`${stem}.cpp`)).toBe(true);
    expect(existsSync(`${stem}.log`)).toBe(true);

    const hit = await buildCached(request(SOURCE));
    expect(hit).toMatchObject({ hit: true, path: miss.path, key: miss.key });
    expect(hit.ms).toBeLessThan(50);
    expect(compiler.count()).toBe(before + 1);
  });

  test("rebuild: true compiles again", async () => {
    await buildCached(request(SOURCE));
    const before = compiler.count();
    const result = await buildCached(request(SOURCE, { rebuild: true }));
    expect(result.hit).toBe(false);
    expect(compiler.count()).toBe(before + 1);
  });

  test("a truncated library is rebuilt, not loaded (checked in a child process)", async () => {
    const source = `${SOURCE}\n// truncated variant\n`;
    const { path } = await buildCached(request(source));
    truncateSync(path, Math.floor(statSync(path).size / 2));
    expect(validateSharedLibrary(path)).toContain("truncated");

    const child = await runChild("build_and_run.ts", request(source));
    expect(child.stderr).toBe("");
    expect(child.exitCode).toBe(0);
    expect(JSON.parse(child.stdout)).toEqual({ hit: false, path, out: [2, 3, 4] });
    expect(validateSharedLibrary(path)).toBeUndefined();
  });

  test("a corrupt library (not ELF) is rebuilt", async () => {
    const source = `${SOURCE}\n// corrupt variant\n`;
    const { path } = await buildCached(request(source));
    writeFileSync(path, "garbage");
    const before = compiler.count();
    expect((await buildCached(request(source))).hit).toBe(false);
    expect(compiler.count()).toBe(before + 1);
    expect(validateSharedLibrary(path)).toBeUndefined();
  });

  test("two processes building the same new key at once both succeed", async () => {
    const req = request(`${SOURCE}\n// concurrent ${Date.now()}\n`);
    const children = await Promise.all([runChild("build_and_run.ts", req), runChild("build_and_run.ts", req)]);
    const results = children.map((child) => {
      expect(child.stderr).toBe("");
      expect(child.exitCode).toBe(0);
      return JSON.parse(child.stdout) as { path: string; out: number[] };
    });
    expect(results[0]!.path).toBe(results[1]!.path);
    for (const result of results) expect(result.out).toEqual([2, 3, 4]);
    expect(readdirSync(`${dir}/cache`).filter((name) => name.endsWith(".tmp"))).toEqual([]);
  });

  test("a compile error throws BuildError and is remembered until rebuild", async () => {
    const broken = request("#include <cstdint>\nextern \"C\" int32_t broken(int64_t n) { return undeclared_thing; }\n");
    const before = compiler.count();
    const first = await buildCached(broken).catch((error: unknown) => error);
    expect(first).toBeInstanceOf(BuildError);
    const error = first as BuildError;
    expect(error.recorded).toBe(false);
    expect(error.message).toContain("undeclared_thing");
    expect(error.message).toContain(compiler.tool.path);
    expect(error.message).toContain("exited with status 1");
    expect(error.message).toContain(error.failure.sourcePath);
    expect(existsSync(error.failure.sourcePath)).toBe(true);
    expect(compiler.count()).toBe(before + 1);

    const again = (await buildCached(broken).catch((e: unknown) => e)) as BuildError;
    expect(again).toBeInstanceOf(BuildError);
    expect(again.recorded).toBe(true);
    expect(again.message).toContain("undeclared_thing");
    expect(compiler.count()).toBe(before + 1);

    const retried = (await buildCached({ ...broken, rebuild: true }).catch((e: unknown) => e)) as BuildError;
    expect(retried.recorded).toBe(false);
    expect(compiler.count()).toBe(before + 2);
  });

  test("a compiler that cannot start throws BuildError without recording it", async () => {
    const missing = request(SOURCE, { tool: { path: `${dir}/no-such-compiler`, version: "none" } });
    for (let attempt = 0; attempt < 2; attempt++) {
      const error = (await buildCached(missing).catch((e: unknown) => e)) as BuildError;
      expect(error).toBeInstanceOf(BuildError);
      expect(error.recorded).toBe(false);
      expect(error.failure.status).toBeNull();
      expect(error.message).toContain("no-such-compiler");
    }
  });
});

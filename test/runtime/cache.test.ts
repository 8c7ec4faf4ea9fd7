import { describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, readdirSync, readFileSync, rmSync, truncateSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { homedir } from "node:os";
import { join } from "node:path";
import { BuildError, buildCached, cacheKey, CacheDirError, defaultCacheDir, type BuildRequest } from "../../runtime/cache.ts";
import { definedDynamicSymbols, validateSharedLibrary } from "../../runtime/elf.ts";
import { countingCompiler, cpuRequest, CXX, fixture, fixturePath, NO_CXX, runFixture, sectionRange, tempDir } from "./helpers.ts";
import { withEnv } from "../util.ts";

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
    // Fast: a fraction of the compile (a ratio measured in this run, so a loaded machine slows both).
    expect(hit.ms).toBeLessThan(miss.ms / 5);
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
    const problem = validateSharedLibrary(path);
    expect(problem).toContain("truncated");

    const child = await runFixture("build_and_run.ts", request(source));
    expect(child.err).toBe(`ngp-kernels: cached library ${path} failed verification (${problem}); rebuilding\n`);
    expect(child.code).toBe(0);
    expect(JSON.parse(child.out)).toEqual({ hit: false, path, out: [2, 3, 4] });
    expect(validateSharedLibrary(path)).toBeUndefined();
  });

  test("a library with valid headers but corrupted code is rebuilt, not loaded (child processes)", async () => {
    const source = `${SOURCE}\n// corrupted code variant\n`;
    const { path } = await buildCached(request(source));
    const digest = readFileSync(`${path}.sha256`, "utf8");
    expect(digest).toBe(`${createHash("sha256").update(readFileSync(path)).digest("hex")}  ${path.split("/").pop()}\n`);
    const bytes = new Uint8Array(readFileSync(path));
    const text = sectionRange(bytes, ".text");
    bytes.fill(0xcc, text.start, text.end); // int3: SIGTRAP as soon as any code runs
    writeFileSync(path, bytes);
    expect(validateSharedLibrary(path)).toBeUndefined(); // the headers cannot tell

    // What loading it would do: kill the process (here a child).
    const copy = `${dir}/corrupted-copy.so`;
    copyFileSync(path, copy);
    const loader = `const { loadNativeModule } = await import(${JSON.stringify(fixturePath("../../../runtime/ffi.ts"))});
      loadNativeModule(${JSON.stringify(copy)}, [{ name: "add_one", params: [{ name: "x", kind: "buffer", elem: "f32" }] }], "cpu").kernels.add_one(1, new Float32Array(1));`;
    const crash = Bun.spawn([process.execPath, "-e", loader], { stdout: "ignore", stderr: "ignore" });
    expect(await crash.exited).not.toBe(0);

    const child = await runFixture("build_and_run.ts", request(source));
    expect(child.err).toMatch(new RegExp(`cached library ${path} failed verification \\(its sha256 [0-9a-f]+… differs from the recorded [0-9a-f]+…\\); rebuilding\n$`));
    expect(child.code).toBe(0);
    expect(JSON.parse(child.out)).toEqual({ hit: false, path, out: [2, 3, 4] });
    expect((await buildCached(request(source))).hit).toBe(true);
  });

  test("a foreign library in a slot, or one without its digest, is rebuilt and said so", async () => {
    const source = `${SOURCE}\n// foreign variant\n`;
    const { path } = await buildCached(request(source));
    const foreign = await buildCached(request("extern \"C\" int something_else() { return 1; }\n"));
    copyFileSync(foreign.path, path);
    const messages: string[] = [];
    const log = (message: string) => messages.push(message);
    const before = compiler.count();
    expect((await buildCached(request(source, { log }))).hit).toBe(false);
    expect(compiler.count()).toBe(before + 1);
    expect(definedDynamicSymbols(path).has("add_one")).toBe(true);
    expect(messages).toEqual([expect.stringMatching(/failed verification \(its sha256 .* differs from the recorded .*\); rebuilding$/)]);

    rmSync(`${path}.sha256`);
    expect((await buildCached(request(source, { log }))).hit).toBe(false);
    expect(messages[1]).toContain(`failed verification (no recorded digest ${path.split("/").pop()}.sha256); rebuilding`);
    expect((await buildCached(request(source, { log }))).hit).toBe(true);
    expect(messages.length).toBe(2);
  });

  test("a build removes the temporaries of dead processes, and only those", async () => {
    const cache = `${dir}/cache`;
    const dead = Bun.spawn(["true"]);
    await dead.exited;
    const old = new Date(Date.now() - 5 * 60_000);
    const names = {
      deadOld: `x.so.${dead.pid}-0123abcd.tmp`,
      deadFresh: `y.so.${dead.pid}-0123abcd.tmp`, // may be a live builder in another pid namespace
      aliveOld: `z.so.${process.pid}-0123abcd.tmp`,
      unrelated: "notes.tmp",
    };
    for (const name of Object.values(names)) {
      writeFileSync(`${cache}/${name}`, "partial");
      if (name !== names.deadFresh) utimesSync(`${cache}/${name}`, old, old);
    }
    await buildCached(request(`${SOURCE}\n// cleanup ${Date.now()}\n`));
    const left = readdirSync(cache).filter((name) => name.endsWith(".tmp"));
    expect(left.sort()).toEqual([names.deadFresh, names.aliveOld, names.unrelated].sort());
    for (const name of left) rmSync(`${cache}/${name}`);
  });

  describe("an unusable cache directory", () => {
    const file = `${dir}/a-file`;
    writeFileSync(file, "");
    const noCompile = (extra: Partial<BuildRequest>) => buildCached({ ...request(SOURCE), cacheDir: undefined, ...extra }).catch((e: unknown) => e);

    test("chosen by the cacheDir option or NGPK_CACHE_DIR: one clear error naming it", async () => {
      const before = compiler.count();
      const option = (await noCompile({ cacheDir: file })) as Error;
      expect(option).toBeInstanceOf(CacheDirError);
      expect(option.message).toBe(`ngp-kernels: cache directory ${file} is not a directory (a file is in its place); it was passed as the cacheDir option: pass a writable directory, or omit cacheDir to use $NGPK_CACHE_DIR or the default`);

      const env = (await withEnv({ NGPK_CACHE_DIR: `${file}/sub` }, () => noCompile({}))) as Error;
      expect(env).toBeInstanceOf(CacheDirError);
      expect(env.message).toBe(`ngp-kernels: cache directory ${file}/sub cannot be created (a part of its path is a file); it was chosen by NGPK_CACHE_DIR: set NGPK_CACHE_DIR to a writable directory, or unset it for the default`);
      expect(compiler.count()).toBe(before);
    });

    test("the default: a temporary cache for this process, with one warning", async () => {
      const messages: string[] = [];
      const log = (message: string) => messages.push(message);
      const env = { NGPK_CACHE_DIR: undefined, XDG_CACHE_HOME: file };
      const first = await withEnv(env, () => noCompile({ log }));
      const second = await withEnv(env, () => noCompile({ log }));
      expect(first).toMatchObject({ hit: false });
      expect(second).toMatchObject({ hit: true, path: (first as { path: string }).path });
      const temp = (first as { path: string }).path.replace(/\/[^/]+$/, "");
      expect(messages).toEqual([
        `ngp-kernels: cache directory ${file}/ngp-kernels cannot be created (a part of its path is a file); using a temporary cache ${temp} for this process (set NGPK_CACHE_DIR to a writable directory to keep builds)`,
      ]);
    });
  });

  test("a corrupt library (not ELF) is rebuilt", async () => {
    const source = `${SOURCE}\n// corrupt variant\n`;
    const { path } = await buildCached(request(source));
    writeFileSync(path, "garbage");
    const before = compiler.count();
    const messages: string[] = [];
    expect((await buildCached(request(source, { log: (m) => messages.push(m) }))).hit).toBe(false);
    expect(messages).toEqual([`ngp-kernels: cached library ${path} failed verification (7 bytes is too short for an ELF header); rebuilding`]);
    expect(compiler.count()).toBe(before + 1);
    expect(validateSharedLibrary(path)).toBeUndefined();
  });

  test("two processes building the same new key at once both succeed, and compile it once (one waits for the other's lock)", async () => {
    const req = request(`${SOURCE}\n// concurrent ${Date.now()}\n`);
    const before = compiler.count();
    const children = await Promise.all([runFixture("build_and_run.ts", req), runFixture("build_and_run.ts", req)]);
    const results = children.map((child) => {
      expect(child.err).toBe("");
      expect(child.code).toBe(0);
      return JSON.parse(child.out) as { path: string; hit: boolean; out: number[] };
    });
    expect(results[0]!.path).toBe(results[1]!.path);
    for (const result of results) expect(result.out).toEqual([2, 3, 4]);
    expect(compiler.count()).toBe(before + 1);
    expect(results.map((r) => r.hit).sort()).toEqual([false, true]);
    expect(readdirSync(`${dir}/cache`).filter((name) => name.endsWith(".tmp") || name.endsWith(".lock"))).toEqual([]);
  });

  test("one process's concurrent builds of a key compile it once; a lock left by a dead process is taken over", async () => {
    const req = request(`${SOURCE}\n// concurrent in one process ${Date.now()}\n`);
    const before = compiler.count();
    const [a, b] = await Promise.all([buildCached(req), buildCached(req)]);
    expect(a.path).toBe(b.path);
    expect([a.hit, b.hit].sort()).toEqual([false, true]);
    expect(compiler.count()).toBe(before + 1);
    // A builder killed mid-build leaves its lock: the next build takes it over and compiles.
    const dead = Bun.spawn(["true"]);
    await dead.exited;
    const stale = request(`${SOURCE}\n// stale lock ${Date.now()}\n`);
    const lock = `${dir}/cache/test-${cacheKey(stale)}.lock`;
    writeFileSync(lock, `${dead.pid}\n`);
    expect((await buildCached(stale)).hit).toBe(false);
    expect(compiler.count()).toBe(before + 2);
    expect(existsSync(lock)).toBe(false);
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

import { beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, readFileSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildCached } from "../../runtime/cache.ts";
import { definedDynamicSymbols, validateSharedLibrary } from "../../runtime/elf.ts";
import { cpuRequest, CXX, fixture, NO_CXX, tempDir } from "./helpers.ts";

describe("validateSharedLibrary without a build", () => {
  const dir = tempDir("elf");

  test("rejects a missing file, a short file and a non-ELF file", () => {
    expect(validateSharedLibrary(join(dir, "absent.so"))).toContain("cannot open");
    writeFileSync(join(dir, "short.so"), "\x7fELF");
    expect(validateSharedLibrary(join(dir, "short.so"))).toContain("too short");
    writeFileSync(join(dir, "text.so"), "#!/bin/sh\n".padEnd(200, "x"));
    expect(validateSharedLibrary(join(dir, "text.so"))).toContain("not an ELF file");
  });
});

describe.skipIf(!CXX)(`validateSharedLibrary on a built library${NO_CXX}`, () => {
  const dir = tempDir("elf-built");
  let library = "";
  beforeAll(async () => {
    library = (await buildCached(cpuRequest(fixture("kernels.cpp"), dir))).path;
  });

  /** A copy of the library with `edit` applied to its bytes. */
  function variant(name: string, edit: (bytes: Uint8Array) => void): string {
    const bytes = new Uint8Array(readFileSync(library));
    edit(bytes);
    const path = join(dir, name);
    writeFileSync(path, bytes);
    return path;
  }

  test("accepts a good library and lists its exported kernels", () => {
    expect(validateSharedLibrary(library)).toBeUndefined();
    const symbols = definedDynamicSymbols(library);
    expect(symbols.has("add_one")).toBe(true);
    expect(symbols.has("scale_add")).toBe(true);
    expect(symbols.has("omp_get_num_threads")).toBe(false); // imported, not defined
  });

  test("rejects truncation anywhere: headers, segments, sections", () => {
    const size = statSync(library).size;
    for (const keep of [64, 200, Math.floor(size / 2), size - 1]) {
      const path = join(dir, `truncated-${keep}.so`);
      copyFileSync(library, path);
      truncateSync(path, keep);
      expect(validateSharedLibrary(path)).toContain("truncated");
    }
  });

  test("rejects a 32-bit, big-endian, non-shared or foreign-machine file", () => {
    expect(validateSharedLibrary(variant("class32.so", (b) => (b[4] = 1)))).toContain("64-bit");
    expect(validateSharedLibrary(variant("bigendian.so", (b) => (b[5] = 2)))).toContain("little-endian");
    expect(validateSharedLibrary(variant("exec.so", (b) => (b[16] = 2)))).toContain("not a shared library");
    expect(validateSharedLibrary(variant("arm.so", (b) => (b[18] = 40)))).toContain("ELF machine 40");
  });
});

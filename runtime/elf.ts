// Checks that a file is a complete shared library for this process before it is dlopen'ed.
//
// dlopen maps the file and touches the pages its headers point at; if the file is shorter than
// they claim (an interrupted build, a full disk), the access raises SIGBUS and kills Bun with no
// chance to catch it. So every header, segment and section must lie inside the file.

import { closeSync, fstatSync, openSync, readSync } from "node:fs";

const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const SHDR_SIZE = 64;
const ET_DYN = 3;
const SHT_NULL = 0;
const SHT_NOBITS = 8; // .bss and friends occupy no file space
const SHT_DYNSYM = 11;
const SHN_UNDEF = 0;

/** ELF e_machine of each 64-bit little-endian architecture Bun runs on. */
const MACHINE_OF_ARCH: Partial<Record<string, number>> = { x64: 62, arm64: 183, riscv64: 243, ppc64: 21 };

interface Header {
  machine: number;
  type: number;
  phoff: number;
  phentsize: number;
  phnum: number;
  shoff: number;
  shentsize: number;
  shnum: number;
}

interface Section {
  type: number;
  offset: number;
  size: number;
  link: number;
  entsize: number;
}

/** Returns undefined if `path` is a loadable, complete shared library, else what is wrong with it. */
export function validateSharedLibrary(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    return `cannot open ${path}: ${(error as Error).message}`;
  }
  try {
    return checkFile(fd, fstatSync(fd).size);
  } catch (error) {
    return `cannot read ${path}: ${(error as Error).message}`; // e.g. the file shrank while we read it
  } finally {
    closeSync(fd);
  }
}

function checkFile(fd: number, size: number): string | undefined {
  if (size < EHDR_SIZE) return `${size} bytes is too short for an ELF header`;
  const ident = read(fd, 0, EHDR_SIZE);
  if (ident.getUint32(0) !== 0x7f454c46) return "not an ELF file (bad magic)";
  if (ident.getUint8(4) !== 2) return "not a 64-bit ELF file";
  if (ident.getUint8(5) !== 1) return "not a little-endian ELF file";
  const h = parseHeader(ident);
  if (h.type !== ET_DYN) return `not a shared library (e_type ${h.type}, expected ET_DYN = ${ET_DYN})`;
  const machine = MACHINE_OF_ARCH[process.arch];
  if (machine === undefined) return `unsupported host architecture ${process.arch}`;
  if (h.machine !== machine) return `built for ELF machine ${h.machine}, this process (${process.arch}) needs ${machine}`;
  return checkTables(fd, size, h);
}

function checkTables(fd: number, size: number, h: Header): string | undefined {
  if (h.phnum === 0) return "no program headers";
  if (h.phentsize < PHDR_SIZE) return `program header entries of ${h.phentsize} bytes (need ${PHDR_SIZE})`;
  if (h.shnum > 0 && h.shentsize < SHDR_SIZE) return `section header entries of ${h.shentsize} bytes (need ${SHDR_SIZE})`;
  const tables = [
    { what: "program header table", end: h.phoff + h.phnum * h.phentsize },
    { what: "section header table", end: h.shoff + h.shnum * h.shentsize },
  ];
  for (const { what, end } of tables) if (end > size) return truncated(what, end, size);

  const ph = read(fd, h.phoff, h.phnum * h.phentsize);
  for (let i = 0; i < h.phnum; i++) {
    const base = i * h.phentsize;
    const end = u64(ph, base + 8) + u64(ph, base + 32); // p_offset + p_filesz
    if (end > size) return truncated(`segment ${i}`, end, size);
  }
  for (const [i, s] of readSections(fd, h).entries()) {
    if (s.type !== SHT_NULL && s.type !== SHT_NOBITS && s.offset + s.size > size) {
      return truncated(`section ${i}`, s.offset + s.size, size);
    }
  }
  return undefined;
}

function truncated(what: string, end: number, size: number): string {
  return `truncated: ${what} ends at byte ${end} but the file has ${size} bytes`;
}

/**
 * The names of the symbols a shared library defines in its dynamic symbol table (what dlsym can
 * find). Call only on a file that passed validateSharedLibrary.
 */
export function definedDynamicSymbols(path: string): Set<string> {
  const fd = openSync(path, "r");
  try {
    const sections = readSections(fd, parseHeader(read(fd, 0, EHDR_SIZE)));
    const names = new Set<string>();
    for (const symtab of sections.filter((s) => s.type === SHT_DYNSYM)) {
      const strtab = sections[symtab.link];
      if (!strtab || symtab.entsize === 0) continue;
      const strings = new Uint8Array(read(fd, strtab.offset, strtab.size).buffer);
      const symbols = read(fd, symtab.offset, symtab.size);
      for (let base = 0; base + symtab.entsize <= symtab.size; base += symtab.entsize) {
        const nameOffset = symbols.getUint32(base, true);
        if (nameOffset === 0 || symbols.getUint16(base + 6, true) === SHN_UNDEF) continue;
        names.add(cString(strings, nameOffset));
      }
    }
    return names;
  } finally {
    closeSync(fd);
  }
}

function parseHeader(v: DataView): Header {
  return {
    type: v.getUint16(16, true),
    machine: v.getUint16(18, true),
    phoff: u64(v, 32),
    shoff: u64(v, 40),
    phentsize: v.getUint16(54, true),
    phnum: v.getUint16(56, true),
    shentsize: v.getUint16(58, true),
    shnum: v.getUint16(60, true),
  };
}

function readSections(fd: number, h: Header): Section[] {
  if (h.shnum === 0) return [];
  const v = read(fd, h.shoff, h.shnum * h.shentsize);
  return Array.from({ length: h.shnum }, (_, i) => {
    const base = i * h.shentsize;
    return {
      type: v.getUint32(base + 4, true),
      offset: u64(v, base + 24),
      size: u64(v, base + 32),
      link: v.getUint32(base + 40, true),
      entsize: u64(v, base + 56),
    };
  });
}

// Offsets beyond 2^53 lose precision as numbers, but they are still far past any real file's end,
// which is all the checks need.
function u64(v: DataView, offset: number): number {
  return Number(v.getBigUint64(offset, true));
}

function read(fd: number, position: number, length: number): DataView {
  const bytes = new Uint8Array(length);
  const got = readSync(fd, bytes, 0, length, position);
  if (got !== length) throw new Error(`short read: ${got} of ${length} bytes at offset ${position}`);
  return new DataView(bytes.buffer);
}

function cString(bytes: Uint8Array, start: number): string {
  const end = bytes.indexOf(0, start);
  return new TextDecoder().decode(bytes.subarray(start, end < 0 ? bytes.length : end));
}

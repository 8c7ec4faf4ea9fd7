// The resource report of nvcc's assembler (`-Xptxas -v`): registers, stack and spill bytes of each
// kernel for each GPU architecture. Generated CUDA cannot run here, but this report tells whether
// it would fit: a spill means local-memory traffic in a kernel that should live in registers.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CUDA_COMPILE_FLAGS, cudaGencode, findNvcc } from "./toolchain.ts";

export interface PtxasEntry {
  arch: string;
  /** The kernel's name as written (the mangled `<name>_kernel` is demangled to it). */
  kernel: string;
  registers: number;
  /** Static shared memory (block kernels keep their tiles there). */
  sharedBytes: number;
  stackBytes: number;
  spillStoreBytes: number;
  spillLoadBytes: number;
}

/** Compile `source` (a .cu module) for `archs` and return the ptxas report of every __global__. */
export async function ptxasReport(source: string, archs: string[] = ["sm_75", "sm_80", "sm_90", "compute_90"]): Promise<PtxasEntry[]> {
  const nvcc = findNvcc();
  if (!nvcc.tool) throw new Error(`nvcc not available: ${nvcc.reason}`);
  const dir = mkdtempSync(join(tmpdir(), "ngpk-ptxas-"));
  try {
    const src = join(dir, "module.cu");
    writeFileSync(src, source);
    // Device code only (a fat binary: no host object, no link): the report is the same, and the
    // host code is still parsed (its errors reported) by the device pass; nvcc skips cudafe++ and
    // the host compiler, a fifth of the time.
    const flags = [...CUDA_COMPILE_FLAGS, ...cudaGencode(archs)];
    const proc = Bun.spawn([nvcc.tool.path, ...flags, "-Xptxas", "-v", "--fatbin", src, "-o", join(dir, "module.fatbin")], { env: process.env, stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) throw new Error(`nvcc failed (${code}):\n${out}${err}`);
    return parsePtxas(out + err);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Parse ptxas -v output. Each function's report is a "Compiling entry function" line then figures. */
export function parsePtxas(text: string): PtxasEntry[] {
  const entries: PtxasEntry[] = [];
  let current: PtxasEntry | undefined;
  for (const line of text.split("\n")) {
    const start = /Compiling entry function '(\w+)' for '(\w+)'/.exec(line);
    if (start) {
      const mangled = start[1]!;
      const name = /^_Z\d+(\w+?)_kernel/.exec(mangled)?.[1] ?? mangled;
      current = { arch: start[2]!, kernel: name, registers: 0, sharedBytes: 0, stackBytes: 0, spillStoreBytes: 0, spillLoadBytes: 0 };
      entries.push(current);
      continue;
    }
    if (!current) continue;
    const spill = /(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/.exec(line);
    if (spill) Object.assign(current, { stackBytes: +spill[1]!, spillStoreBytes: +spill[2]!, spillLoadBytes: +spill[3]! });
    const regs = /Used (\d+) registers/.exec(line);
    if (regs) current.registers = +regs[1]!;
    const smem = /(\d+) bytes smem/.exec(line);
    if (smem) current.sharedBytes = +smem[1]!;
  }
  return entries;
}

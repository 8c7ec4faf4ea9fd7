// The machine's memory, checked before a large allocation: an output that cannot fit is refused
// with its size in the message, rather than dying in the allocator (or the kernel's OOM killer).
import { readFileSync } from "node:fs";
import { freemem } from "node:os";

/** An allocation larger than the memory available (a message for people: no stack trace needed). */
export class MemoryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MemoryError";
  }
}

/** Bytes available to a new allocation: MemAvailable from /proc/meminfo where there is one, else os.freemem(). */
export function availableMemory(): number {
  try {
    const kib = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync("/proc/meminfo", "utf8"))?.[1];
    if (kib) return Number(kib) * 1024;
  } catch {}
  return freemem();
}

const gb = (bytes: number) => `${(bytes / 1e9).toFixed(bytes < 1e9 ? 2 : 1)} GB`;

/** Throws a MemoryError when `what` (`bytes` of memory) does not fit in the memory available. */
export function checkMemory(bytes: number, what: string): void {
  const available = availableMemory();
  if (bytes > available) throw new MemoryError(`${what} needs ${gb(bytes)} of memory, more than the ${gb(available)} available`);
}

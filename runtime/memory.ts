// The machine's memory, asked before a large allocation: a request that cannot fit is refused with
// the figures (in GB) instead of dying in the allocator (`RangeError: Out of memory`) or the OOM killer.
import { readFileSync } from "node:fs";
import { freemem, totalmem } from "node:os";
import { ExpectedError } from "../dsl/errors.ts";

/** An allocation that the machine cannot hold; the message says what needed how much, and what there is. */
export class MemoryError extends ExpectedError {}

/** The largest ArrayBuffer this runtime allocates (JavaScriptCore: 4 GiB). */
export const MAX_BUFFER_BYTES = 2 ** 32;

/** Bytes that can be allocated without swapping: MemAvailable of /proc/meminfo (Linux), else os.freemem(). */
export function availableMemory(): number {
  try {
    const kb = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync("/proc/meminfo", "utf8"))?.[1];
    if (kb !== undefined) return Number(kb) * 1024;
  } catch {}
  return freemem();
}

const gb = (bytes: number) => `${(bytes / 1e9).toFixed(bytes < 1e10 ? 2 : 1)} GB`;

/**
 * Throws a MemoryError when `what` ("a 40000x40000 RGB 8-bit image") needs more than the memory
 * available now, or when its largest single buffer (`largest` bytes, default none) is more than one
 * buffer can hold: "<what> needs 9.60 GB of memory, more than the 7.20 GB available (of 16.0 GB)".
 */
export function checkMemory(bytes: number, what: string, largest = 0): void {
  if (largest > MAX_BUFFER_BYTES) throw new MemoryError(`${what} needs a buffer of ${gb(largest)}, more than the ${gb(MAX_BUFFER_BYTES)} one buffer can hold`);
  const available = availableMemory();
  if (bytes > available) throw new MemoryError(`${what} needs ${gb(bytes)} of memory, more than the ${gb(available)} available (of ${gb(totalmem())})`);
}

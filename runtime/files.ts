// The files a user names (a configuration, a photograph, a checkpoint, an output): a directory, a
// FIFO or an unreadable file is a usage error naming the file and the problem, never a stack trace
// (or a read that never returns); an output that names a directory, or is the same file as an input,
// is refused before anything runs. The commands and the trainer's readers use them alike.
import { readFileSync, statSync, type Stats } from "node:fs";
import { UsageError } from "../dsl/errors.ts";

const code = (e: unknown): string => (e as NodeJS.ErrnoException).code ?? (e as Error).message;
const missing = (e: unknown) => code(e) === "ENOENT" || code(e) === "ENOTDIR";

function kind(st: Stats): string {
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  return "a special file";
}

/**
 * Why a file with these stats cannot be read as an input ("is a directory", "is not a regular file
 * (a FIFO)"), or undefined for a regular file. Every reader of an input file asks this before
 * opening it: opening a FIFO blocks until a writer comes, and a device never ends.
 */
export function notRegularFile(st: Stats): string | undefined {
  if (st.isDirectory()) return "is a directory";
  if (!st.isFile()) return `is not a regular file (${kind(st)})`;
  return undefined;
}

/**
 * Refuses, with a UsageError naming the flag, an output path that names a directory (an existing
 * one, or a path ending with "/"), or that is the same file as one of `inputs` (the same device and
 * inode: the path itself, another spelling of it, a symbolic or a hard link), which writing would
 * destroy. An output that does not exist yet is fine.
 */
export function checkOutputFile(output: { flag: string; path: string }, inputs: { flag: string; path: string | undefined }[]): void {
  const stats = (path: string) => {
    try {
      return statSync(path);
    } catch {
      return undefined;
    }
  };
  const st = stats(output.path);
  if (output.path.endsWith("/") || st?.isDirectory()) throw new UsageError(`${output.flag} ${output.path} names a directory: give the file to write`);
  if (st === undefined) return;
  for (const input of inputs) {
    const other = input.path === undefined ? undefined : stats(input.path);
    if (other !== undefined && other.dev === st.dev && other.ino === st.ino)
      throw new UsageError(`${output.flag} ${output.path} is the same file as ${input.flag} ${input.path}: writing it would destroy the input; give another ${output.flag}`);
  }
}

/**
 * The text of the regular file at `path`, or a UsageError saying what is wrong with it:
 * "<what> <path> does not exist", "... is a directory", "... is not a regular file (a FIFO)",
 * "... cannot be read: EACCES". Checked with stat first: opening a FIFO would block.
 */
export function readInputFile(path: string, what = "file"): string {
  const problem = (text: string) => new UsageError(`${what} ${path} ${text}`);
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    throw problem(missing(e) ? "does not exist" : `cannot be read: ${code(e)}`);
  }
  const bad = notRegularFile(st);
  if (bad) throw problem(bad);
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw problem(`cannot be read: ${code(e)}`);
  }
}

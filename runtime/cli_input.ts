// The file arguments of the command-line tools: a directory, a FIFO or an unreadable file is a
// usage error naming the file and the problem, never a stack trace (or a read that never returns).
import { readFileSync, statSync, type Stats } from "node:fs";

/** A bad command-line argument: the tools print its message and exit with status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

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
  if (st.isDirectory()) throw problem("is a directory");
  if (!st.isFile()) throw problem(`is not a regular file (${kind(st)})`);
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw problem(`cannot be read: ${code(e)}`);
  }
}

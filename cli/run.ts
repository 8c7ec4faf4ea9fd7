// Every command's entry point (train, sweep, params, gradcheck, render, export, compile): runs its
// main and exits with the status it returns. An expected error (dsl/errors.ts ExpectedError: a
// bad flag, file or configuration, a backend this machine lacks, a kernel's diagnostics) is printed
// as its report, with its status (2); anything else is a bug, thrown on with its stack trace
// (status 1).
import { DiagnosticError } from "../codegen/diagnostics.ts";
import { ExpectedError, UsageError } from "../dsl/errors.ts";

export interface RunOptions {
  /** Printed after a usage error's message. */
  usage?: string;
  /** The status of a kernel's diagnostics (compile: 1, the compiler's verdict on the file it compiles). */
  diagnosticStatus?: number;
  /** Set process.exitCode and let the process end by itself (a large stdout to a pipe is still being flushed). */
  drain?: boolean;
}

export async function runCommand(main: (argv: string[]) => number | Promise<number>, opts: RunOptions = {}): Promise<void> {
  let status: number;
  try {
    status = await main(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof ExpectedError)) throw e;
    console.error(e instanceof UsageError && opts.usage ? `${e.report()}\n${opts.usage}` : e.report());
    status = e instanceof DiagnosticError ? (opts.diagnosticStatus ?? e.status) : e.status;
  }
  if (opts.drain) process.exitCode = status;
  else process.exit(status);
}

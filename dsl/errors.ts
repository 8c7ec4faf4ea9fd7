// The errors every layer throws for a mistake that is not a bug (a bad flag, file, configuration or
// kernel, or a machine that cannot do what was asked): the commands (cli/run.ts runCommand) report
// them in one line, without a stack trace, and exit with their status. Shared by the compiler, the
// runtime, the modules, the trainer and the commands alike, so it sits in dsl/, the bottom layer,
// and imports nothing (docs/architecture.md).

/**
 * An error the command-line tools report without a stack trace (cli/run.ts runCommand): bad input
 * (a flag, a file, a configuration, a kernel's diagnostics) or a machine that cannot do what was
 * asked. They print its report ("error: " and its message) and exit with its status (2).
 */
export class ExpectedError extends Error {
  /** The exit status a command ends with. */
  readonly status: number = 2;
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
  /** What a command prints (on stderr). */
  report(): string {
    return `error: ${this.message}`;
  }
}

/** A bad command-line argument. */
export class UsageError extends ExpectedError {}

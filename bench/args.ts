// The benchmarks' command lines: one parser. A bad argument
// prints parseArgs's message and the usage on stderr (status 2), --help the usage on stdout
// (status 0); otherwise the values.
import { parseArgs, type ParseArgsConfig } from "node:util";

type Options = NonNullable<ParseArgsConfig["options"]>;
type Values<O extends Options> = ReturnType<typeof parseArgs<{ options: O }>>["values"];

/**
 * `argv` (default: the process's) parsed against `options` (with -h, --help added): the values,
 * or the exit status after printing (2: a bad argument, `prefix` and its message then the usage;
 * 0: --help, the usage).
 */
export function benchArgs<O extends Options>(usage: string, options: O, opts: { argv?: string[]; prefix?: string } = {}): Values<O> | number {
  let values: Values<O> & { help?: boolean };
  try {
    values = parseArgs({ args: opts.argv ?? process.argv.slice(2), options: { ...options, help: { type: "boolean", short: "h" } } }).values as Values<O> & { help?: boolean };
  } catch (e) {
    console.error(`${opts.prefix ?? ""}${(e as Error).message}\n${usage}`);
    return 2;
  }
  if (values.help) return console.log(usage), 0;
  return values;
}

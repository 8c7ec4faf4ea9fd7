// Validation of module options with zod, reported the way users need it: every problem names the
// field, the value given and what is allowed (zod's own messages say only "Invalid input").
import type { z } from "zod";
import { ExpectedError } from "../dsl/errors.ts";

/** A bad setting: names the field and says what is allowed. */
export class ConfigError extends ExpectedError {}

/**
 * `input` parsed by `schema`, or a ConfigError with one line per bad field (its first problem),
 * `allowed` saying what each field accepts.
 */
export function parseOptions<S extends z.ZodType>(schema: S, input: unknown, where: string, allowed: Record<string, string>): z.output<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  // One message per field: the first problem (a wrong-length array also fails the dims check).
  const seen = new Set<string>();
  const issues = r.error.issues.filter((i) => !seen.has(String(i.path[0])) && seen.add(String(i.path[0])));
  throw new ConfigError(issues.map((i) => describeIssue(i, input, where, allowed)).join("\n"));
}

const show = (v: unknown): string =>
  typeof v === "string" ? JSON.stringify(v) : Array.isArray(v) ? `[${v.map(show).join(", ")}]` : v !== null && typeof v === "object" ? JSON.stringify(v) : String(v);

/** A zod issue as "<where>.<field>: <value> <problem> (allowed: ...)". */
function describeIssue(i: z.core.$ZodIssue, input: unknown, where: string, allowed: Record<string, string>, within: PropertyKey[] = []): string {
  const path = [...within, ...i.path];
  const value = path.reduce<unknown>((o, k) => (o as Record<PropertyKey, unknown> | undefined)?.[k], input);
  // A per-axis value (a number or an array): explain the branch the value's kind selects.
  if (i.code === "invalid_union") return describeIssue(i.errors[Array.isArray(value) ? 1 : 0]![0]!, input, where, allowed, path);
  const at = where + path.map((k) => (typeof k === "number" ? `[${k}]` : `.${String(k)}`)).join("");
  if (i.code === "unrecognized_keys") return `${where}: unknown option${i.keys.length > 1 ? "s" : ""} ${i.keys.map(show).join(", ")} (options: ${Object.keys(allowed).join(", ")})`;
  if (path.length === 0) return `${where}: the options must be an object (got ${show(input)})`;
  if (i.code === "custom") return `${at}: ${i.message}`;
  let problem;
  if (value === undefined) problem = "is required";
  else if (i.code === "invalid_type") problem = typeof value !== "number" ? "is not a number" : Number.isFinite(value) ? "is not an integer" : "is not a finite number";
  else if (Array.isArray(value)) problem = `has ${value.length} values`;
  else problem = i.code === "invalid_value" ? "is not allowed" : "is out of range";
  return `${at}: ${value === undefined ? "" : `${show(value)} `}${problem} (allowed: ${allowed[String(path[0])]})`;
}


// What a training run leaves in its out directory besides the image and the checkpoint: the
// metrics CSV (appended row by row), the plot of loss and PSNR against step (vega-lite compiled to
// vega, rendered to SVG without a browser, converted to PNG by sharp) and JSON files, the last two
// written atomically.
import { closeSync, existsSync, openSync, readFileSync, renameSync, statSync, writeSync } from "node:fs";
import { dirname, resolve } from "node:path";
import sharp from "sharp";
import * as vega from "vega";
import * as vl from "vega-lite";
import { writeFileAtomic } from "./image.ts";

export interface MetricsRow {
  step: number;
  loss: number;
  lr: number;
  /** Full-image PSNR (dB) where the step was evaluated. */
  psnr?: number;
  /** Seconds since the start of training. */
  seconds: number;
}

export const METRICS_HEADER = "step,loss,lr,psnr,seconds";

function fsReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "ENOENT") return "no such directory";
  if (code === "ENOTDIR") return "a parent is not a directory";
  if (code === "EROFS") return "read-only file system";
  if (code === "ENOSPC") return "no space left";
  if (code === "EISDIR") return "it is a directory";
  return (e as Error).message;
}

const num = (x: number) => (Number.isFinite(x) ? String(x) : Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf");

/** One CSV line of a row (no newline); psnr is empty when the step was not evaluated. */
export function metricsLine(r: MetricsRow): string {
  return [String(r.step), num(r.loss), num(r.lr), r.psnr === undefined ? "" : num(r.psnr), r.seconds.toFixed(3)].join(",");
}

/** A CSV cell as a number (nan, inf, -inf as written); undefined when it is not one. */
function parseNum(s: string): number | undefined {
  if (s === "nan") return NaN;
  if (s === "inf") return Infinity;
  if (s === "-inf") return -Infinity;
  const x = s.trim() === "" ? NaN : Number(s);
  return Number.isNaN(x) ? undefined : x;
}

/**
 * The rows of a metrics CSV written by MetricsLog (header checked); a bad line is an error naming
 * the file and the line. A last line without its newline (a run killed while writing) is ignored.
 */
export function readMetrics(path: string): MetricsRow[] {
  const text = readFileSync(path, "utf8");
  const lines = text.split("\n");
  lines.pop(); // "" after the final newline, or a partial line
  if (lines.length === 0) return [];
  if (lines[0] !== METRICS_HEADER) throw new Error(`${path}: not a metrics CSV (its first line is not "${METRICS_HEADER}")`);
  return lines.slice(1).map((line, k) => {
    const cells = line.split(",");
    const [step, loss, lr, psnr, seconds] = cells.map(parseNum);
    const bad = cells.length !== 5 || step === undefined || loss === undefined || lr === undefined || seconds === undefined || (cells[3] !== "" && psnr === undefined);
    if (bad) throw new Error(`${path}:${k + 2}: not a metrics row: ${JSON.stringify(line)}`);
    return cells[3] === "" ? { step: step!, loss: loss!, lr: lr!, seconds: seconds! } : { step: step!, loss: loss!, lr: lr!, psnr: psnr!, seconds: seconds! };
  });
}

export interface MetricsLogOptions {
  /** Continue an existing CSV (a resumed run): its rows are read into `rows` and new rows appended. */
  append?: boolean;
  /** With append: drop the rows after this step (logged after the checkpoint a run resumes from). */
  resumeStep?: number;
  /** Write buffered rows after this many (default 100) ... */
  flushRows?: number;
  /** ... or when this many seconds have passed since the last write (default 5). */
  flushSeconds?: number;
}

/**
 * The metrics CSV (step, loss, lr, psnr, seconds), created with its header (or continued with
 * `append`) and appended row by row; rows are buffered and written every `flushRows` rows or
 * `flushSeconds` seconds, on flush() and on close(). `rows` holds every row, for the plot.
 */
export class MetricsLog {
  readonly rows: MetricsRow[] = [];
  #fd: number | undefined;
  #pending: string[] = [];
  #lastWrite = performance.now();
  readonly #flushRows: number;
  readonly #flushMs: number;

  constructor(
    public path: string,
    opts: MetricsLogOptions = {},
  ) {
    this.#flushRows = opts.flushRows ?? 100;
    this.#flushMs = (opts.flushSeconds ?? 5) * 1000;
    const continuing = opts.append === true && existsSync(path) && statSync(path).size > 0;
    if (continuing) {
      const text = readFileSync(path, "utf8");
      const all = readMetrics(path);
      const kept = opts.resumeStep === undefined ? all : all.filter((r) => r.step <= opts.resumeStep!);
      this.rows.push(...kept);
      // Rows past the resume step, or a partial last line: rewrite the file with the rows kept.
      if (kept.length !== all.length || !text.endsWith("\n")) {
        writeFileAtomic(path, [METRICS_HEADER, ...kept.map(metricsLine)].join("\n") + "\n");
      }
    }
    try {
      this.#fd = openSync(path, continuing ? "a" : "w");
      if (!continuing) writeSync(this.#fd, `${METRICS_HEADER}\n`);
    } catch (e) {
      if (this.#fd !== undefined) closeSync(this.#fd);
      this.#fd = undefined;
      throw new Error(`cannot write the metrics ${path} in ${dirname(resolve(path))} (${fsReason(e)})`);
    }
  }

  /** Appends a row (written at the next flush). */
  log(row: MetricsRow): void {
    if (this.#fd === undefined) throw new Error(`MetricsLog ${this.path}: closed`);
    this.rows.push({ ...row });
    this.#pending.push(metricsLine(row));
    if (this.#pending.length >= this.#flushRows || performance.now() - this.#lastWrite >= this.#flushMs) this.flush();
  }

  /** Writes the buffered rows to the file. */
  flush(): void {
    if (this.#fd === undefined || this.#pending.length === 0) return;
    const text = `${this.#pending.join("\n")}\n`;
    this.#pending = [];
    this.#lastWrite = performance.now();
    try {
      writeSync(this.#fd, text);
    } catch (e) {
      throw new Error(`cannot write the metrics ${this.path} (${fsReason(e)})`);
    }
  }

  /** Flushes, then renames the file to `path` (rows logged afterwards go on into it). */
  moveTo(path: string): void {
    this.flush();
    try {
      renameSync(this.path, path);
    } catch (e) {
      throw new Error(`cannot move the metrics ${this.path} to ${path} (${fsReason(e)})`);
    }
    this.path = path;
  }

  close(): void {
    if (this.#fd === undefined) return;
    try {
      this.flush();
    } finally {
      closeSync(this.#fd);
      this.#fd = undefined;
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** At most `max` points: consecutive rows averaged in groups (loss geometrically, so the log axis shows the mean level). */
function downsample(rows: { step: number; loss: number }[], max: number): { step: number; loss: number }[] {
  const good = rows.filter((r) => Number.isFinite(r.loss) && r.loss > 0);
  if (good.length <= max) return good.map((r) => ({ step: r.step, loss: r.loss }));
  const out: { step: number; loss: number }[] = [];
  for (let g = 0; g < max; g++) {
    const a = Math.floor((g * good.length) / max);
    const b = Math.floor(((g + 1) * good.length) / max);
    let logSum = 0;
    for (let k = a; k < b; k++) logSum += Math.log(good[k]!.loss);
    out.push({ step: good[Math.floor((a + b - 1) / 2)]!.step, loss: Math.exp(logSum / (b - a)) });
  }
  return out;
}

/** The vega-lite specification of the plot: loss (log scale) above, PSNR below, sharing the step axis. */
export function plotSpec(rows: { step: number; loss: number; psnr?: number }[]): vl.TopLevelSpec {
  const loss = downsample(rows, 2000);
  const psnr = rows.filter((r) => r.psnr !== undefined && Number.isFinite(r.psnr)).map((r) => ({ step: r.step, psnr: r.psnr! }));
  const x = { field: "step", type: "quantitative" as const, title: "step" };
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    background: "white",
    resolve: { scale: { x: "shared" } },
    vconcat: [
      {
        width: 640,
        height: 220,
        title: "training loss",
        data: { values: loss },
        mark: { type: "line", color: "#4c78a8" },
        encoding: { x, y: { field: "loss", type: "quantitative", title: "loss (log scale)", scale: { type: "log" } } },
      },
      {
        width: 640,
        height: 220,
        title: "full-image PSNR",
        data: { values: psnr },
        mark: { type: "line", point: true, color: "#f58518" },
        encoding: { x, y: { field: "psnr", type: "quantitative", title: "PSNR (dB)", scale: { zero: false } } },
      },
    ],
  };
}

/** A PNG of loss (log scale) and PSNR against step, written atomically. */
export async function writePlot(path: string, rows: { step: number; loss: number; psnr?: number }[]): Promise<void> {
  const view = new vega.View(vega.parse(vl.compile(plotSpec(rows)).spec), { renderer: "none" });
  let svg: string;
  try {
    svg = await view.toSVG();
  } finally {
    view.finalize();
  }
  const png = await sharp(Buffer.from(svg), { density: 144 }).png().toBuffer();
  writeFileAtomic(path, png);
}

/** JSON (2-space indented, newline-terminated) written atomically; non-finite numbers become null. */
export function writeJsonAtomic(path: string, value: unknown): void {
  writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Any vega-lite specification rendered to a PNG (vega-lite -> vega -> SVG without a browser ->
 * sharp), written atomically: the path writePlot takes, for other plots (bun run sweep's).
 */
export async function writeVegaLitePng(path: string, spec: vl.TopLevelSpec, density = 144): Promise<void> {
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: "none" });
  let svg: string;
  try {
    svg = await view.toSVG();
  } finally {
    view.finalize();
  }
  writeFileAtomic(path, await sharp(Buffer.from(svg), { density }).png().toBuffer());
}

// A sweep's two plots (vega-lite, written as PNGs): PSNR by allocation, one line per budget; the best
// PSNR against the encoder's parameter count.
import { join } from "node:path";
import type * as vl from "vega-lite";
import { writeVegaLitePng } from "../outputs.ts";
import { fmt } from "./plan.ts";
import { bestPerBudget, byAllocation, plotted, type SweepRow } from "./results.ts";

const allocLabel = (r: SweepRow) => `L=${r.levels} F=${r.features} N=${fmt(r.base)} b=${Number(r.scale.toPrecision(3))}`;

/** PSNR against allocation (levels, features, base, growth), one line per budget. */
export function allocationPlotSpec(rows: SweepRow[]): vl.TopLevelSpec {
  const ok = plotted(rows);
  const order = [...new Map([...ok].sort(byAllocation).map((r) => [allocLabel(r), true])).keys()];
  const steps = [...new Set(ok.map((r) => r.steps))];
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    background: "white",
    width: Math.max(320, 48 * order.length),
    height: 320,
    title: { text: "PSNR by allocation, one line per budget", subtitle: `${steps.join(", ")} steps; T = budget / (L x F) rounded to a power of two` },
    data: { values: ok.map((r) => ({ allocation: allocLabel(r), budget: r.budget, psnr: r.psnr, log2T: r.log2T, params: r.params })) },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "allocation", type: "ordinal", sort: order, title: "allocation (levels L, features F, base N, growth b)", axis: { labelAngle: -40 } },
      y: { field: "psnr", type: "quantitative", title: "PSNR (dB)", scale: { zero: false } },
      color: { field: "budget", type: "ordinal", title: "budget (parameters)", scale: { scheme: "viridis" } },
    },
  };
}

/** Best PSNR against the encoder's parameter count (one point per budget), over every run in grey. */
export function bestPlotSpec(rows: SweepRow[]): vl.TopLevelSpec {
  const ok = plotted(rows);
  const best = bestPerBudget(rows);
  const x = { field: "params", type: "quantitative" as const, title: "encoding parameters (log scale)", scale: { type: "log" as const } };
  const y = { field: "psnr", type: "quantitative" as const, title: "PSNR (dB)", scale: { zero: false } };
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    background: "white",
    width: 560,
    height: 320,
    title: { text: "Best PSNR against parameter count", subtitle: "line: the best allocation of each budget (labelled); grey: every run" },
    layer: [
      { data: { values: ok.map((r) => ({ params: r.params, psnr: r.psnr })) }, mark: { type: "point", color: "#bbbbbb" }, encoding: { x, y } },
      { data: { values: best.map((r) => ({ params: r.params, psnr: r.psnr, label: allocLabel(r) })) }, mark: { type: "line", point: { color: "#e45756" }, color: "#e45756" }, encoding: { x, y } },
      {
        data: { values: best.map((r) => ({ params: r.params, psnr: r.psnr, label: allocLabel(r) })) },
        mark: { type: "text", dy: -10, fontSize: 9, color: "#333333" },
        encoding: { x, y, text: { field: "label" } },
      },
    ],
  };
}

export interface SweepPlots {
  allocation: string;
  best: string;
}

/** Both plots as PNGs in `out` (undefined when no run finished). */
export async function writeSweepPlots(out: string, rows: SweepRow[]): Promise<SweepPlots | undefined> {
  if (plotted(rows).length === 0) return undefined;
  const plots = { allocation: join(out, "psnr-by-allocation.png"), best: join(out, "best-psnr-by-params.png") };
  await writeVegaLitePng(plots.allocation, allocationPlotSpec(rows));
  await writeVegaLitePng(plots.best, bestPlotSpec(rows));
  return plots;
}

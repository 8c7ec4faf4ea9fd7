// The data a training configuration names and the source that serves it: the image, or the points
// file (cfg.points). A caller may bring a source of its own instead (TrainHooks.source: the volume
// of bench:probing's 3D case).
import type { TrainConfig } from "../config.ts";
import { loadImage } from "../image.ts";
import { IMAGE_OUTPUTS, ImageSource } from "./image.ts";
import { openPointSource, VALIDATION } from "./points.ts";
import type { DataSource } from "./source.ts";

/** Every source's own files in the out directory (DataSource.writeOutputs): a run removes those an earlier run on other data left. */
export const SOURCE_OUTPUTS = [...IMAGE_OUTPUTS, VALIDATION];
/** Directories a source writes (the DeepZoom pyramids' tiles, the viewer's script): removed with the files. */
export { DEEPZOOM_DIRS as SOURCE_OUTPUT_DIRS } from "./deepzoom.ts";

/** The input file the configuration trains on, which no output may replace. */
export function dataInput(cfg: TrainConfig): { flag: string; path: string } {
  return cfg.points ? { flag: "--points", path: cfg.points.file } : { flag: "the image", path: cfg.image };
}

/**
 * The configuration's data, opened (read, checked, measured) as a source; as rank `share.rank` of
 * `share.size`, measured once every rank has called its gather().
 */
export async function openSource(cfg: TrainConfig, log: (message: string) => void, share?: { rank: number; size: number }): Promise<DataSource> {
  return cfg.points ? await openPointSource(cfg, { log, share }) : new ImageSource(await loadImage(cfg.image), cfg);
}

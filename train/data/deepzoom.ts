// The outputs of a large image run, none of them held whole in memory: from the reconstruction
// rendered band by band into a raw VIPS file (train/vips_file.ts), sharp (libvips) streams
// reconstruction.png (one file) and a DeepZoom pyramid, reconstruction.dzi with its tiles in
// reconstruction_files/; the original image gets its pyramid too (original.dzi), and viewer.html
// shows both side by side, panned and zoomed together, with OpenSeadragon (npm's openseadragon,
// copied into the out directory: no network needed).
import { cpSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import sharp from "sharp";
import { ImageError, type ImageData } from "../image.ts";

/** The files a DeepZoom run writes in its out directory, and its directories (removed when a later run writes other outputs). */
export const DEEPZOOM_OUTPUTS = ["reconstruction.dzi", "original.dzi", "viewer.html"];
export const DEEPZOOM_DIRS = ["reconstruction_files", "original_files", "openseadragon"];

/** Seconds each encoder took (they run one after another). */
export interface EncodeTimes {
  png: number;
  deepzoom: number;
  original: number;
}

/** DeepZoom tiles: JPEG (quality 90) unless the image has alpha (PNG), 8-bit for the viewer. */
function pyramid(input: string, img: Pick<ImageData, "channels">, out: string): Promise<unknown> {
  const alpha = img.channels % 2 === 0;
  let pipe = sharp(input, { limitInputPixels: false }).toColourspace(img.channels <= 2 ? "b-w" : "srgb");
  pipe = alpha ? pipe.png() : pipe.jpeg({ quality: 90 });
  return pipe.tile({ size: 256, overlap: 1, layout: "dz" }).toFile(out);
}

const timed = async (run: () => Promise<unknown>): Promise<number> => {
  const t = performance.now();
  await run();
  return (performance.now() - t) / 1000;
};

/**
 * Writes reconstruction.png (streamed from the raw render `raw`), the DeepZoom pyramids of the
 * reconstruction and of the original (image.path), viewer.html and the viewer's script.
 */
export async function writeDeepZoom(out: string, raw: string, image: ImageData, log: (message: string) => void): Promise<{ files: { reconstruction: string; viewer: string }; seconds: EncodeTimes }> {
  for (const name of [...DEEPZOOM_OUTPUTS, ...DEEPZOOM_DIRS]) rmSync(join(out, name), { recursive: true, force: true });
  const reconstruction = join(out, "reconstruction.png");
  const tmp = join(out, `.reconstruction.png.${process.pid}.encode.tmp`); // named as the trainer's temporaries (removed when stale)
  log(`writing reconstruction.png and the DeepZoom pyramids of the reconstruction and the original (streamed by sharp)`);
  let seconds: EncodeTimes;
  try {
    // One after another: together they overlapped their buffers by chance, and the peak memory of a
    // 4096 x 4096 run varied from 7.3 to 8.7 bytes per pixel with the load beside it.
    const png = await timed(() => sharp(raw, { limitInputPixels: false }).png().toFile(tmp));
    const deepzoom = await timed(() => pyramid(raw, image, join(out, "reconstruction.dz")));
    const original = await timed(() => pyramid(image.path, image, join(out, "original.dz")));
    seconds = { png: png!, deepzoom: deepzoom!, original: original! };
    renameSync(tmp, reconstruction);
  } catch (e) {
    throw new ImageError(`cannot write the reconstruction in ${out}: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`);
  } finally {
    rmSync(tmp, { force: true });
  }
  const osd = dirname(Bun.resolveSync("openseadragon/package.json", import.meta.dir));
  cpSync(join(osd, "build/openseadragon"), join(out, "openseadragon"), { recursive: true, filter: (f) => !f.endsWith(".map") && basename(f) !== "openseadragon.js" });
  const viewer = join(out, "viewer.html");
  writeFileSync(viewer, viewerPage(image));
  log(`encoded in ${(seconds.png + seconds.deepzoom + seconds.original).toFixed(1)} s (png ${seconds.png.toFixed(1)} s, pyramids ${seconds.deepzoom.toFixed(1)} s and ${seconds.original.toFixed(1)} s): open ${viewer}`);
  return { files: { reconstruction, viewer }, seconds };
}

/** The page: two OpenSeadragon viewers, the reconstruction and the original, kept on the same view. */
export function viewerPage(image: Pick<ImageData, "path" | "width" | "height">): string {
  const title = `reconstruction of ${basename(image.path)} (${image.width} x ${image.height})`;
  return `<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>${title.replace(/[<&]/g, (c) => (c === "<" ? "&lt;" : "&amp;"))}</title>
<style>
  html, body { margin: 0; height: 100%; background: #111; color: #ddd; font: 14px sans-serif; }
  main { display: flex; height: calc(100% - 2em); }
  section { flex: 1; display: flex; flex-direction: column; border-left: 1px solid #333; }
  h2 { margin: 0; padding: 0.3em 0.6em; font-size: 14px; font-weight: normal; }
  .view { flex: 1; }
  header { height: 2em; line-height: 2em; padding: 0 0.6em; }
</style>
<script src="openseadragon/openseadragon.min.js"></script>
</head>
<body>
<header>${title.replace(/[<&]/g, (c) => (c === "<" ? "&lt;" : "&amp;"))}: drag to pan, scroll to zoom; the two views move together</header>
<main>
  <section><h2>reconstruction</h2><div id="reconstruction" class="view"></div></section>
  <section><h2>original</h2><div id="original" class="view"></div></section>
</main>
<script>
  const open = (id, tiles) => OpenSeadragon({ id, prefixUrl: "openseadragon/images/", tileSources: tiles, showNavigator: true, maxZoomPixelRatio: 8 });
  const views = [open("reconstruction", "reconstruction.dzi"), open("original", "original.dzi")];
  // Each view follows the other: the one the person moves leads.
  let leading = null;
  for (const [k, v] of views.entries()) {
    const other = views[1 - k];
    const follow = () => {
      if (leading && leading !== v) return;
      leading = v;
      other.viewport.zoomTo(v.viewport.getZoom());
      other.viewport.panTo(v.viewport.getCenter());
      leading = null;
    };
    v.addHandler("zoom", follow);
    v.addHandler("pan", follow);
  }
</script>
</body>
</html>
`;
}

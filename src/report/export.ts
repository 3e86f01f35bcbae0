/**
 * --png DIR / --svg DIR: open the written report in headless Chromium and save each figure through
 * Plotly.toImage, so the images are exactly what the page draws. Figure 2 gives one image per module
 * (`fig2-0`, `fig2-1`, … in its dropdown's order).
 */
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { writeFileAtomic } from '../io/atomic.js';
import { DorascopeError } from '../errors.js';
import { launchChromium, requireChromium } from './chromium.js';

export async function exportFigures(htmlPath: string, outDir: string, format: 'png' | 'svg'): Promise<string[]> {
  const exe = requireChromium();
  const ctx = await launchChromium(exe);
  try {
    const page = await ctx.newPage();
    const url = pathToFileURL(resolve(htmlPath)).href;
    // Offline by construction: refuse anything but the report itself.
    await page.route('**/*', (r) => (r.request().url() === url ? r.continue() : r.abort()));
    await page.goto(url, { waitUntil: 'load' });
    const images = await page.evaluate(async (fmt) => {
      type Gd = Element & { layout: { height?: number; meta?: { exportViews?: boolean }; updatemenus?: { buttons: { args: unknown[] }[] }[] } };
      const w = window as unknown as { dorascope?: { drawAll(): Promise<unknown> }; Plotly: {
        toImage(gd: Element, o: object): Promise<string>; update(gd: Element, a: unknown, b: unknown, c: unknown): Promise<unknown> } };
      await w.dorascope?.drawAll(); // figures below the first screen draw lazily
      const P = w.Plotly;
      const out: [string, string][] = [];
      for (const gd of Array.from(document.querySelectorAll('.js-plotly-plot')) as Gd[]) {
        // 500 px high, or the figure's own height when it is taller (Figure 2 wraps many runs over several rows).
        const opts = { format: fmt, width: 1200, height: Math.max(500, gd.layout.height ?? 0) };
        const views = gd.layout.meta?.exportViews ? gd.layout.updatemenus?.[0]?.buttons ?? [] : [];
        if (views.length === 0) { out.push([gd.id, await P.toImage(gd, opts)]); continue; }
        // Figure 2 shows one module at a time: one image per module, `<id>-<k>` in dropdown order.
        for (const [k, b] of views.entries()) {
          await P.update(gd, b.args[0], b.args[1], b.args[2]);
          out.push([`${gd.id}-${k}`, await P.toImage(gd, opts)]);
        }
      }
      return out;
    }, format);
    if (images.length === 0) throw new DorascopeError('E_CHROMIUM', `no figures rendered in ${htmlPath}`);
    await mkdir(outDir, { recursive: true });
    const written: string[] = [];
    for (const [id, dataUrl] of images) {
      const comma = dataUrl.indexOf(',');
      const head = dataUrl.slice(0, comma);
      const body = dataUrl.slice(comma + 1);
      const bytes = head.endsWith(';base64') ? Buffer.from(body, 'base64') : Buffer.from(decodeURIComponent(body), 'utf8');
      const p = join(outDir, `${id}.${format}`);
      await writeFileAtomic(p, bytes);
      written.push(p);
    }
    return written;
  } finally {
    await ctx.close();
  }
}

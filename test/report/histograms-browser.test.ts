/**
 * The histogram figure in headless Chromium: it draws bar traces holding the binned counts (not values), the
 * layer dropdown swaps the counts, and a bar's hover names run, layer, module, step, the bin and its count.
 * Skips (visibly) where Chromium is absent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { findChromium, launchChromium } from '../../src/report/chromium.js';
import { renderReport } from '../../src/report/render.js';
import { binFeatures } from '../../src/report/feature-histograms.js';
import { grid, writeAnalysis, writeFeatureRows } from './helpers.js';

const exe = findChromium();
if (!exe) console.warn('SKIPPED histogram browser test: no Chromium (set CHROMIUM_PATH or apt-get install chromium)');

describe.skipIf(!exe)('histograms in headless Chromium', () => {
  let ctx: Awaited<ReturnType<typeof launchChromium>>;
  beforeAll(async () => { ctx = await launchChromium(exe!); }, 60_000);
  afterAll(async () => { await ctx?.close(); });

  it('draws the counts, switches layer, hovers a bin', async () => {
    const dir = await writeAnalysis(grid('dora', 'dora', 2, ['q_proj'], [3]));
    const rows = [];
    // layer 0: 30 features with |Δm| = k/1000; layer 1: 10 features; cos 1 − k/10,000.
    for (let k = 0; k < 40; k++) rows.push({ run: 'dora', step: 3, layer: k < 30 ? 0 : 1, m0: 1, mt: 1 + k / 1000, cos: 1 - k / 10_000 });
    await writeFeatureRows(dir, rows);
    const f = (await binFeatures(join(dir, 'rows.arrow')))!;
    const html = await renderReport({ dir });
    const page = await ctx.newPage();
    const errors: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(pathToFileURL(resolve(html)).href, { waitUntil: 'load' });
    await page.evaluate(() => (window as unknown as { dorascope: { drawAll(): Promise<unknown> } }).dorascope.drawAll());
    type Gd = Element & { _fullData: { type: string; y: number[] }[]; layout: { updatemenus: { buttons: { args: unknown[] }[] }[] } };
    const read = () => page.evaluate(() => (document.getElementById('hist') as unknown as Gd)._fullData.map((t) => ({ type: t.type, y: Array.from(t.y) })));
    const first = await read();
    expect(first.map((t) => t.type)).toEqual(['bar', 'bar']);
    const g0 = f.groups.find((g) => g.layer === 0)!, g1 = f.groups.find((g) => g.layer === 1)!;
    expect(first[0]!.y).toEqual(Array.from(g0.dm.subarray(0, f.bins + 1)));
    expect(first[0]!.y.reduce((a, b) => a + b, 0)).toBe(30);
    // The dropdown's second button (layer 1), as a click runs it.
    await page.evaluate(() => {
      const gd = document.getElementById('hist') as unknown as Gd;
      const P = (window as unknown as { Plotly: { restyle(gd: Element, ...a: unknown[]): Promise<unknown> } }).Plotly;
      return P.restyle(gd, ...gd.layout.updatemenus[0]!.buttons[1]!.args);
    });
    const second = await read();
    expect(second[1]!.y).toEqual(Array.from(g1.dcos.subarray(0, f.bins + 1)));
    expect(second[1]!.y.reduce((a, b) => a + b, 0)).toBe(10);
    // Hover the first |Δm| bar of layer 1 that holds features.
    const bin = second[0]!.y.findIndex((c) => c > 0);
    const hover = await page.evaluate((i) => {
      const P = (window as unknown as { Plotly: { Fx: { hover(gd: Element, pts: unknown[]): void } } }).Plotly;
      P.Fx.hover(document.getElementById('hist')!, [{ curveNumber: 0, pointNumber: i }]);
      return document.querySelector('#hist .hovertext')?.textContent ?? '';
    }, bin);
    const e = f.scales.get('q_proj')!.dm!.edges;
    expect(hover).toBe(`run doralayer 1 · q_projstep 3|m_t − m_0| in [${e[bin]!.toPrecision(4)}, ${e[bin + 1]!.toPrecision(4)}): ${second[0]!.y[bin]} features`);
    expect(errors).toEqual([]);
    await mkdir('test-output', { recursive: true });
    await page.locator('#hist').screenshot({ path: join('test-output', 'report-histograms.png') }); // for people to look at
    await page.close();
  }, 60_000);
});

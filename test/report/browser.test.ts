/**
 * Opens generated reports in headless system Chromium: no console errors, no request leaves the file,
 * every plot drew its traces with the expected point counts, hostile labels fire no dialog.
 * Skips (visibly) where Chromium is absent; CI installs Debian's chromium in .ci/run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { findChromium, launchChromium } from '../../src/report/chromium.js';
import { renderCompare, renderReport } from '../../src/report/render.js';
import { grid, writeAnalysis } from './helpers.js';

const exe = findChromium();
if (!exe) console.warn('SKIPPED browser tests: no Chromium (set CHROMIUM_PATH or apt-get install chromium)');

describe.skipIf(!exe)('report in headless Chromium', () => {
  let ctx: Awaited<ReturnType<typeof launchChromium>>;
  beforeAll(async () => { ctx = await launchChromium(exe!); await mkdir('test-output', { recursive: true }); }, 60_000);
  afterAll(async () => { await ctx?.close(); });

  async function open(html: string, shot: string) {
    const page = await ctx.newPage();
    const url = pathToFileURL(resolve(html)).href;
    const errors: string[] = [];
    const foreign: string[] = [];
    let dialogs = 0;
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('requestfailed', (r) => { if (r.url() !== url) foreign.push(r.url()); });
    page.on('dialog', (d) => { dialogs++; void d.dismiss(); });
    await page.route('**/*', (r) => {
      if (r.request().url() === url) return r.continue();
      foreign.push(r.request().url());
      return r.abort();
    });
    const t0 = Date.now();
    await page.goto(url, { waitUntil: 'load' });
    await page.waitForFunction(() => document.querySelectorAll('.js-plotly-plot').length > 0, null, { timeout: 30_000 });
    const ms = Date.now() - t0;
    const counts = await page.evaluate(() => Array.from(document.querySelectorAll('.js-plotly-plot')).map((gd) => {
      const data = (gd as unknown as { data: { mode?: string; x: unknown[] }[] }).data;
      return { id: gd.id, traces: data.length, markers: data.filter((t) => t.mode === 'markers').reduce((n, t) => n + t.x.length, 0) };
    }));
    const firstCell = await page.evaluate(() => document.querySelector('#summary tbody td')?.textContent ?? '');
    await page.screenshot({ path: join('test-output', shot), fullPage: true });
    await page.close();
    return { errors, foreign, dialogs, counts, ms, firstCell };
  }

  it('renders a report with the expected points, offline, without errors', async () => {
    const dir = await writeAnalysis(grid('lora', 'lora', 4, ['q_proj', 'v_proj'], [10, 20, 30]));
    const r = await open(await renderReport({ dir }), 'report-small.png');
    expect(r.errors).toEqual([]);
    expect(r.foreign).toEqual([]);
    const fig2 = r.counts.filter((c) => c.id.startsWith('fig2'));
    expect(fig2.map((c) => c.markers)).toEqual([12, 12]); // 4 layers × 3 steps per module
    expect(fig2[0]!.traces).toBe(5); // 4 layers + least-squares line
  }, 60_000);

  it('hostile labels render as text and fire no dialog', async () => {
    const evil = '<img src=x onerror=alert(1)><script>alert(2)</script>"onerror=alert(3)';
    const dir = await writeAnalysis(grid(evil, 'dora', 2, [`q${evil}`], [1, 2]));
    const out = await renderCompare({ dirs: [dir], labels: [evil], out: join(dir, 'evil.html') });
    const r = await open(out, 'report-xss.png');
    expect(r.dialogs).toBe(0);
    expect(r.firstCell).toBe(evil); // shown as typed, not parsed as markup
    expect(r.errors).toEqual([]);
    expect(r.foreign).toEqual([]);
  }, 60_000);

  it('draws a 70B-sized compare (2 × 11,200 points) in a few seconds', async () => {
    const steps = Array.from({ length: 20 }, (_, i) => (i + 1) * 50);
    const mods = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
    const a = await writeAnalysis(grid('ft', 'ft', 80, mods, steps, 3));
    const b = await writeAnalysis(grid('dora', 'dora', 80, mods, steps, 5));
    const out = await renderCompare({ dirs: [a, b], out: join(a, 'big.html') });
    const r = await open(out, 'compare-large.png');
    expect(r.errors).toEqual([]);
    expect(r.counts.filter((c) => c.id.startsWith('fig2')).reduce((n, c) => n + c.markers, 0)).toBe(22_400);
    expect(r.ms).toBeLessThan(20_000);
  }, 120_000);
});

/**
 * Opens generated reports in headless system Chromium: no console errors, no request leaves the file,
 * every plot drew its traces with the expected point counts, hostile labels fire no dialog.
 * Skips (visibly) where Chromium is absent; CI installs Debian's chromium in .ci/run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFile, mkdir, readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { findChromium, launchChromium } from '../../src/report/chromium.js';
import { renderCompare, renderReport } from '../../src/report/render.js';
import { grid, writeAnalysis } from './helpers.js';

const exe = findChromium();

/** Runs in the page: what each plot drew, read from Plotly's full (computed) data. */
function readBack() {
  type Full = { type: string; mode?: string; x?: (number | null)[]; meta?: { role?: string; run?: string; module?: string }; visible: boolean | string };
  return Array.from(document.querySelectorAll('.js-plotly-plot')).map((gd) => {
    const full = (gd as unknown as { _fullData: Full[] })._fullData;
    return { id: gd.id, traces: full.length,
      perTrace: full.map((t) => ({ type: t.type, mode: t.mode ?? '', role: t.meta?.role ?? '', run: t.meta?.run ?? '', module: t.meta?.module ?? '',
        points: (t.x ?? []).filter((v) => v !== null && v !== undefined).length })),
      markers: full.filter((t) => t.mode === 'markers' && t.meta?.role !== 'key').reduce((n, t) => n + (t.x ?? []).length, 0) };
  });
}
if (!exe) console.warn('SKIPPED browser tests: no Chromium (set CHROMIUM_PATH or apt-get install chromium)');

describe.skipIf(!exe)('report in headless Chromium', () => {
  let ctx: Awaited<ReturnType<typeof launchChromium>>;
  beforeAll(async () => { ctx = await launchChromium(exe!); await mkdir('test-output', { recursive: true }); }, 60_000);
  afterAll(async () => { await ctx?.close(); });

  /** `allow`: files besides the report that the page may load (a --plotly-src copy). */
  async function open(html: string, shot: string, allow: string[] = []) {
    const page = await ctx.newPage();
    const url = pathToFileURL(resolve(html)).href;
    const allowed = new Set([url, ...allow.map((p) => pathToFileURL(resolve(p)).href)]);
    const errors: string[] = [];
    const foreign: string[] = [];
    let dialogs = 0;
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('requestfailed', (r) => { if (!allowed.has(r.url())) foreign.push(r.url()); });
    page.on('dialog', (d) => { dialogs++; void d.dismiss(); });
    await page.route('**/*', (r) => {
      if (allowed.has(r.request().url())) return r.continue();
      foreign.push(r.request().url());
      return r.abort();
    });
    await page.goto(url, { waitUntil: 'load' });
    // Figures below the first screen draw lazily; drawAll() draws the rest (as image export does).
    await page.evaluate(() => (window as unknown as { dorascope: { drawAll(): Promise<unknown> } }).dorascope.drawAll());
    const drawn = await page.evaluate(() => document.documentElement.getAttribute('data-drawn'));
    const counts = await page.evaluate(readBack);
    const firstCell = await page.evaluate(() => document.querySelector('#summary tbody td')?.textContent ?? '');
    await page.screenshot({ path: join('test-output', shot), fullPage: true });
    return { errors, foreign, dialogs, counts, firstCell, drawn, page };
  }

  it('renders a report with the expected points, offline, without errors', async () => {
    const dir = await writeAnalysis(grid('lora', 'lora', 4, ['q_proj', 'v_proj'], [10, 20, 30]));
    const r = await open(await renderReport({ dir }), 'report-small.png');
    expect(r.errors).toEqual([]);
    expect(r.foreign).toEqual([]);
    expect(r.drawn).not.toBe('error');
    expect(r.counts.map((c) => c.id)).toEqual(['fig2', 'fig3', 'traj']);
    const fig2 = r.counts[0]!;
    expect(fig2.markers).toBe(12); // q_proj shown: 4 layers × 3 steps
    expect(fig2.traces).toBe(1 + 1 + 3); // points, least-squares line, 3 step keys
    await r.page.close();
  }, 60_000);

  it('--plotly-src: a page linking its own copy of plotly.js draws the same, and loads nothing else', async () => {
    const dir = await writeAnalysis(grid('lora', 'lora', 2, ['q_proj'], [1, 2]));
    await copyFile(createRequire(import.meta.url).resolve('plotly.js-dist-min/plotly.min.js'), join(dir, 'plotly.min.js'));
    const html = await renderReport({ dir, out: join(dir, 'linked.html'), plotlySrc: 'plotly.min.js' });
    expect((await stat(html)).size).toBeLessThan(200_000); // plotly.js (≈4.6 MB) is not inlined
    const r = await open(html, 'report-plotly-src.png', [join(dir, 'plotly.min.js')]);
    expect(r.errors).toEqual([]);
    expect(r.foreign).toEqual([]);
    expect(r.counts.map((c) => c.id)).toEqual(['fig2', 'fig3', 'traj']);
    expect(r.counts[0]!.markers).toBe(4); // 2 layers × 2 steps
    await r.page.close();
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
    await r.page.close();
  }, 60_000);

  it('draws a 70B-sized compare (2 × 11,200 points): every plot, every module', async () => {
    const steps = Array.from({ length: 20 }, (_, i) => (i + 1) * 50);
    const mods = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
    // Written in a safetensors header's (alphabetical) order: the report puts them back in the model's.
    const a = await writeAnalysis(grid('ft', 'ft', 80, [...mods].sort(), steps, 3));
    const b = await writeAnalysis(grid('dora', 'dora', 80, [...mods].sort(), steps, 5));
    const out = await renderCompare({ dirs: [a, b], out: join(a, 'big.html') });
    // WebGL figures: the partial bundle with scattergl is inlined.
    expect(await readFile(out, 'utf8')).toContain('partial bundle: scatter, scattergl, bar.');
    const r = await open(out, 'compare-large.png');
    expect(r.errors).toEqual([]);
    expect(r.foreign).toEqual([]);
    expect(r.drawn).not.toBe('error');
    const [fig2, fig3, traj] = r.counts;
    // Figure 2: per run one WebGL trace of 80 layers × 20 steps (q_proj), its fitted line, 20 step keys.
    expect(fig2!.perTrace.filter((t) => t.role === 'points').map((t) => [t.type, t.run, t.module, t.points]))
      .toEqual([['scattergl', 'ft', 'q_proj', 1600], ['scattergl', 'dora', 'q_proj', 1600]]);
    expect(fig2!.perTrace.filter((t) => t.role === 'fit').map((t) => t.points)).toEqual([2, 2]);
    expect(fig2!.perTrace.filter((t) => t.role === 'key').length).toBe(20);
    // Every module in the dropdown draws its 2 × 1,600 points (the button's own restyle, applied as a click would).
    const perModule = await r.page.evaluate(async () => {
      type Gd = HTMLElement & { layout: { updatemenus: { buttons: { label: string; args: unknown[] }[] }[] }; _fullData: { x: unknown[]; meta?: { role?: string; module?: string } }[] };
      const gd = document.getElementById('fig2') as Gd;
      const P = (window as unknown as { Plotly: { update(gd: Element, a: unknown, b: unknown, c: unknown): Promise<unknown> } }).Plotly;
      const out: [string, string[], number][] = [];
      for (const b of gd.layout.updatemenus[0]!.buttons) {
        await P.update(gd, b.args[0], b.args[1], b.args[2]);
        const pts = gd._fullData.filter((t) => t.meta?.role === 'points');
        out.push([b.label, pts.map((t) => t.meta!.module!), pts.reduce((n, t) => n + t.x.length, 0)]);
      }
      return out;
    });
    expect(perModule.map((m) => m[0])).toEqual(mods); // in the model's order
    for (const [label, modules, n] of perModule) { expect(modules).toEqual([label, label]); expect(n).toBe(3200); }
    // Figure 3: ΔM and ΔD per run, 80 layers each; trajectories: 80 layers × 20 steps per run and quantity.
    expect(fig3!.perTrace.map((t) => t.points)).toEqual([80, 80, 80, 80]);
    expect(traj!.perTrace.map((t) => [t.type, t.points])).toEqual(Array(4).fill(['scatter', 1600]));
    // Figure 3's dropdown: the first step's view draws 80 layers per trace too.
    const step50 = await r.page.evaluate(async () => {
      type Gd = HTMLElement & { layout: { updatemenus: { buttons: { label: string; args: unknown[] }[] }[] }; _fullData: { x: unknown[] }[] };
      const gd = document.getElementById('fig3') as Gd;
      const b = gd.layout.updatemenus[0]!.buttons.find((x) => x.label === 'step 50')!;
      await (window as unknown as { Plotly: { restyle(gd: Element, a: unknown): Promise<unknown> } }).Plotly.restyle(gd, b.args[0]);
      return gd._fullData.map((t) => t.x.length);
    });
    expect(step50).toEqual([80, 80, 80, 80]);
    // Each run's panel has its own axes (as in the paper); "shared axes" links them to the first panel's and back.
    const matches = () => r.page.evaluate(() => {
      const l = (document.getElementById('fig2') as unknown as { layout: Record<string, { matches?: string | null }> }).layout;
      return [l.xaxis2!.matches ?? null, l.yaxis2!.matches ?? null];
    });
    expect(await matches()).toEqual([null, null]);
    await r.page.click('#shared');
    await r.page.waitForFunction(() => (document.getElementById('fig2') as unknown as { layout: { xaxis2: { matches?: string | null } } }).layout.xaxis2.matches === 'x');
    expect(await matches()).toEqual(['x', 'y']);
    await r.page.click('#shared');
    await r.page.waitForFunction(() => (document.getElementById('fig2') as unknown as { layout: { xaxis2: { matches?: string | null } } }).layout.xaxis2.matches == null);
    expect(await matches()).toEqual([null, null]);
    await r.page.close();
  }, 120_000);
});

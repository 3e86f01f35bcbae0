/**
 * The parts of the page that read like the paper and like a result: module order, integer layer ticks, the
 * modules each statistic pools, the result cards with the paper's value and verdict, provenance with real
 * sizes, and the size of the page with its partial plotly.js.
 */
import { mkdtemp, readFile, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pathBytes } from '../../src/io/path-bytes.js';
import { resultCards } from '../../src/report/cards.js';
import { integerTicks, orderModules } from '../../src/report/figures/common.js';
import { loadAnalysis, type RunSummary } from '../../src/report/load.js';
import { formatBytes } from '../../src/report/provenance.js';
import { plotlyBundlePath } from '../../src/report/plotly-bundle.js';
import { buildFigures, renderReport } from '../../src/report/render.js';
import { grid, writeAnalysis } from './helpers.js';

const MODEL = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

describe('report page', () => {
  it('orders modules as the model does, whatever the file order; others keep their order after them', () => {
    expect(orderModules([...MODEL].sort())).toEqual(MODEL);
    expect(orderModules(['fc2', 'v', 'fc1', 'q'])).toEqual(['q', 'v', 'fc2', 'fc1']);
  });

  it('puts layer ticks on whole numbers', () => {
    expect(integerTicks(0, 1)).toEqual({ tick0: 0, dtick: 1, tickformat: 'd' });
    expect(integerTicks(0, 9).dtick).toBe(2); // 0, 2, …, 8: 5 ticks
    expect(integerTicks(0, 79).dtick).toBe(10);
    expect(integerTicks(3, 5)).toEqual({ tick0: 3, dtick: 1, tickformat: 'd' });
  });

  it('Figure 2 dropdown, colour bar and Figure 3 layer axes; the table names the modules it pools', async () => {
    const a = await loadAnalysis(await writeAnalysis(grid('ft', 'ft', 2, ['v_proj', 'q_proj'], [1, 2])));
    const { figures, table } = buildFigures(a.rows, a.runs);
    const f2 = figures.find((f) => f.id === 'fig2')!;
    const menu = (f2.layout.updatemenus as { buttons: { label: string }[] }[])[0]!;
    expect(menu.buttons.map((b) => b.label)).toEqual(['q_proj', 'v_proj']);
    const bar = (f2.data[0]!.marker as { colorbar: { dtick: number; tickformat: string } }).colorbar;
    expect([bar.dtick, bar.tickformat]).toEqual([1, 'd']);
    const f3 = figures.find((f) => f.id === 'fig3')!;
    expect((f3.layout.xaxis as { dtick: number }).dtick).toBe(1);
    expect(table.rows[0]![table.columns.indexOf('modules pooled')]).toBe('q+v (_proj)');
    expect(table.notes?.['modules pooled']).toMatch(/one module at a time/u);
  });

  it('result cards: the paper\'s value and the verdict by the sign of the query matrices\' interval', () => {
    const stats = (ci: [number, number] | null, r = 0.5) => ({ n: 10, pearson_r: r, spearman_rho: r, slope: 2, intercept: 0, r_ci95: ci, slope_ci95: [1, 3] as [number, number] });
    const run = (name: string, method: string, q: [number, number] | null, overall: [number, number]): RunSummary => ({
      run: name, method, adapter: null, checkpoints: [{ name: 'c', step: 1 }], overall: stats(overall, 0.7),
      modules: { v_proj: stats([-0.9, -0.8]), q_proj: stats(q) },
    });
    const cards = resultCards([
      run('lora', 'lora', [0.1, 0.9], [-0.9, -0.1]), // paper: positive; q interval above 0 → agrees (the pooled one is not used)
      run('ft', 'ft', [0.1, 0.9], [0.1, 0.9]), // paper: negative → opposite
      run('dora', 'dora', [-0.2, 0.3], [-0.9, -0.1]), // interval contains 0 → inconclusive
      run('dora-nan', 'dora', null, [-0.9, -0.1]), // no interval → inconclusive
      run('mine', 'ia3', [0.1, 0.9], [0.1, 0.9]), // a method the paper does not show: no paper value
    ]);
    expect(cards.map((c) => c.paper?.verdict ?? null)).toEqual(['agrees', 'opposite', 'inconclusive', 'inconclusive', null]);
    expect(cards[0]!.paper!.lines).toEqual([['r, q_proj', '0.500 [0.100, 0.900]'], ['r, paper (Fig. 2)', '0.83 (positive)']]);
    expect(cards[1]!.paper!.lines[1]).toEqual(['r, paper (Fig. 2)', '-0.62 (negative)']);
    expect(cards[0]!.lines).toEqual([['r, pooled', '0.700 [-0.900, -0.100]'], ['slope, pooled', '2.000 [1.000, 3.000]']]);
    expect(cards[0]!.caption).toMatch(/^pooled: q\+v \(_proj\), 1 checkpoint, n=10/u);
  });

  it('result cards judge by the bootstrap over layers when summary.json has it (as reproduce does)', () => {
    const stats = (lo: number, hi: number) => ({ n: 32, pearson_r: 0.2, spearman_rho: 0.2, slope: 1, intercept: 0, r_ci95: [lo, hi] as [number, number], slope_ci95: [0, 2] as [number, number] });
    // The point bootstrap over (ΔD, ΔM) pairs says "opposite"; the bootstrap over layers contains 0: inconclusive.
    const layerStep = { pooled: { n: 32, n_tensors: 8, r: 0.2, r_ci95: [-0.1, 0.5] as [number, number] } };
    const run = {
      run: 'ft', method: 'ft', adapter: null, checkpoints: [{ name: 'checkpoint-1', step: 1 }], overall: stats(0.05, 0.4), modules: { q_proj: stats(0.05, 0.4) },
      detail: { overall: { layer_step: layerStep }, modules: { q_proj: { layer_step: layerStep } } },
    } as unknown as Parameters<typeof resultCards>[0][number];
    const [card] = resultCards([run]);
    expect(card!.paper!.verdict).toBe('inconclusive');
    expect(card!.paper!.lines[0]).toEqual(['r, q_proj', '0.200 [-0.100, 0.500] (bootstrap over layers)']);
    const { detail: _d, ...old } = run as typeof run & { detail: unknown };
    expect(resultCards([old])[0]!.paper!.verdict).toBe('opposite');
    // A summary.json whose detail predates the pooled view (no layer_step.pooled) also falls back.
    const early = { ...run, detail: { overall: { layer_step: {} }, modules: { q_proj: { layer_step: {} } } } } as unknown as typeof run;
    expect(resultCards([early])[0]!.paper!.verdict).toBe('opposite');
  });

  it('a report: cards on top, provenance tables with sizes, the raw manifest behind <details>, under 1.5 MB', async () => {
    const rows = ['ft', 'lora', 'dora', 'dora-r4'].flatMap((r, i) => grid(r, r === 'dora-r4' ? 'dora' : r, 4, [...MODEL].sort(), [30, 60, 90, 120], i + 1));
    const dir = await writeAnalysis(rows, undefined, {
      tool: 'dorascope', version: '0.1.0', created: '2026-01-01T00:00:00.000Z', command: ['dorascope', 'analyze', '--base', 'b'],
      base: { path: 'base/model.safetensors', kind: 'file', bytes: 2_500_000 },
      runs: [{ run: 'ft', path: 'runs/ft', method: 'ft', checkpoints: [{ bytes: 1_000_000 }, { bytes: 500_000 }] }],
      tensors: 28, timings: { seconds: 1.5, bytes_read: 12_000, workers: 0 },
    });
    const html = await readFile(await renderReport({ dir, command: ['dorascope', 'report', dir] }), 'utf8');
    expect(html.length).toBeLessThan(1_500_000);
    const cards = [...html.matchAll(/<div class="card" data-run="([^"]+)" data-verdict="([a-z]+)"/gu)].map((m) => m[1]);
    expect(cards).toEqual(['ft', 'lora', 'dora', 'dora-r4']);
    expect(html.indexOf('id="cards"')).toBeLessThan(html.indexOf('id="summary"'));
    // base 2.5 MB; run ft: two checkpoints, 1.5 MB together; timings as read.
    const prov = html.slice(html.indexOf('<h2>Provenance'), html.indexOf('<script'));
    expect(prov).toContain('<td>base</td><td>base/model.safetensors</td><td>file</td><td>n/a</td><td>2.50 MB</td>');
    expect(prov).toContain('<td>run ft (ft)</td><td>runs/ft</td><td>n/a</td><td>2</td><td>1.50 MB</td>');
    expect(prov).toContain('<td>1.5 s</td><td>12.0 kB</td><td>28</td><td>0</td>');
    expect(prov).toMatch(/<details><summary>manifest\.json \(raw\)<\/summary><pre>\{\n {2}&quot;tool&quot;: &quot;dorascope&quot;/u);
  });

  it('inlines the smallest plotly.js that draws the page\'s trace types (all of plotly.js only for others)', () => {
    expect(plotlyBundlePath(new Set(['scatter', 'bar']))).toMatch(/dist\/plotly\/plotly-svg\.min\.js$/u);
    expect(plotlyBundlePath(new Set(['scatter', 'scattergl']))).toMatch(/dist\/plotly\/plotly-gl\.min\.js$/u);
    expect(plotlyBundlePath(new Set(['heatmap']))).toMatch(/plotly\.js-dist-min\/plotly\.min\.js$/u);
  });

  it('sizes: a folder is the sum of its files (not its directory entry), bytes in SI units', async () => {
    const d = await mkdtemp(join(tmpdir(), 'dorascope-bytes-'));
    await mkdir(join(d, 'sub'));
    await writeFile(join(d, 'a.safetensors'), Buffer.alloc(1234));
    await writeFile(join(d, 'sub', 'optimizer.pt'), Buffer.alloc(5000));
    expect(pathBytes(d)).toBe(6234);
    expect(pathBytes(join(d, 'a.safetensors'))).toBe(1234);
    expect(pathBytes(join(d, 'missing'))).toBeNull();
    expect([formatBytes(999), formatBytes(1234), formatBytes(12_345_678), formatBytes(null)]).toEqual(['999 B', '1.23 kB', '12.3 MB', 'n/a']);
  });
});

import { describe, expect, it } from 'vitest';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAnalysis } from '../../src/report/load.js';
import { buildFigures, renderCompare, renderReport } from '../../src/report/render.js';
import { escapeHtml, jsonForScript } from '../../src/report/html.js';
import { isDorascopeError } from '../../src/errors.js';
import { grid, ols, writeAnalysis } from './helpers.js';

describe('figure specs', () => {
  it('Figure 2 has one trace per layer plus the fitted line, all points, and summary.json coefficients', async () => {
    const rows = grid('lora-r8', 'lora', 3, ['q_proj', 'v_proj'], [100, 200]);
    const a = await loadAnalysis(await writeAnalysis(rows));
    expect(a.rows.length).toBe(12);
    const { figures, table } = buildFigures(a.rows, a.runs);
    const q = figures.find((f) => f.title.includes('lora-r8/q_proj'))!;
    const pts = q.data.filter((t) => t.mode === 'markers');
    expect(pts.length).toBe(3); // layers 0,1,2
    expect(pts.reduce((n, t) => n + (t.x as number[]).length, 0)).toBe(6); // 3 layers × 2 steps
    // Two steps → two distinct marker symbols in each layer's trace.
    expect(new Set((pts[0]!.marker as { symbol: string[] }).symbol).size).toBe(2);
    const line = q.data.find((t) => t.mode === 'lines')!;
    const qr = rows.filter((r) => r.module === 'q_proj');
    const f = ols(qr.map((r) => r.dd), qr.map((r) => r.dm));
    const [x0, x1] = line.x as number[];
    const [y0, y1] = line.y as number[];
    expect(x0).toBe(Math.min(...qr.map((r) => r.dd)));
    expect(y0).toBeCloseTo(f.intercept + f.slope * x0!, 12);
    expect((y1! - y0!) / (x1! - x0!)).toBeCloseTo(f.slope, 6);
    expect(table.rows.length).toBe(1);
    expect(table.rows[0]![0]).toBe('lora-r8');
  });

  it('Figure 3 shows per-layer means at the last step by default', async () => {
    const rows = grid('ft', 'ft', 2, ['q_proj', 'v_proj'], [10, 20]);
    const a = await loadAnalysis(await writeAnalysis(rows));
    const f3 = buildFigures(a.rows, a.runs).figures.find((f) => f.id === 'fig3')!;
    const visible = f3.data.filter((t) => t.visible === true);
    expect(visible.length).toBe(2); // ΔM and ΔD for the one run
    const dm = visible.find((t) => (t.meta as { key: string }).key === 'delta_m')!;
    const l1 = rows.filter((r) => r.step === 20 && r.layer === 1);
    expect((dm.y as number[])[1]).toBeCloseTo((l1[0]!.dm + l1[1]!.dm) / 2, 14);
  });

  it('switches to scattergl for an 11,200-point run', async () => {
    const rows = grid('big', 'dora', 80, ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], Array.from({ length: 20 }, (_, i) => (i + 1) * 10));
    expect(rows.length).toBe(11200);
    const a = await loadAnalysis(await writeAnalysis(rows));
    const figs = buildFigures(a.rows, a.runs).figures.filter((f) => f.id.startsWith('fig2'));
    expect(figs.length).toBe(7);
    // 1,600 points per module figure stays SVG; a compare of 2 runs of that (3,200) goes WebGL.
    expect(figs[0]!.data[0]!.type).toBe('scatter');
    const two = buildFigures([...a.rows, ...a.rows.map((r) => ({ ...r, run: 'big2' }))], [...a.runs, { ...a.runs[0]!, run: 'big2' }]);
    expect(two.figures[0]!.data[0]!.type).toBe('scattergl');
  });
});

describe('escaping', () => {
  it('escapes HTML and script-embedded JSON', () => {
    expect(escapeHtml('<img src=x onerror="a">')).toBe('&lt;img src=x onerror=&quot;a&quot;&gt;');
    const j = jsonForScript({ s: '</script><b>&\u2028' });
    expect(j).not.toMatch(/[<>&\u2028]/);
    expect(JSON.parse(j)).toEqual({ s: '</script><b>&\u2028' });
  });

  it('a hostile run label and tensor name never appear as raw markup in the page', async () => {
    const evil = '<script>alert(1)</script>"onerror=alert(2)';
    const rows = grid(evil, 'lora', 2, [`m${evil}`], [1, 2]);
    const dir = await writeAnalysis(rows);
    const out = await renderReport({ dir, out: join(dir, 'r.html'), plotlySrc: 'plotly.js' });
    const html = await readFile(out, 'utf8');
    expect(html).not.toContain('<script>alert(1)');
    // Inside the JSON block a quote is \" (inert in a script-data element); outside it must be &quot;.
    const json = html.match(/<script type="application\/json" id="figdata">([^<]*)<\/script>/)![1]!;
    expect(JSON.stringify(JSON.parse(json))).toContain(evil.replace(/"/g, '\\"'));
    expect(html.replace(json, '')).not.toContain('"onerror=alert(2)');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
  });
});

describe('load errors', () => {
  it('names the missing file', async () => {
    const d = await mkdtemp(join(tmpdir(), 'dorascope-report-'));
    await expect(loadAnalysis(d)).rejects.toSatisfy((e) => isDorascopeError(e, 'E_ANALYSIS_DIR') && String((e as Error).message).includes('decomposition.arrow'));
    await writeFile(join(d, 'decomposition.arrow'), 'not arrow');
    await expect(loadAnalysis(d)).rejects.toSatisfy((e) => isDorascopeError(e, 'E_ANALYSIS_DIR'));
  });
  it('compare checks labels against folders', async () => {
    const d = await writeAnalysis(grid('a', 'ft', 1, ['q'], [1]));
    await expect(renderCompare({ dirs: [d], labels: ['x', 'y'] })).rejects.toSatisfy((e) => isDorascopeError(e, 'E_USAGE'));
    const out = await renderCompare({ dirs: [d, d], labels: ['FT', 'LoRA'], out: join(d, 'c.html') });
    const html = await readFile(out, 'utf8');
    expect(html).toContain('FT');
    expect(html.length).toBeGreaterThan(3_000_000); // plotly.js inlined
  });
});

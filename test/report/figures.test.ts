import { describe, expect, it } from 'vitest';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAnalysis } from '../../src/report/load.js';
import { buildFigures, renderCompare, renderReport } from '../../src/report/render.js';
import { escapeHtml, jsonForScript } from '../../src/report/html.js';
import { hoverText } from '../../src/report/figures/common.js';
import { isDorascopeError } from '../../src/errors.js';
import { grid, ols, writeAnalysis } from './helpers.js';

type Button = { label: string; args: [Record<string, unknown[]>, { annotations: { text: string }[] }, number[]] };
const buttons = (f: { layout: Record<string, unknown> }): Button[] => (f.layout.updatemenus as { buttons: Button[] }[])[0]!.buttons;

describe('figure specs', () => {
  it('Figure 2: one points trace per run, a module dropdown, all points, and summary.json coefficients', async () => {
    const rows = grid('lora-r8', 'lora', 3, ['q_proj', 'v_proj'], [100, 200]);
    const a = await loadAnalysis(await writeAnalysis(rows));
    expect(a.rows.length).toBe(12);
    const { figures, table } = buildFigures(a.rows, a.runs);
    const f2 = figures.find((f) => f.id === 'fig2')!;
    const pts = f2.data.filter((t) => (t.meta as { role: string }).role === 'points');
    expect(pts.length).toBe(1); // one run
    expect((pts[0]!.x as number[]).length).toBe(6); // q_proj shown first: 3 layers × 2 steps
    // Two steps → two distinct marker symbols, and one legend key per step.
    expect(new Set((pts[0]!.marker as { symbol: string[] }).symbol).size).toBe(2);
    expect(f2.data.filter((t) => (t.meta as { role: string }).role === 'key').map((t) => t.name)).toEqual(['step 100', 'step 200']);
    // The dropdown: one button per module, each restyling the points and line (traces 0, 1) with its own data.
    const bs = buttons(f2);
    expect(bs.map((b) => b.label)).toEqual(['q_proj', 'v_proj']);
    for (const [k, m] of ['q_proj', 'v_proj'].entries()) {
      const [upd, lay, idx] = bs[k]!.args;
      expect(idx).toEqual([0, 1]);
      const mr = rows.filter((r) => r.module === m);
      expect([...(upd.x![0] as number[])].sort()).toEqual(mr.map((r) => r.dd).sort());
      expect([...(upd.y![0] as number[])].sort()).toEqual(mr.map((r) => r.dm).sort());
      const f = ols(mr.map((r) => r.dd), mr.map((r) => r.dm));
      const [x0, x1] = upd.x![1] as number[];
      const [y0, y1] = upd.y![1] as number[];
      expect(x0).toBe(Math.min(...mr.map((r) => r.dd)));
      expect(x1).toBe(Math.max(...mr.map((r) => r.dd)));
      expect(y0).toBeCloseTo(f.intercept + f.slope * x0!, 12);
      expect((y1! - y0!) / (x1! - x0!)).toBeCloseTo(f.slope, 6);
      expect(lay.annotations[0]!.text).toContain(`lora-r8 · ${m} (n=${mr.length})`);
    }
    expect(table.rows.length).toBe(1);
    expect(table.rows[0]![0]).toBe('lora-r8');
  });

  it('the summary table shows the step/layer views, relative ΔM and the signed magnitude change from summary.json', async () => {
    const dir = await writeAnalysis(grid('ft', 'ft', 3, ['q_proj'], [1, 2]));
    const summary = JSON.parse(await readFile(join(dir, 'summary.json'), 'utf8'));
    const c = (r: number, lo: number, hi: number) => ({ n: 6, n_tensors: 3, r, r_ci95: [lo, hi] });
    const sel = {
      pooled: summary.runs[0].overall,
      layer_step: { within_checkpoint: { ...c(-0.61, -0.9, -0.2), n_checkpoints: 2, per_checkpoint: [] }, step_partialled: c(-0.55, -0.8, -0.1), layer_partialled: c(0.97, 0.9, 0.99) },
      relative: { pooled: { ...summary.runs[0].overall, pearson_r: 0.25, r_ci95: [-0.1, 0.6] }, layer_step: {} },
      magnitude: { final: { step: 2, n: 3, mean_signed_delta_m: -0.01, mean_signed_rel_delta_m: -0.0123, frac_features_shrunk: 0.875, frac_tensors_shrunk: 1 }, per_checkpoint: [] },
    };
    summary.runs[0].detail = { overall: sel, modules: { q_proj: sel } };
    await writeFile(join(dir, 'summary.json'), JSON.stringify(summary));
    const a = await loadAnalysis(dir);
    const { table } = buildFigures(a.rows, a.runs);
    const cell = (name: string) => table.rows[0]![table.columns.indexOf(name)];
    expect(cell('within-checkpoint r')).toBe('-0.610 [-0.900, -0.200]');
    expect(cell('step-partialled r')).toBe('-0.550 [-0.800, -0.100]');
    expect(cell('layer-partialled r')).toBe('0.970 [0.900, 0.990]');
    expect(cell('relative ΔM r')).toBe('0.250 [-0.100, 0.600]');
    expect(cell('signed Δm (final)')).toBe('-1.2%');
    expect(cell('features shrunk (final)')).toBe('87.5%');
    expect(table.notes?.['within-checkpoint r']).toMatch(/Fisher-z/u);
    // A folder written before these statistics existed shows empty cells, not an error.
    const old = await loadAnalysis(await writeAnalysis(grid('ft', 'ft', 3, ['q_proj'], [1, 2])));
    const t2 = buildFigures(old.rows, old.runs).table;
    expect(t2.rows[0]![t2.columns.indexOf('within-checkpoint r')]).toBeNull();
  });

  it('Figure 2 in a compare: runs side by side, each on its own axes, shareable by the page toggle', async () => {
    const a = await loadAnalysis(await writeAnalysis([...grid('ft', 'ft', 2, ['q'], [1, 2]), ...grid('dora', 'dora', 2, ['q'], [1, 2], 9)]));
    const f2 = buildFigures(a.rows, a.runs).figures.find((f) => f.id === 'fig2')!;
    const pts = f2.data.filter((t) => (t.meta as { role: string }).role === 'points');
    expect(pts.map((t) => [t.xaxis, (t.meta as { run: string }).run, (t.x as number[]).length])).toEqual([['x', 'ft', 4], ['x2', 'dora', 4]]);
    // Own axes by default (the paper's panels each have their own); the toggle's links are in layout.meta.
    expect((f2.layout.xaxis2 as { matches?: string }).matches).toBeUndefined();
    expect((f2.layout.yaxis2 as { matches?: string }).matches).toBeUndefined();
    expect((f2.layout.meta as { shareable: Record<string, string> }).shareable).toEqual({ xaxis2: 'x', yaxis2: 'y' });
  });

  it('Figure 3 shows per-layer means at the last step by default, and a button per step', async () => {
    const rows = grid('ft', 'ft', 2, ['q_proj', 'v_proj'], [10, 20]);
    const a = await loadAnalysis(await writeAnalysis(rows));
    const f3 = buildFigures(a.rows, a.runs).figures.find((f) => f.id === 'fig3')!;
    expect(f3.data.length).toBe(2); // ΔM and ΔD for the one run
    const mean = (step: number, layer: number, k: 'dm' | 'dd'): number => {
      const sel = rows.filter((r) => r.step === step && r.layer === layer);
      return (sel[0]![k] + sel[1]![k]) / 2;
    };
    const dm = f3.data.find((t) => (t.meta as { key: string }).key === 'delta_m')!;
    const dd = f3.data.find((t) => (t.meta as { key: string }).key === 'delta_d')!;
    expect(dm.x).toEqual([0, 1]);
    expect((dm.y as number[])[1]).toBeCloseTo(mean(20, 1, 'dm'), 14);
    expect((dd.y as number[])[0]).toBeCloseTo(mean(20, 0, 'dd'), 14);
    const bs = buttons(f3);
    expect(bs.map((b) => b.label)).toEqual(['last checkpoint', 'step 10', 'step 20']);
    const step10 = bs[1]!.args[0];
    expect((step10.y![0] as number[])[1]).toBeCloseTo(mean(10, 1, 'dm'), 14);
    expect((step10.y![1] as number[])[1]).toBeCloseTo(mean(10, 1, 'dd'), 14);
  });

  it('Trajectories: one trace per run and quantity, layers separated by null', async () => {
    const rows = grid('ft', 'ft', 3, ['q'], [1, 2, 3]);
    const a = await loadAnalysis(await writeAnalysis(rows));
    const tr = buildFigures(a.rows, a.runs).figures.find((f) => f.id === 'traj')!;
    expect(tr.data.length).toBe(2);
    const dm = tr.data[0]!;
    expect(dm.x).toEqual([1, 2, 3, null, 1, 2, 3, null, 1, 2, 3]);
    const y = dm.y as (number | null)[];
    expect(y[4]).toBe(rows.find((r) => r.layer === 1 && r.step === 1)!.dm);
    expect(y[3]).toBeNull();
  });

  it('Figure 2 wraps after 4 panels a row: 6 runs are 2 rows of 4 columns, each run on its own axes, taller page', async () => {
    const base = grid('r0', 'lora', 2, ['q_proj'], [1, 2]);
    const runs = ['r0', 'r1', 'r2', 'r3', 'r4', 'r5'];
    const a = await loadAnalysis(await writeAnalysis(runs.flatMap((run) => base.map((r) => ({ ...r, run })))));
    const f2 = buildFigures(a.rows, a.runs).figures.find((f) => f.id === 'fig2')!;
    const layout = f2.layout as { grid: { rows: number; columns: number }; height: number };
    expect([layout.grid.rows, layout.grid.columns]).toEqual([2, 4]);
    expect(layout.height).toBeGreaterThan(560);
    const points = f2.data.filter((t) => (t.meta as { role: string }).role === 'points');
    expect(points.map((t) => t.xaxis)).toEqual(['x', 'x2', 'x3', 'x4', 'x5', 'x6']);
    const one = buildFigures(a.rows.filter((r) => r.run === 'r0'), a.runs.slice(0, 1)).figures.find((f) => f.id === 'fig2')!;
    expect((one.layout as { grid: { rows: number; columns: number } }).grid).toMatchObject({ rows: 1, columns: 1 });
  });

  it('switches to scattergl past 2,000 points per module view', async () => {
    const rows = grid('big', 'dora', 80, ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], Array.from({ length: 20 }, (_, i) => (i + 1) * 10));
    expect(rows.length).toBe(11200);
    const a = await loadAnalysis(await writeAnalysis(rows));
    const f2 = buildFigures(a.rows, a.runs).figures.find((f) => f.id === 'fig2')!;
    expect(buttons(f2).length).toBe(7);
    // 1,600 points per module stays SVG; a compare of 2 runs of that (3,200) goes WebGL.
    expect(f2.data[0]!.type).toBe('scatter');
    const two = buildFigures([...a.rows, ...a.rows.map((r) => ({ ...r, run: 'big2' }))], [...a.runs, { ...a.runs[0]!, run: 'big2' }]);
    const g2 = two.figures.find((f) => f.id === 'fig2')!;
    expect(g2.data.filter((t) => (t.meta as { role: string }).role === 'points').map((t) => t.type)).toEqual(['scattergl', 'scattergl']);
    // 80 layers × 20 steps per run and module: a few traces, not one per layer.
    expect(g2.data.length).toBe(2 * 2 + 20);
    expect(two.figures.find((f) => f.id === 'traj')!.data.length).toBe(4);
  });
});

describe('hover text', () => {
  // Every point of every figure and every dropdown view names run, layer, module, step, ΔM and ΔD; the numbers
  // are checked against means computed here from the rows the test wrote.
  const HOVER = /^run (.+)<br>layer (-?\d+) · (.+)<br>step (\d+)<br>ΔM (\S+) · ΔD (\S+)$/u;
  const close = (shown: string, v: number): boolean => Math.abs(Number(shown) - v) <= Math.abs(v) * 5e-4 + 1e-300;

  it('names run, layer, module, step and both values on every point', async () => {
    const rows = [...grid('ft', 'ft', 3, ['q_proj', 'v_proj'], [10, 20]), ...grid('dora', 'dora', 3, ['q_proj', 'v_proj'], [10, 20], 7)];
    const a = await loadAnalysis(await writeAnalysis(rows));
    const { figures } = buildFigures(a.rows, a.runs);
    const find = (run: string, layer: number, step: number, module?: string) =>
      rows.filter((r) => r.run === run && r.layer === layer && r.step === step && (module === undefined || r.module === module));
    let checked = 0;
    const check = (fig: string, text: unknown[], x: unknown[], y: unknown[], key?: string) => {
      text.forEach((t, i) => {
        if (x[i] === null) { expect(t).toBe(''); return; } // a gap between two layers' lines
        const m = HOVER.exec(String(t));
        expect(m, `${fig} point ${i}: ${String(t)}`).not.toBeNull();
        const [, run, layer, module, step, dm, dd] = m!;
        const sel = module!.startsWith('mean of ') ? find(run!, Number(layer), Number(step)) : find(run!, Number(layer), Number(step), module);
        if (module!.startsWith('mean of ')) expect(module).toBe(`mean of ${sel.length} modules`);
        else expect(sel.length).toBe(1);
        const mdm = sel.reduce((s, r) => s + r.dm, 0) / sel.length, mdd = sel.reduce((s, r) => s + r.dd, 0) / sel.length;
        expect(close(dm!, mdm) && close(dd!, mdd), `${fig} point ${i}: ${String(t)} vs ΔM ${mdm}, ΔD ${mdd}`).toBe(true);
        // The plotted coordinates are the same numbers.
        if (fig === 'fig2') { expect(x[i]).toBe(mdd); expect(y[i]).toBe(mdm); }
        else if (fig === 'traj') { expect(x[i]).toBe(Number(step)); expect(y[i]).toBeCloseTo(key === 'delta_m' ? mdm : mdd, 15); }
        else { expect(x[i]).toBe(Number(layer)); expect(y[i]).toBeCloseTo(key === 'delta_m' ? mdm : mdd, 15); }
        checked++;
      });
    };
    for (const f of figures) {
      for (const t of f.data) {
        const meta = (t.meta ?? {}) as { role?: string; key?: string };
        if (meta.role === 'fit' || meta.role === 'key') { expect(t.hoverinfo).toBe('skip'); continue; }
        expect(t.hoverinfo).toBe('text');
        check(f.id, t.text as unknown[], t.x as unknown[], t.y as unknown[], meta.key);
      }
      // The dropdown views carry their own text (Figure 2: per module; Figure 3: per step).
      const menu = f.layout.updatemenus as { buttons: { args: [Record<string, unknown[][]>] }[] }[] | undefined;
      for (const b of menu?.[0]?.buttons ?? []) {
        const u = b.args[0];
        u.text!.forEach((text, k) => {
          const meta = f.id === 'fig2' ? (u.meta![k] as unknown as { role: string }) : null;
          if (meta?.role === 'fit') return;
          check(f.id, text, u.x![k]!, u.y![k]!, f.id === 'fig3' ? (k % 2 === 0 ? 'delta_m' : 'delta_d') : undefined);
        });
      }
    }
    // fig2: q_proj shown (2 runs × 3 layers × 2 steps) + both modules in the views; fig3: 2 runs × 2 quantities ×
    // 3 layers × (shown + 3 views); traj: 2 runs × 2 quantities × 3 layers × 2 steps.
    expect(checked).toBe(12 + 24 + 48 + 24);
  });

  it('escapes markup in run and module names', () => {
    expect(hoverText('<b>x</b>', 3, 'q&v', 10, 0.5, 0.25)).toBe('run &lt;b&gt;x&lt;/b&gt;<br>layer 3 · q&amp;v<br>step 10<br>ΔM 0.5000 · ΔD 0.2500');
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
    // plotly.js inlined: the partial bundle with the SVG trace types (scripts/build-plotly.mjs), not all of plotly.js.
    expect(html).toContain('partial bundle: scatter, bar.');
    expect(html.length).toBeGreaterThan(1_000_000);
    expect(html.length).toBeLessThan(1_500_000);
  });
});

/**
 * Per-feature distributions (needs rows.arrow from `analyze --per-row`): |m_t − m_0| and 1 − cos for each
 * output feature of one layer at each run's last checkpoint, a dropdown choosing the layer. Means of these are
 * exactly ΔM and ΔD (DoRA paper §3, Eq. 5), so the histograms show what the averages hide.
 *
 * The page gets counts and edges only (binned in Node, src/report/feature-histograms.ts), as Plotly `bar` traces: one
 * per (run, module, quantity), the first module shown and the others a legend click away (their scales differ,
 * so overlaying all would squeeze the small ones). The dropdown restyles the counts and hover of the same
 * traces, so a module toggled in the legend stays toggled across layers.
 */
import { ABOVE, NOT_FINITE, type BinScale } from '../bins.js';
import type { FeatureGroup, FeatureHistograms, Quantity } from '../feature-histograms.js';
import { PALETTE, hoverNum, plotlyText, type Figure } from './common.js';

/** User text inside a hovertemplate: markup entity-escaped, and `%` too, so a name cannot open a `%{…}` field. */
const templateText = (s: string): string => plotlyText(s).replace(/%/g, '&#37;');

const LABEL: Record<Quantity, string> = { dm: '|m_t − m_0|', dcos: '1 − cos' };

/** Bar positions of one scale: the bins, then one bar for "above hi" (bins.ts), with their hover ranges. */
function bars(s: BinScale | null, bins: number): { x: number[]; width: number; range: string[] } {
  if (!s) return { x: [], width: 0, range: [] };
  const x: number[] = [], range: string[] = [];
  for (let k = 0; k < bins; k++) {
    const a = s.edges[k]!, b = s.edges[k + 1]!;
    x.push((a + b) / 2); range.push(`in [${hoverNum(a)}, ${hoverNum(b)}${k === bins - 1 ? ']' : ')'}`);
  }
  const width = (s.hi - s.lo) / bins; // equal bins (bins.ts); one scalar instead of an array per trace
  x.push(s.hi + width / 2); range.push(`above ${hoverNum(s.hi)} (max ${hoverNum(s.max)})`);
  return { x, width, range };
}

export function histogramFigure(id: string, f: FeatureHistograms): Figure {
  const B = f.bins;
  // Each run at its own last step (runs of one folder may stop at different checkpoints).
  const last = new Map<string, number>();
  for (const g of f.groups) last.set(g.run, Math.max(last.get(g.run) ?? -Infinity, g.step));
  const shown = f.groups.filter((g) => g.step === last.get(g.run));
  const runs = [...last.keys()];
  const modules = [...new Set(shown.map((g) => g.module))];
  const layers = [...new Set(shown.map((g) => g.layer))].sort((a, b) => a - b);
  const at = new Map<string, FeatureGroup>(shown.map((g) => [`${g.run}\u0000${g.module}\u0000${g.layer}`, g]));

  const traces: { run: string; module: string; quantity: Quantity; k: number }[] = [];
  for (const run of runs) {
    for (const module of modules) {
      if (!shown.some((g) => g.run === run && g.module === module)) continue;
      const k = traces.length / 2;
      for (const quantity of ['dm', 'dcos'] as const) traces.push({ run, module, quantity, k });
    }
  }

  /** One layer's restyle: per trace its counts (bins + "above") and hover template. */
  const view = (layer: number): { y: number[][]; hovertemplate: string[] } => {
    const y: number[][] = [], hovertemplate: string[] = [];
    for (const t of traces) {
      const g = at.get(`${t.run}\u0000${t.module}\u0000${layer}`);
      const c = g?.[t.quantity];
      const bad = c ? c[B + NOT_FINITE]! : 0;
      y.push(c && f.scales.get(t.module)?.[t.quantity] ? Array.from(c.subarray(0, B + ABOVE + 1)) : []);
      const head = `run ${templateText(t.run)}<br>layer ${layer} · ${templateText(t.module)}<br>step ${last.get(t.run)}<br>`;
      const note = bad > 0 ? `<br>(${bad} of ${g!.rows} features not finite, not shown)` : '';
      hovertemplate.push(g ? `${head}${LABEL[t.quantity]} %{customdata}: %{y} features${note}<extra></extra>` : `${head}no features<extra></extra>`);
    }
    return { y, hovertemplate };
  };
  const views = layers.map(view);
  const v0 = views[0] ?? { y: [], hovertemplate: [] };
  const data: Record<string, unknown>[] = traces.map((t, i) => {
    const b = bars(f.scales.get(t.module)?.[t.quantity] ?? null, B);
    return {
      type: 'bar', name: `${plotlyText(t.run)} · ${plotlyText(t.module)}`, legendgroup: `${t.run}\u0000${t.module}`,
      showlegend: t.quantity === 'dm', visible: t.module === modules[0] ? true : 'legendonly', opacity: 0.6,
      marker: { color: PALETTE[t.k % PALETTE.length] }, x: b.x, width: b.width, customdata: b.range,
      y: v0.y[i], hovertemplate: v0.hovertemplate[i], meta: { run: t.run, module: t.module, quantity: t.quantity },
      ...(t.quantity === 'dcos' ? { xaxis: 'x2', yaxis: 'y2' } : {}),
    };
  });
  const idx = traces.map((_, i) => i);
  const buttons = layers.map((l, j) => ({ label: `layer ${l}`, method: 'restyle', args: [views[j], idx] }));
  const steps = [...new Set(runs.map((r) => last.get(r)))];
  return { id, title: `Per-feature changes in one layer at ${steps.length === 1 ? `step ${steps[0]}` : 'each run\'s last step'}: |m_t − m_0| and 1 − cos per output feature `
    + `(${B} bins per module, the last bar counts features above the 99.9th percentile; click the legend for other modules)`, data, layout: {
    barmode: 'overlay', bargap: 0, grid: { rows: 1, columns: 2, pattern: 'independent' }, height: 420,
    xaxis: { title: { text: '|m_t − m_0| (weight units)' } }, xaxis2: { title: { text: '1 − cos' } },
    yaxis: { title: { text: 'features' } }, yaxis2: { title: { text: 'features' } },
    updatemenus: [{ buttons, x: 0, y: 1.2, xanchor: 'left' }] } };
}

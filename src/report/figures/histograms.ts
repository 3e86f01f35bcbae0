/**
 * Per-feature distributions (needs rows.arrow from `analyze --per-row`): |m_t − m_0| and 1 − cos for each
 * output feature of one layer at the last checkpoint, a dropdown choosing the layer. Means of these are
 * exactly ΔM and ΔD (DoRA paper §3, Eq. 5), so the histograms show what the averages hide.
 */
import type { FeatureRows } from '../load.js';
import { PALETTE, plotlyText, type Figure } from './common.js';

/** User text inside a hovertemplate: markup entity-escaped, and `%` too, so a name cannot open a `%{…}` field. */
const templateText = (s: string): string => plotlyText(s).replace(/%/g, '&#37;');

export function histogramFigure(id: string, f: FeatureRows): Figure {
  let last = -Infinity;
  for (const s of f.step) last = Math.max(last, s);
  const runs = [...new Set(f.run)];
  const layers = [...new Set(f.layer)].sort((a, b) => a - b);
  const data: Record<string, unknown>[] = [];
  for (const layer of layers) {
    runs.forEach((run, k) => {
      const dm: number[] = [], dc: number[] = [];
      for (let i = 0; i < f.step.length; i++) {
        if (f.step[i] === last && f.layer[i] === layer && f.run[i] === run) { dm.push(f.dm[i]!); dc.push(f.dcos[i]!); }
      }
      const color = PALETTE[k % PALETTE.length];
      const common = { type: 'histogram', opacity: 0.6, visible: layer === layers[0], meta: { layer, run }, marker: { color } };
      // A bar is a bin of features, not one point: its hover names run, layer, step, the bin and the count.
      const head = `run ${templateText(run)}<br>layer ${layer}<br>step ${last}<br>`;
      data.push({ ...common, name: `${plotlyText(run)} |m_t − m_0|`, x: dm, hovertemplate: `${head}|m_t − m_0| %{x}: %{y} features<extra></extra>` });
      data.push({ ...common, name: `${plotlyText(run)} 1 − cos`, x: dc, xaxis: 'x2', yaxis: 'y2', hovertemplate: `${head}1 − cos %{x}: %{y} features<extra></extra>` });
    });
  }
  const buttons = layers.map((l) => ({ label: `layer ${l}`, method: 'restyle',
    args: ['visible', data.map((t) => (t.meta as { layer: number }).layer === l)] }));
  return { id, title: `Per-feature changes at step ${last} for one layer (|m_t − m_0| and 1 − cos per output feature)`, data, layout: {
    barmode: 'overlay', grid: { rows: 1, columns: 2, pattern: 'independent' }, height: 400,
    xaxis: { title: { text: '|m_t − m_0|' } }, xaxis2: { title: { text: '1 − cos' } }, yaxis: { title: { text: 'features' } },
    updatemenus: [{ buttons, x: 0, y: 1.2, xanchor: 'left' }] } };
}

/**
 * The reproduction's own figures as Plotly specs (plain data, testable) and a self-contained offline
 * HTML page with plotly.js inlined from the npm package (no network request, like the main report):
 * the rank sweep (a smaller version of the paper's Figure 5: validation metric against rank for LoRA
 * and DoRA) and the pretraining curves of the bases (held-out loss against step).
 */
import { writeFileAtomic } from '../io/atomic.js';
import { plotlyBundle } from '../report/plotly-bundle.js';
import type { RankPoint } from './results.js';
import type { EvalPoint } from './metrics.js';

export interface PlotlyFigure {
  readonly data: readonly Record<string, unknown>[];
  readonly layout: Record<string, unknown>;
}

/** Okabe–Ito colours (colour-blind safe), as in the report. */
const COLOURS = { lora: '#E69F00', dora: '#0072B2' } as const;

export function rankFigure(points: readonly RankPoint[], metricName: string): PlotlyFigure {
  const data = (['lora', 'dora'] as const).map((method) => {
    const pts = points.filter((p) => p.method === method).sort((a, b) => a.rank - b.rank);
    return {
      type: 'scatter',
      mode: 'lines+markers',
      name: method === 'lora' ? 'LoRA' : 'DoRA',
      x: pts.map((p) => p.rank),
      y: pts.map((p) => p.metric),
      text: pts.map((p) => `${p.run}: ${metricName} ${p.metric ?? 'n/a'}, validation loss ${p.evalLoss ?? 'n/a'}`),
      hoverinfo: 'text',
      line: { color: COLOURS[method] },
      marker: { color: COLOURS[method], size: 9, symbol: method === 'lora' ? 'circle' : 'diamond' },
    };
  });
  return {
    data,
    layout: {
      title: { text: `Validation ${metricName} against rank (paper Figure 5, smaller)` },
      xaxis: { title: { text: 'rank r' }, type: 'log', tickvals: [...new Set(points.map((p) => p.rank))].sort((a, b) => a - b) },
      yaxis: { title: { text: metricName } },
      legend: { orientation: 'h' },
    },
  };
}

/** Held-out loss against step while pretraining, one line per base: has it flattened? */
export function pretrainFigure(curves: readonly { label: string; curve: readonly EvalPoint[] }[]): PlotlyFigure {
  return {
    data: curves.map((c) => ({
      type: 'scatter', mode: 'lines+markers', name: c.label,
      x: c.curve.map((p) => p.step), y: c.curve.map((p) => p.evalLoss),
    })),
    layout: {
      title: { text: 'Pretraining: held-out loss against step' },
      xaxis: { title: { text: 'step' } },
      yaxis: { title: { text: 'held-out loss (nats per byte)' } },
      legend: { orientation: 'h' },
    },
  };
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** JSON safe inside a <script> element: `<` escaped so no `</script>` can close it early. */
function scriptJson(v: unknown): string {
  return JSON.stringify(v).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

export async function writeFigurePage(path: string, title: string, intro: string, fig: PlotlyFigure): Promise<void> {
  // The smallest partial plotly.js bundle that draws these traces (scripts/build-plotly.mjs), as the report inlines.
  const plotly = await plotlyBundle(new Set(fig.data.map((t) => (typeof t.type === 'string' ? t.type : 'scatter'))));
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:">
<style>body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:60rem}#fig{height:32rem}</style></head>
<body><h1>${escapeHtml(title)}</h1>
<p>${escapeHtml(intro)}</p>
<div id="fig"></div>
<script>${plotly.replace(/<\/script/gi, '<\\/script')}</script>
<script>const fig = ${scriptJson(fig)}; Plotly.newPlot('fig', fig.data, fig.layout, {responsive: true, displaylogo: false});</script>
</body></html>
`;
  await writeFileAtomic(path, html);
}

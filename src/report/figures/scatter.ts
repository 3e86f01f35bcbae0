/**
 * The paper's Figure 2 (DoRA, arXiv 2402.09353 §3): ΔD on x against ΔM on y for one run and module,
 * one colour per layer, one marker symbol per checkpoint step, and the least-squares line of ΔM on ΔD
 * taken from summary.json, with r, ρ and the slope with their 95% intervals in the title.
 */
import type { DecompRow, Stats } from '../load.js';
import { AXIS_NOTE, GL_THRESHOLD, PALETTE, SYMBOLS, fmt, plotlyText, type Figure } from './common.js';

export interface ScatterPanel { run: string; module: string; rows: DecompRow[]; stats: Stats | null }

export function statsTitle(run: string, module: string, s: Stats | null): string {
  if (!s) return `${run} · ${module}`;
  const ci = (c: [number, number] | null): string => (c ? ` [${fmt(c[0])}, ${fmt(c[1])}]` : '');
  return `${run} · ${module} (n=${s.n}): r=${fmt(s.pearson_r)}${ci(s.r_ci95)}, ρ=${fmt(s.spearman_rho)}, slope=${fmt(s.slope)}${ci(s.slope_ci95)}`;
}

/** One figure with one subplot per panel, side by side; `sharedAxes` matches every x and y range. */
export function scatterFigure(id: string, panels: ScatterPanel[], sharedAxes = true): Figure {
  const total = panels.reduce((a, p) => a + p.rows.length, 0);
  const type = total > GL_THRESHOLD ? 'scattergl' : 'scatter';
  const data: Record<string, unknown>[] = [];
  const layout: Record<string, unknown> = {
    grid: { rows: 1, columns: Math.max(1, panels.length), pattern: 'independent' },
    annotations: [] as unknown[], hovermode: 'closest', showlegend: true, height: 520, margin: { t: 110 },
    legend: { title: { text: 'layer' } },
  };
  const seenLayers = new Set<number>();
  panels.forEach((p, i) => {
    const ax = i === 0 ? '' : String(i + 1);
    const steps = [...new Set(p.rows.map((r) => r.step))].sort((a, b) => a - b);
    const layers = [...new Set(p.rows.map((r) => r.layer))].sort((a, b) => a - b);
    for (const layer of layers) {
      const pts = p.rows.filter((r) => r.layer === layer);
      data.push({
        type, mode: 'markers', name: `layer ${layer}`, legendgroup: `L${layer}`, showlegend: !seenLayers.has(layer),
        xaxis: `x${ax}`, yaxis: `y${ax}`,
        x: pts.map((r) => r.delta_d), y: pts.map((r) => r.delta_m),
        marker: { color: PALETTE[((layer % PALETTE.length) + PALETTE.length) % PALETTE.length], size: 7,
          symbol: pts.map((r) => SYMBOLS[steps.indexOf(r.step) % SYMBOLS.length]) },
        // Plotly reads a small markup subset in hover text, so user strings are entity-escaped first.
        text: pts.map((r) => `run ${plotlyText(r.run)}<br>layer ${r.layer} · ${plotlyText(r.module)}<br>step ${r.step}<br>ΔD ${r.delta_d.toPrecision(4)} · ΔM ${r.delta_m.toPrecision(4)}`),
        hoverinfo: 'text',
      });
      seenLayers.add(layer);
    }
    const s = p.stats;
    if (s && s.slope !== null && s.intercept !== null && p.rows.length > 0) {
      const xs = p.rows.map((r) => r.delta_d);
      const x0 = Math.min(...xs), x1 = Math.max(...xs);
      data.push({ type: 'scatter', mode: 'lines', name: 'least squares', showlegend: false, xaxis: `x${ax}`, yaxis: `y${ax}`,
        x: [x0, x1], y: [s.intercept + s.slope * x0, s.intercept + s.slope * x1], line: { color: '#444', dash: 'dash' },
        hoverinfo: 'skip', meta: { slope: s.slope, intercept: s.intercept } });
    }
    layout[`xaxis${ax}`] = { title: { text: 'ΔD (1 − cos)' }, ...(sharedAxes && i > 0 ? { matches: 'x' } : {}) };
    layout[`yaxis${ax}`] = { title: { text: 'ΔM (|m_t − m_0|)' }, ...(sharedAxes && i > 0 ? { matches: 'y' } : {}) };
    // Three short lines (run and n; r and ρ; slope): side-by-side titles must not overlap.
    const title = statsTitle(p.run, p.module, s).split(/(?<=\)): |, (?=slope=)/u).map(plotlyText).join('<br>');
    (layout.annotations as unknown[]).push({ text: title, showarrow: false,
      xref: `x${ax} domain`, yref: `y${ax} domain`, x: 0.5, y: 1.02, yanchor: 'bottom', font: { size: 11 } });
  });
  return { id, title: `Figure 2: ΔM vs ΔD — ${panels.map((p) => `${p.run}/${p.module}`).join(', ')}. ${AXIS_NOTE}`, data, layout };
}

/**
 * The paper's Figure 2 (DoRA, arXiv 2402.09353 §3): ΔD on x against ΔM on y for each run and module,
 * colour by layer, one marker symbol per checkpoint step, and the least-squares line of ΔM on ΔD
 * taken from summary.json, with r, ρ and the slope with their 95% intervals above each subplot.
 *
 * One figure, the runs side by side, a dropdown choosing the module. Built that way for speed at 70B scale
 * (80 layers × 7 modules × 20 checkpoints), measured in headless software-rendered Chromium (bench/report.ts):
 * - one trace per run (colour and symbol are per-point arrays), not one per layer: 160 traces per module
 *   figure made a two-run compare take ~10 s;
 * - one figure for all modules, not one per module: each WebGL figure costs a context (≈1 s to create in
 *   software rendering, and past ~8 figures the browser drops the oldest, leaving blank plots);
 * - one module at a time, not a grid of all: software WebGL cost grows with subplots × canvas area.
 * The other modules' data ride in the dropdown's buttons (Plotly `update`), so they draw only when chosen.
 */
import type { DecompRow, Stats } from '../load.js';
import { AXIS_NOTE, GL_THRESHOLD, LAYER_SCALE, SYMBOLS, fmt, hoverText, integerTicks, plotlyText, type Figure } from './common.js';

export interface ScatterPanel { run: string; module: string; rows: DecompRow[]; stats: Stats | null }
/** Panels per row of Figure 2, and the height each further row adds (px). */
export const PANELS_PER_ROW = 4;
const ROW_HEIGHT = 460;

/** One module's row of panels: one per run (null where that run has no such module). */
export interface ScatterModule { module: string; panels: (ScatterPanel | null)[] }

export function statsTitle(run: string, module: string, s: Stats | null): string {
  if (!s) return `${run} · ${module}`;
  const ci = (c: [number, number] | null): string => (c ? ` [${fmt(c[0])}, ${fmt(c[1])}]` : '');
  return `${run} · ${module} (n=${s.n}): r=${fmt(s.pearson_r)}${ci(s.r_ci95)}, ρ=${fmt(s.spearman_rho)}, slope=${fmt(s.slope)}${ci(s.slope_ci95)}`;
}

/** The least-squares line over the panel's x range (empty when summary.json has no fit). */
function fitLine(p: ScatterPanel | null): { x: number[]; y: number[]; slope: number | null; intercept: number | null } {
  const s = p?.stats;
  if (!p || !s || s.slope === null || s.intercept === null || p.rows.length === 0) return { x: [], y: [], slope: null, intercept: null };
  let x0 = Infinity, x1 = -Infinity;
  for (const r of p.rows) { x0 = Math.min(x0, r.delta_d); x1 = Math.max(x1, r.delta_d); }
  return { x: [x0, x1], y: [s.intercept + s.slope * x0, s.intercept + s.slope * x1], slope: s.slope, intercept: s.intercept };
}

/**
 * `modules[i].panels[j]` is module i, run j. Traces: for each run j, its points (index 2j) and its fitted line
 * (2j + 1), then legend-only keys for the step symbols. The traces hold the first module; the dropdown's
 * button k restyles traces 0…2·runs−1 with module k's data and swaps the subplot titles.
 * Each panel has its own axes by default, as in the paper's Figure 2 (full fine-tuning moves weights far more than
 * LoRA, so axes shared with it squash the LoRA panels into a corner). `layout.meta.shareable` names the axes the
 * page's "shared axes" toggle links to the first panel's; `sharedAxes` links them from the start.
 */
export function scatterFigure(id: string, runs: string[], modules: ScatterModule[], sharedAxes = false, active = 0): Figure {
  const all = modules.flatMap((m) => m.panels).filter((p): p is ScatterPanel => p !== null);
  const perView = modules.map((m) => m.panels.reduce((a, p) => a + (p?.rows.length ?? 0), 0));
  const type = Math.max(0, ...perView) > GL_THRESHOLD ? 'scattergl' : 'scatter';
  // Symbols and colours mean the same in every panel and module: steps and the layer range are taken over all.
  const steps = [...new Set(all.flatMap((p) => p.rows.map((r) => r.step)))].sort((a, b) => a - b);
  const symbolOf = new Map(steps.map((s, k) => [s, SYMBOLS[k % SYMBOLS.length]!]));
  let lmin = Infinity, lmax = -Infinity;
  for (const p of all) for (const r of p.rows) { lmin = Math.min(lmin, r.layer); lmax = Math.max(lmax, r.layer); }
  if (!Number.isFinite(lmin)) { lmin = 0; lmax = 1; }

  // Per module: the restyle payload (one array per trace) and the subplot titles.
  const views = modules.map((m) => {
    const points = m.panels.map((p) => {
      const rs = p?.rows ?? [];
      return {
        x: rs.map((r) => r.delta_d), y: rs.map((r) => r.delta_m),
        // Plotly reads a small markup subset in hover text, so user strings are entity-escaped (in hoverText).
        text: rs.map((r) => hoverText(r.run, r.layer, r.module, r.step, r.delta_m, r.delta_d)),
        color: rs.map((r) => r.layer), symbol: rs.map((r) => symbolOf.get(r.step)!),
      };
    });
    const fits = m.panels.map(fitLine);
    const restyle = {
      x: points.flatMap((p, j) => [p.x, fits[j]!.x]), y: points.flatMap((p, j) => [p.y, fits[j]!.y]),
      text: points.flatMap((p) => [p.text, []]),
      'marker.color': points.flatMap((p) => [p.color, '#444']), 'marker.symbol': points.flatMap((p) => [p.symbol, 'circle']),
      meta: m.panels.flatMap((p, j) => [{ role: 'points', run: runs[j], module: m.module, n: p?.rows.length ?? 0 },
        { role: 'fit', run: runs[j], module: m.module, slope: fits[j]!.slope, intercept: fits[j]!.intercept }]),
    };
    const annotations = runs.map((run, j) => {
      const ax = j === 0 ? '' : String(j + 1);
      // Three short lines (run and n; r and ρ; slope): side-by-side titles must not overlap.
      const p = m.panels[j];
      const title = p ? statsTitle(run, m.module, p.stats).split(/(?<=\)): |, (?=slope=)/u).map(plotlyText).join('<br>') : `${plotlyText(run)} · ${plotlyText(m.module)}: no data`;
      return { text: title, showarrow: false, xref: `x${ax} domain`, yref: `y${ax} domain`, x: 0.5, y: 1.02, yanchor: 'bottom', font: { size: 11 } };
    });
    return { restyle, annotations, points, fits };
  });

  const v = views[active]!;
  const data: Record<string, unknown>[] = [];
  runs.forEach((run, j) => {
    const ax = j === 0 ? '' : String(j + 1);
    const p = v.points[j]!;
    data.push({ type, mode: 'markers', name: plotlyText(run), showlegend: false, xaxis: `x${ax}`, yaxis: `y${ax}`,
      x: p.x, y: p.y, text: p.text, hoverinfo: 'text',
      marker: { color: p.color, colorscale: LAYER_SCALE, cmin: lmin, cmax: lmax === lmin ? lmin + 1 : lmax, size: 7, symbol: p.symbol,
        showscale: j === 0, colorbar: { title: { text: 'layer' }, thickness: 12, ...integerTicks(lmin, lmax) } },
      meta: (v.restyle.meta)[2 * j] });
    const f = v.fits[j]!;
    data.push({ type: 'scatter', mode: 'lines', name: 'least squares', showlegend: false, xaxis: `x${ax}`, yaxis: `y${ax}`,
      x: f.x, y: f.y, line: { color: '#444', dash: 'dash' }, hoverinfo: 'skip', meta: (v.restyle.meta)[2 * j + 1] });
  });
  // Legend-only keys for the step symbols (one empty point each; SVG, so they cost next to nothing).
  for (const s of steps) {
    data.push({ type: 'scatter', mode: 'markers', name: `step ${s}`, x: [null], y: [null], hoverinfo: 'skip',
      marker: { symbol: symbolOf.get(s), color: '#555', size: 8 }, meta: { role: 'key', step: s } });
  }
  const traces = runs.flatMap((_, j) => [2 * j, 2 * j + 1]);
  // At most PANELS_PER_ROW panels side by side, row after row (Plotly numbers the axes row-major): ten runs in one
  // row leave each panel too narrow for its three-line title.
  const columns = Math.max(1, Math.min(runs.length, PANELS_PER_ROW)), rows = Math.max(1, Math.ceil(runs.length / PANELS_PER_ROW));
  const height = 560 + (rows - 1) * ROW_HEIGHT;
  const layout: Record<string, unknown> = {
    grid: { rows, columns, pattern: 'independent', ...(rows > 1 ? { ygap: 0.35 } : {}) },
    annotations: v.annotations, hovermode: 'closest', showlegend: true, height, margin: { t: 110 },
    legend: { title: { text: 'step' }, orientation: 'h', y: rows > 1 ? -0.06 : -0.2, yanchor: 'top' },
    // exportViews: image export draws each module (src/report/export.ts); shareable: the page's axis toggle.
    meta: { exportViews: true, shareable: Object.fromEntries(runs.slice(1).flatMap((_, j) => [[`xaxis${j + 2}`, 'x'], [`yaxis${j + 2}`, 'y']])) },
    // The dropdown sits ~92 px above the plot area whatever the height (paper coordinates scale with it; 190 px of margins).
    updatemenus: [{ active, x: 0, y: 1 + 92 / (height - 190), xanchor: 'left', yanchor: 'bottom',
      buttons: modules.map((m, k) => ({ label: m.module, method: 'update', args: [views[k]!.restyle, { annotations: views[k]!.annotations }, traces] })) }],
  };
  runs.forEach((_, j) => {
    const ax = j === 0 ? '' : String(j + 1);
    layout[`xaxis${ax}`] = { title: { text: 'ΔD (1 − cos)' }, ...(sharedAxes && j > 0 ? { matches: 'x' } : {}) };
    layout[`yaxis${ax}`] = { title: { text: 'ΔM (|m_t − m_0|)' }, ...(sharedAxes && j > 0 ? { matches: 'y' } : {}) };
  });
  return { id, title: `Figure 2: ΔM vs ΔD for each run, one module at a time (dropdown: ${modules.map((m) => m.module).join(', ')}). ${AXIS_NOTE}`, data, layout };
}

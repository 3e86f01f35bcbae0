/**
 * The paper's Figure 3: ΔM and ΔD per layer (x = layer) for each run at one checkpoint — the last one
 * by default, as in the paper; the page offers a dropdown over the other steps.
 */
import type { DecompRow } from '../load.js';
import { AXIS_NOTE, PALETTE, plotlyText, type Figure } from './common.js';

/** Mean of a quantity over the modules of one (run, layer, step). */
function perLayer(rows: DecompRow[], key: 'delta_m' | 'delta_d'): { x: number[]; y: number[] } {
  const acc = new Map<number, [number, number]>();
  for (const r of rows) { const a = acc.get(r.layer) ?? [0, 0]; a[0] += r[key]; a[1] += 1; acc.set(r.layer, a); }
  const x = [...acc.keys()].sort((a, b) => a - b);
  return { x, y: x.map((l) => acc.get(l)![0] / acc.get(l)![1]) };
}

export function layersFigure(id: string, rows: DecompRow[], step?: number): Figure {
  const runs = [...new Set(rows.map((r) => r.run))];
  const steps = [...new Set(rows.map((r) => r.step))].sort((a, b) => a - b);
  const chosen = step ?? steps[steps.length - 1];
  const data: Record<string, unknown>[] = [];
  const buttons: unknown[] = [];
  steps.forEach((st) => {
    runs.forEach((run, i) => {
      const sel = rows.filter((r) => r.run === run && r.step === st);
      const color = PALETTE[i % PALETTE.length];
      for (const [key, ax, dash] of [['delta_m', 'y', 'solid'], ['delta_d', 'y2', 'dot']] as const) {
        const { x, y } = perLayer(sel, key);
        data.push({ type: 'scatter', mode: 'lines+markers', name: `${plotlyText(run)} ${key === 'delta_m' ? 'ΔM' : 'ΔD'}`,
          x, y, xaxis: key === 'delta_m' ? 'x' : 'x2', yaxis: ax, visible: st === chosen, line: { color, dash },
          meta: { step: st, run, key } });
      }
    });
    buttons.push({ label: `step ${st}`, method: 'restyle', args: ['visible', data.map(() => false)] });
  });
  // Each button shows only its own step's traces (filled in now that every trace exists).
  buttons.forEach((b, k) => {
    (b as { args: unknown[] }).args[1] = data.map((t) => (t.meta as { step: number }).step === steps[k]);
  });
  const layout = {
    grid: { rows: 1, columns: 2, pattern: 'independent' }, height: 420,
    xaxis: { title: { text: 'layer' } }, yaxis: { title: { text: 'ΔM (mean over modules)' } },
    xaxis2: { title: { text: 'layer' } }, yaxis2: { title: { text: 'ΔD (mean over modules)' } },
    updatemenus: [{ buttons, active: steps.indexOf(chosen!), x: 0, y: 1.2, xanchor: 'left' }],
  };
  return { id, title: `Figure 3: ΔM and ΔD per layer at a checkpoint (default: last). ${AXIS_NOTE}`, data, layout };
}

/** ΔM and ΔD against step, one line per (run, layer), averaged over modules. */
export function trajectoryFigure(id: string, rows: DecompRow[]): Figure {
  const data: Record<string, unknown>[] = [];
  const keys = [...new Set(rows.map((r) => `${r.run}\u0000${r.layer}`))];
  for (const k of keys) {
    const [run, layerS] = k.split('\u0000') as [string, string];
    const layer = Number(layerS);
    const sel = rows.filter((r) => r.run === run && r.layer === layer);
    const steps = [...new Set(sel.map((r) => r.step))].sort((a, b) => a - b);
    const mean = (st: number, key: 'delta_m' | 'delta_d'): number => {
      const s = sel.filter((r) => r.step === st);
      return s.reduce((a, r) => a + r[key], 0) / s.length;
    };
    const color = PALETTE[((layer % PALETTE.length) + PALETTE.length) % PALETTE.length];
    const name = `${plotlyText(run)} layer ${layer}`;
    data.push({ type: 'scatter', mode: 'lines', name, legendgroup: name, x: steps, y: steps.map((s) => mean(s, 'delta_m')), line: { color } });
    data.push({ type: 'scatter', mode: 'lines', name, legendgroup: name, showlegend: false, xaxis: 'x2', yaxis: 'y2',
      x: steps, y: steps.map((s) => mean(s, 'delta_d')), line: { color } });
  }
  return { id, title: `Trajectories: ΔM and ΔD against step. ${AXIS_NOTE}`, data, layout: {
    grid: { rows: 1, columns: 2, pattern: 'independent' }, height: 420,
    xaxis: { title: { text: 'step' } }, yaxis: { title: { text: 'ΔM' } }, xaxis2: { title: { text: 'step' } }, yaxis2: { title: { text: 'ΔD' } } } };
}

/**
 * The paper's Figure 3 (ΔM and ΔD per layer at one checkpoint) and the trajectories (ΔM and ΔD against step).
 * Both average over the modules of a (run, layer, step). One trace per run and quantity keeps the page fast
 * at 80 layers: Figure 3's dropdown swaps the traces' data instead of toggling one trace per step, and the
 * trajectories draw every layer's line in one trace, broken by `null` between layers.
 */
import type { DecompRow } from '../load.js';
import { AXIS_NOTE, PALETTE, hoverText, integerTicks, plotlyText, type Figure } from './common.js';

interface Cell { dm: number; dd: number; n: number; modules: Set<string> }

/** Sums per (run, step, layer) in one pass: Map run → step → layer → sums. */
function cells(rows: DecompRow[]): Map<string, Map<number, Map<number, Cell>>> {
  const out = new Map<string, Map<number, Map<number, Cell>>>();
  for (const r of rows) {
    let byStep = out.get(r.run);
    if (!byStep) out.set(r.run, byStep = new Map());
    let byLayer = byStep.get(r.step);
    if (!byLayer) byStep.set(r.step, byLayer = new Map());
    let c = byLayer.get(r.layer);
    if (!c) byLayer.set(r.layer, c = { dm: 0, dd: 0, n: 0, modules: new Set() });
    c.dm += r.delta_m; c.dd += r.delta_d; c.n += 1; c.modules.add(r.module);
  }
  return out;
}

const meanOf = (c: Cell): string => (c.modules.size === 1 ? [...c.modules][0]! : `mean of ${c.modules.size} modules`);
const sorted = <T extends number>(it: Iterable<T>): T[] => [...it].sort((a, b) => a - b);

/** x = layer; ΔM and ΔD means with their hover text, for one run at one step (empty when the run lacks it). */
function atStep(run: string, byLayer: Map<number, Cell> | undefined, step: number) {
  const x: number[] = [], dm: number[] = [], dd: number[] = [], text: string[] = [];
  for (const l of sorted(byLayer?.keys() ?? [])) {
    const c = byLayer!.get(l)!;
    x.push(l); dm.push(c.dm / c.n); dd.push(c.dd / c.n);
    text.push(hoverText(run, l, meanOf(c), step, c.dm / c.n, c.dd / c.n));
  }
  return { x, dm, dd, text };
}

/**
 * Figure 3. The default view is each run's last checkpoint, as in the paper (runs in a compare may end at
 * different steps); the dropdown also offers every step. `step` picks another default.
 */
export function layersFigure(id: string, rows: DecompRow[], step?: number): Figure {
  const c = cells(rows);
  const runs = [...c.keys()];
  const steps = sorted(new Set(rows.map((r) => r.step)));
  // A view: for each run, the step it shows.
  const views: { label: string; stepOf: (run: string) => number }[] = [
    { label: 'last checkpoint', stepOf: (run) => { let m = -Infinity; for (const s of c.get(run)!.keys()) m = Math.max(m, s); return m; } },
    ...steps.map((s) => ({ label: `step ${s}`, stepOf: () => s })),
  ];
  const active = step === undefined ? 0 : Math.max(0, steps.indexOf(step) + 1);
  const traceData = (v: (typeof views)[number]) => runs.map((run) => {
    const s = v.stepOf(run);
    return { step: s, ...atStep(run, c.get(run)!.get(s), s) };
  });
  // Restyle arguments: one array per trace, traces ordered run by run as (ΔM, ΔD).
  const restyle = (v: (typeof views)[number]) => {
    const t = traceData(v);
    return { x: t.flatMap((d) => [d.x, d.x]), y: t.flatMap((d) => [d.dm, d.dd]), text: t.flatMap((d) => [d.text, d.text]) };
  };
  const first = traceData(views[active]!);
  const data: Record<string, unknown>[] = [];
  runs.forEach((run, i) => {
    const d = first[i]!;
    const color = PALETTE[i % PALETTE.length];
    data.push({ type: 'scatter', mode: 'lines+markers', name: `${plotlyText(run)} ΔM`, x: d.x, y: d.dm, text: d.text, hoverinfo: 'text',
      line: { color }, meta: { run, key: 'delta_m' } });
    data.push({ type: 'scatter', mode: 'lines+markers', name: `${plotlyText(run)} ΔD`, x: d.x, y: d.dd, text: d.text, hoverinfo: 'text',
      xaxis: 'x2', yaxis: 'y2', line: { color, dash: 'dot' }, meta: { run, key: 'delta_d' } });
  });
  const buttons = views.map((v) => ({ label: v.label, method: 'restyle', args: [restyle(v)] }));
  let lmin = Infinity, lmax = -Infinity;
  for (const r of rows) { lmin = Math.min(lmin, r.layer); lmax = Math.max(lmax, r.layer); }
  const layerAxis = { title: { text: 'layer' }, ...(Number.isFinite(lmin) ? integerTicks(lmin, lmax) : {}) };
  const layout = {
    grid: { rows: 1, columns: 2, pattern: 'independent' }, height: 420, hovermode: 'closest',
    xaxis: layerAxis, yaxis: { title: { text: 'ΔM (mean over modules)' } },
    xaxis2: layerAxis, yaxis2: { title: { text: 'ΔD (mean over modules)' } },
    updatemenus: [{ buttons, active, x: 0, y: 1.2, xanchor: 'left' }],
  };
  return { id, title: `Figure 3: ΔM and ΔD per layer at a checkpoint (default: each run's last). ${AXIS_NOTE}`, data, layout };
}

/**
 * ΔM and ΔD against step, one line per (run, layer), averaged over modules. Each run is one trace per
 * quantity (colour = run), its layers' lines separated by nulls, drawn as SVG lines without markers: one
 * path per trace, so 80 layers × 20 checkpoints cost no more than a single line (hover names the layer).
 */
export function trajectoryFigure(id: string, rows: DecompRow[]): Figure {
  const data: Record<string, unknown>[] = [];
  [...cells(rows).entries()].forEach(([run, byStep], i) => {
    const steps = sorted(byStep.keys());
    const layers = sorted(new Set([...byStep.values()].flatMap((m) => [...m.keys()])));
    const x: (number | null)[] = [], dm: (number | null)[] = [], dd: (number | null)[] = [], text: string[] = [];
    for (const l of layers) {
      if (x.length > 0) { x.push(null); dm.push(null); dd.push(null); text.push(''); }
      for (const s of steps) {
        const cell = byStep.get(s)!.get(l);
        if (!cell) continue;
        x.push(s); dm.push(cell.dm / cell.n); dd.push(cell.dd / cell.n);
        text.push(hoverText(run, l, meanOf(cell), s, cell.dm / cell.n, cell.dd / cell.n));
      }
    }
    const common = { type: 'scatter', mode: 'lines', x, text, hoverinfo: 'text', connectgaps: false, line: { color: PALETTE[i % PALETTE.length], width: 1 } };
    data.push({ ...common, name: plotlyText(run), legendgroup: run, y: dm, meta: { run, key: 'delta_m' } });
    data.push({ ...common, name: plotlyText(run), legendgroup: run, showlegend: false, xaxis: 'x2', yaxis: 'y2', y: dd, meta: { run, key: 'delta_d' } });
  });
  return { id, title: `Trajectories: ΔM and ΔD against step, one line per layer. ${AXIS_NOTE}`, data, layout: {
    grid: { rows: 1, columns: 2, pattern: 'independent' }, height: 420, hovermode: 'closest',
    legend: { title: { text: 'run' }, orientation: 'h', y: -0.2 },
    xaxis: { title: { text: 'step' } }, yaxis: { title: { text: 'ΔM' } }, xaxis2: { title: { text: 'step' } }, yaxis2: { title: { text: 'ΔD' } } } };
}

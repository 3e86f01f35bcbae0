/**
 * renderReport / renderCompare: analysis folder(s) → one self-contained HTML file, written atomically.
 * Returns the written path (docs/report.md).
 */
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { guardOutput, type OutputInput } from '../io/output-guard.js';
import { DorascopeError } from '../errors.js';
import { loadAnalysis, type DecompRow, type RunSummary } from './load.js';
import { renderPage, type TableData } from './html.js';
import { scatterFigure, type ScatterModule } from './figures/scatter.js';
import { layersFigure, trajectoryFigure } from './figures/layers.js';
import { fmt, orderModules, type Figure } from './figures/common.js';
import { pooledModules, resultCards } from './cards.js';
import { provenance } from './provenance.js';
import { histogramFigure } from './figures/histograms.js';
import { plotlyBundle, traceTypes } from './plotly-bundle.js';
import { scaleKeys } from '../io/peft/adapter-config.js';

export interface ReportOptions { dir: string; out?: string; title?: string; plotlySrc?: string; command?: string[]; force?: boolean }
export interface CompareOptions { dirs: string[]; labels?: string[]; out?: string; title?: string; plotlySrc?: string; command?: string[]; force?: boolean }

/** The files a report reads from an analysis folder: its HTML may go beside them (DIR/report.html), never over them. */
const ANALYSIS_FILES = ['decomposition.arrow', 'decomposition.csv', 'summary.json', 'manifest.json', 'rows.arrow'];
const analysisInputs = (dir: string): OutputInput[] => ANALYSIS_FILES.map((f) => ({ role: 'analysis file', path: join(dir, f) }));

async function plotlySource(src: string | undefined, figures: readonly Figure[]): Promise<{ inline: string } | { src: string }> {
  if (src) return { src };
  return { inline: await plotlyBundle(traceTypes(figures)) };
}

const TRAINABLE_COLUMN = 'trainable params (analysed tensors)';
const TRAINABLE_NOTE = 'Counts only the tensors this analysis covered: LoRA r·(in + out) per adapted tensor (r from rank_pattern '
  + 'where it matches), plus out for DoRA\'s magnitude; full fine-tuning: every element of the analysed tensors. '
  + 'Embeddings, norms, biases and tensors not analysed are not counted; n/a when the adapter config is not recorded.';

const POOLED_COLUMN = 'modules pooled';
const POOLED_NOTE = 'Every statistic to the right pools the rows of these modules over all checkpoints. Figure 2 shows one '
  + 'module at a time, with that module\'s own r and slope above each panel; the cards at the top judge the query matrices, as the paper does.';

const LAYER_STEP_NOTES: Record<string, string> = {
  'within-checkpoint r': 'Correlation of ΔM with ΔD across layers at each checkpoint, Fisher-z averaged over checkpoints '
    + '(weights n − 3); 95% interval from a bootstrap that resamples tensors with all their checkpoints. Free of the '
    + 'step effect that drives the pooled r (both ΔM and ΔD grow with training).',
  'step-partialled r': 'Each checkpoint\'s mean removed from ΔD and ΔM, then pooled: the layer signal.',
  'layer-partialled r': 'Each tensor\'s mean over checkpoints removed, then pooled: the trend over steps.',
  'relative ΔM r': 'Pooled r with ΔM / mean m0 of each tensor, which a per-layer rescaling of the weights does not move.',
  'signed Δm (final)': 'Mean over tensors of (mean m_t − mean m_0) at the last checkpoint, relative to m_0; negative when magnitudes shrink (weight decay).',
  'features shrunk (final)': 'Fraction of features whose magnitude shrank (m_t < m_0) at the last checkpoint.',
};

/** Builds every figure and the table from loaded runs (labels already applied). */
export function buildFigures(rows: DecompRow[], runs: RunSummary[]): { figures: Figure[]; table: TableData } {
  const modules = orderModules(rows.map((r) => r.module)); // the model's order (q, k, v, o, gate, up, down), not the file's
  // Figure 2: one figure, runs side by side, a dropdown over modules (see figures/scatter.ts for why).
  const cell = new Map<string, DecompRow[]>();
  for (const r of rows) {
    const k = `${r.module}\u0000${r.run}`;
    const list = cell.get(k);
    if (list) list.push(r); else cell.set(k, [r]);
  }
  const scatterModules: ScatterModule[] = modules.map((m) => ({ module: m, panels: runs.map((run) => {
    const rs = cell.get(`${m}\u0000${run.run}`);
    return rs ? { run: run.run, module: m, rows: rs, stats: run.modules[m] ?? null } : null;
  }) }));
  const figures: Figure[] = [];
  if (modules.length) figures.push(scatterFigure('fig2', runs.map((r) => r.run), scatterModules));
  figures.push(layersFigure('fig3', rows));
  figures.push(trajectoryFigure('traj', rows));
  const columns = ['run', 'method', 'r', 'alpha', 'rsLoRA', 'DoRA', TRAINABLE_COLUMN, POOLED_COLUMN, 'points', 'pearson r', 'r 95% CI', 'spearman ρ', 'slope', 'slope 95% CI',
    ...Object.keys(LAYER_STEP_NOTES)];
  const ci = (c: [number, number] | null | undefined): string => (c ? `[${fmt(c[0])}, ${fmt(c[1])}]` : 'n/a');
  const withCi = (v: { r: number | null; r_ci95: [number, number] | null } | undefined): string | null =>
    (v === undefined ? null : `${fmt(v.r)} ${ci(v.r_ci95)}`);
  const pct = (v: number | null | undefined): string | null => (v === null || v === undefined ? null : `${(100 * v).toFixed(1)}%`);
  const table = {
    columns, notes: { [TRAINABLE_COLUMN]: TRAINABLE_NOTE, [POOLED_COLUMN]: POOLED_NOTE, ...LAYER_STEP_NOTES },
    rows: runs.map((r) => {
      const a = r.adapter ?? {};
      const s = r.overall;
      return [r.run, r.method, ...rankAndAlpha(a, r.config),
        a.use_rslora === undefined ? null : String(a.use_rslora), a.use_dora === undefined ? null : String(a.use_dora),
        r.trainable ?? null, pooledModules(r), s?.n ?? rows.filter((x) => x.run === r.run).length, fmt(s?.pearson_r), ci(s?.r_ci95), fmt(s?.spearman_rho), fmt(s?.slope), ci(s?.slope_ci95),
        ...layerStepCells(r, withCi, pct)];
    }),
  };
  return { figures, table };
}

/**
 * The r and alpha columns, in the adapter config's own terms: empty where its method has none (IA³ has no rank,
 * VeRA no alpha; LoHa/LoKr call it `alpha`). Without a recorded config (older folders), the parsed values.
 */
function rankAndAlpha(a: Record<string, unknown>, config: unknown): [number | null, number | null] {
  const r = (a.r as number | undefined) ?? null, alpha = (a.lora_alpha as number | undefined) ?? null;
  if (config === null || typeof config !== 'object' || Array.isArray(config)) return [r, alpha];
  const k = scaleKeys(config as Record<string, unknown>);
  return [k.rank ? r : null, k.alpha !== null ? alpha : null];
}

function layerStepCells(r: RunSummary, withCi: (v: { r: number | null; r_ci95: [number, number] | null } | undefined) => string | null,
  pct: (v: number | null | undefined) => string | null): (string | null)[] {
  const d = r.detail?.overall;
  if (d === undefined) return Object.keys(LAYER_STEP_NOTES).map(() => null);
  return [withCi(d.layer_step.within_checkpoint), withCi(d.layer_step.step_partialled), withCi(d.layer_step.layer_partialled),
    withCi({ r: d.relative.pooled.pearson_r, r_ci95: d.relative.pooled.r_ci95 }),
    pct(d.magnitude.final?.mean_signed_rel_delta_m), pct(d.magnitude.final?.frac_features_shrunk)];
}

export async function renderReport(o: ReportOptions): Promise<string> {
  const out = o.out ?? join(o.dir, 'report.html');
  guardOutput({ out, kind: 'report-html', force: o.force, inputs: analysisInputs(o.dir) });
  const a = await loadAnalysis(o.dir);
  const { figures, table } = buildFigures(a.rows, a.runs);
  if (a.features && a.features.groups.length > 0) figures.push(histogramFigure('hist', a.features));
  const html = renderPage({ title: o.title ?? `dorascope report: ${a.runs.map((r) => r.run).join(', ')}`, figures, table, cards: resultCards(a.runs),
    provenance: provenance([a], o.command), plotly: await plotlySource(o.plotlySrc, figures) });
  await writeFileAtomic(out, html);
  return out;
}

export async function renderCompare(o: CompareOptions): Promise<string> {
  if (o.dirs.length === 0) throw new DorascopeError('E_USAGE', 'compare needs at least one analysis folder');
  if (o.labels && o.labels.length !== o.dirs.length)
    throw new DorascopeError('E_USAGE', `--labels has ${o.labels.length} names for ${o.dirs.length} folders`);
  const out = o.out ?? 'compare.html';
  guardOutput({ out, kind: 'report-html', force: o.force, inputs: o.dirs.flatMap(analysisInputs) });
  const analyses = await Promise.all(o.dirs.map((d) => loadAnalysis(d)));
  const rows: DecompRow[] = [];
  const runs: RunSummary[] = [];
  analyses.forEach((a, i) => {
    // A label renames the folder's run(s); with several runs in one folder it prefixes them.
    const rename = (run: string): string => (o.labels ? (a.runs.length > 1 ? `${o.labels[i]}/${run}` : o.labels[i]!) : run);
    for (const r of a.rows) rows.push({ ...r, run: rename(r.run) });
    for (const r of a.runs) runs.push({ ...r, run: rename(r.run) });
  });
  const { figures, table } = buildFigures(rows, runs);
  const html = renderPage({ title: o.title ?? `dorascope compare: ${runs.map((r) => r.run).join(' vs ')}`, figures, table, cards: resultCards(runs),
    provenance: provenance(analyses, o.command), plotly: await plotlySource(o.plotlySrc, figures) });
  await writeFileAtomic(out, html);
  return out;
}

/**
 * Reads one analysis folder (format fixed in docs/analysis.md) into plain rows and
 * the summary, validating as it goes: a report of a broken folder fails with an
 * E_ANALYSIS_DIR error naming the file and the bad value, never a blank page.
 */
import { JSON_CAPS, readTextCapped } from '../io/open-regular.js';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DorascopeError, isDorascopeError, q } from '../errors.js';
import { readDecompositionTable, type DecompositionRow } from '../analysis/table.js';
import { trainableParams, type AnalysedTensor } from './trainable-params.js';
import { binFeatures, type FeatureHistograms } from './feature-histograms.js';
import { usableRow, type RunStatistics } from '../analysis/run-summary.js';

/** The columns of a decomposition.arrow row the figures use (analysis/table.ts reads the file). */
export type DecompRow = Pick<DecompositionRow, 'run' | 'method' | 'checkpoint' | 'step' | 'module' | 'layer' | 'tensor' | 'delta_m' | 'delta_d'>;
export interface Stats {
  n: number; pearson_r: number | null; spearman_rho: number | null; slope: number | null; intercept: number | null;
  r_ci95: [number, number] | null; slope_ci95: [number, number] | null;
}
export interface RunSummary {
  run: string; method: string; adapter: Record<string, unknown> | null;
  checkpoints: { name: string; step: number }[]; overall: Stats | null; modules: Record<string, Stats | null>;
  /** Step/layer views, relative ΔM and signed magnitude change (absent in folders written before they existed). */
  detail?: RunStatistics['detail'];
  /** Trainable parameters of the analysed tensors (src/report/trainable-params.ts); null when unknown. Set by loadAnalysis. */
  trainable?: number | null;
  /** The run's adapter_config.json as recorded (null: full fine-tuning, or not recorded). Set by loadAnalysis. */
  config?: unknown;
}
/** `features`: rows.arrow (written with --per-row) binned, not loaded (src/report/feature-histograms.ts); null without it. */
export interface Analysis { dir: string; rows: DecompRow[]; runs: RunSummary[]; manifest: Record<string, unknown> | null; features: FeatureHistograms | null }

const bad = (msg: string, details?: Record<string, unknown>): DorascopeError => new DorascopeError('E_ANALYSIS_DIR', msg, details);

async function readJson(path: string, optional: boolean): Promise<unknown> {
  let text: string;
  try { text = await readTextCapped(path, 'analysis file', JSON_CAPS.manifest); } catch (e) {
    if (optional && isDorascopeError(e, 'E_NOT_FOUND')) return null;
    throw bad(`cannot read ${q(path)}: ${(e as Error).message}`);
  }
  try { return JSON.parse(text); } catch (e) { throw bad(`${q(path)} is not valid JSON: ${(e as Error).message}`); }
}

export async function loadAnalysis(dir: string): Promise<Analysis> {
  const st = await stat(dir).catch(() => null);
  if (!st?.isDirectory()) throw bad(`analysis folder ${q(dir)} does not exist or is not a folder`);
  const table = await readDecompositionTable(dir);
  // rows/cols (the tensor's shape) give the trainable-parameter count; folders without them just lack the count.
  const hasShape = table.columns.has('rows') && table.columns.has('cols');
  const tensorsOf = new Map<string, AnalysedTensor[]>();
  const rows: DecompRow[] = [];
  for (const d of table.rows) {
    // Rows no statistic uses (flagged unchanged, non-finite or empty: docs/analysis.md "Flags"; or with a non-finite
    // delta) are left out of the figures too; they still count among the analysed tensors. Older folders lack `flag` ('').
    if (usableRow(d)) {
      rows.push({
        run: d.run, method: d.method, checkpoint: d.checkpoint, step: d.step, module: d.module, layer: d.layer,
        tensor: d.tensor, delta_m: d.delta_m, delta_d: d.delta_d,
      });
    }
    if (hasShape) {
      const list = tensorsOf.get(d.run) ?? [];
      if (list.length === 0) tensorsOf.set(d.run, list);
      list.push({ tensor: d.tensor, rows: d.rows, cols: d.cols });
    }
  }
  const summary = await readJson(join(dir, 'summary.json'), false) as { runs?: unknown } | null;
  if (!summary || !Array.isArray(summary.runs)) throw bad(`${q(join(dir, 'summary.json'))} has no "runs" array`);
  // A shard holds part of the rows and no statistic (analysis/shard.ts): a report of it would describe nothing.
  if ((summary as { kind?: unknown }).kind === 'analysis-shard') {
    throw bad(`${q(dir)} is one shard of an analysis (analyze --shard), not a whole one: put the shards together with \`dorascope combine OUT SHARD...\` and report that folder`, { dir });
  }
  const runs = summary.runs as RunSummary[];
  for (const [i, r] of runs.entries()) {
    if (typeof r?.run !== 'string') throw bad(`${q(join(dir, 'summary.json'))} runs[${i}] has no "run" name`);
    r.modules ??= {};
    r.checkpoints ??= [];
  }
  const manifest = await readJson(join(dir, 'manifest.json'), true) as Record<string, unknown> | null;
  // The adapter config: manifest.json's runs[].adapter_config, else the copy analyze keeps in summary.json.
  const manifestRuns = Array.isArray(manifest?.runs) ? manifest.runs as { run?: unknown; adapter_config?: unknown }[] : [];
  for (const r of runs) {
    const fromManifest = manifestRuns.find((m) => m?.run === r.run)?.adapter_config;
    const config = fromManifest ?? (r.adapter as { config?: unknown } | null)?.config ?? null;
    const where = `${join(dir, fromManifest ? 'manifest.json' : 'summary.json')} run ${q(r.run)}`;
    const tensors = tensorsOf.get(r.run);
    r.trainable = tensors ? trainableParams(r.method, config, tensors, where) : null;
    r.config = config;
  }
  // A manifest that lists the folder's files is the whole truth: a rows.arrow it does not list is not this analysis's.
  const listed = Array.isArray(manifest?.files) ? (manifest.files as unknown[]).includes('rows.arrow') : true;
  return { dir, rows, runs, manifest, features: listed ? await binFeatures(join(dir, 'rows.arrow')) : null };
}

/**
 * Reads one analysis folder (format fixed in docs/analysis.md) into plain rows and
 * the summary, validating as it goes: a report of a broken folder fails with an
 * E_ANALYSIS_DIR error naming the file and the bad value, never a blank page.
 */
import { JSON_CAPS, readTextCapped } from '../io/open-regular.js';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { DorascopeError, isDorascopeError, q } from '../errors.js';
import { trainableParams, type AnalysedTensor } from './trainable-params.js';
import { binFeatures, type FeatureHistograms } from './feature-histograms.js';
import { usableRow, type RunStatistics } from '../analysis/run-summary.js';

export interface DecompRow {
  run: string; method: string; checkpoint: string; step: number; module: string; layer: number;
  tensor: string; delta_m: number; delta_d: number;
}
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
}
/** `features`: rows.arrow (written with --per-row) binned, not loaded (src/report/feature-histograms.ts); null without it. */
export interface Analysis { dir: string; rows: DecompRow[]; runs: RunSummary[]; manifest: Record<string, unknown> | null; features: FeatureHistograms | null }

const bad = (msg: string, details?: Record<string, unknown>): DorascopeError => new DorascopeError('E_ANALYSIS_DIR', msg, details);

const REQUIRED = ['run', 'method', 'checkpoint', 'step', 'module', 'layer', 'tensor', 'delta_m', 'delta_d'] as const;

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
  const arrowPath = join(dir, 'decomposition.arrow');
  let bytes: Buffer;
  try { bytes = await readFile(arrowPath); } catch { throw bad(`${q(arrowPath)} is missing (run \`dorascope analyze --out ${dir}\` first)`); }
  let table;
  try { table = tableFromIPC(bytes); } catch (e) { throw bad(`${q(arrowPath)} is not an Arrow IPC file: ${(e as Error).message}`); }
  const cols = new Map<string, unknown[]>();
  for (const name of REQUIRED) {
    const v = table.getChild(name);
    if (!v) throw bad(`${q(arrowPath)} has no column ${q(name)}`);
    cols.set(name, v.toArray() as unknown as unknown[]);
  }
  const col = (n: string): unknown[] => cols.get(n)!;
  // rows/cols (the tensor's shape) give the trainable-parameter count; folders without them just lack the count.
  const shapeR = table.getChild('rows')?.toArray() as ArrayLike<number> | undefined;
  const shapeC = table.getChild('cols')?.toArray() as ArrayLike<number> | undefined;
  // Rows no statistic uses (flagged unchanged, non-finite or empty: docs/analysis.md "Flags"; or with a non-finite
  // delta) are left out of the figures too; they still count among the analysed tensors. Older folders may lack `flag`.
  const flags = table.getChild('flag')?.toArray() as ArrayLike<unknown> | undefined;
  const tensorsOf = new Map<string, AnalysedTensor[]>();
  const rows: DecompRow[] = [];
  for (let i = 0; i < table.numRows; i++) {
    const r: DecompRow = {
      run: String(col('run')[i]), method: String(col('method')[i]), checkpoint: String(col('checkpoint')[i]),
      step: Number(col('step')[i]), module: String(col('module')[i]), layer: Number(col('layer')[i]),
      tensor: String(col('tensor')[i]), delta_m: Number(col('delta_m')[i]), delta_d: Number(col('delta_d')[i]),
    };
    if (!Number.isFinite(r.step)) throw bad(`${q(arrowPath)} row ${i} (tensor ${q(r.tensor)}): step ${q(String(col('step')[i]))} is not a number`);
    if (usableRow({ flag: flags ? String(flags[i] ?? '') : '', delta_m: r.delta_m, delta_d: r.delta_d })) rows.push(r);
    if (shapeR && shapeC) {
      const list = tensorsOf.get(r.run) ?? [];
      if (list.length === 0) tensorsOf.set(r.run, list);
      list.push({ tensor: r.tensor, rows: Number(shapeR[i]), cols: Number(shapeC[i]) });
    }
  }
  const summary = await readJson(join(dir, 'summary.json'), false) as { runs?: unknown } | null;
  if (!summary || !Array.isArray(summary.runs)) throw bad(`${q(join(dir, 'summary.json'))} has no "runs" array`);
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
  }
  // A manifest that lists the folder's files is the whole truth: a rows.arrow it does not list is not this analysis's.
  const listed = Array.isArray(manifest?.files) ? (manifest.files as unknown[]).includes('rows.arrow') : true;
  return { dir, rows, runs, manifest, features: listed ? await binFeatures(join(dir, 'rows.arrow')) : null };
}

/**
 * `--json` for analyze, report and compare: one JSON object on stdout for scripts and pipelines (progress
 * and notes stay on stderr). Its shape, shared by the three commands (docs/analysis.md, "Machine-readable output"):
 *   { command, out?, report?, files: [paths written], images?: [paths], runs: [{ run, method, checkpoints,
 *     overall: { n, pearson_r, r_ci95, spearman_rho, slope, slope_ci95 }, modules: { name: same } }] }
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DorascopeError, q } from '../errors.js';
import { JSON_CAPS, readTextCapped } from '../io/open-regular.js';

interface StatsLike {
  n?: number; pearson_r?: number | null; r_ci95?: [number, number] | null; spearman_rho?: number | null;
  slope?: number | null; slope_ci95?: [number, number] | null;
}
interface RunLike { run: string; method?: string; checkpoints?: unknown[]; overall?: StatsLike | null; modules?: Record<string, StatsLike | null> }

export interface RunStatsJson {
  run: string; method: string | null; checkpoints: number;
  overall: StatsJson | null; modules: Record<string, StatsJson | null>;
}
export interface StatsJson {
  n: number | null; pearson_r: number | null; r_ci95: [number, number] | null; spearman_rho: number | null;
  slope: number | null; slope_ci95: [number, number] | null;
}

const stats = (s: StatsLike | null | undefined): StatsJson | null => (s ? {
  n: s.n ?? null, pearson_r: s.pearson_r ?? null, r_ci95: s.r_ci95 ?? null, spearman_rho: s.spearman_rho ?? null,
  slope: s.slope ?? null, slope_ci95: s.slope_ci95 ?? null,
} : null);

/** The per-run statistics of summary.json's `runs` (or `analyze()`'s summary), without the detail views. */
export function runStatsJson(runs: readonly RunLike[], rename: (run: string) => string = (r) => r): RunStatsJson[] {
  return runs.map((r) => ({
    run: rename(r.run), method: r.method ?? null, checkpoints: r.checkpoints?.length ?? 0, overall: stats(r.overall),
    modules: Object.fromEntries(Object.entries(r.modules ?? {}).map(([m, s]) => [m, stats(s)])),
  }));
}

/** summary.json's runs of an analysis folder. */
export async function readRuns(dir: string): Promise<RunLike[]> {
  const path = join(dir, 'summary.json');
  let parsed: { runs?: unknown };
  try { parsed = JSON.parse(await readTextCapped(path, 'analysis summary', JSON_CAPS.manifest)) as { runs?: unknown }; } catch (e) {
    if (e instanceof DorascopeError) throw e;
    throw new DorascopeError('E_ANALYSIS_DIR', `cannot read ${q(path)}: ${(e as Error).message}`);
  }
  if (!Array.isArray(parsed.runs)) throw new DorascopeError('E_ANALYSIS_DIR', `${q(path)} has no "runs" array`);
  return parsed.runs as RunLike[];
}

/**
 * The files in `dir` written since `since` (ms since the epoch), sorted: what this command wrote, whatever
 * set of formats the analysis writes. One second of slack covers file systems with coarse timestamps.
 */
export function filesWrittenSince(dir: string, since: number): string[] {
  let names: string[];
  try { names = readdirSync(dir); } catch { return []; }
  return names.filter((n) => {
    try { const st = statSync(join(dir, n)); return st.isFile() && st.mtimeMs >= since - 1000; } catch { return false; }
  }).sort().map((n) => join(dir, n));
}

export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}

/**
 * The results table of a reproduction: for each of the paper's methods, the correlation and the slope of
 * ΔM on ΔD (with the analysis's 95% bootstrap intervals) and the validation metric, beside the paper's
 * numbers, plus the paper's accuracy claims checked on our rank sweep. Pure: parsed summary.json and
 * metrics in, plain rows out; the verdicts follow a fixed rule stated here and in docs/reproduce.md.
 */
import { DorascopeError, q } from '../errors.js';
import { paperValue } from './paper.js';
import type { MainRole, ReproMethod } from './plan.js';
import type { RunMetric } from './metrics.js';

/** Stats object of the analysis summary.json (docs/analysis.md). */
export type { Stats } from '../analysis/stats.js';
import type { Stats } from '../analysis/stats.js';

export interface SummaryRun {
  readonly run: string;
  readonly method: ReproMethod;
  readonly checkpoints: readonly { name: string; step: number }[];
  readonly overall: Stats | null;
  readonly modules: Readonly<Record<string, Stats | null>>;
}

/**
 * - `agrees`: the slope's 95% interval lies wholly on the paper's side of 0;
 * - `opposite`: wholly on the other side;
 * - `inconclusive`: the interval contains 0 (or the slope is undefined).
 */
export type Verdict = 'agrees' | 'opposite' | 'inconclusive';

export interface ResultRow {
  readonly label: string;
  readonly run: string;
  readonly method: ReproMethod;
  readonly rank: number | null;
  readonly lr: number;
  /** The module of the paper's Figure 2 (query) — the headline numbers. */
  readonly module: string;
  readonly stats: Stats | null;
  /** All analysed modules of the run together. */
  readonly overall: Stats | null;
  readonly metric: RunMetric;
  readonly paperR: number | null;
  readonly verdict: Verdict | null;
}

export function verdict(sign: -1 | 1, ci: readonly [number, number] | null): Verdict {
  if (ci === null || !Number.isFinite(ci[0]) || !Number.isFinite(ci[1])) return 'inconclusive';
  if (ci[0] > 0) return sign > 0 ? 'agrees' : 'opposite';
  if (ci[1] < 0) return sign < 0 ? 'agrees' : 'opposite';
  return 'inconclusive';
}

export function summaryRuns(summary: unknown, path: string): SummaryRun[] {
  const runs = (summary as { runs?: unknown } | null)?.runs;
  if (!Array.isArray(runs)) throw new DorascopeError('E_ANALYSIS_DIR', `${q(path)} has no runs array`);
  return runs as SummaryRun[];
}

export function resultRows(
  roles: readonly MainRole[],
  runs: readonly SummaryRun[],
  metrics: ReadonlyMap<string, RunMetric>,
  lrs: ReadonlyMap<string, number>,
  module = 'q_proj',
): ResultRow[] {
  return roles.map((role) => {
    const run = runs.find((r) => r.run === role.run);
    if (run === undefined) {
      throw new DorascopeError('E_ANALYSIS_DIR', `the analysis summary has no run ${q(role.run)} (${role.label})`);
    }
    const metric = metrics.get(role.run);
    if (metric === undefined) throw new DorascopeError('E_INTERNAL', `no validation metric for run ${q(role.run)}`);
    const stats = run.modules[module] ?? null;
    const paper = paperValue(role.method);
    return {
      label: role.label,
      run: role.run,
      method: role.method,
      rank: role.rank,
      lr: lrs.get(role.run) ?? Number.NaN,
      module,
      stats,
      overall: run.overall,
      metric,
      paperR: paper?.r ?? null,
      verdict: paper === undefined ? null : verdict(paper.sign, stats?.slope_ci95 ?? null),
    };
  });
}

export interface RankPoint {
  readonly method: 'lora' | 'dora';
  readonly rank: number;
  readonly run: string;
  readonly metric: number | null;
  readonly evalLoss: number | null;
}

export interface Claim {
  readonly claim: string;
  /** null when a metric is missing. */
  readonly holds: boolean | null;
  readonly detail: string;
}

/** The paper's accuracy claims (§5, Figure 5) checked on the rank sweep: single seed, so no interval. */
export function accuracyClaims(points: readonly RankPoint[], mainRank: number): Claim[] {
  const at = (m: 'lora' | 'dora', r: number): number | null => points.find((p) => p.method === m && p.rank === r)?.metric ?? null;
  const fmt = (v: number | null): string => (v === null ? 'n/a' : v.toFixed(4));
  const cmp = (a: number | null, b: number | null): boolean | null => (a === null || b === null ? null : a >= b);
  const claims: Claim[] = [];
  const ranks = [...new Set(points.map((p) => p.rank))].sort((a, b) => a - b);
  for (const r of ranks) {
    const d = at('dora', r);
    const l = at('lora', r);
    claims.push({ claim: `DoRA ≥ LoRA at r=${r}`, holds: cmp(d, l), detail: `DoRA ${fmt(d)} vs LoRA ${fmt(l)}` });
  }
  const half = mainRank / 2;
  const dh = at('dora', half);
  const lm = at('lora', mainRank);
  claims.push({ claim: `DoRA† (r=${half}) ≥ LoRA (r=${mainRank})`, holds: cmp(dh, lm), detail: `DoRA† ${fmt(dh)} vs LoRA ${fmt(lm)}` });
  return claims;
}

/**
 * summary.json's statistics of each run, from the decomposition rows: the paper's pooled Figure 2
 * statistics (§3.2) over all modules (`overall`) and per module, and beside them the views that
 * separate step from layer, relative ΔM and the signed magnitude change (layer-step-stats.ts), and,
 * for runs named as seeds of one configuration, each statistic's mean and range across the seeds.
 * Pure: rows in, plain data out, so the reproduction can compute the same on a subset of checkpoints.
 */
import { DorascopeError, q } from '../errors.js';
import { acrossSeeds, selectionStats, type AcrossSeeds, type MagnitudeRow, type SelectionStats } from './layer-step-stats.js';
import type { Stats } from './stats.js';

/** The columns of a decomposition row the summary reads. */
export interface SummaryRow extends MagnitudeRow {
  readonly run: string;
  readonly module: string;
  readonly flag: string;
}

/** A row enters the statistics only when nothing is flagged and both deltas are finite. */
export function usableRow(r: Pick<SummaryRow, 'flag' | 'delta_m' | 'delta_d'>): boolean {
  return r.flag === '' && Number.isFinite(r.delta_m) && Number.isFinite(r.delta_d);
}

export interface RunStatistics {
  /** Pooled statistics over all modules (the headline of Figure 2 when one module is selected). */
  readonly overall: Stats;
  readonly modules: Record<string, Stats>;
  /** Step/layer views, relative ΔM and the signed magnitude change, over all modules and per module. */
  readonly detail: { readonly overall: SelectionStats; readonly modules: Record<string, SelectionStats> };
}

export function runStatistics(rows: readonly SummaryRow[], run: string, resamples?: number): RunStatistics {
  const mine = rows.filter((r) => r.run === run && usableRow(r));
  const modules: Record<string, Stats> = {};
  const detailModules: Record<string, SelectionStats> = {};
  for (const m of [...new Set(mine.map((r) => r.module))].sort()) {
    const s = selectionStats(mine.filter((r) => r.module === m), resamples);
    modules[m] = s.pooled;
    detailModules[m] = s;
  }
  const overall = selectionStats(mine, resamples);
  return { overall: overall.pooled, modules, detail: { overall, modules: detailModules } };
}

/** The statistics summarised across the seeds of a group. */
export interface SeedStatistics {
  readonly pooled_r: AcrossSeeds;
  readonly within_checkpoint_r: AcrossSeeds;
  readonly step_partialled_r: AcrossSeeds;
  readonly layer_partialled_r: AcrossSeeds;
  readonly relative_pooled_r: AcrossSeeds;
  readonly relative_within_checkpoint_r: AcrossSeeds;
  readonly final_mean_signed_delta_m: AcrossSeeds;
}

export interface GroupSummary {
  readonly group: string;
  readonly runs: readonly string[];
  readonly overall: SeedStatistics;
  readonly modules: Record<string, SeedStatistics>;
}

function seedStatistics(sel: readonly (SelectionStats | undefined)[]): SeedStatistics {
  const pick = (f: (s: SelectionStats) => number | null) => acrossSeeds(sel.map((s) => (s ? f(s) : null)));
  return {
    pooled_r: pick((s) => s.pooled.pearson_r),
    within_checkpoint_r: pick((s) => s.layer_step.within_checkpoint.r),
    step_partialled_r: pick((s) => s.layer_step.step_partialled.r),
    layer_partialled_r: pick((s) => s.layer_step.layer_partialled.r),
    relative_pooled_r: pick((s) => s.relative.pooled.pearson_r),
    relative_within_checkpoint_r: pick((s) => s.relative.layer_step.within_checkpoint.r),
    final_mean_signed_delta_m: pick((s) => s.magnitude.final?.mean_signed_delta_m ?? null),
  };
}

/**
 * Groups of runs that are seeds of one configuration (`--group NAME=RUN,RUN`): every named run must
 * exist, and a run may belong to one group only.
 */
export function checkGroups(groups: Readonly<Record<string, readonly string[]>>, labels: ReadonlySet<string>): void {
  const seen = new Map<string, string>();
  for (const [group, runs] of Object.entries(groups)) {
    if (runs.length === 0) throw new DorascopeError('E_USAGE', `--group ${q(group)} names no run`);
    for (const run of runs) {
      if (!labels.has(run)) throw new DorascopeError('E_USAGE', `--group ${q(group)} names the run ${q(run)}, which is not one of the analysed runs (${[...labels].map(q).join(', ')})`);
      const other = seen.get(run);
      if (other !== undefined) throw new DorascopeError('E_USAGE', `the run ${q(run)} is in two groups, ${q(other)} and ${q(group)}`);
      seen.set(run, group);
    }
  }
}

export function groupSummaries(groups: Readonly<Record<string, readonly string[]>>, stats: ReadonlyMap<string, RunStatistics>): GroupSummary[] {
  checkGroups(groups, new Set(stats.keys()));
  const out: GroupSummary[] = [];
  for (const [group, runs] of Object.entries(groups)) {
    const members = runs.map((r) => stats.get(r)!);
    const modules: Record<string, SeedStatistics> = {};
    for (const m of [...new Set(members.flatMap((s) => Object.keys(s.detail.modules)))].sort()) {
      modules[m] = seedStatistics(members.map((s) => s.detail.modules[m]));
    }
    out.push({ group, runs: [...runs], overall: seedStatistics(members.map((s) => s.detail.overall)), modules });
  }
  return out;
}

/** Parses `NAME=RUN,RUN` (the CLI's --group) into a group. */
export function parseGroup(spec: string): [string, string[]] {
  const m = /^([^=]+)=(.+)$/u.exec(spec);
  const runs = m?.[2]?.split(',').map((s) => s.trim()).filter(Boolean) ?? [];
  if (!m || runs.length === 0) throw new DorascopeError('E_USAGE', `--group ${q(spec)}: expected NAME=RUN,RUN (run labels as given with --label)`);
  return [m[1]!.trim(), runs];
}

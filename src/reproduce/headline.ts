/**
 * The reproduction's headline numbers: for each of the paper's methods and for each statistic (the
 * paper's pooled r, and the views that separate step from layer), the value of every base × seed run
 * with its 95% interval, the mean and range across those runs, the paper's value and a verdict by the
 * fixed rule of verdict.ts; and the same for the weight-decay control of full fine-tuning. Computed on
 * the query matrices (the paper's Figure 2) at evenly spaced checkpoints (plan.ts `headlineSteps`).
 * Pure: decomposition rows in, plain rows out.
 */
import { acrossSeeds, selectionStats, type AcrossSeeds, type SelectionStats } from '../analysis/layer-step-stats.js';
import { usableRow, type SummaryRow } from '../analysis/run-summary.js';
import { paperValue } from './paper.js';
import type { MainRole, RunSpec } from './plan.js';
import { combineVerdicts, verdict, type Verdict } from './verdict.js';

interface StatDef {
  readonly key: string;
  readonly label: string;
  /** Judged against the paper's sign (the step trend is shown, not judged: the paper makes no claim about it). */
  readonly judged: boolean;
  readonly get: (s: SelectionStats) => { n: number; r: number | null; ci: [number, number] | null };
}

export const HEADLINE_STATISTICS: readonly StatDef[] = [
  // Intervals from the cluster bootstrap (layers resampled with all their checkpoints) for every statistic.
  { key: 'pooled', label: "pooled r (the paper's statistic)", judged: true, get: (s) => ({ n: s.layer_step.pooled.n, r: s.layer_step.pooled.r, ci: s.layer_step.pooled.r_ci95 }) },
  { key: 'within_checkpoint', label: 'within-checkpoint r (across layers)', judged: true, get: (s) => ({ n: s.layer_step.within_checkpoint.n, r: s.layer_step.within_checkpoint.r, ci: s.layer_step.within_checkpoint.r_ci95 }) },
  { key: 'step_partialled', label: 'step-partialled r (layer signal)', judged: true, get: (s) => ({ n: s.layer_step.step_partialled.n, r: s.layer_step.step_partialled.r, ci: s.layer_step.step_partialled.r_ci95 }) },
  { key: 'layer_partialled', label: 'layer-partialled r (trend over steps)', judged: false, get: (s) => ({ n: s.layer_step.layer_partialled.n, r: s.layer_step.layer_partialled.r, ci: s.layer_step.layer_partialled.r_ci95 }) },
  { key: 'relative_pooled', label: 'pooled r, relative ΔM', judged: true, get: (s) => ({ n: s.relative.layer_step.pooled.n, r: s.relative.layer_step.pooled.r, ci: s.relative.layer_step.pooled.r_ci95 }) },
  { key: 'relative_within', label: 'within-checkpoint r, relative ΔM', judged: true, get: (s) => ({ n: s.relative.layer_step.within_checkpoint.n, r: s.relative.layer_step.within_checkpoint.r, ci: s.relative.layer_step.within_checkpoint.r_ci95 }) },
];

export interface SeedValue {
  readonly run: string;
  readonly base: number;
  readonly seed: number;
  readonly n: number;
  readonly r: number | null;
  readonly ci: [number, number] | null;
  readonly verdict: Verdict | null;
}

export interface HeadlineCell {
  readonly statistic: string;
  readonly label: string;
  readonly per_seed: SeedValue[];
  readonly across: AcrossSeeds;
  /** null for statistics the paper makes no claim about. */
  readonly verdict: Verdict | null;
}

export interface MagnitudeSummary {
  /** Mean over tensors of (mean m_t − mean m_0) / mean m_0 at the last headline checkpoint, across seeds. */
  readonly signed_rel_delta_m: AcrossSeeds;
  readonly frac_features_shrunk: AcrossSeeds;
}

export interface HeadlineRow {
  readonly label: string;
  readonly method: string;
  readonly config: string;
  readonly rank: number | null;
  readonly paper_r: number | null;
  readonly paper_sign: -1 | 1 | null;
  readonly cells: HeadlineCell[];
  readonly magnitude: MagnitudeSummary;
}

export interface ControlRow {
  readonly weight_decay: number;
  readonly config: string;
  /** wd · Σ lr_t of the run (plan.ts `decayBudget`). */
  readonly decay_budget: number;
  readonly cells: HeadlineCell[];
  readonly magnitude: MagnitudeSummary;
}

export interface HeadlineInput {
  /** Decomposition rows of every run (all bases); only `module` rows at `steps` are used. */
  readonly rows: readonly (SummaryRow & { method?: string })[];
  readonly runs: readonly RunSpec[];
  readonly module: string;
  readonly steps: readonly number[];
  readonly resamples?: number;
}

function statsOf(input: HeadlineInput, run: string): SelectionStats {
  const steps = new Set(input.steps);
  return selectionStats(input.rows.filter((r) => r.run === run && r.module === input.module && steps.has(r.step) && usableRow(r)), input.resamples);
}

function cellsFor(input: HeadlineInput, runs: readonly RunSpec[], sign: -1 | 1 | null, cache: Map<string, SelectionStats>): { cells: HeadlineCell[]; magnitude: MagnitudeSummary } {
  const stats = runs.map((r) => {
    let s = cache.get(r.name);
    if (s === undefined) { s = statsOf(input, r.name); cache.set(r.name, s); }
    return s;
  });
  const cells = HEADLINE_STATISTICS.map((def) => {
    const judged = def.judged && sign !== null;
    const per_seed = runs.map((r, i) => {
      const v = def.get(stats[i]!);
      return { run: r.name, base: r.baseIndex, seed: r.seed, n: v.n, r: v.r, ci: v.ci, verdict: judged ? verdict(sign!, v.ci) : null };
    });
    return {
      statistic: def.key, label: def.label, per_seed, across: acrossSeeds(per_seed.map((p) => p.r)),
      verdict: judged ? combineVerdicts(per_seed.map((p) => p.verdict!)) : null,
    };
  });
  return {
    cells,
    magnitude: {
      signed_rel_delta_m: acrossSeeds(stats.map((s) => s.magnitude.final?.mean_signed_rel_delta_m ?? null)),
      frac_features_shrunk: acrossSeeds(stats.map((s) => s.magnitude.final?.frac_features_shrunk ?? null)),
    },
  };
}

/** Runs of one configuration across every base and seed. */
function runsOf(runs: readonly RunSpec[], config: string): RunSpec[] {
  return runs.filter((r) => r.config === config);
}

export function headline(input: HeadlineInput, roles: readonly MainRole[], control: readonly { weightDecay: number; config: string }[],
  budgetOf: (r: RunSpec) => number): { rows: HeadlineRow[]; control: ControlRow[] } {
  const cache = new Map<string, SelectionStats>();
  const rows = roles.map((role) => {
    const paper = paperValue(role.method);
    const { cells, magnitude } = cellsFor(input, runsOf(input.runs, role.config), paper?.sign ?? null, cache);
    return { label: role.label, method: role.method, config: role.config, rank: role.rank, paper_r: paper?.r ?? null, paper_sign: paper?.sign ?? null, cells, magnitude };
  });
  const ftSign = paperValue('ft')?.sign ?? null;
  const ctl = control.map((c) => {
    const members = runsOf(input.runs, c.config);
    const { cells, magnitude } = cellsFor(input, members, ftSign, cache);
    return { weight_decay: c.weightDecay, config: c.config, decay_budget: members[0] ? budgetOf(members[0]) : Number.NaN, cells, magnitude };
  });
  return { rows, control: ctl };
}

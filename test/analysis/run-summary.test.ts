import { describe, expect, it } from 'vitest';
import { DorascopeError } from '../../src/errors.js';
import { groupSummaries, parseGroup, runStatistics, type SummaryRow } from '../../src/analysis/run-summary.js';

/** Three layers of q_proj at two checkpoints, as in the hand-worked layer-step case (pooled r = 148/154, within r = −1/2). */
function run(name: string, shift = 0, extra: Partial<SummaryRow>[] = []): SummaryRow[] {
  const pts: [number, number, number, number][] = [[0, 1, 1, 3], [1, 1, 2, 1], [2, 1, 3, 2], [0, 2, 11, 12], [1, 2, 12, 13], [2, 2, 13, 11]];
  const rows = pts.map(([l, step, x, y]) => ({
    run: name, module: 'q_proj', tensor: `model.layers.${l}.self_attn.q_proj.weight`, step, rows: 4, shrunk_rows: 0,
    delta_d: x + shift, delta_m: y, mean_m0: 1, mean_mt: 1, flag: '',
  }));
  return [...rows, ...extra.map((e) => ({ ...rows[0]!, ...e }))];
}

describe('summary.json statistics of a run', () => {
  it('pooled and within-checkpoint r of the run, flagged and non-finite rows left out of every statistic', () => {
    const rows = run('ft', 0, [
      { flag: 'non_finite', delta_m: NaN, delta_d: NaN, step: 2 },
      { flag: 'unchanged', delta_m: 0, delta_d: 0, module: 'k_proj', tensor: 'model.layers.0.self_attn.k_proj.weight' },
      { flag: '', delta_m: Infinity, delta_d: 1, step: 1, tensor: 'model.layers.9.self_attn.q_proj.weight' },
    ]);
    const s = runStatistics(rows, 'ft', 0);
    expect(s.overall.n).toBe(6);
    expect(s.overall.pearson_r).toBeCloseTo(148 / 154, 12);
    expect(Object.keys(s.modules)).toEqual(['q_proj']);
    expect(s.detail.overall.layer_step.within_checkpoint.r).toBeCloseTo(-0.5, 12);
    expect(s.detail.modules['q_proj']!.layer_step.within_checkpoint.n).toBe(6);
  });

  it('groups of seeds: mean and range of each statistic; unknown or doubled runs are usage errors', () => {
    const rows = [...run('s1'), ...run('s2', 0), ...run('s3')];
    // s2: swap the y of two layers at step 2 so its pooled r differs: y = 3,1,2,13,12,11.
    const s2 = rows.filter((r) => r.run === 's2');
    s2[3] = { ...s2[3]!, delta_m: 13 }; s2[4] = { ...s2[4]!, delta_m: 12 };
    const all = [...rows.filter((r) => r.run !== 's2'), ...s2];
    const stats = new Map(['s1', 's2', 's3'].map((r) => [r, runStatistics(all, r, 0)]));
    const r2 = stats.get('s2')!.overall.pearson_r!;
    // s2 by hand: dy = −4,−6,−5,6,5,4 against dx = −6,−5,−4,4,5,6: Σ = 24+30+20+24+25+24 = 147.
    expect(r2).toBeCloseTo(147 / 154, 12);
    const [g] = groupSummaries({ ft: ['s1', 's2'] }, stats);
    expect(g!.runs).toEqual(['s1', 's2']);
    expect(g!.overall.pooled_r.n_runs).toBe(2);
    expect(g!.overall.pooled_r.mean).toBeCloseTo((148 / 154 + 147 / 154) / 2, 12);
    expect(g!.overall.pooled_r.min).toBeCloseTo(147 / 154, 12);
    expect(g!.overall.pooled_r.max).toBeCloseTo(148 / 154, 12);
    expect(g!.modules['q_proj']!.within_checkpoint_r.values[0]).toBeCloseTo(-0.5, 12);
    expect(() => groupSummaries({ ft: ['s1', 'nope'] }, stats)).toThrow(/nope.*not one of the analysed runs/u);
    expect(() => groupSummaries({ a: ['s1'], b: ['s1'] }, stats)).toThrow(DorascopeError);
    expect(parseGroup('ft=s1, s2')).toEqual(['ft', ['s1', 's2']]);
    expect(() => parseGroup('ft')).toThrow(/NAME=RUN,RUN/u);
  });
});

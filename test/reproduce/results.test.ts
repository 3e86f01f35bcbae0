import { describe, expect, it } from 'vitest';
import { accuracyClaims, resultRows, verdict, type SummaryRun } from '../../src/reproduce/results.js';
import { renderReadme, type ReproRecord } from '../../src/reproduce/readme.js';
import { rankFigure } from '../../src/reproduce/rank-figure.js';
import { QUICK, mainRuns } from '../../src/reproduce/plan.js';

const stats = (r: number, slopeCi: [number, number]) => ({ n: 8, pearson_r: r, spearman_rho: r, slope: (slopeCi[0] + slopeCi[1]) / 2, intercept: 0, r_ci95: [r - 0.1, r + 0.1] as [number, number], slope_ci95: slopeCi });

describe('sign verdict against the paper', () => {
  it('uses only the 95% interval of the slope', () => {
    expect(verdict(-1, [-2, -0.5])).toBe('agrees');
    expect(verdict(-1, [0.1, 2])).toBe('opposite');
    expect(verdict(1, [0.1, 2])).toBe('agrees');
    expect(verdict(1, [-3, -1])).toBe('opposite');
    expect(verdict(1, [-0.1, 2])).toBe('inconclusive');
    expect(verdict(-1, null)).toBe('inconclusive');
    expect(verdict(-1, [Number.NaN, 1])).toBe('inconclusive');
  });
});

describe('results rows and claims', () => {
  const { roles } = mainRuns(QUICK, { full: 1e-3, lora: 1e-2, dora: 1e-2 });
  const runs: SummaryRun[] = [
    { run: 'ft', method: 'ft', checkpoints: [], overall: null, modules: { q_proj: stats(-0.5, [-2, -1]) } },
    { run: 'lora-r4', method: 'lora', checkpoints: [], overall: null, modules: { q_proj: stats(0.9, [0.5, 1]) } },
    { run: 'dora-r4', method: 'dora', checkpoints: [], overall: null, modules: { q_proj: stats(0.2, [-0.1, 0.4]) } },
    { run: 'dora-r2', method: 'dora', checkpoints: [], overall: null, modules: { q_proj: stats(0.6, [0.2, 0.4]) } },
  ];
  const metric = (v: number) => ({ step: 24, name: 'eval_accuracy', value: v, evalLoss: 1 });
  const metrics = new Map([['ft', metric(0.5)], ['lora-r4', metric(0.3)], ['dora-r4', metric(0.35)], ['dora-r2', metric(0.2)]]);
  const rows = resultRows(roles, runs, metrics, new Map([['ft', 1e-3]]));

  it('pairs each paper method with its run, the paper r and the verdict', () => {
    expect(rows.map((r) => [r.label, r.paperR, r.verdict])).toEqual([
      ['FT', -0.62, 'agrees'],
      ['LoRA r4', 0.83, 'agrees'],
      ['DoRA r4', -0.31, 'inconclusive'],
      ['DoRA† r2', -0.31, 'opposite'],
    ]);
    expect(rows[0]!.lr).toBe(1e-3);
  });

  it('fails clearly when the analysis lacks a run', () => {
    expect(() => resultRows(roles, runs.slice(1), metrics, new Map())).toThrow(/no run "ft"/);
  });

  it('checks DoRA ≥ LoRA per rank and DoRA† ≥ LoRA', () => {
    const pts = [
      { method: 'lora' as const, rank: 2, run: 'lora-r2', metric: 0.1, evalLoss: 1 },
      { method: 'dora' as const, rank: 2, run: 'dora-r2', metric: 0.2, evalLoss: 1 },
      { method: 'lora' as const, rank: 4, run: 'lora-r4', metric: 0.3, evalLoss: 1 },
      { method: 'dora' as const, rank: 4, run: 'dora-r4', metric: 0.25, evalLoss: 1 },
    ];
    expect(accuracyClaims(pts, 4).map((c) => [c.claim, c.holds])).toEqual([
      ['DoRA ≥ LoRA at r=2', true],
      ['DoRA ≥ LoRA at r=4', false],
      ['DoRA† (r=2) ≥ LoRA (r=4)', false],
    ]);
    const fig = rankFigure(pts, 'accuracy');
    expect(fig.data.map((d) => [d['name'], d['x'], d['y']])).toEqual([
      ['LoRA', [2, 4], [0.1, 0.3]],
      ['DoRA', [2, 4], [0.2, 0.25]],
    ]);

    const record: ReproRecord = {
      title: 'T',
      command: 'dorascope reproduce --quick --out /tmp/x',
      created: '2026-01-01T00:00:00Z',
      preset: QUICK,
      backend: 'wasm',
      machine: { cpu: 'cpu', cores: 2, memoryGiB: 8, os: 'linux', node: 'v20' },
      seconds: { total: 100, pretrain: 30 },
      base: 'b',
      task: 't',
      runs: [],
      sweep: [],
      results: rows,
      rank: pts,
      claims: accuracyClaims(pts, 4),
      files: [],
    };
    const md = renderReadme(record);
    expect(md).toContain('dorascope reproduce --quick --out /tmp/x');
    expect(md).toContain('| FT | — | 0.001 | 8 | -0.50 [-0.60, -0.40] | -0.62 | -1.500 [-2.000, -1.000] | agrees |');
    expect(md).toMatch(/Opposite sign to the paper.*DoRA† r2/);
    expect(md).toMatch(/Interval contains zero.*DoRA r4/);
    expect(md).toContain('| DoRA ≥ LoRA at r=4 | no | DoRA 0.2500 vs LoRA 0.3000 |');
  });
});

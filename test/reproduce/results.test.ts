import { describe, expect, it } from 'vitest';
import { accuracyClaims } from '../../src/reproduce/results.js';
import { combineVerdicts, verdict } from '../../src/reproduce/verdict.js';
import { headline } from '../../src/reproduce/headline.js';
import type { SummaryRow } from '../../src/analysis/run-summary.js';
import { rng } from '../helpers/random.js';
import { renderReadme, type ReproRecord } from '../../src/reproduce/readme.js';
import { rankFigure } from '../../src/reproduce/rank-figure.js';
import { QUICK, mainRuns } from '../../src/reproduce/plan.js';


describe('verdict rule (fixed before the run)', () => {
  it('one run: by the 95% interval alone; several: every run must give the same verdict', () => {
    expect(verdict(-1, [-2, -0.5])).toBe('agrees');
    expect(verdict(-1, [0.1, 2])).toBe('opposite');
    expect(verdict(1, [0.1, 2])).toBe('agrees');
    expect(verdict(1, [-3, -1])).toBe('opposite');
    expect(verdict(1, [-0.1, 2])).toBe('inconclusive');
    expect(verdict(-1, null)).toBe('inconclusive');
    expect(verdict(-1, [Number.NaN, 1])).toBe('inconclusive');
    expect(combineVerdicts(['agrees', 'agrees'])).toBe('agrees');
    expect(combineVerdicts(['opposite', 'opposite', 'opposite'])).toBe('opposite');
    expect(combineVerdicts(['agrees', 'opposite'])).toBe('inconclusive');
    expect(combineVerdicts(['agrees', 'inconclusive'])).toBe('inconclusive');
    expect(combineVerdicts([])).toBe('inconclusive');
  });
});

/**
 * Rows of one run: 8 layers of q_proj at 4 checkpoints. ΔD and ΔM grow with the step; across layers at
 * a checkpoint ΔM falls as ΔD rises when `within` is −1, rises when +1 (a small seeded jitter on top).
 */
function runRows(run: string, within: 1 | -1, seed: number): SummaryRow[] {
  const next = rng(seed);
  const out: SummaryRow[] = [];
  for (const step of [10, 20, 30, 40]) {
    for (let l = 0; l < 8; l++) {
      const x = (step / 10) * (1 + 0.1 * l) + 0.02 * next();
      const y = (step / 10) * (2 + within * 0.1 * l) + 0.02 * next();
      out.push({ run, module: 'q_proj', tensor: `model.layers.${l}.self_attn.q_proj.weight`, step, rows: 4, shrunk_rows: l < 2 ? 4 : 0, delta_d: x, delta_m: y, mean_m0: 10, mean_mt: l < 2 ? 9 : 10.5, flag: '' });
      out.push({ run, module: 'v_proj', tensor: `model.layers.${l}.self_attn.v_proj.weight`, step, rows: 4, shrunk_rows: 0, delta_d: 1, delta_m: next(), mean_m0: 1, mean_mt: 1, flag: '' });
    }
  }
  return out;
}

describe('headline statistics per method and seed', () => {
  const preset = { ...QUICK, baseSeeds: [1, 2], ftSeeds: [7] };
  const plan = mainRuns(preset, { lora: 1e-2, dora: 1e-2 });
  // FT: negative across layers (like the paper) on both bases; LoRA: positive on both; DoRA: one of each.
  const shape: Record<string, [1 | -1, 1 | -1]> = { ft: [-1, -1], 'ft-wd0': [1, 1], 'lora-r4': [1, 1], 'dora-r4': [-1, 1], 'dora-r2': [-1, -1] };
  const rows = plan.runs.filter((r) => shape[r.config]).flatMap((r, i) => runRows(r.name, shape[r.config]![r.baseIndex]!, i + 1));
  const steps = [20, 40];
  const h = headline({ rows, runs: plan.runs, module: 'q_proj', steps, resamples: 500 }, plan.roles, plan.control, () => 0.5);
  const cellOf = (label: string, stat: string) => h.rows.find((r) => r.label === label)!.cells.find((c) => c.statistic === stat)!;

  it('pooled r is positive for every method here (the step effect) and opposite to the paper for FT', () => {
    for (const label of ['FT', 'LoRA r4', 'DoRA r4', 'DoRA† r2']) expect(cellOf(label, 'pooled').across.min!).toBeGreaterThan(0.5);
    expect(cellOf('FT', 'pooled').verdict).toBe('opposite');
    expect(cellOf('LoRA r4', 'pooled').verdict).toBe('agrees');
  });

  it('within-checkpoint r follows the layer effect: FT and DoRA† agree with the paper, DoRA r4 is mixed', () => {
    expect(cellOf('FT', 'within_checkpoint').verdict).toBe('agrees');
    expect(cellOf('FT', 'within_checkpoint').across.max!).toBeLessThan(-0.9);
    expect(cellOf('LoRA r4', 'within_checkpoint').verdict).toBe('agrees');
    expect(cellOf('DoRA† r2', 'within_checkpoint').verdict).toBe('agrees');
    const d = cellOf('DoRA r4', 'within_checkpoint');
    expect(d.per_seed.map((p) => p.verdict)).toEqual(['agrees', 'opposite']);
    expect(d.verdict).toBe('inconclusive');
    expect(cellOf('FT', 'layer_partialled').verdict).toBeNull(); // the step trend is shown, not judged
  });

  it('uses only the headline steps and the headline module; every run of a configuration counts', () => {
    const p = cellOf('FT', 'pooled');
    expect(p.per_seed.map((s) => [s.run, s.n])).toEqual([['ft-b0s7', 16], ['ft-b1s7', 16]]);
    expect(p.across.n_runs).toBe(2);
  });

  it('the weight-decay control: one row per setting with its budget, judged against the sign of FT', () => {
    expect(h.control.map((c) => [c.weight_decay, c.config, c.decay_budget])).toEqual([[0, 'ft-wd0', 0.5], [1, 'ft', 0.5]]);
    expect(h.control[0]!.cells.find((c) => c.statistic === 'within_checkpoint')!.verdict).toBe('opposite');
    // Layers 0 and 1 of q_proj shrank (mean m 10 → 9), the other six grew (10 → 10.5): (2·−0.1 + 6·0.05)/8.
    expect(h.control[1]!.magnitude.signed_rel_delta_m.mean).toBeCloseTo((2 * -0.1 + 6 * 0.05) / 8, 12);
    expect(h.control[1]!.magnitude.frac_features_shrunk.mean).toBeCloseTo(0.25, 12);
  });

  it('README: the verdict table, the control table and a reading generated from the numbers', () => {
    const pts = [{ method: 'lora' as const, rank: 4, run: 'lora-r4-b0s7', metric: 0.3, evalLoss: 1 }, { method: 'dora' as const, rank: 4, run: 'dora-r4-b0s7', metric: 0.25, evalLoss: 1 }];
    const record: ReproRecord = {
      title: 'T', command: 'dorascope reproduce --quick --out /tmp/x', created: '2026-01-01T00:00:00Z', preset, backend: 'wasm',
      machine: { cpu: 'cpu', cores: 2, memoryGiB: 8, os: 'linux', node: 'v20' }, seconds: { total: 100, pretrain: 30 },
      bases: [{ seed: 1, path: '/b', note: 'pretrained', curve: [{ step: 10, evalLoss: 3 }, { step: 40, evalLoss: 2 }], lateImprovement: 0.01 }],
      task: 't', plan, sweep: [], headlineSteps: steps, module: 'q_proj', headline: h.rows, control: h.control, rank: pts,
      claims: accuracyClaims(pts, 4), metrics: {}, files: [],
    };
    const md = renderReadme(record);
    expect(md).toContain('dorascope reproduce --quick --out /tmp/x');
    expect(md).toMatch(/\| FT \| -0\.62 \| [0-9.]+ \([0-9.]+ … [0-9.]+\) \*\*opposite\*\* \(2\/2\) \| -[0-9.]+ \(-[0-9.]+ … -[0-9.]+\) \*\*agrees\*\* \(2\/2\)/u);
    expect(md).toContain('**inconclusive** (1 agree, 1 opposite, 0 inconclusive)');
    expect(md).toContain('| 0 | 0.5000 |');
    expect(md).toMatch(/Agree: .*FT, within-checkpoint r \(across layers\)/u);
    expect(md).toMatch(/Opposite: .*FT, pooled r \(the paper's statistic\)/u);
    expect(md).toContain('held-out loss 3.000 → 2.000, still falling 1.0% over the last quarter');
    expect(md).toContain('| DoRA ≥ LoRA at r=4 | no | DoRA 0.2500 vs LoRA 0.3000 |');
  });
});

describe('accuracy claims', () => {
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

  });
});

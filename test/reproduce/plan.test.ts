import { describe, expect, it } from 'vitest';
import { FULL, GPU, QUICK, checkpointSteps, decayBudget, headlineSteps, lrSweepRuns, mainRuns, presetByName, runDecayBudget } from '../../src/reproduce/plan.js';
import { isDorascopeError } from '../../src/errors.js';

describe('reproduction plan', () => {
  it('records 8 checkpoints in the published preset; the headline uses 4 evenly spaced ones ending at the last', () => {
    expect(checkpointSteps(FULL)).toEqual([20, 40, 60, 80, 100, 120, 140, 160]);
    expect(headlineSteps(checkpointSteps(FULL), 4)).toEqual([40, 80, 120, 160]);
    expect(headlineSteps([3, 6, 9], 4)).toEqual([3, 6, 9]);
    expect(headlineSteps([1, 2, 3, 4, 5, 6], 3)).toEqual([2, 4, 6]);
    expect(checkpointSteps({ steps: 10, saveEvery: 3 })).toEqual([3, 6, 9, 10]);
    for (const p of [QUICK, FULL, GPU]) expect(checkpointSteps(p).length).toBeGreaterThanOrEqual(4);
  });

  it('the published preset: ≥ 8 layers, 2 bases × 2 fine-tuning seeds, weight decay 0, 0.1 and 1 in the control', () => {
    expect(FULL.model.layers).toBeGreaterThanOrEqual(8);
    expect(FULL.baseSeeds).toHaveLength(2);
    expect(FULL.ftSeeds).toHaveLength(2);
    expect(FULL.weightDecayControl).toEqual(expect.arrayContaining([0, 0.1, 1]));
    expect(GPU.model.layers * GPU.model.dModel).toBeGreaterThan(FULL.model.layers * FULL.model.dModel);
  });

  it('every role and control setting on every base × seed; FT at 1/10 of LoRA\'s rate; each run once', () => {
    const plan = mainRuns(FULL, { lora: 1e-2, dora: 3e-3 });
    const names = plan.runs.map((r) => r.name);
    expect(new Set(names).size).toBe(names.length);
    expect(plan.lr).toEqual({ full: 1e-3, lora: 1e-2, dora: 3e-3 });
    expect(plan.roles.map((r) => [r.label, r.config])).toEqual([['FT', 'ft'], ['LoRA r8', 'lora-r8'], ['DoRA r8', 'dora-r8'], ['DoRA† r4', 'dora-r4']]);
    // The main FT already runs at the recipe's weight decay (1): the control reuses it.
    expect(plan.control).toEqual([{ weightDecay: 0, config: 'ft-wd0' }, { weightDecay: 0.1, config: 'ft-wd0.1' }, { weightDecay: 1, config: 'ft' }, { weightDecay: 3, config: 'ft-wd3' }]);
    for (const b of [0, 1]) for (const s of FULL.ftSeeds) {
      for (const c of ['ft', 'ft-wd0', 'ft-wd0.1', 'ft-wd3', 'lora-r8', 'dora-r8', 'dora-r4']) expect(names).toContain(`${c}-b${b}s${s}`);
    }
    // The rank sweep (2, 4, 8, 16) only on the first base and seed.
    expect(names.filter((n) => /^(lora-r(2|4|16)|dora-r(2|16))-/u.test(n))).toEqual(['lora-r2-b0s1', 'lora-r4-b0s1', 'lora-r16-b0s1', 'dora-r2-b0s1', 'dora-r16-b0s1']);
    expect(names).toHaveLength(2 * 2 * 7 + 5);
    const ft = plan.runs.find((r) => r.name === 'ft-wd0.1-b1s2')!;
    expect(ft).toMatchObject({ method: 'full', lr: 1e-3, weightDecay: 0.1, baseIndex: 1, seed: 2, scheduler: 'linear', warmupRatio: 0.1, steps: 160, saveEvery: 20 });
    expect(plan.runs.find((r) => r.name === 'dora-r4-b0s1')).toMatchObject({ rank: 4, alpha: 8, lr: 3e-3, weightDecay: 1 });
  });

  it('the decay budget: wd · Σ lr_t under the linear schedule with warmup, by hand', () => {
    expect(decayBudget(0.5, [1, 2, 3])).toBe(3);
    // 10 steps, warmup ⌈10·0.1⌉ = 1: step 1 applies λ(0) = 0, step t ≥ 2 applies (10 − (t−1))/9: Σ = (9+8+…+1)/9 = 5.
    expect(runDecayBudget({ weightDecay: 2, lr: 0.1, steps: 10, scheduler: 'linear', warmupRatio: 0.1 })).toBeCloseTo(2 * 0.1 * 5, 12);
  });

  it('rejects an odd main rank and an unknown preset with a usage error', () => {
    expect(() => mainRuns({ ...QUICK, mainRank: 3 }, { lora: 1, dora: 1 })).toThrow(/even/);
    try {
      presetByName('huge');
      expect.unreachable();
    } catch (e) {
      expect(isDorascopeError(e, 'E_USAGE')).toBe(true);
      expect((e as Error).message).toMatch(/quick, full, gpu/);
    }
    expect(presetByName('gpu')).toBe(GPU);
  });

  it('sweeps every adapter learning rate once, at the main rank, on the first base', () => {
    const sweep = lrSweepRuns(FULL);
    expect(sweep).toHaveLength(FULL.lrGrid.lora.length + FULL.lrGrid.dora.length);
    for (const s of sweep) expect(s).toMatchObject({ rank: FULL.mainRank, baseIndex: 0, steps: FULL.sweepSteps });
  });
});

import { describe, expect, it } from 'vitest';
import { FULL, GPU, QUICK, checkpointSteps, decayBudget, headlineSteps, lrSweepRuns, mainRuns, presetByName, runDecayBudget } from '../../src/reproduce/plan.js';
import { isDorascopeError } from '../../src/errors.js';
import { parseMethods } from '../../src/reproduce/methods.js';

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

  it('--methods adds VeRA, DVoRA, QLoRA and QDoRA as roles on every base × seed, each with its own rank, rate and base storage', () => {
    const extras = parseMethods('all');
    expect(extras.map((e) => e.key)).toEqual(['vera', 'dvora', 'qlora', 'qdora']);
    const plan = mainRuns(FULL, { lora: 1e-2, dora: 3e-3, vera: 3e-2, dvora: 1e-2 }, extras);
    expect(plan.roles.map((r) => [r.label, r.config, r.method])).toEqual([
      ['FT', 'ft', 'ft'], ['LoRA r8', 'lora-r8', 'lora'], ['DoRA r8', 'dora-r8', 'dora'], ['DoRA† r4', 'dora-r4', 'dora'],
      ['VeRA r32', 'vera-r32', 'vera'], ['DVoRA r32', 'dvora-r32', 'dvora'], ['QLoRA r8', 'qlora-r8', 'qlora'], ['QDoRA r8', 'qdora-r8', 'qdora'],
    ]);
    const names = plan.runs.map((r) => r.name);
    expect(new Set(names).size).toBe(names.length);
    // The paper's runs are unchanged; four more configurations on each of the 2 × 2 base × seed pairs.
    expect(names).toHaveLength(2 * 2 * 7 + 5 + 2 * 2 * 4);
    expect(plan.runs.find((r) => r.name === 'vera-r32-b1s2')).toMatchObject({ method: 'vera', rank: 32, lr: 3e-2 });
    expect(plan.runs.find((r) => r.name === 'vera-r32-b1s2')!.alpha).toBeUndefined();
    expect(plan.runs.find((r) => r.name === 'dvora-r32-b0s1')).toMatchObject({ method: 'dvora', rank: 32, lr: 1e-2 });
    expect(plan.runs.find((r) => r.name === 'qlora-r8-b0s2')).toMatchObject({ method: 'lora', quantize: 'nf4', rank: 8, alpha: 16, lr: 1e-2 });
    expect(plan.runs.find((r) => r.name === 'qdora-r8-b1s1')).toMatchObject({ method: 'dora', quantize: 'nf4', rank: 8, alpha: 16, lr: 3e-3 });
    expect(plan.runs.find((r) => r.name === 'lora-r8-b0s1')!.quantize).toBeUndefined();
    // The sweep adds VeRA's and DVoRA's rates (QLoRA/QDoRA take LoRA's/DoRA's), at their own rank.
    const sweep = lrSweepRuns(FULL, extras);
    expect(sweep.map((s) => [s.family, s.method, s.rank])).toEqual([
      ...FULL.lrGrid.lora.map(() => ['lora', 'lora', 8]), ...FULL.lrGrid.dora.map(() => ['dora', 'dora', 8]),
      ...FULL.lrGrid.vera.map(() => ['vera', 'vera', 32]), ...FULL.lrGrid.dvora.map(() => ['dvora', 'dvora', 32]),
    ]);
  });

  it('--methods: none by default, a subset in catalogue order, an unknown name is a usage error naming it', async () => {
    expect(parseMethods(undefined)).toEqual([]);
    expect(parseMethods('qdora, vera').map((e) => e.key)).toEqual(['vera', 'qdora']);
    for (const bad of ['loha', 'lora']) {
      try {
        parseMethods(bad);
        expect.unreachable();
      } catch (e) {
        expect(isDorascopeError(e, 'E_USAGE')).toBe(true);
        expect((e as Error).message).toContain(`"${bad}"`);
      }
    }
    expect(() => mainRuns(FULL, { lora: 1e-2, dora: 3e-3 }, parseMethods('vera'))).toThrow(/no learning rate was chosen for vera/);
  });
});

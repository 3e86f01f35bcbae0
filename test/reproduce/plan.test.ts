import { describe, expect, it } from 'vitest';
import { FULL, QUICK, checkpointSteps, lrSweepRuns, mainRuns, presetByName } from '../../src/reproduce/plan.js';
import { isDorascopeError } from '../../src/errors.js';

describe('reproduction plan', () => {
  it('saves at least four checkpoints per run, the last at the final step (paper: three intermediate + final)', () => {
    for (const p of [QUICK, FULL]) {
      const steps = checkpointSteps(p);
      expect(steps.length).toBeGreaterThanOrEqual(4);
      expect(steps[steps.length - 1]).toBe(p.steps);
    }
    expect(checkpointSteps({ steps: 10, saveEvery: 3 })).toEqual([3, 6, 9, 10]);
    expect(checkpointSteps({ steps: 12, saveEvery: 3 })).toEqual([3, 6, 9, 12]);
  });

  it('trains each distinct run once: DoRA† is the DoRA run at r/2, rank sweep covers 2, 4, 8, 16', () => {
    const { runs, roles } = mainRuns(FULL, { full: 1e-3, lora: 3e-3, dora: 2e-3 });
    // 1 full + LoRA and DoRA at {2, 4, 8, 16} (main rank 8 and r/2 = 4 are already in the sweep).
    expect(runs.map((r) => r.name)).toEqual(['ft', 'lora-r2', 'lora-r4', 'lora-r8', 'lora-r16', 'dora-r2', 'dora-r4', 'dora-r8', 'dora-r16']);
    expect(roles.map((r) => [r.label, r.run])).toEqual([
      ['FT', 'ft'],
      ['LoRA r8', 'lora-r8'],
      ['DoRA r8', 'dora-r8'],
      ['DoRA† r4', 'dora-r4'],
    ]);
    expect(new Set(runs.map((r) => r.steps))).toEqual(new Set([FULL.steps]));
    expect(runs.find((r) => r.name === 'dora-r16')).toMatchObject({ lr: 2e-3, rank: 16, alpha: 32 });
    expect(runs.find((r) => r.name === 'lora-r2')).toMatchObject({ lr: 3e-3, alpha: 4 });
  });

  it('adds the main rank and r/2 when the sweep lacks them', () => {
    const { runs } = mainRuns({ ...QUICK, mainRank: 6, ranks: [2] }, { full: 1, lora: 1, dora: 1 });
    expect(runs.filter((r) => r.method === 'dora').map((r) => r.rank)).toEqual([2, 3, 6]);
  });

  it('rejects an odd main rank (no integer r/2) with a usage error', () => {
    expect(() => mainRuns({ ...QUICK, mainRank: 3 }, { full: 1, lora: 1, dora: 1 })).toThrow(/even/);
    expect(() => presetByName('huge')).toThrow(expect.objectContaining({ code: 'E_USAGE' }));
    try {
      presetByName('huge');
    } catch (e) {
      expect(isDorascopeError(e, 'E_USAGE')).toBe(true);
    }
  });

  it('sweeps every learning rate of every family once, at the main rank', () => {
    const sweep = lrSweepRuns(QUICK);
    const n = QUICK.lrGrid.full.length + QUICK.lrGrid.lora.length + QUICK.lrGrid.dora.length;
    expect(sweep).toHaveLength(n);
    expect(new Set(sweep.map((s) => s.name)).size).toBe(n);
    for (const s of sweep) if (s.method !== 'full') expect(s.rank).toBe(QUICK.mainRank);
  });
});

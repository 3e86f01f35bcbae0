import { describe, expect, it } from 'vitest';
import { lrAt, lrMultiplier, makeSchedule, resolveWarmup } from '../../src/train/schedule.js';
import { train } from '../../src/train/train.js';
import { isDorascopeError } from '../../src/errors.js';

// Values worked by hand from Hugging Face's formulas (transformers/optimization.py).
describe('learning-rate schedules (HF names and semantics)', () => {
  it('linear with 2 warmup steps over 10: 0, ½, then (10 − k)/8', () => {
    const s = makeSchedule('linear', 1, 10, 2);
    // λ(k) for k = 0..10
    expect(Array.from({ length: 11 }, (_, k) => lrMultiplier(s, k))).toEqual([0, 0.5, 1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8, 0]);
    // optimizer step n applies λ(n − 1): step 1 runs at 0 under warmup
    expect(lrAt(makeSchedule('linear', 0.2, 10, 2), 1)).toBe(0);
    expect(lrAt(makeSchedule('linear', 0.2, 10, 2), 3)).toBe(0.2);
    expect(lrAt(makeSchedule('linear', 0.2, 10, 2), 10)).toBeCloseTo(0.2 / 8, 15);
  });

  it('cosine with 2 warmup steps over 10: ½(1 + cos(π·(k − 2)/8))', () => {
    const s = makeSchedule('cosine', 1, 10, 2);
    expect(lrMultiplier(s, 1)).toBe(0.5);
    expect(lrMultiplier(s, 2)).toBe(1);
    expect(lrMultiplier(s, 4)).toBeCloseTo(0.5 + Math.SQRT2 / 4, 15); // p = ¼: ½(1 + cos 45°)
    expect(lrMultiplier(s, 6)).toBeCloseTo(0.5, 15); // p = ½
    expect(lrMultiplier(s, 8)).toBeCloseTo(0.5 - Math.SQRT2 / 4, 15); // p = ¾
    expect(lrMultiplier(s, 10)).toBeCloseTo(0, 15);
  });

  it('constant and constant_with_warmup', () => {
    const c = makeSchedule('constant', 0.3, 5, 0);
    expect([1, 2, 5].map((n) => lrAt(c, n))).toEqual([0.3, 0.3, 0.3]);
    const w = makeSchedule('constant_with_warmup', 1, 10, 4);
    expect([0, 1, 2, 3, 4, 9].map((k) => lrMultiplier(w, k))).toEqual([0, 0.25, 0.5, 0.75, 1, 1]);
  });

  it('warmup_ratio is ⌈steps·ratio⌉ unless warmup_steps > 0', () => {
    expect(resolveWarmup(10, 0, 0.25)).toBe(3);
    expect(resolveWarmup(1000, 0, 0.1)).toBe(100);
    expect(resolveWarmup(10, 4, 0.5)).toBe(4);
    expect(resolveWarmup(10)).toBe(0);
  });

  it('bad schedule options are typed E_USAGE errors', () => {
    const usage = (f: () => unknown) => expect(f).toThrow(expect.objectContaining({ code: 'E_USAGE' }));
    usage(() => makeSchedule('constant', 1, 10, 2)); // HF would silently drop the warmup
    usage(() => makeSchedule('polynomial', 1, 10, 0));
    usage(() => makeSchedule('linear', Number.NaN, 10, 0));
    usage(() => resolveWarmup(10, -1));
    usage(() => resolveWarmup(10, 1.5));
    usage(() => resolveWarmup(10, 0, 2));
  });

  it('train logs the rate each step applied in log_history (learning_rate)', async () => {
    const res = await train({
      method: 'full', steps: 4, seed: 2, lr: 0.1, lrScheduler: 'linear', warmupSteps: 2,
      config: { hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2 }, batchSize: 2, contextLength: 8,
    });
    // total 4, warmup 2: λ(0..3) = 0, ½, (4−2)/2, (4−3)/2
    expect(res.logHistory.map((h) => h.learning_rate)).toEqual([0, 0.05, 0.1, 0.05]);
    await expect(train({ method: 'full', steps: 4, lrScheduler: 'constant', warmupSteps: 1 }))
      .rejects.toSatisfy((e) => isDorascopeError(e, 'E_USAGE'));
  });
});

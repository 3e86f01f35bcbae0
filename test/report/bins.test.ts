import { describe, expect, it } from 'vitest';
import { QuantileSketch, binOf, chooseScale } from '../../src/report/bins.js';

const sketch = (xs: number[]): QuantileSketch => { const s = new QuantileSketch(); xs.forEach((x) => s.add(x)); return s; };

describe('histogram bins', () => {
  it('the quantile is the top of its 1/16 bucket: [2, 2.125) holds the median of 1, 2, 3, 4', () => {
    const u = sketch([1, 2, 3, 4]).upperQuantile(0.5);
    expect(u).toBeGreaterThanOrEqual(2);
    expect(u).toBeLessThan(2.125);
    expect(u + 2 ** -51).toBe(2.125); // the largest double below 2.125 (ulp at 2 is 2^-51)
  });

  it('NaN and ±Infinity are not sketched; values ≤ 0 share the lowest bucket', () => {
    const s = sketch([NaN, Infinity, -Infinity, -1e-16, 0, 0.2, 0.4]);
    expect([s.n, s.min, s.max]).toEqual([4, -1e-16, 0.4]);
    expect(s.upperQuantile(0.5)).toBe(0); // 2 of 4 values ≤ 0
    const sc = chooseScale(s, 2)!;
    expect([sc.lo, sc.hi]).toEqual([-1e-16, 0.4]); // the 99.9% bucket's top is capped at the maximum
  });

  it('degenerate scales still have width: one value, all zeros, nothing finite', () => {
    expect(Array.from(chooseScale(sketch([0.5, 0.5, 0.5]), 2)!.edges)).toEqual([0.5, 0.75, 1]);
    expect(Array.from(chooseScale(sketch([0, 0]), 2)!.edges)).toEqual([0, 0.5, 1]);
    expect(chooseScale(sketch([NaN]), 2)).toBeNull();
  });

  it('a value goes to the bin whose edges hold it: left-closed, the last closed, then above, not finite, below', () => {
    const e = Float64Array.from([0, 1, 2, 3]);
    expect([0, 0.999, 1, 2.5, 3, 3.0001, NaN, Infinity, -0.5].map((x) => binOf(x, e, 3))).toEqual([0, 0, 1, 2, 2, 3, 4, 4, -1]);
    // Edges that division would miss by rounding: 0.1 · 3 is not 0.3, the edges array decides.
    const f = Float64Array.from([0, 0.1, 0.2, 0.30000000000000004]);
    expect(binOf(0.2, f, 3)).toBe(2);
    expect(binOf(0.19999999999999998, f, 3)).toBe(1);
  });
});

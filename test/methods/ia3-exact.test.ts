/**
 * IA³'s exact ΔM/ΔD algebra (methods/ia3.ts `scaledFeatureTerms`, analysis `featureDecompose`) against
 * independent float64 references: the closed form of an output scaling (‖l_n w‖ = |l_n|‖w‖, cos = sign l_n),
 * and, for input scaling with l within 2⁻²⁰ of 1, Lagrange's identity
 * 1 − cos² = Σ_{j<k} (w_j w′_k − w_k w′_j)² / (‖w‖²‖w′‖²), where w_j w′_k − w_k w′_j = w_j w_k (l_k − l_j)
 * is exact — a reference that keeps a change which W′ rounded to float32 would lose.
 */
import { describe, expect, it } from 'vitest';
import { featureDecompose } from '../../src/analysis/exact-adapter-series.js';
import { scaledFeatureTerms } from '../../src/methods/ia3.js';
import { exactValues } from '../helpers/models.js';
import { rng } from '../helpers/random.js';

const next = rng(303);

describe('IA³ exact ΔM/ΔD', () => {
  it('output scaling: ‖w′‖ = |l|‖w‖ and cos = sign(l) per feature, so ΔD counts the negative scales only', () => {
    const W = exactValues(next, 4 * 5);
    const l = Float32Array.from([2, -0.5, 1, -1]);
    const d = featureDecompose(scaledFeatureTerms(W, [4, 5], 0, l, true, 'w'), true);
    let dm = 0;
    for (let n = 0; n < 4; n++) {
      let ss = 0;
      for (let j = 0; j < 5; j++) ss += W[n * 5 + j]! ** 2;
      dm += Math.abs(Math.abs(l[n]!) - 1) * Math.sqrt(ss);
      expect(d.cos![n]).toBeCloseTo(Math.sign(l[n]!), 14);
    }
    expect(d.deltaM).toBeCloseTo(dm / 4, 14);
    expect(d.deltaD).toBeCloseTo((0 + 2 + 0 + 2) / 4, 14);
  });

  it('input scaling with l within 2⁻²⁰ of 1: ΔD ≈ 1e-13 to 1e-6 relative of the Lagrange reference', () => {
    const rows = 3, cols = 8;
    const W = exactValues(next, rows * cols);
    const eps = Array.from({ length: cols }, (_, j) => ((j * 5) % 7 - 3) * 2 ** -20);
    const l = Float32Array.from(eps, (e) => 1 + e);
    const d = featureDecompose(scaledFeatureTerms(W, [rows, cols], 1, l, true, 'w'));
    let dd = 0;
    for (let n = 0; n < rows; n++) {
      const w = Array.from({ length: cols }, (_, j) => W[n * cols + j]!);
      let a = 0, b = 0, ab = 0, cross = 0;
      for (let j = 0; j < cols; j++) { a += w[j]! ** 2; b += (w[j]! * l[j]!) ** 2; ab += w[j]! * w[j]! * l[j]!; }
      for (let j = 0; j < cols; j++) for (let k = j + 1; k < cols; k++) cross += (w[j]! * w[k]! * (eps[k]! - eps[j]!)) ** 2;
      const cos = ab / Math.sqrt(a * b);
      dd += cross / (a * b) / (1 + cos);
    }
    dd /= rows;
    expect(dd).toBeGreaterThan(1e-15);
    expect(dd).toBeLessThan(1e-10);
    expect(Math.abs(d.deltaD - dd)).toBeLessThanOrEqual(1e-6 * dd);
  });
});

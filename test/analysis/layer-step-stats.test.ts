import { describe, expect, it } from 'vitest';
import { acrossSeeds, layerStepStats, magnitudeShift, partialledR, selectionStats, withinCheckpointR, type MagnitudeRow, type StatPoint } from '../../src/analysis/layer-step-stats.js';
import { rng } from '../helpers/random.js';
import { pearsonLoop as r } from '../helpers/pearson.js';

const pt = (tensor: string, step: number, x: number, y: number): StatPoint => ({ tensor, step, x, y });

/**
 * Three tensors A, B, C at two checkpoints. Within each checkpoint ΔM falls as ΔD rises (r = −0.5),
 * but both grow from step 1 to step 2, so the pooled r is +0.96: the step effect.
 */
const CONSTRUCTED: StatPoint[] = [
  pt('A', 1, 1, 3), pt('B', 1, 2, 1), pt('C', 1, 3, 2),
  pt('A', 2, 11, 12), pt('B', 2, 12, 13), pt('C', 2, 13, 11),
];

describe('step and layer views of the ΔM/ΔD points (hand-worked)', () => {
  it('pooled r > 0 while within-checkpoint r < 0', () => {
    const s = selectionStats(CONSTRUCTED.map((p) => ({ tensor: p.tensor, step: p.step, rows: 1, delta_d: p.x, delta_m: p.y, shrunk_rows: 0, mean_m0: 1, mean_mt: 1 })), 0);
    // x = 1,2,3,11,12,13; y = 3,1,2,12,13,11: Σdxdy = 148, Σdx² = Σdy² = 154.
    expect(s.pooled.pearson_r).toBeCloseTo(148 / 154, 12);
    // Each checkpoint: dx = −1,0,1 against dy = 1,−1,0 (step 1) and 0,1,−1 (step 2): r = −1/2 both.
    expect(s.layer_step.within_checkpoint.per_checkpoint).toEqual([{ step: 1, n: 3, r: -0.5 }, { step: 2, n: 3, r: -0.5 }]);
    expect(s.layer_step.within_checkpoint.r).toBeCloseTo(-0.5, 12);
    expect(s.layer_step.within_checkpoint.n_checkpoints).toBe(2);
    expect(s.layer_step.within_checkpoint.n).toBe(6);
  });

  it('step-partialled r (checkpoint means removed) and layer-partialled r (tensor means removed)', () => {
    // Checkpoint means (2, 2) and (12, 12): the demeaned points give Σdxdy = −2, Σdx² = Σdy² = 4.
    expect(partialledR(CONSTRUCTED, 'step')).toBeCloseTo(-0.5, 12);
    // Tensor means A (6, 7.5), B (7, 7), C (8, 6.5): dx = ±5 each; dy = ±4.5, ±6, ±4.5 → 150 / √(150·153).
    expect(partialledR(CONSTRUCTED, 'tensor')).toBeCloseTo(Math.sqrt(150 / 153), 12);
  });

  it("within-checkpoint r is the Fisher-z mean of the checkpoints' r, weighted by n − 3", () => {
    const next = rng(5);
    const pts: StatPoint[] = [];
    const sizes = new Map([[10, 4], [20, 6], [30, 9]]);
    for (const [step, n] of sizes) for (let t = 0; t < n; t++) pts.push(pt(`t${t}`, step, next(), next()));
    const per = [...sizes].map(([step]) => {
      const g = pts.filter((p) => p.step === step);
      return { n: g.length, r: r(g.map((p) => p.x), g.map((p) => p.y)) };
    });
    const w = per.map((p) => p.n - 3);
    const z = per.reduce((a, p, i) => a + w[i]! * Math.atanh(p.r), 0) / w.reduce((a, b) => a + b, 0);
    const got = withinCheckpointR(pts);
    expect(got.per_checkpoint.map((c) => c.r)).toEqual(per.map((p) => expect.closeTo(p.r, 12)));
    expect(got.r).toBeCloseTo(Math.tanh(z), 12);
  });

  it('a checkpoint with fewer than 3 tensors, or one that does not vary, has no r and is left out', () => {
    const pts = [...CONSTRUCTED, pt('A', 3, 1, 1), pt('B', 3, 1, 2), pt('C', 3, 1, 3), pt('A', 4, 5, 5), pt('B', 4, 6, 6)];
    const got = withinCheckpointR(pts);
    expect(got.per_checkpoint.map((c) => c.r)).toEqual([-0.5, -0.5, null, null]);
    expect(got.r).toBeCloseTo(-0.5, 12);
  });

  it('cluster-bootstrap intervals: deterministic, bracket the estimate, and exclude 0 for a strong layer effect', () => {
    // 8 layers × 4 checkpoints: growth with the step, and across layers ΔM falls as ΔD rises.
    const next = rng(11);
    const pts: StatPoint[] = [];
    for (let s = 1; s <= 4; s++) {
      for (let l = 0; l < 8; l++) {
        const x = s * (1 + 0.1 * l) + 0.02 * next();
        pts.push(pt(`model.layers.${l}.q_proj.weight`, s, x, s * (2 - 0.1 * l) + 0.02 * next()));
      }
    }
    const a = layerStepStats(pts), b = layerStepStats(pts);
    expect(a).toEqual(b);
    const x = pts.map((p) => p.x), y = pts.map((p) => p.y);
    expect(r(x, y)).toBeGreaterThan(0.5); // pooled: the step effect wins
    const w = a.within_checkpoint;
    expect(w.r!).toBeLessThan(-0.9);
    expect(w.r_ci95![1]).toBeLessThan(0);
    expect(w.r_ci95![0]).toBeLessThanOrEqual(w.r!);
    expect(w.n_tensors).toBe(8);
    expect(a.step_partialled.r!).toBeLessThan(-0.9);
    expect(a.step_partialled.r_ci95![1]).toBeLessThan(0);
    expect(a.layer_partialled.r!).toBeGreaterThan(0.9);
    expect(a.layer_partialled.r_ci95![0]).toBeGreaterThan(0);
  });
});

describe('relative ΔM and the signed magnitude change', () => {
  it('relative ΔM is blind to a per-layer rescaling that moves the absolute one', () => {
    const next = rng(3);
    const rows: MagnitudeRow[] = [];
    for (let s = 1; s <= 3; s++) {
      for (let l = 0; l < 6; l++) {
        const rel = 0.01 * s * (1 + next()), dd = 0.001 * s * (1 + next());
        // Layer l's weights are 4^l times larger: its absolute ΔM too, for the same relative change.
        const m0 = 4 ** l;
        rows.push({ tensor: `L${l}`, step: s, rows: 10, delta_d: dd, delta_m: rel * m0, shrunk_rows: 0, mean_m0: m0, mean_mt: m0 * (1 + rel) });
      }
    }
    const s = selectionStats(rows, 0);
    const relX = rows.map((r0) => r0.delta_d), relY = rows.map((r0) => r0.delta_m / r0.mean_m0);
    expect(s.relative.pooled.pearson_r).toBeCloseTo(r(relX, relY), 12);
    const rescaled = rows.map((r0) => ({ ...r0, delta_m: r0.delta_m * 7, mean_m0: r0.mean_m0 * 7, mean_mt: r0.mean_mt * 7 }));
    expect(selectionStats(rescaled, 0).relative.pooled.pearson_r).toBeCloseTo(s.relative.pooled.pearson_r!, 12);
    expect(s.relative.pooled.n).toBe(18);
  });

  it('mean signed Δm and the shrunk fractions at one checkpoint, by hand', () => {
    const rows: MagnitudeRow[] = [
      { tensor: 'A', step: 5, rows: 4, shrunk_rows: 3, mean_m0: 2, mean_mt: 1.5, delta_m: 0.5, delta_d: 0.1 },
      { tensor: 'B', step: 5, rows: 4, shrunk_rows: 1, mean_m0: 1, mean_mt: 1.2, delta_m: 0.3, delta_d: 0.1 },
      { tensor: 'A', step: 9, rows: 4, shrunk_rows: 4, mean_m0: 2, mean_mt: 1, delta_m: 1, delta_d: 0.2 },
    ];
    const m = magnitudeShift(rows, 5);
    expect(m.n).toBe(2);
    expect(m.mean_signed_delta_m).toBeCloseTo((-0.5 + 0.2) / 2, 12);
    expect(m.mean_signed_rel_delta_m).toBeCloseTo((-0.25 + 0.2) / 2, 12);
    expect(m.frac_features_shrunk).toBe(0.5);
    expect(m.frac_tensors_shrunk).toBe(0.5);
    expect(selectionStats(rows, 0).magnitude.final!.step).toBe(9);
  });

  it('across seeds: mean and range, nulls counted out', () => {
    expect(acrossSeeds([-0.5, 0.1, null, -0.2])).toEqual({ n_runs: 3, mean: expect.closeTo(-0.2, 12), min: -0.5, max: 0.1, values: [-0.5, 0.1, null, -0.2] });
    expect(acrossSeeds([null])).toMatchObject({ n_runs: 0, mean: null });
  });
});

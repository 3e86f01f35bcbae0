import { describe, expect, it } from 'vitest';
import { layerStepStats, type StatPoint } from '../../src/analysis/layer-step-stats.js';
import { rng } from '../helpers/random.js';

/**
 * The cluster bootstrap of layer-step-stats.ts (typed arrays, no resample built) against the
 * definition, written here as plain loops over a materialised resample: draw tensors with the same
 * mulberry32 stream, copy their points under fresh labels, and compute each r by two-pass sums.
 * (Measured when written: the pooled and within-checkpoint intervals come out bit-identical, the
 * partialled ones within 7e-16.)
 */
type P = { label: number; step: number; x: number; y: number };

function r2(x: readonly number[], y: readonly number[]): number | null {
  const n = x.length;
  if (n < 3) return null;
  let mx = 0, my = 0;
  for (let i = 0; i < n; i++) { mx += x[i]!; my += y[i]!; }
  mx /= n; my /= n;
  let sxx = 0, syy = 0, sxy = 0;
  for (let i = 0; i < n; i++) { const dx = x[i]! - mx, dy = y[i]! - my; sxx += dx * dx; syy += dy * dy; sxy += dx * dy; }
  // A variable with one value does not vary, whatever its rounded mean leaves behind.
  if (x.every((v) => v === x[0]) || y.every((v) => v === y[0])) return null;
  return sxx > 0 && syy > 0 ? Math.max(-1, Math.min(1, sxy / Math.sqrt(sxx * syy))) : null;
}

function demeaned(s: readonly P[], key: (p: P) => number): { x: number[]; y: number[] } {
  const groups = new Map<number, P[]>();
  for (const p of s) { const g = groups.get(key(p)); if (g) g.push(p); else groups.set(key(p), [p]); }
  const x: number[] = [], y: number[] = [];
  for (const g of groups.values()) {
    // A group whose values are all equal leaves residuals of exactly 0.
    const mx = g.every((p) => p.x === g[0]!.x) ? g[0]!.x : g.reduce((a, p) => a + p.x, 0) / g.length;
    const my = g.every((p) => p.y === g[0]!.y) ? g[0]!.y : g.reduce((a, p) => a + p.y, 0) / g.length;
    for (const p of g) { x.push(p.x - mx); y.push(p.y - my); }
  }
  return { x, y };
}

function within(s: readonly P[]): number | null {
  let zw = 0, w = 0;
  for (const step of [...new Set(s.map((p) => p.step))].sort((a, b) => a - b)) {
    const g = s.filter((p) => p.step === step);
    const r = r2(g.map((p) => p.x), g.map((p) => p.y));
    if (r === null) continue;
    const wt = Math.max(1, g.length - 3);
    zw += wt * Math.atanh(Math.max(-(1 - 1e-9), Math.min(1 - 1e-9, r)));
    w += wt;
  }
  return w > 0 ? Math.tanh(zw / w) : null;
}

function interval(v: number[]): [number, number] | null {
  if (v.length === 0) return null;
  v.sort((a, b) => a - b);
  const at = (q: number) => { const pos = (v.length - 1) * q, lo = Math.floor(pos), hi = Math.ceil(pos); return v[lo]! + (v[hi]! - v[lo]!) * (pos - lo); };
  return [at(0.025), at(0.975)];
}

function reference(points: readonly StatPoint[], resamples: number, seed: number): ([number, number] | null)[] {
  const names = [...new Set(points.map((p) => p.tensor))];
  const clusters = names.map((t) => points.filter((p) => p.tensor === t));
  const rand = rng(seed);
  const out: number[][] = [[], [], [], []];
  for (let b = 0; b < resamples; b++) {
    const s: P[] = [];
    for (let i = 0; i < clusters.length; i++) for (const p of clusters[Math.floor(rand() * clusters.length)]!) s.push({ label: i, step: p.step, x: p.x, y: p.y });
    const byStep = demeaned(s, (p) => p.step), byLabel = demeaned(s, (p) => p.label);
    [r2(s.map((p) => p.x), s.map((p) => p.y)), within(s), r2(byStep.x, byStep.y), r2(byLabel.x, byLabel.y)]
      .forEach((v, k) => { if (v !== null) out[k]!.push(v); });
  }
  return out.map(interval);
}

/** Random runs: tensors missing some checkpoints, a few with two points at one step, a step trend, and a badly centred case. */
function randomPoints(seed: number): StatPoint[] {
  const next = rng(seed);
  const tensors = 3 + Math.floor(next() * 10), steps = 1 + Math.floor(next() * 6);
  const offset = seed % 3 === 0 ? 1e3 : 0; // large common offset: the sums must be centred to keep 1e-12
  const pts: StatPoint[] = [];
  for (let t = 0; t < tensors; t++) {
    for (let s = 1; s <= steps; s++) {
      if (next() < 0.15) continue;
      const copies = next() < 0.1 ? 2 : 1;
      for (let c = 0; c < copies; c++) pts.push({ tensor: `T${t}`, step: 10 * s, x: offset + s * (1 + 0.2 * t) + next(), y: offset + s * (2 - 0.1 * t) + next() });
    }
  }
  return pts;
}

describe('cluster bootstrap against a materialised resample', () => {
  it('all four intervals agree to 1e-12 on random runs, for the same random stream', () => {
    let checked = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const pts = randomPoints(seed);
      const got = layerStepStats(pts, 200, 1000 + seed);
      const want = reference(pts, 200, 1000 + seed);
      const cis = [got.pooled.r_ci95, got.within_checkpoint.r_ci95, got.step_partialled.r_ci95, got.layer_partialled.r_ci95];
      cis.forEach((ci, k) => {
        const w = want[k]!;
        // The estimate being null (or fewer than 3 tensors) leaves no interval; otherwise they must match.
        if (ci === null) return;
        expect(w).not.toBeNull();
        expect(Math.abs(ci[0] - w![0])).toBeLessThanOrEqual(1e-12);
        expect(Math.abs(ci[1] - w![1])).toBeLessThanOrEqual(1e-12);
        checked++;
      });
    }
    expect(checked).toBeGreaterThan(100);
  });

  it('fewer than 3 tensors: no interval', () => {
    const pts: StatPoint[] = [1, 2, 3].flatMap((s) => [{ tensor: 'A', step: s, x: s, y: s * s }, { tensor: 'B', step: s, x: 2 * s, y: s }]);
    const got = layerStepStats(pts, 100, 1);
    expect(got.pooled.r).not.toBeNull();
    expect(got.pooled.r_ci95).toBeNull();
  });
});

describe('a variable that does not vary has no r (rounding of its mean is not variation)', () => {
  it('three copies of one point per checkpoint: no within-checkpoint or step-partialled r', () => {
    // (0.1 + 0.1 + 0.1) / 3 = 0.10000000000000002: residuals of ±1e-17 must not become an r.
    const pts: StatPoint[] = [1, 2].flatMap((s) => ['A', 'B', 'C'].map((t, i) => ({ tensor: t, step: s, x: 0.1 * s, y: i + s })));
    const got = layerStepStats(pts, 0);
    expect(got.within_checkpoint.per_checkpoint.map((c) => c.r)).toEqual([null, null]);
    expect(got.step_partialled.r).toBeNull();
    expect(got.pooled.r).toBeCloseTo(r2Of(pts), 12);
  });
});

function r2Of(pts: readonly StatPoint[]): number {
  return r2(pts.map((p) => p.x), pts.map((p) => p.y))!;
}

/**
 * Statistics that separate the training-step effect from the layer effect in the ΔM/ΔD points of
 * a run (DoRA paper §3.2, Figure 2 pools the layers of four checkpoints into one correlation).
 *
 * ΔM and ΔD both grow with training steps, so a correlation pooled over checkpoints and layers
 * is dominated by the common trend over steps and comes out positive for any method whose
 * updates grow over time. Three views take that apart:
 * - within-checkpoint r: the correlation across layers (tensors) at each checkpoint, combined
 *   over checkpoints by averaging Fisher's z = atanh(r) with weights n_c − 3 (the inverse of
 *   z's sampling variance; at least 1), then back-transformed with tanh;
 * - step-partialled r: each checkpoint's mean removed from ΔD and ΔM, then pooled (the layer signal);
 * - layer-partialled r: each tensor's mean over checkpoints removed, then pooled (the step trend).
 * Points of one tensor at different checkpoints are not independent, so the 95% intervals of these
 * views, and of the pooled r beside them, come
 * from a cluster bootstrap: tensors (a layer's module) are resampled with replacement, each
 * bringing all its checkpoints (mulberry32, fixed seed: the same data give the same interval).
 *
 * Relative ΔM (ΔM / mean m_0 of the tensor) removes the per-layer weight scale: absolute ΔM of a
 * layer whose norms are twice as large is twice as large for the same relative change.
 *
 * Only usable points reach these functions (finite, unflagged); every result reports its n.
 */
import { mulberry32 } from '../random.js';
import { BOOTSTRAP, correlate, pearson, type Stats } from './stats.js';

/** One (tensor, checkpoint) point: x = ΔD, y = ΔM (or relative ΔM). */
export interface StatPoint {
  readonly tensor: string;
  readonly step: number;
  readonly x: number;
  readonly y: number;
}

export interface ClusteredR {
  /** Points used. */
  readonly n: number;
  /** Tensors (clusters) the points come from. */
  readonly n_tensors: number;
  readonly r: number | null;
  readonly r_ci95: [number, number] | null;
}

export interface WithinCheckpointR extends ClusteredR {
  /** Checkpoints with a defined r (at least 3 tensors that vary). */
  readonly n_checkpoints: number;
  readonly per_checkpoint: { step: number; n: number; r: number | null }[];
}

export interface LayerStepStats {
  /** The pooled r (the paper's statistic) with a cluster-bootstrap interval, which does not treat a layer's checkpoints as independent points. */
  readonly pooled: ClusteredR;
  readonly within_checkpoint: WithinCheckpointR;
  readonly step_partialled: ClusteredR;
  readonly layer_partialled: ClusteredR;
}

/** |r| is kept below 1 before atanh so one perfect checkpoint does not make the mean infinite. */
const R_MAX = 1 - 1e-9;

function groupBy<T>(items: readonly T[], key: (t: T) => string | number): Map<string | number, T[]> {
  const m = new Map<string | number, T[]>();
  for (const it of items) {
    const k = key(it);
    const g = m.get(k);
    if (g) g.push(it); else m.set(k, [it]);
  }
  return m;
}

/** Per-checkpoint r across tensors, and their Fisher-z mean (null when no checkpoint has one). */
export function withinCheckpointR(points: readonly StatPoint[]): { r: number | null; per_checkpoint: { step: number; n: number; r: number | null }[] } {
  const per: { step: number; n: number; r: number | null }[] = [];
  let zw = 0, w = 0;
  const groups = [...groupBy(points, (p) => p.step)].sort((a, b) => Number(a[0]) - Number(b[0]));
  for (const [step, g] of groups) {
    const r = pearson(g.map((p) => p.x), g.map((p) => p.y));
    per.push({ step: Number(step), n: g.length, r });
    if (r === null) continue;
    const weight = Math.max(1, g.length - 3);
    zw += weight * Math.atanh(Math.max(-R_MAX, Math.min(R_MAX, r)));
    w += weight;
  }
  return { r: w > 0 ? Math.tanh(zw / w) : null, per_checkpoint: per };
}

/** Pooled r after removing the mean of x and y within each group (by checkpoint or by tensor). */
export function partialledR(points: readonly StatPoint[], by: 'step' | 'tensor'): number | null {
  const groups = groupBy(points, (p) => (by === 'step' ? p.step : p.tensor));
  const x: number[] = [], y: number[] = [];
  for (const g of groups.values()) {
    let mx = 0, my = 0;
    for (const p of g) { mx += p.x; my += p.y; }
    mx /= g.length; my /= g.length;
    for (const p of g) { x.push(p.x - mx); y.push(p.y - my); }
  }
  return pearson(x, y);
}

function percentileInterval(values: number[]): [number, number] | null {
  if (values.length === 0) return null;
  values.sort((a, b) => a - b);
  const at = (p: number) => {
    const pos = (values.length - 1) * p;
    const lo = Math.floor(pos), hi = Math.ceil(pos);
    return values[lo]! + (values[hi]! - values[lo]!) * (pos - lo);
  };
  return [at(0.025), at(0.975)];
}

/**
 * Cluster-bootstrap 95% intervals of `stats` (each a function of a point list): tensors are drawn
 * with replacement, each bringing all of its points; a drawn tensor's copies count as distinct
 * tensors (so the within-checkpoint and layer-partialled groupings see them as separate layers).
 */
function clusterBootstrap(points: readonly StatPoint[], stats: readonly ((p: StatPoint[]) => number | null)[],
  resamples: number, seed: number): ([number, number] | null)[] {
  const clusters = [...groupBy(points, (p) => p.tensor).values()];
  const draws = stats.map(() => [] as number[]);
  if (clusters.length < 3 || resamples <= 0) return stats.map(() => null);
  const rand = mulberry32(seed);
  for (let b = 0; b < resamples; b++) {
    const sample: StatPoint[] = [];
    for (let i = 0; i < clusters.length; i++) {
      const c = clusters[Math.floor(rand() * clusters.length)]!;
      for (const p of c) sample.push({ ...p, tensor: `${i}` });
    }
    stats.forEach((f, k) => {
      const v = f(sample);
      if (v !== null) draws[k]!.push(v);
    });
  }
  return draws.map(percentileInterval);
}

/** The three step/layer views of a run's points, with cluster-bootstrap intervals. */
export function layerStepStats(points: readonly StatPoint[], resamples: number = BOOTSTRAP.resamples, seed: number = BOOTSTRAP.seed): LayerStepStats {
  const nTensors = new Set(points.map((p) => p.tensor)).size;
  const within = withinCheckpointR(points);
  const fs = [
    (p: StatPoint[]) => pearson(p.map((q) => q.x), p.map((q) => q.y)),
    (p: StatPoint[]) => withinCheckpointR(p).r,
    (p: StatPoint[]) => partialledR(p, 'step'),
    (p: StatPoint[]) => partialledR(p, 'tensor'),
  ];
  const [ciP, ciW, ciS, ciL] = clusterBootstrap(points, fs, resamples, seed);
  const base = { n: points.length, n_tensors: nTensors };
  const pooled = pearson(points.map((p) => p.x), points.map((p) => p.y));
  return {
    pooled: { ...base, r: pooled, r_ci95: pooled === null ? null : ciP ?? null },
    within_checkpoint: {
      ...base, r: within.r, r_ci95: within.r === null ? null : ciW ?? null,
      n_checkpoints: within.per_checkpoint.filter((c) => c.r !== null).length, per_checkpoint: within.per_checkpoint,
    },
    step_partialled: (() => { const r = partialledR(points, 'step'); return { ...base, r, r_ci95: r === null ? null : ciS ?? null }; })(),
    layer_partialled: (() => { const r = partialledR(points, 'tensor'); return { ...base, r, r_ci95: r === null ? null : ciL ?? null }; })(),
  };
}

/** The columns of a decomposition row these statistics read. */
export interface MagnitudeRow {
  readonly tensor: string;
  readonly step: number;
  readonly rows: number;
  readonly delta_m: number;
  readonly delta_d: number;
  readonly shrunk_rows: number;
  readonly mean_m0: number;
  readonly mean_mt: number;
}

/** Signed magnitude change at one checkpoint, over the tensors of a selection. */
export interface MagnitudeShift {
  readonly step: number;
  /** Tensors used. */
  readonly n: number;
  /** Mean over tensors of (mean m_t − mean m_0): negative when magnitudes shrink on the whole. */
  readonly mean_signed_delta_m: number | null;
  /** The same relative to each tensor's mean m_0. */
  readonly mean_signed_rel_delta_m: number | null;
  /** Features whose magnitude shrank, over all features of the selection. */
  readonly frac_features_shrunk: number | null;
  /** Tensors whose mean magnitude shrank. */
  readonly frac_tensors_shrunk: number | null;
}

export function magnitudeShift(rows: readonly MagnitudeRow[], step: number): MagnitudeShift {
  const at = rows.filter((r) => r.step === step);
  let signed = 0, rel = 0, nRel = 0, shrunk = 0, features = 0, tensorsShrunk = 0;
  for (const r of at) {
    const d = r.mean_mt - r.mean_m0;
    signed += d;
    if (r.mean_m0 > 0) { rel += d / r.mean_m0; nRel++; }
    shrunk += r.shrunk_rows;
    features += r.rows;
    if (d < 0) tensorsShrunk++;
  }
  const n = at.length;
  return {
    step, n,
    mean_signed_delta_m: n > 0 ? signed / n : null,
    mean_signed_rel_delta_m: nRel > 0 ? rel / nRel : null,
    frac_features_shrunk: features > 0 ? shrunk / features : null,
    frac_tensors_shrunk: n > 0 ? tensorsShrunk / n : null,
  };
}

/** Everything computed for one run × module selection, beside the pooled Figure 2 statistics. */
export interface SelectionStats {
  /** The paper's statistic: pooled over layers and checkpoints (kept as the headline). */
  readonly pooled: Stats;
  readonly layer_step: LayerStepStats;
  /** ΔM / mean m_0 in place of ΔM. */
  readonly relative: { readonly pooled: Stats; readonly layer_step: LayerStepStats };
  /** At the last checkpoint, and at every checkpoint. */
  readonly magnitude: { readonly final: MagnitudeShift | null; readonly per_checkpoint: MagnitudeShift[] };
}

/**
 * All statistics of one selection of usable rows (finite, unflagged; the caller filters).
 * Rows whose mean m_0 is 0 have no relative ΔM and are left out of the relative statistics only.
 */
export function selectionStats(rows: readonly MagnitudeRow[], resamples: number = BOOTSTRAP.resamples, seed: number = BOOTSTRAP.seed): SelectionStats {
  const abs: StatPoint[] = rows.map((r) => ({ tensor: r.tensor, step: r.step, x: r.delta_d, y: r.delta_m }));
  const relRows = rows.filter((r) => r.mean_m0 > 0);
  const rel: StatPoint[] = relRows.map((r) => ({ tensor: r.tensor, step: r.step, x: r.delta_d, y: r.delta_m / r.mean_m0 }));
  const steps = [...new Set(rows.map((r) => r.step))].sort((a, b) => a - b);
  const per = steps.map((s) => magnitudeShift(rows, s));
  return {
    pooled: correlate(abs.map((p) => p.x), abs.map((p) => p.y), resamples, seed),
    layer_step: layerStepStats(abs, resamples, seed),
    relative: { pooled: correlate(rel.map((p) => p.x), rel.map((p) => p.y), resamples, seed), layer_step: layerStepStats(rel, resamples, seed) },
    magnitude: { final: per.at(-1) ?? null, per_checkpoint: per },
  };
}

/** Mean and range of one statistic over the seeds of a configuration (null values are left out and counted). */
export interface AcrossSeeds {
  readonly n_runs: number;
  readonly mean: number | null;
  readonly min: number | null;
  readonly max: number | null;
  readonly values: (number | null)[];
}

export function acrossSeeds(values: readonly (number | null)[]): AcrossSeeds {
  const v = values.filter((x): x is number => x !== null);
  let s = 0, lo = Infinity, hi = -Infinity;
  for (const x of v) { s += x; if (x < lo) lo = x; if (x > hi) hi = x; }
  return { n_runs: v.length, mean: v.length ? s / v.length : null, min: v.length ? lo : null, max: v.length ? hi : null, values: [...values] };
}

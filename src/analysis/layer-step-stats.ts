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

/**
 * The means of x and y over a group. When a variable does not vary in the group its mean is the
 * value itself, so the residuals are exactly 0: the rounded quotient Σx/n can be an ulp off, and
 * residuals of rounding noise would pass as variation and be correlated.
 */
function groupMeans(g: readonly StatPoint[]): [number, number] {
  let mx = 0, my = 0, xVaries = false, yVaries = false;
  const x0 = g[0]!.x, y0 = g[0]!.y;
  for (const p of g) { mx += p.x; my += p.y; if (p.x !== x0) xVaries = true; if (p.y !== y0) yVaries = true; }
  return [xVaries ? mx / g.length : x0, yVaries ? my / g.length : y0];
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
    const [mx, my] = groupMeans(g);
    for (const p of g) { x.push(p.x - mx); y.push(p.y - my); }
  }
  return pearson(x, y);
}

/** The 2.5% and 97.5% points (linear interpolation between order statistics) of the first `n` values; sorts them in place. */
function percentileInterval(values: Float64Array, n: number): [number, number] | null {
  if (n === 0) return null;
  const v = values.subarray(0, n).sort();
  const at = (p: number) => {
    const pos = (n - 1) * p;
    const lo = Math.floor(pos), hi = Math.ceil(pos);
    return v[lo]! + (v[hi]! - v[lo]!) * (pos - lo);
  };
  return [at(0.025), at(0.975)];
}

/**
 * The points as typed arrays ordered by cluster (tensor, in order of first appearance; within a
 * cluster, in input order), steps as indices into the sorted distinct steps, and each cluster's
 * sums of squares about its own mean (the layer-partialled view's only input, the same in every
 * resample because a drawn copy keeps its own mean).
 */
interface Clusters {
  readonly count: number;
  readonly steps: number;
  /** Cluster k's points are start[k] .. start[k + 1] − 1. */
  readonly start: Int32Array;
  readonly step: Int32Array;
  readonly x: Float64Array;
  readonly y: Float64Array;
  readonly cxx: Float64Array;
  readonly cyy: Float64Array;
  readonly cxy: Float64Array;
}

function clustersOf(points: readonly StatPoint[]): Clusters {
  const groups = [...groupBy(points, (p) => p.tensor).values()];
  const stepList = [...new Set(points.map((p) => p.step))].sort((a, b) => a - b);
  const stepIndex = new Map(stepList.map((s, i) => [s, i]));
  const n = points.length, count = groups.length;
  const start = new Int32Array(count + 1), step = new Int32Array(n);
  const x = new Float64Array(n), y = new Float64Array(n);
  const cxx = new Float64Array(count), cyy = new Float64Array(count), cxy = new Float64Array(count);
  let i = 0;
  groups.forEach((g, k) => {
    start[k] = i;
    const [mx, my] = groupMeans(g);
    let sxx = 0, syy = 0, sxy = 0;
    for (const p of g) {
      step[i] = stepIndex.get(p.step)!; x[i] = p.x; y[i] = p.y; i++;
      const dx = p.x - mx, dy = p.y - my;
      sxx += dx * dx; syy += dy * dy; sxy += dx * dy;
    }
    cxx[k] = sxx; cyy[k] = syy; cxy[k] = sxy;
  });
  start[count] = n;
  return { count, steps: stepList.length, start, step, x, y, cxx, cyy, cxy };
}

/** r from centred sums over n points; NaN where `pearson` gives null (n < 3, or a variable that does not vary). */
function rFromSums(n: number, sxx: number, syy: number, sxy: number): number {
  return n >= 3 && sxx > 0 && syy > 0 ? Math.max(-1, Math.min(1, sxy / Math.sqrt(sxx * syy))) : Number.NaN;
}

/** Per-checkpoint scratch of one bootstrap, allocated once. */
class StepSums {
  readonly ns: Float64Array; readonly mx: Float64Array; readonly my: Float64Array;
  readonly sxx: Float64Array; readonly syy: Float64Array; readonly sxy: Float64Array;
  /** Each checkpoint's first value, and whether x, y vary there (a constant group's residuals are 0: groupMeans). */
  readonly fx: Float64Array; readonly fy: Float64Array; readonly vx: Uint8Array; readonly vy: Uint8Array;
  constructor(S: number) {
    this.ns = new Float64Array(S); this.mx = new Float64Array(S); this.my = new Float64Array(S);
    this.sxx = new Float64Array(S); this.syy = new Float64Array(S); this.sxy = new Float64Array(S);
    this.fx = new Float64Array(S); this.fy = new Float64Array(S); this.vx = new Uint8Array(S); this.vy = new Uint8Array(S);
  }
}

/**
 * The four r of one resample (the clusters `drawn`, in draw order) into `out`: pooled,
 * within-checkpoint, step-partialled, layer-partialled; NaN where undefined. A function of its own
 * so that the JIT optimises it after a few calls (a first bootstrap otherwise runs long in the
 * interpreter, boxing every intermediate double).
 */
function resampleViews(c: Clusters, drawn: Int32Array, t: StepSums, out: Float64Array): void {
  const { count, steps: S, start, step, x, y, cxx, cyy, cxy } = c;
  const { ns, mx, my, sxx, syy, sxy, fx, fy, vx, vy } = t;
  ns.fill(0); mx.fill(0); my.fill(0); sxx.fill(0); syy.fill(0); sxy.fill(0); vx.fill(0); vy.fill(0);
  let n = 0, gx = 0, gy = 0, lxx = 0, lyy = 0, lxy = 0;
  const x0 = x[start[drawn[0]!]!]!, y0 = y[start[drawn[0]!]!]!;
  let gvx = false, gvy = false;
  for (let d = 0; d < count; d++) {
    const k = drawn[d]!;
    for (let i = start[k]!, e = start[k + 1]!; i < e; i++) {
      const s = step[i]!, xi = x[i]!, yi = y[i]!;
      if (ns[s] === 0) { fx[s] = xi; fy[s] = yi; } else { if (xi !== fx[s]) vx[s] = 1; if (yi !== fy[s]) vy[s] = 1; }
      ns[s]!++; mx[s]! += xi; my[s]! += yi;
      gx += xi; gy += yi;
      if (xi !== x0) gvx = true;
      if (yi !== y0) gvy = true;
    }
    n += start[k + 1]! - start[k]!;
    lxx += cxx[k]!; lyy += cyy[k]!; lxy += cxy[k]!;
  }
  for (let s = 0; s < S; s++) { mx[s] = vx[s] ? mx[s]! / ns[s]! : fx[s]!; my[s] = vy[s] ? my[s]! / ns[s]! : fy[s]!; }
  gx = gvx ? gx / n : x0; gy = gvy ? gy / n : y0;
  let gxx = 0, gyy = 0, gxy = 0;
  for (let d = 0; d < count; d++) {
    const k = drawn[d]!;
    for (let i = start[k]!, e = start[k + 1]!; i < e; i++) {
      const s = step[i]!;
      const dx = x[i]! - mx[s]!, dy = y[i]! - my[s]!;
      sxx[s]! += dx * dx; syy[s]! += dy * dy; sxy[s]! += dx * dy;
      const ex = x[i]! - gx, ey = y[i]! - gy;
      gxx += ex * ex; gyy += ey * ey; gxy += ex * ey;
    }
  }
  out[0] = rFromSums(n, gxx, gyy, gxy);
  // Within-checkpoint: the Fisher-z mean over checkpoints, in step order (withinCheckpointR).
  let zw = 0, w = 0, pxx = 0, pyy = 0, pxy = 0;
  for (let s = 0; s < S; s++) {
    pxx += sxx[s]!; pyy += syy[s]!; pxy += sxy[s]!;
    const r = rFromSums(ns[s]!, sxx[s]!, syy[s]!, sxy[s]!);
    if (Number.isNaN(r)) continue;
    const weight = Math.max(1, ns[s]! - 3);
    zw += weight * Math.atanh(Math.max(-R_MAX, Math.min(R_MAX, r)));
    w += weight;
  }
  out[1] = w > 0 ? Math.tanh(zw / w) : Number.NaN;
  out[2] = rFromSums(n, pxx, pyy, pxy);
  out[3] = rFromSums(n, lxx, lyy, lxy);
}

/**
 * Cluster-bootstrap 95% intervals of the pooled, within-checkpoint, step-partialled and
 * layer-partialled r: tensors are drawn with replacement, each bringing all of its points; a drawn
 * tensor's copies count as distinct tensors (so the within-checkpoint and layer-partialled groupings
 * see them as separate layers).
 *
 * A resample is not built: two passes over the drawn clusters' points (in draw order, so sums run
 * in the order of a materialised resample) give each checkpoint's and the whole resample's means,
 * then their centred sums. The step-partialled sums are the checkpoints' centred sums added up
 * (after removing each checkpoint's mean, the overall mean is 0); the layer-partialled ones are the
 * drawn clusters' own centred sums. Scratch arrays are allocated once, not per resample.
 */
function clusterBootstrap(points: readonly StatPoint[], resamples: number, seed: number): ([number, number] | null)[] {
  const c = clustersOf(points);
  if (c.count < 3 || resamples <= 0) return [null, null, null, null];
  const draws = [0, 1, 2, 3].map(() => new Float64Array(resamples));
  const kept = [0, 0, 0, 0];
  const drawn = new Int32Array(c.count);
  const t = new StepSums(c.steps), out = new Float64Array(4);
  const rand = mulberry32(seed);
  for (let b = 0; b < resamples; b++) {
    for (let i = 0; i < c.count; i++) drawn[i] = Math.floor(rand() * c.count);
    resampleViews(c, drawn, t, out);
    for (let k = 0; k < 4; k++) if (!Number.isNaN(out[k]!)) draws[k]![kept[k]!++] = out[k]!;
  }
  return draws.map((v, k) => percentileInterval(v, kept[k]!));
}

/** The three step/layer views of a run's points, with cluster-bootstrap intervals. */
export function layerStepStats(points: readonly StatPoint[], resamples: number = BOOTSTRAP.resamples, seed: number = BOOTSTRAP.seed): LayerStepStats {
  const nTensors = new Set(points.map((p) => p.tensor)).size;
  const within = withinCheckpointR(points);
  const [ciP, ciW, ciS, ciL] = clusterBootstrap(points, resamples, seed);
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

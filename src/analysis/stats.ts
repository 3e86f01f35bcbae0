/**
 * The paper's correlation analysis (§3.2, Figure 2): how ΔM (y) moves with ΔD (x) over the
 * layers and checkpoints of a run. Pearson r, Spearman ρ (Pearson on average ranks, so ties
 * are handled), the least-squares line of ΔM on ΔD, and 95% percentile-bootstrap intervals for r
 * and the slope (resampling (x, y) pairs with replacement; mulberry32 PRNG, fixed seed, so
 * the same data always give the same intervals). Undefined statistics are null (n < 3, or a
 * variable that does not vary).
 */
import { mulberry32 } from '../random.js';

export interface Stats {
  readonly n: number;
  readonly pearson_r: number | null;
  readonly spearman_rho: number | null;
  readonly slope: number | null;
  readonly intercept: number | null;
  readonly r_ci95: [number, number] | null;
  readonly slope_ci95: [number, number] | null;
}

export const BOOTSTRAP = { resamples: 2000, seed: 12345, method: 'percentile, resampling (ΔD, ΔM) pairs; mulberry32' } as const;

/**
 * Two-pass centred sums. A variable whose values are all equal has sums of exactly 0: its rounded
 * mean can differ from the value by an ulp, and the squares of that would otherwise pass `> 0`
 * and give an r made of rounding noise.
 */
function moments(x: ArrayLike<number>, y: ArrayLike<number>): { sxx: number; syy: number; sxy: number; mx: number; my: number } {
  const m = new Float64Array(5);
  momentsInto(x, y, undefined, m);
  return { sxx: m[0]!, syy: m[1]!, sxy: m[2]!, mx: m[3]!, my: m[4]! };
}

/**
 * `moments` of the points `idx` (all points without it) into out = [sxx, syy, sxy, mx, my],
 * allocating nothing: the bootstrap calls it thousands of times per selection.
 */
function momentsInto(x: ArrayLike<number>, y: ArrayLike<number>, idx: Uint32Array | undefined, out: Float64Array): void {
  const n = idx ? idx.length : x.length;
  let mx = 0, my = 0;
  const x0 = x[idx ? idx[0]! : 0]!, y0 = y[idx ? idx[0]! : 0]!;
  let xVaries = false, yVaries = false;
  for (let i = 0; i < n; i++) {
    const j = idx ? idx[i]! : i;
    const xj = x[j]!, yj = y[j]!;
    mx += xj; my += yj;
    if (xj !== x0) xVaries = true;
    if (yj !== y0) yVaries = true;
  }
  mx /= n; my /= n;
  let sxx = 0, syy = 0, sxy = 0;
  for (let i = 0; i < n; i++) {
    const j = idx ? idx[i]! : i;
    const dx = x[j]! - mx, dy = y[j]! - my;
    sxx += dx * dx; syy += dy * dy; sxy += dx * dy;
  }
  if (!xVaries) { sxx = 0; sxy = 0; }
  if (!yVaries) { syy = 0; sxy = 0; }
  out[0] = sxx; out[1] = syy; out[2] = sxy; out[3] = mx; out[4] = my;
}

/** Rounding can put |r| a hair past 1. */
function clampR(r: number): number {
  return Math.max(-1, Math.min(1, r));
}

export function pearson(x: ArrayLike<number>, y: ArrayLike<number>): number | null {
  if (x.length < 3) return null;
  const { sxx, syy, sxy } = moments(x, y);
  return sxx > 0 && syy > 0 ? clampR(sxy / Math.sqrt(sxx * syy)) : null;
}

/** Ranks 1..n, ties getting the average of their positions. */
export function averageRanks(v: ArrayLike<number>): Float64Array {
  const idx = Array.from({ length: v.length }, (_, i) => i).sort((a, b) => v[a]! - v[b]!);
  const r = new Float64Array(v.length);
  for (let i = 0; i < idx.length;) {
    let j = i;
    while (j + 1 < idx.length && v[idx[j + 1]!] === v[idx[i]!]) j++;
    const avg = (i + j) / 2 + 1;
    for (let t = i; t <= j; t++) r[idx[t]!] = avg;
    i = j + 1;
  }
  return r;
}

export function spearman(x: ArrayLike<number>, y: ArrayLike<number>): number | null {
  return pearson(averageRanks(x), averageRanks(y));
}

/** Least-squares y = slope·x + intercept. */
export function ols(x: ArrayLike<number>, y: ArrayLike<number>): { slope: number; intercept: number } | null {
  if (x.length < 3) return null;
  const { sxx, sxy, mx, my } = moments(x, y);
  if (!(sxx > 0)) return null;
  const slope = sxy / sxx;
  return { slope, intercept: my - slope * mx };
}

function percentile(sorted: ArrayLike<number>, p: number): number {
  const pos = (sorted.length - 1) * p;
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** All statistics of ΔM (y) against ΔD (x). Non-finite pairs must be filtered out by the caller. */
export function correlate(x: ArrayLike<number>, y: ArrayLike<number>, resamples: number = BOOTSTRAP.resamples, seed: number = BOOTSTRAP.seed): Stats {
  const n = x.length;
  const r = pearson(x, y);
  const fit = ols(x, y);
  let rCi: [number, number] | null = null;
  let sCi: [number, number] | null = null;
  if (r !== null && fit !== null && resamples > 0) {
    const rand = mulberry32(seed);
    const rs = new Float64Array(resamples), ss = new Float64Array(resamples);
    let nr = 0, ns = 0;
    const idx = new Uint32Array(n);
    const m = new Float64Array(5);
    for (let b = 0; b < resamples; b++) {
      for (let i = 0; i < n; i++) idx[i] = Math.floor(rand() * n);
      momentsInto(x, y, idx, m);
      const sxx = m[0]!, syy = m[1]!, sxy = m[2]!;
      if (sxx > 0 && syy > 0) rs[nr++] = clampR(sxy / Math.sqrt(sxx * syy));
      if (sxx > 0) ss[ns++] = sxy / sxx;
    }
    // A typed array sorts numerically without a comparator.
    const rSorted = rs.subarray(0, nr).sort(), sSorted = ss.subarray(0, ns).sort();
    if (nr > 0) rCi = [percentile(rSorted, 0.025), percentile(rSorted, 0.975)];
    if (ns > 0) sCi = [percentile(sSorted, 0.025), percentile(sSorted, 0.975)];
  }
  return {
    n, pearson_r: r, spearman_rho: spearman(x, y),
    slope: fit?.slope ?? null, intercept: fit?.intercept ?? null, r_ci95: rCi, slope_ci95: sCi,
  };
}

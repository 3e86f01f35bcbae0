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
function moments(x: ArrayLike<number>, y: ArrayLike<number>, idx?: Uint32Array): { sxx: number; syy: number; sxy: number; mx: number; my: number } {
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
  return { sxx, syy, sxy, mx, my };
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

function percentile(sorted: number[], p: number): number {
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
    const rs: number[] = [];
    const ss: number[] = [];
    const idx = new Uint32Array(n);
    for (let b = 0; b < resamples; b++) {
      for (let i = 0; i < n; i++) idx[i] = Math.floor(rand() * n);
      const m = moments(x, y, idx);
      if (m.sxx > 0 && m.syy > 0) rs.push(clampR(m.sxy / Math.sqrt(m.sxx * m.syy)));
      if (m.sxx > 0) ss.push(m.sxy / m.sxx);
    }
    rs.sort((a, b) => a - b);
    ss.sort((a, b) => a - b);
    if (rs.length > 0) rCi = [percentile(rs, 0.025), percentile(rs, 0.975)];
    if (ss.length > 0) sCi = [percentile(ss, 0.025), percentile(ss, 0.975)];
  }
  return {
    n, pearson_r: r, spearman_rho: spearman(x, y),
    slope: fit?.slope ?? null, intercept: fit?.intercept ?? null, r_ci95: rCi, slope_ci95: sCi,
  };
}

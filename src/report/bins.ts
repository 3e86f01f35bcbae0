/**
 * Fixed-edge histogram bins, pure: a quantile sketch for choosing the edges in a first pass, the edges, and
 * the bin of a value. Used by feature-histograms.ts to bin rows.arrow without holding its values
 * (a 70B model's --per-row table has ~10^8 rows; memory must not grow with it).
 *
 * Edge rule (one scale per module and quantity, shared by every run, layer and step so that dropdown views
 * and overlaid runs compare bar for bar): `lo` = the smallest finite value; `hi` = the 99.9th percentile
 * rounded up to the sketch's bucket (at most 1/16 = 6.25% above the true percentile), capped at
 * the largest value. Values above `hi` (≤ 0.1% of them) are counted in one "above" bin, so a few outlier
 * features cannot squeeze the rest into the first bar; values that are not finite are counted apart.
 */

/** Per group and quantity, counts are `bins + 2` numbers: the bins, then "above hi", then "not finite". */
export const ABOVE = 0;
export const NOT_FINITE = 1;
export const countsLength = (bins: number): number => bins + 2;

/** The percentile that sets the upper edge: above it values go to one "above" bin. */
export const HI_QUANTILE = 0.999;

// A positive double's high 32 bits: 11 exponent bits, then 20 mantissa bits. Exponent and the top 4
// mantissa bits give a monotone bucket index, 16 buckets per octave (the HDR-histogram idea, from the bits
// instead of Math.log2, which is slower). Bucket 0 holds every value ≤ 0 (1 − cos may round below 0).
const SUB_BITS = 4;
const POS_BUCKETS = 1 << (11 + SUB_BITS);
const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);
const HI_WORD = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0; // little-endian: the high word is [1]

/** Counts finite values in log-spaced buckets (fixed memory: 32,769 float64) for quantiles within 1/16 (relative). */
export class QuantileSketch {
  readonly buckets = new Float64Array(POS_BUCKETS + 1);
  n = 0;
  min = Infinity;
  max = -Infinity;

  add(x: number): void {
    if (!(x - x === 0)) return; // NaN and ±Infinity are counted elsewhere
    this.n++;
    if (x < this.min) this.min = x;
    if (x > this.max) this.max = x;
    if (x <= 0) { this.buckets[0]!++; return; }
    f64[0] = x;
    this.buckets[1 + (u32[HI_WORD]! >>> (20 - SUB_BITS))]!++;
  }

  /**
   * The largest double in the bucket holding the q-quantile (the smallest v with #{x ≤ v} ≥ ⌈q·n⌉), so at
   * most n − ⌈q·n⌉ values lie above it. NaN when empty.
   */
  upperQuantile(q: number): number {
    if (this.n === 0) return NaN;
    const target = Math.max(1, Math.ceil(q * this.n));
    let cum = 0;
    for (let b = 0; b < this.buckets.length; b++) {
      cum += this.buckets[b]!;
      if (cum >= target) {
        if (b === 0) return Math.min(0, this.max);
        u32[HI_WORD] = (((b - 1) << (20 - SUB_BITS)) | ((1 << (20 - SUB_BITS)) - 1)) >>> 0;
        u32[1 - HI_WORD] = 0xffffffff;
        return f64[0]!;
      }
    }
    return this.max;
  }
}

/** Fixed edges of one quantity in one module: `edges[k] ≤ x < edges[k + 1]` is bin k; the last bin includes hi. */
export interface BinScale { lo: number; hi: number; edges: Float64Array; min: number; max: number; n: number }

/** The edges from a first pass's sketch (rule in the header); null when the pass saw no finite value. */
export function chooseScale(s: QuantileSketch, bins: number): BinScale | null {
  if (s.n === 0) return null;
  const lo = s.min;
  let hi = Math.min(s.max, s.upperQuantile(HI_QUANTILE));
  if (!(hi > lo)) hi = s.max;
  if (!(hi > lo)) hi = lo === 0 ? 1 : lo + Math.abs(lo); // one value only: a bin of visible width around it
  // lo·(1 − t) + hi·t cannot overflow where hi − lo would (1 − cos of a garbage cos near ±1e308); max() keeps
  // the edges monotone through rounding.
  const edges = new Float64Array(bins + 1);
  for (let k = 0; k <= bins; k++) { const t = k / bins; edges[k] = Math.max(k ? edges[k - 1]! : lo, lo * (1 - t) + hi * t); }
  edges[bins] = hi;
  return { lo, hi, edges, min: s.min, max: s.max, n: s.n };
}

/**
 * The bin of x under `edges` (length bins + 1): 0…bins−1, `bins + ABOVE` past hi, `bins + NOT_FINITE` for
 * NaN/±Infinity, −1 below lo (cannot happen when the edges came from the same values). The edges array is
 * the definition: the division only guesses, and the guess is moved to the edge comparison's answer.
 */
export function binOf(x: number, edges: Float64Array, bins: number): number {
  if (!(x - x === 0)) return bins + NOT_FINITE;
  const lo = edges[0]!, hi = edges[bins]!;
  if (x > hi) return bins + ABOVE;
  if (x < lo) return -1;
  let k = Math.floor(((x - lo) / (hi - lo)) * bins);
  if (!(k >= 0)) k = 0;
  else if (k > bins - 1) k = bins - 1;
  while (k > 0 && x < edges[k]!) k--;
  while (k < bins - 1 && x >= edges[k + 1]!) k++;
  return k;
}

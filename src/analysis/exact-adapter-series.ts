/**
 * ΔM/ΔD of LoRA/DoRA adapter checkpoints by exact algebra, without materialising W′ (which,
 * rounded to float32, loses a tiny δ entirely; see docs/analysis.md). For one output feature n with base vector w (‖w‖ cached)
 * and adapter update δ = s·B_n·A (A: r×in, B_n: row n of B, s the scaling):
 *
 *   c = W0·Aᵀ (one row per feature, r wide)          G = A·Aᵀ (r×r, float64)
 *   w·δ = s·B_n·c_n        ‖δ‖² = s²·B_n G B_nᵀ       ‖w+δ‖² = ‖w‖² + 2 w·δ + ‖δ‖²
 *
 * so a checkpoint costs one r×in×out product (shared by all checkpoints of the module when their
 * A matrices are stacked, which also reads W0 once) plus O(out·r²) work.
 *
 * 1 − cos(w, v) for v = w + δ is computed without subtracting near-equal numbers: Lagrange's
 * identity gives ‖w‖²‖v‖² − (w·v)² = ‖w‖²‖δ‖² − (w·δ)² (the cross term cancels exactly in the
 * algebra, not in floating point), and 1 − cos = (1 − cos²)/(1 + cos) when cos > 0. Likewise
 * |‖v‖ − ‖w‖| = |2 w·δ + ‖δ‖²| / (‖v‖ + ‖w‖). Both stay accurate when δ is tiny, where the merge
 * path (W′ rounded to float32) loses δ altogether.
 *
 * From v's terms, the method variant (methods/, `MergeVariant.exactFeature`, picked from the
 * factors by `variantFor`) gives the merged feature: v itself for LoRA, m_n·v/‖v‖ for DoRA
 * (paper eq. 5; methods/dora.ts).
 *
 * Zero features follow decompose.ts: cos = 1 when both rows are zero, 0 when one is (counted).
 * Pure kernel: typed arrays in, numbers out; every sum in float64. The product c comes from the
 * caller (`compute/base-times-a.ts`): a float64 loop or a float32 matmul on a tfjs backend.
 */
import type { FeatureTerms } from '../methods/delta.js';
import type { LoraSumFeature, MergedFeature } from '../methods/merge.js';
import { variantFor } from '../methods/variants.js';
import { fromSums, type Decomposition } from './decompose.js';

/** One checkpoint's factors for a module whose features are the rows of W0 (after any layout mapping). */
export interface SeriesFactors {
  readonly r: number;
  /** A, row-major (r, in): each row spans a feature's input vector. */
  readonly A: Float32Array;
  /** B, row-major (out, r). */
  readonly B: Float32Array;
  readonly scaling: number;
  /** A variant's own factors: DoRA's magnitude (length out); absent for LoRA. */
  readonly magnitude?: Float32Array | undefined;
}

/** G = A·Aᵀ in float64 (r×r, symmetric). */
export function gram(A: Float32Array, r: number, inDim: number): Float64Array {
  const g = new Float64Array(r * r);
  for (let a = 0; a < r; a++) {
    const oa = a * inDim;
    for (let b = a; b < r; b++) {
      const ob = b * inDim;
      // Four independent sums (latency-bound otherwise).
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0, j = 0;
      for (; j + 3 < inDim; j += 4) {
        s0 += A[oa + j]! * A[ob + j]!; s1 += A[oa + j + 1]! * A[ob + j + 1]!;
        s2 += A[oa + j + 2]! * A[ob + j + 2]!; s3 += A[oa + j + 3]! * A[ob + j + 3]!;
      }
      for (; j < inDim; j++) s0 += A[oa + j]! * A[ob + j]!;
      const acc = (s0 + s1) + (s2 + s3);
      g[a * r + b] = acc;
      g[b * r + a] = acc;
    }
  }
  return g;
}

/**
 * The decomposition of one checkpoint. `c` holds W0·Aᵀ for this checkpoint as `out` rows of
 * `stride` values starting at column `offset` (the checkpoints of a module share one product).
 * `ww[n]` = ‖w_n‖² in float64.
 */
export function adapterDecompose(f: SeriesFactors, inDim: number, ww: Float64Array, c: Float32Array | Float64Array, stride: number, offset: number,
  perRow = false): Decomposition {
  const out = ww.length;
  const { r, B, scaling: s } = f;
  const variant = variantFor(f);
  const G = gram(f.A, r, inDim);
  // One scratch pair for all features, so the loop allocates nothing.
  const v: LoraSumFeature = { w2: 0, wd: 0, dd: 0, m0: 0, vn: 0, cosWV: 0, omcWV: 1 };
  const merged: MergedFeature = { mt: 0, cos: 0, omc: 1, d2: 0, dm: 0, nonFinite: false };
  const sums = new FeatureSums(out, perRow);
  if (!Number.isFinite(s)) sums.nonFinite = true;
  for (let n = 0; n < out; n++) {
    const bo = n * r, co = n * stride + offset;
    let bc = 0, bgb = 0;
    // B_n G B_nᵀ over the upper triangle of the symmetric G: Σ_k b_k (G_kk b_k + 2 Σ_{l>k} G_kl b_l).
    for (let k = 0; k < r; k++) {
      const bk = B[bo + k]!;
      bc += bk * c[co + k]!;
      const gk = k * r;
      let gb = 0;
      for (let l = k + 1; l < r; l++) gb += G[gk + l]! * B[bo + l]!;
      bgb += bk * (G[gk + k]! * bk + 2 * gb);
    }
    const w2 = ww[n]!;
    const wd = s * bc;                        // w·δ
    const dd = Math.max(0, s * s * bgb);      // ‖δ‖² (G is PSD; clamp rounding)
    const v2 = Math.max(0, w2 + 2 * wd + dd); // ‖v‖²
    const m0 = Math.sqrt(w2), vn = Math.sqrt(v2);
    if (!Number.isFinite(v2) || !Number.isFinite(wd)) sums.nonFinite = true;
    // cos(w, v) and 1 − cos(w, v), stably (see the header).
    let cosWV = 0, omcWV = 1;
    if (m0 > 0 && vn > 0) {
      cosWV = Math.min(1, Math.max(-1, (w2 + wd) / (m0 * vn)));
      const sin2 = Math.max(0, w2 * dd - wd * wd) / (w2 * v2);
      omcWV = cosWV > 0 ? Math.min(1, sin2 / (1 + cosWV)) : 1 - cosWV;
    }
    v.w2 = w2; v.wd = wd; v.dd = dd; v.m0 = m0; v.vn = vn; v.cosWV = cosWV; v.omcWV = omcWV;
    variant.exactFeature(v, f, n, merged);
    sums.add(n, w2, merged);
  }
  return sums.result();
}

/**
 * The decomposition's sums over output features, from each feature's ‖w‖² and its merged feature
 * (exact algebra: a LoRA variant here, or a method's own, `featureDecompose`). Zero features follow
 * decompose.ts: cos = 1 when both are zero, 0 when one is (counted).
 */
export class FeatureSums {
  nonFinite = false;
  private sumDM = 0; private sumDD = 0; private sumM0 = 0; private sumMt = 0;
  private zeroRows = 0; private shrunkRows = 0; private diff2 = 0; private base2 = 0;
  private readonly m0s: Float64Array | undefined;
  private readonly mts: Float64Array | undefined;
  private readonly coss: Float64Array | undefined;

  constructor(private readonly k: number, perRow: boolean) {
    this.m0s = perRow ? new Float64Array(k) : undefined;
    this.mts = perRow ? new Float64Array(k) : undefined;
    this.coss = perRow ? new Float64Array(k) : undefined;
  }

  add(n: number, w2: number, merged: Readonly<MergedFeature>): void {
    if (!Number.isFinite(w2)) this.nonFinite = true; // NaN/±Inf in the base tensor
    if (merged.nonFinite) this.nonFinite = true;
    const m0 = Math.sqrt(w2);
    const { mt, d2 } = merged;
    let { cos, omc } = merged;
    this.sumDM += merged.dm;
    if (m0 === 0 || mt === 0) {
      this.zeroRows++;
      if (m0 === 0 && mt === 0) { cos = 1; omc = 0; } else { cos = 0; omc = 1; }
    }
    if (!Number.isFinite(mt)) this.nonFinite = true;
    if (mt < m0) this.shrunkRows++;
    this.sumDD += omc;
    this.sumM0 += m0; this.sumMt += mt;
    this.diff2 += d2; this.base2 += w2;
    if (this.m0s && this.mts && this.coss) { this.m0s[n] = m0; this.mts[n] = mt; this.coss[n] = cos; }
  }

  result(): Decomposition {
    const { k, sumDM, sumDD, zeroRows, shrunkRows, diff2, base2, sumM0, sumMt, nonFinite } = this;
    return fromSums({ k, sumDM, sumDD, zeroRows, shrunkRows, diff2, base2, sumM0, sumMt, nonFinite },
      this.m0s && this.mts && this.coss ? { m0: this.m0s, mt: this.mts, cos: this.coss } : undefined);
  }
}

/** The decomposition from a method's own per-feature exact terms (methods/delta.ts `exactFeatures`, e.g. IA³). */
export function featureDecompose(t: FeatureTerms, perRow = false): Decomposition {
  const k = t.w2.length;
  const sums = new FeatureSums(k, perRow);
  if (t.nonFinite) sums.nonFinite = true;
  const merged: MergedFeature = { mt: 0, cos: 0, omc: 1, d2: 0, dm: 0, nonFinite: false };
  for (let n = 0; n < k; n++) {
    merged.mt = t.mt[n]!; merged.cos = t.cos[n]!; merged.omc = t.omc[n]!; merged.d2 = t.d2[n]!; merged.dm = t.dm[n]!;
    sums.add(n, t.w2[n]!, merged);
  }
  return sums.result();
}

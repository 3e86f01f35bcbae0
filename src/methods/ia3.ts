/**
 * IA³ (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
 * In-Context Learning") as PEFT merges it (huggingface/peft `tuners/ia3/layer.py` at 5d602fdbf: `update_layer`
 * l. 55–66, `Linear.merge` l. 96–134, `_ConvNd.merge` l. 222–245): one learned
 * vector `ia3_l` multiplies the weight elementwise. `update_layer` makes it (1, in_features) for a
 * module in `feedforward_modules` and (out_features, 1) otherwise; `Linear.merge` transposes it
 * when `fan_in_fan_out` (GPT-2 Conv1D stores W as (in, out)) and multiplies W by it with
 * broadcasting; `Conv2d.merge` transposes the non-feed-forward (1, out, 1, 1) vector to
 * (out, 1, 1, 1). So in every case: a feed-forward module scales W's *input* features
 * (W′ = W·diag(l)), any other its *output* features (W′ = diag(l)·W). For a non-feed-forward
 * module PEFT also scales the bias by l (`merge`, `bias.data * scaling`): see `mergeBias`.
 *
 * Exact ΔM/ΔD (`exactFeatures`): W′ = W0 with each element w_j multiplied by a factor f_j (an entry
 * of l), so per output feature, in one pass over W0 and without forming W′,
 *   ‖w′‖² = Σ w_j² f_j²,   w·w′ = Σ w_j² f_j,   ‖w′ − w‖² = Σ w_j² (f_j − 1)²,
 *   ‖w′‖ − ‖w‖ = Σ w_j² (f_j − 1)(f_j + 1) / (‖w′‖ + ‖w‖),
 * and 1 − cos = ½ ‖w/‖w‖ − w′/‖w′‖‖² = ½ Σ w_j² (1/‖w‖ − f_j/‖w′‖)² (a second pass, a sum of
 * squares: no cancellation when l is near 1). When l scales whole output features (f constant
 * on a feature) this is the closed form ‖w′‖ = |l_n|‖w‖, cos = sign(l_n).
 */
import { type DeltaMethod, type FeatureTerms, fmt, product, shapeError } from './delta.js';

/** Multiplies W (row-major, `shape`) along `axis` by l (one value per index on that axis). */
function scaleAxis(W: Float32Array, shape: readonly number[], axis: number, l: Float32Array, what: string): Float32Array {
  const n = shape[axis]!;
  if (l.length !== n) shapeError(what, `ia3_l has ${l.length} values, the base tensor ${fmt(shape)} has ${n} along the axis it scales`);
  const inner = product(shape.slice(axis + 1));
  const out = new Float32Array(W.length);
  for (let i = 0; i < W.length; i++) out[i] = W[i]! * l[Math.floor(i / inner) % n]!;
  return out;
}

/** The axis of W (storage layout) that l scales: inputs for a feed-forward module, else outputs. */
function scaledAxis(shape: readonly number[], feedforward: boolean, fanInFanOut: boolean, what: string): number {
  if (shape.length < 2) shapeError(what, `IA³ needs a weight of at least 2 dimensions, got ${fmt(shape)}`);
  // Output features: axis 0 of (out, in[, k…]), axis 1 of a Conv1D (in, out); inputs the other one.
  return feedforward === fanInFanOut ? 0 : 1;
}

/**
 * The terms above for W (storage `shape`) with l on `axis`, features along the rows of the
 * (shape[0], rest) view or, for a 2-D W, along its columns.
 */
export function scaledFeatureTerms(W: Float32Array, shape: readonly number[], axis: number, l: Float32Array, featuresAreRows: boolean, what: string): FeatureTerms {
  const n = shape[axis]!;
  if (l.length !== n) shapeError(what, `ia3_l has ${l.length} values, the base tensor ${fmt(shape)} has ${n} along the axis it scales`);
  if (!featuresAreRows && shape.length !== 2) shapeError(what, `features along columns need a 2-D weight, got ${fmt(shape)}`);
  const rows = shape[0]!, cols = product(shape.slice(1));
  const inner = product(shape.slice(axis + 1));
  const k = featuresAreRows ? rows : cols;
  const w2 = new Float64Array(k), s2 = new Float64Array(k), s1 = new Float64Array(k), dd = new Float64Array(k), dmNum = new Float64Array(k);
  let nonFinite = false;
  for (const x of l) if (!Number.isFinite(x)) nonFinite = true;
  // Element (i, j) of the (rows, cols) view has flat index i·cols + j, so its factor is l[⌊(i·cols + j)/inner⌋ mod n].
  const factor = (i: number, j: number) => l[Math.floor((i * cols + j) / inner) % n]!;
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const w = W[i * cols + j]!, f = factor(i, j), q = w * w;
      const e = featuresAreRows ? i : j;
      w2[e]! += q; s2[e]! += q * f * f; s1[e]! += q * f; dd[e]! += q * (f - 1) * (f - 1); dmNum[e]! += q * (f - 1) * (f + 1);
    }
  }
  const m0 = w2.map(Math.sqrt), mt = s2.map(Math.sqrt);
  const omc2 = new Float64Array(k);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const e = featuresAreRows ? i : j;
      if (m0[e] === 0 || mt[e] === 0) continue;
      const w = W[i * cols + j]!, t = 1 / m0[e]! - factor(i, j) / mt[e]!;
      omc2[e]! += w * w * t * t;
    }
  }
  const cos = new Float64Array(k), omc = new Float64Array(k), dm = new Float64Array(k);
  for (let e = 0; e < k; e++) {
    if (!Number.isFinite(w2[e]!)) nonFinite = true;
    const both = m0[e]! > 0 && mt[e]! > 0;
    cos[e] = both ? Math.min(1, Math.max(-1, s1[e]! / (m0[e]! * mt[e]!))) : 0;
    omc[e] = both ? Math.min(2, omc2[e]! / 2) : 1;
    dm[e] = m0[e]! + mt[e]! > 0 ? Math.abs(dmNum[e]!) / (m0[e]! + mt[e]!) : 0;
  }
  return { w2, mt, cos, omc, d2: dd, dm, nonFinite };
}

export const ia3Method: DeltaMethod = {
  name: 'ia3',
  peftType: 'IA3',
  roles: ['ia3_l'],
  required: ['ia3_l'],
  labels: { ia3_l: 'learned scale, one per output feature (out × 1), or per input feature (1 × in) in feedforward_modules' },
  scaled: false,
  // PEFT's `merge`: `if not self.is_feedforward and (base_layer.bias is not None)`: bias ·= l.
  changesBias: (p) => !p.feedforward,
  // One scale per input feature (feed-forward) or per output feature.
  trainableParams: (_r, rows, cols, feedforward) => (feedforward ? cols : rows),
  mergeBias: (b, t, _p, what) => scaleAxis(b, [b.length], 0, t.get('ia3_l')!.data, what),
  merge: (W, shape, t, p, what) => scaleAxis(W, shape, scaledAxis(shape, p.feedforward, p.fanInFanOut, what), t.get('ia3_l')!.data, what),
  exactFeatures: (W, shape, featuresAreRows, t, p, what) =>
    scaledFeatureTerms(W, shape, scaledAxis(shape, p.feedforward, p.fanInFanOut, what), t.get('ia3_l')!.data, featuresAreRows, what),
};

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
 */
import { type DeltaMethod, fmt, product, shapeError } from './delta.js';

/** Multiplies W (row-major, `shape`) along `axis` by l (one value per index on that axis). */
function scaleAxis(W: Float32Array, shape: readonly number[], axis: number, l: Float32Array, what: string): Float32Array {
  const n = shape[axis]!;
  if (l.length !== n) shapeError(what, `ia3_l has ${l.length} values, the base tensor ${fmt(shape)} has ${n} along the axis it scales`);
  const inner = product(shape.slice(axis + 1));
  const out = new Float32Array(W.length);
  for (let i = 0; i < W.length; i++) out[i] = W[i]! * l[Math.floor(i / inner) % n]!;
  return out;
}

export const ia3Method: DeltaMethod = {
  name: 'ia3',
  peftType: 'IA3',
  roles: ['ia3_l'],
  required: ['ia3_l'],
  scaled: false,
  // PEFT's `merge`: `if not self.is_feedforward and (base_layer.bias is not None)`: bias ·= l.
  changesBias: (p) => !p.feedforward,
  // One scale per input feature (feed-forward) or per output feature.
  trainableParams: (_r, rows, cols, feedforward) => (feedforward ? cols : rows),
  mergeBias: (b, t, _p, what) => scaleAxis(b, [b.length], 0, t.get('ia3_l')!.data, what),
  merge(W, shape, t, p, what) {
    const l = t.get('ia3_l')!;
    // Output features: axis 0 of (out, in[, k…]), axis 1 of a Conv1D (in, out); inputs the other one.
    const outAxis = p.fanInFanOut ? 1 : 0;
    const inAxis = p.fanInFanOut ? 0 : 1;
    if (shape.length < 2) shapeError(what, `IA³ needs a weight of at least 2 dimensions, got ${fmt(shape)}`);
    return scaleAxis(W, shape, p.feedforward ? inAxis : outAxis, l.data, what);
  },
};

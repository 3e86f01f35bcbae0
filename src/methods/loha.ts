/**
 * LoHa (Hyeon-Woo et al. 2022, FedPara; LyCORIS) as PEFT merges it (huggingface/peft
 * `tuners/loha/layer.py` at 5d602fdbf: `create_adapter_parameters` l. 48–71, scaling l. 130,
 * `get_delta_weight` l. 183–220, `HadaWeight` l. 368, `HadaWeightCP` l. 392–395):
 *
 * - plain form: ΔW = (w1_a @ w1_b) ⊙ (w2_a @ w2_b) · scale, w?_a (out, r), w?_b (r, in·k…) for Linear
 *   layers and for conv layers without `use_effective_conv2d` (in·kh·kw flattened);
 * - Tucker form (`hada_t1`/`hada_t2` present: conv layers with `use_effective_conv2d` and a kernel
 *   other than 1×1): ΔW = rebuild(t1, w1_a, w1_b) ⊙ rebuild(t2, w2_a, w2_b) · scale (tucker.ts), with
 *   w?_a (r, out), w?_b (r, in), t? (r, r, kh, kw), or (r, r, k, 1) for Conv1d;
 *
 * reshaped to the base weight's shape (row-major, so a plain reshape), with scale = alpha / r
 * (`update_layer`). rank_dropout and module_dropout act only in training. The merge
 * (`lycoris_utils.py` `LycorisLayer.merge`) is W′ = W + ΔW. There is no cheap exact ΔM/ΔD algebra for
 * a Hadamard product of two low-rank terms: the analysis merges per tensor.
 */
import { DorascopeError } from '../errors.js';
import { type DeltaMethod, addDelta, factorProduct, fmt, product, shapeError } from './delta.js';
import { tuckerRebuild } from './tucker.js';

export const lohaMethod: DeltaMethod = {
  name: 'loha',
  peftType: 'LOHA',
  roles: ['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b', 'hada_t1', 'hada_t2'],
  required: ['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b'],
  labels: {
    hada_w1_a: 'first pair, output side (out × r; r × out with Tucker cores)',
    hada_w1_b: 'first pair, input side (r × in)',
    hada_w2_a: 'second pair, output side (out × r; r × out with Tucker cores)',
    hada_w2_b: 'second pair, input side (r × in)',
    hada_t1: 'Tucker core of the first pair (r × r × kh × kw)',
    hada_t2: 'Tucker core of the second pair (r × r × kh × kw)',
  },
  scaled: true,
  changesBias: () => false,
  // Two rank-r pairs, w?_a (out × r) and w?_b (r × in), on the (out, in·k…) view of the weight; with
  // use_effective_conv2d a conv layer trains 2(r·out + r·in + r²·kh·kw) instead, which needs its kernel size (unknown here).
  trainableParams: (r, rows, cols, _ff, config) => (config['use_effective_conv2d'] === true ? null : 2 * r * (rows + cols)),
  mergeBias: (b) => b,
  merge(W, shape, t, p, what) {
    const t1 = t.get('hada_t1'), t2 = t.get('hada_t2');
    if ((t1 === undefined) !== (t2 === undefined)) {
      throw new DorascopeError('E_ADAPTER_KEYS', `${what}: LoHa has ${t1 ? 'hada_t1' : 'hada_t2'} but not ${t1 ? 'hada_t2' : 'hada_t1'} (PEFT saves both Tucker cores or neither)`);
    }
    let d: Float64Array, d2: Float64Array;
    if (t1 && t2) {
      const w1 = tuckerRebuild(t1, t.get('hada_w1_a')!, t.get('hada_w1_b')!, 'hada_t1, hada_w1_a and hada_w1_b', what);
      const w2 = tuckerRebuild(t2, t.get('hada_w2_a')!, t.get('hada_w2_b')!, 'hada_t2, hada_w2_a and hada_w2_b', what);
      if (w1.shape.join() !== w2.shape.join()) shapeError(what, `the Tucker rebuilds differ in shape (${fmt(w1.shape)} and ${fmt(w2.shape)})`);
      // (out, in, kh, kw) onto a conv weight (out, in, kh, kw), or (out, in, k, 1) onto a Conv1d (out, in, k).
      if (w1.shape[0] !== shape[0] || product(w1.shape) !== product(shape)) shapeError(what, `the Tucker rebuild ${fmt(w1.shape)} does not fit the base tensor ${fmt(shape)}`);
      d = w1.data; d2 = w2.data;
    } else {
      const w1 = factorProduct(t.get('hada_w1_a')!, t.get('hada_w1_b')!, 'hada_w1_a and hada_w1_b', what);
      const w2 = factorProduct(t.get('hada_w2_a')!, t.get('hada_w2_b')!, 'hada_w2_a and hada_w2_b', what);
      if (w1.rows !== w2.rows || w1.cols !== w2.cols) shapeError(what, `w1_a@w1_b is ${w1.rows}×${w1.cols} but w2_a@w2_b is ${w2.rows}×${w2.cols}`);
      d = w1.data; d2 = w2.data;
    }
    for (let i = 0; i < d.length; i++) d[i]! *= d2[i]!;
    return addDelta(W, d, p.scaling, what);
  },
};

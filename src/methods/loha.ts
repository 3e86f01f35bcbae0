/**
 * LoHa (Hyeon-Woo et al. 2022, FedPara; LyCORIS) as PEFT merges it (huggingface/peft
 * `tuners/loha/layer.py` at 5d602fdbf: `create_adapter_parameters` l. 48–71, scaling l. 130,
 * `get_delta_weight` l. 183–213, `make_weight` l. 432): `get_delta_weight` = `make_weight(w1_a, w1_b, w2_a, w2_b, scale)`
 * = (w1_a @ w1_b) ⊙ (w2_a @ w2_b) · scale, reshaped to the base weight's shape, with
 * scale = alpha / r (`update_layer`). `create_adapter_parameters` makes w?_a (out, r) and
 * w?_b (r, in·k…) for linear and (non-effective) conv layers. The Tucker form of
 * `use_effective_conv2d` (`hada_t1`, `hada_t2`, `make_weight_cp`) is not read: it is refused.
 * rank_dropout and module_dropout act only in training. The merge (`lycoris_utils.py`
 * `LycorisLayer.merge`) is W′ = W + ΔW.
 */
import { DorascopeError } from '../errors.js';
import { type DeltaMethod, addDelta, factorProduct, shapeError } from './delta.js';

export const lohaMethod: DeltaMethod = {
  name: 'loha',
  peftType: 'LOHA',
  roles: ['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b', 'hada_t1', 'hada_t2'],
  required: ['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b'],
  scaled: true,
  changesBias: () => false,
  // Two rank-r pairs, w?_a (out × r) and w?_b (r × in).
  trainableParams: (r, rows, cols) => 2 * r * (rows + cols),
  mergeBias: (b) => b,
  merge(W, _shape, t, p, what) {
    if (t.has('hada_t1') || t.has('hada_t2')) {
      throw new DorascopeError('E_UNSUPPORTED_FORMAT', `${what}: LoHa with Tucker cores (hada_t1/hada_t2, use_effective_conv2d) is not supported`);
    }
    const w1 = factorProduct(t.get('hada_w1_a')!, t.get('hada_w1_b')!, 'hada_w1_a and hada_w1_b', what);
    const w2 = factorProduct(t.get('hada_w2_a')!, t.get('hada_w2_b')!, 'hada_w2_a and hada_w2_b', what);
    if (w1.rows !== w2.rows || w1.cols !== w2.cols) shapeError(what, `w1_a@w1_b is ${w1.rows}×${w1.cols} but w2_a@w2_b is ${w2.rows}×${w2.cols}`);
    const d = w1.data;
    for (let i = 0; i < d.length; i++) d[i]! *= w2.data[i]!;
    return addDelta(W, d, p.scaling, what);
  },
};

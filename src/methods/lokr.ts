/**
 * LoKr (LyCORIS; Edalati et al. 2022, KronA) as PEFT merges it (huggingface/peft
 * `tuners/lokr/layer.py` at 5d602fdbf: `create_adapter_parameters` l. 65–106, scaling l. 189,
 * `get_delta_weight` l. 256–288, `make_kron` l. 495–501): `get_delta_weight` takes w1 = `lokr_w1` or `lokr_w1_a @ lokr_w1_b`,
 * w2 = `lokr_w2` or `lokr_w2_a @ lokr_w2_b`, and `make_kron(w1, w2, scale)` = kron(w1, w2) · scale
 * (a 4-D conv `lokr_w2` first gets w1 unsqueezed to (a, c, 1, 1)), reshaped to the base weight's
 * shape; scale = alpha / r (`update_layer`, whichever factors are full). Which factors are full
 * follows PEFT's `factorization()` at training time; here they are read as saved, so any
 * factorization works. The Tucker form (`lokr_t2`, `use_effective_conv2d`) is refused.
 * rank_dropout and module_dropout act only in training. W′ = W + ΔW (`LycorisLayer.merge`).
 */
import { DorascopeError } from '../errors.js';
import { type DeltaMethod, type DeltaTensor, addDelta, factorProduct, fmt, product, shapeError } from './delta.js';

/** A factor as (data, shape) in float64: the full tensor, or the product of its two halves. */
function factor(t: ReadonlyMap<string, DeltaTensor>, full: string, what: string): { data: Float64Array; shape: number[] } {
  const f = t.get(full);
  if (f) return { data: Float64Array.from(f.data), shape: [...f.shape] };
  const a = t.get(`${full}_a`), b = t.get(`${full}_b`);
  if (!a || !b) shapeError(what, `needs ${full}, or both ${full}_a and ${full}_b`);
  const p = factorProduct(a!, b!, `${full}_a and ${full}_b`, what);
  return { data: p.data, shape: [p.rows, p.cols] };
}

/** torch.kron of two tensors of equal rank, row-major (plain index loop). */
function kron(x: { data: Float64Array; shape: number[] }, y: { data: Float64Array; shape: number[] }): Float64Array {
  const nd = x.shape.length;
  const outShape = x.shape.map((d, i) => d * y.shape[i]!);
  const out = new Float64Array(product(outShape));
  const xi = new Array<number>(nd).fill(0);
  for (let a = 0; a < x.data.length; a++) {
    let r = a;
    for (let d = nd - 1; d >= 0; d--) { xi[d] = r % x.shape[d]!; r = Math.floor(r / x.shape[d]!); }
    const xv = x.data[a]!;
    for (let b = 0; b < y.data.length; b++) {
      let rb = b, idx = 0, stride = 1;
      for (let d = nd - 1; d >= 0; d--) {
        const yd = rb % y.shape[d]!;
        rb = Math.floor(rb / y.shape[d]!);
        idx += (xi[d]! * y.shape[d]! + yd) * stride;
        stride *= outShape[d]!;
      }
      out[idx] = xv * y.data[b]!;
    }
  }
  return out;
}

export const lokrMethod: DeltaMethod = {
  name: 'lokr',
  peftType: 'LOKR',
  roles: ['lokr_w1', 'lokr_w1_a', 'lokr_w1_b', 'lokr_w2', 'lokr_w2_a', 'lokr_w2_b', 'lokr_t2'],
  required: [],
  scaled: true,
  changesBias: () => false,
  // Which of w1, w2 are full or factored follows `factorization()` and `decompose_both` at training time.
  trainableParams: () => null,
  mergeBias: (b) => b,
  merge(W, shape, t, p, what) {
    if (t.has('lokr_t2')) {
      throw new DorascopeError('E_UNSUPPORTED_FORMAT', `${what}: LoKr with a Tucker core (lokr_t2, use_effective_conv2d) is not supported`);
    }
    const w1 = factor(t, 'lokr_w1', what);
    const w2 = factor(t, 'lokr_w2', what);
    if (w1.shape.length !== 2) shapeError(what, `lokr_w1 must be 2-D, got ${fmt(w1.shape)}`);
    // make_kron: a 4-D w2 (conv) gets w1.unsqueeze(2).unsqueeze(2); any other w2 must be 2-D.
    if (w2.shape.length === 4) w1.shape.push(1, 1);
    else if (w2.shape.length !== 2) shapeError(what, `lokr_w2 must be 2-D or 4-D, got ${fmt(w2.shape)}`);
    if (product(w1.shape) * product(w2.shape) !== product(shape)) {
      shapeError(what, `kron(w1 ${fmt(w1.shape)}, w2 ${fmt(w2.shape)}) does not have the base tensor's ${product(shape)} values (${fmt(shape)})`);
    }
    return addDelta(W, kron(w1, w2), p.scaling, what);
  },
};

/**
 * LoKr (LyCORIS; Edalati et al. 2022, KronA) as PEFT merges it (huggingface/peft
 * `tuners/lokr/layer.py` at 5d602fdbf: `create_adapter_parameters` l. 65–109, `update_layer` l. 160–241
 * (scaling l. 189), `get_delta_weight` l. 256–288, `factorization` l. 438–487, `make_weight_cp` l. 490,
 * `make_kron` l. 495–501):
 *
 *   w1 = `lokr_w1`, or `lokr_w1_a @ lokr_w1_b`
 *   w2 = `lokr_w2`, or rebuild(`lokr_t2`, `lokr_w2_a`, `lokr_w2_b`) (Tucker form, tucker.ts), or `lokr_w2_a @ lokr_w2_b`
 *   ΔW = make_kron(w1, w2, scale) = torch.kron(w1′, w2) · scale, reshaped to the base weight's shape
 *
 * where w1′ = w1.unsqueeze(2).unsqueeze(2) when w2 is 4-D (a Conv2d `lokr_w2` (b, d, kh, kw), or any
 * Tucker rebuild), else w1 itself; scale = alpha / r. torch.kron pads the operand of fewer dimensions
 * with *leading* ones, so a Conv1d layer's 3-D `lokr_w2` (b, d, k) meets w1 as (1, a, c): the product
 * is (b, a·d, c·k), which PEFT then reshapes to (out, in, k) as it is — reproduced here as is.
 * Which factors are full follows `factorization()` and `decompose_both` at training time; here
 * they are read as saved, so any combination works. rank_dropout and module_dropout act only in
 * training. W′ = W + ΔW (`lycoris_utils.py` `LycorisLayer.merge`). There is no cheap exact ΔM/ΔD
 * algebra for a Kronecker update against an arbitrary W0: the analysis merges per tensor.
 */
import { DorascopeError } from '../errors.js';
import { type DeltaMethod, type DeltaTensor, addDelta, factorProduct, fmt, product, shapeError } from './delta.js';
import { tuckerRebuild } from './tucker.js';

interface Dense { data: Float64Array; shape: number[] }

/** w1: the full tensor, or the product of its two halves. */
function factor1(t: ReadonlyMap<string, DeltaTensor>, what: string): Dense {
  const f = t.get('lokr_w1');
  if (f) return { data: Float64Array.from(f.data), shape: [...f.shape] };
  const a = t.get('lokr_w1_a'), b = t.get('lokr_w1_b');
  if (!a || !b) throw new DorascopeError('E_ADAPTER_KEYS', `${what}: LoKr needs lokr_w1, or both lokr_w1_a and lokr_w1_b`);
  const p = factorProduct(a, b, 'lokr_w1_a and lokr_w1_b', what);
  return { data: p.data, shape: [p.rows, p.cols] };
}

/** w2: the full tensor, the Tucker rebuild, or the product of its two halves (`get_delta_weight`'s order). */
function factor2(t: ReadonlyMap<string, DeltaTensor>, what: string): Dense {
  const f = t.get('lokr_w2');
  if (f) return { data: Float64Array.from(f.data), shape: [...f.shape] };
  const a = t.get('lokr_w2_a'), b = t.get('lokr_w2_b'), core = t.get('lokr_t2');
  if (!a || !b) throw new DorascopeError('E_ADAPTER_KEYS', `${what}: LoKr needs lokr_w2, or both lokr_w2_a and lokr_w2_b${core ? ' (with lokr_t2)' : ''}`);
  if (core) return tuckerRebuild(core, a, b, 'lokr_t2, lokr_w2_a and lokr_w2_b', what);
  const p = factorProduct(a, b, 'lokr_w2_a and lokr_w2_b', what);
  return { data: p.data, shape: [p.rows, p.cols] };
}

/**
 * torch.kron: operands padded with leading ones to the same rank; the result has shape x_d · y_d
 * on every axis d and element [i·y + j] (per axis) = x[i] · y[j]. Row-major index loops.
 */
export function kron(x: Dense, y: Dense): Dense {
  const nd = Math.max(x.shape.length, y.shape.length);
  const pad = (s: number[]) => [...new Array<number>(nd - s.length).fill(1), ...s];
  const xs = pad(x.shape), ys = pad(y.shape);
  const outShape = xs.map((d, i) => d * ys[i]!);
  const out = new Float64Array(product(outShape));
  const xi = new Array<number>(nd).fill(0);
  for (let a = 0; a < x.data.length; a++) {
    let r = a;
    for (let d = nd - 1; d >= 0; d--) { xi[d] = r % xs[d]!; r = Math.floor(r / xs[d]!); }
    const xv = x.data[a]!;
    if (xv === 0) continue;
    for (let b = 0; b < y.data.length; b++) {
      let rb = b, idx = 0, stride = 1;
      for (let d = nd - 1; d >= 0; d--) {
        const yd = rb % ys[d]!;
        rb = Math.floor(rb / ys[d]!);
        idx += (xi[d]! * ys[d]! + yd) * stride;
        stride *= outShape[d]!;
      }
      out[idx] = xv * y.data[b]!;
    }
  }
  return { data: out, shape: outShape };
}

export const lokrMethod: DeltaMethod = {
  name: 'lokr',
  peftType: 'LOKR',
  roles: ['lokr_w1', 'lokr_w1_a', 'lokr_w1_b', 'lokr_w2', 'lokr_w2_a', 'lokr_w2_b', 'lokr_t2'],
  required: [],
  labels: {
    lokr_w1: 'left Kronecker factor, full (a × c)',
    lokr_w1_a: 'left Kronecker factor, output side (a × r)',
    lokr_w1_b: 'left Kronecker factor, input side (r × c)',
    lokr_w2: 'right Kronecker factor, full (b × d[ × k…])',
    lokr_w2_a: 'right Kronecker factor, output side (b × r; r × b with lokr_t2)',
    lokr_w2_b: 'right Kronecker factor, input side (r × d[·k…]; r × d with lokr_t2)',
    lokr_t2: 'Tucker core of the right factor (r × r × kh × kw)',
  },
  scaled: true,
  changesBias: () => false,
  // Counted for Linear layers: with use_effective_conv2d a conv layer's count needs its kernel size (unknown here).
  trainableParams: (r, rows, cols, _ff, config) => (config['use_effective_conv2d'] === true ? null : lokrTrainable(r, rows, cols, config)),
  mergeBias: (b) => b,
  merge(W, shape, t, p, what) {
    const w1 = factor1(t, what);
    const w2 = factor2(t, what);
    if (w1.shape.length !== 2) shapeError(what, `lokr_w1 must be 2-D, got ${fmt(w1.shape)}`);
    // make_kron: a 4-D w2 gets w1.unsqueeze(2).unsqueeze(2); otherwise torch.kron's own padding applies.
    if (w2.shape.length === 4) w1.shape.push(1, 1);
    else if (w2.shape.length !== 2 && w2.shape.length !== 3) shapeError(what, `lokr_w2 must be 2-, 3- or 4-D, got ${fmt(w2.shape)}`);
    if (product(w1.shape) * product(w2.shape) !== product(shape)) {
      shapeError(what, `kron(w1 ${fmt(w1.shape)}, w2 ${fmt(w2.shape)}) does not have the base tensor's ${product(shape)} values (${fmt(shape)})`);
    }
    return addDelta(W, kron(w1, w2).data, p.scaling, what);
  },
};

/** PEFT's `factorization(dimension, factor)` (l. 438–487): two factors m ≤ n of `dimension`. */
export function factorization(dimension: number, factor = -1): [number, number] {
  if (factor > 0 && dimension % factor === 0) return [factor, dimension / factor];
  const f = factor === -1 ? dimension : factor;
  let m = 1, n = dimension;
  const length = m + n;
  while (m < n) {
    let nm = m + 1;
    while (dimension % nm !== 0) nm++;
    const nn = dimension / nm;
    if (nm + nn > length || nm > f) break;
    m = nm; n = nn;
  }
  return m > n ? [n, m] : [m, n];
}

/**
 * Parameters LoKr trains on a Linear layer of `rows` outputs and `cols` inputs (`update_layer`,
 * Linear branch): out = a·b and in = c·d by `factorization`, w1 full (a·c) unless `decompose_both`
 * and r < max(a, c)/2 (then r·(a + c)), w2 full (b·d) unless r < max(b, d)/2 (then r·(b + d)).
 */
export function lokrTrainable(r: number, rows: number, cols: number, config: Readonly<Record<string, unknown>>): number {
  const factor = typeof config['decompose_factor'] === 'number' ? config['decompose_factor'] : -1;
  const both = config['decompose_both'] === true;
  const [a, b] = factorization(rows, factor);
  const [c, d] = factorization(cols, factor);
  const w1 = both && r < Math.max(a, c) / 2 ? r * (a + c) : a * c;
  const w2 = r < Math.max(b, d) / 2 ? r * (b + d) : b * d;
  return w1 + w2;
}

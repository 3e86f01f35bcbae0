/**
 * The Tucker (CP) rebuild LyCORIS uses for `use_effective_conv2d` on conv layers, shared by LoHa and
 * LoKr. PEFT (huggingface/peft at 5d602fdbf) writes it as one einsum in both places:
 *
 *   `tuners/loha/layer.py` l. 392 (`HadaWeightCP.forward`):  einsum("i j k l, j r, i p -> p r k l", t, w_b, w_a)
 *   `tuners/lokr/layer.py` l. 491 (`make_weight_cp`):        einsum("i j k l, i p, j r -> p r k l", t, w_a, w_b)
 *
 * i.e. out[p, q, k, l] = Σ_i Σ_j t[i, j, k, l] · w_a[i, p] · w_b[j, q], with the core t (r, r, kh, kw)
 * (a Conv1d layer saves (r, r, k, 1)), w_a (r, out) along the output mode and w_b (r, in) along the
 * input mode (`create_adapter_parameters` of either layer: note that these w_a are (r, out), the
 * transpose of the non-Tucker (out, r)). Computed in two contractions, float64 throughout.
 */
import { type DeltaTensor, fmt, shapeError } from './delta.js';

export interface Rebuilt {
  readonly data: Float64Array;
  /** (out, in, kh, kw). */
  readonly shape: number[];
}

export function tuckerRebuild(t: DeltaTensor, wa: DeltaTensor, wb: DeltaTensor, names: string, what: string): Rebuilt {
  if (t.shape.length !== 4 || wa.shape.length !== 2 || wb.shape.length !== 2 || wa.shape[0] !== t.shape[0] || wb.shape[0] !== t.shape[1]) {
    shapeError(what, `${names} do not fit a Tucker rebuild (core ${fmt(t.shape)}, expected (r, r, kh, kw); factors ${fmt(wa.shape)} and ${fmt(wb.shape)}, expected (r, out) and (r, in))`);
  }
  const [ri, rj, kh, kw] = t.shape as [number, number, number, number];
  const P = wa.shape[1]!, Q = wb.shape[1]!, K = kh * kw;
  // tmp[i, q, kl] = Σ_j t[i, j, kl] · w_b[j, q]
  const tmp = new Float64Array(ri * Q * K);
  for (let i = 0; i < ri; i++) {
    for (let j = 0; j < rj; j++) {
      const to = (i * rj + j) * K;
      for (let q = 0; q < Q; q++) {
        const b = wb.data[j * Q + q]!;
        if (b === 0) continue;
        const o = (i * Q + q) * K;
        for (let kl = 0; kl < K; kl++) tmp[o + kl]! += t.data[to + kl]! * b;
      }
    }
  }
  // out[p, q, kl] = Σ_i w_a[i, p] · tmp[i, q, kl]
  const out = new Float64Array(P * Q * K);
  const row = Q * K;
  for (let i = 0; i < ri; i++) {
    for (let p = 0; p < P; p++) {
      const a = wa.data[i * P + p]!;
      if (a === 0) continue;
      const o = p * row, s = i * row;
      for (let x = 0; x < row; x++) out[o + x]! += a * tmp[s + x]!;
    }
  }
  return { data: out, shape: [P, Q, kh, kw] };
}

/**
 * DoRA as a variant of the LoRA merge (DoRA paper, arXiv 2402.09353, eq. 5;
 * PEFT `tuners/lora/dora.py` and the DoRA branch of `Linear.merge`):
 *
 *   V = W + s·B·A,   W' = (m / ‖V‖_c) ⊙ V
 *
 * where ‖V‖_c is the L2 norm of each *output feature*: a row of a torch (out, in)
 * weight, a column of a GPT-2 Conv1D (in, out) weight, all of (in, kh, kw) for an
 * output channel of a conv kernel, and a column (embedding dim) of an embedding, as
 * PEFT's `DoraEmbeddingLayer(fan_in_fan_out=True)` takes it.
 *
 * Zero-norm features (PEFT issue #2049): PEFT divides m by ‖V‖ = 0 and multiplies
 * the zero row by inf, which gives NaN (the fix proposed in PEFT PR #3237 was not
 * merged). The mathematical limit is unambiguous: a zero V row times any finite
 * factor is a zero row, so we leave such a feature as V (all zeros) instead of NaN.
 * This is the only place we differ from PEFT, and only where PEFT returns NaN.
 */
import { loraVariant } from './lora.js';
import { type MergeVariant, loraRow, rowsAreOutputs, storageShape, transposeB } from './merge.js';

/** The per-feature factor m/‖V‖, with 0 where ‖V‖ = 0 (see the note on issue #2049). */
export function doraFactor(m: number, norm: number): number {
  return norm > 0 ? m / norm : 0;
}

export const doraVariant: MergeVariant = {
  name: 'dora',
  // LoRA's A and B plus the magnitude vector, one value per output feature (paper eq. 5).
  trainableParams: (r, rows, cols) => loraVariant.trainableParams(r, rows, cols) + rows,
  /**
   * Feature n merges to m_n·v/‖v‖, so its magnitude is |m_n| and its cosine with w is
   * sign(m_n)·cos(w, v); when ‖v‖ = 0 the merged feature is zero (the zero-norm rule above), and
   * when m_n = 0 it is zero too.
   */
  exactFeature(v, f, n, out) {
    const m = f.magnitude?.[n];
    if (m === undefined) throw new Error('doraVariant needs a magnitude vector'); // callers pick the variant from the factors
    out.nonFinite = !Number.isFinite(m);
    if (v.vn > 0) {
      out.mt = Math.abs(m);
      out.cos = Math.sign(m) * v.cosWV;
      out.omc = m > 0 ? v.omcWV : m < 0 ? 2 - v.omcWV : 1;
      // ‖a·v − w‖² with a = m/‖v‖: (a−1)²‖w‖² + 2a(a−1)·w·δ + a²‖δ‖², a − 1 = (m − ‖v‖)/‖v‖.
      const a = m / v.vn, a1 = (m - v.vn) / v.vn;
      out.d2 = Math.max(0, a1 * a1 * v.w2 + 2 * a * a1 * v.wd + a * a * v.dd);
    } else {
      out.mt = 0; out.cos = 0; out.omc = 1; out.d2 = v.w2;
    }
    out.dm = Math.abs(out.mt - v.m0);
  },
  apply(W, f, out) {
    const m = f.magnitude;
    if (!m) throw new Error('doraVariant needs a magnitude vector'); // callers pick the variant from the factors
    const [rows, cols] = storageShape(f);
    const row = new Float64Array(cols);
    if (rowsAreOutputs(f.layout)) {
      // One pass: each storage row is an output feature.
      for (let i = 0; i < rows; i++) {
        loraRow(W, f, i, row, null);
        let ss = 0;
        for (let j = 0; j < cols; j++) ss += row[j]! * row[j]!;
        const c = doraFactor(m[i]!, Math.sqrt(ss));
        const o = i * cols;
        for (let j = 0; j < cols; j++) out[o + j] = c * row[j]!;
      }
      return;
    }
    // Output features are columns: first the column norms, then the scaled rows.
    // V is recomputed in the second pass rather than stored, so memory stays one row.
    const bt = transposeB(f);
    const ss = new Float64Array(cols);
    for (let i = 0; i < rows; i++) {
      loraRow(W, f, i, row, bt);
      for (let j = 0; j < cols; j++) ss[j]! += row[j]! * row[j]!;
    }
    const c = new Float64Array(cols);
    for (let j = 0; j < cols; j++) c[j] = doraFactor(m[j]!, Math.sqrt(ss[j]!));
    for (let i = 0; i < rows; i++) {
      loraRow(W, f, i, row, bt);
      const o = i * cols;
      for (let j = 0; j < cols; j++) out[o + j] = c[j]! * row[j]!;
    }
  },
};

/**
 * Plain LoRA as a merge variant (PEFT `tuners/lora/layer.py`, `Linear.merge` without DoRA):
 * the merged weight is the LoRA sum itself.
 */
import { type MergeVariant, loraRow, rowsAreOutputs, storageShape, transposeB } from './merge.js';

/**
 * The scaling s that multiplies B·A, as PEFT sets it in `tuners/lora/layer.py`
 * `LoraLayer.update_layer(adapter_name, r, lora_alpha, …, use_rslora)`: lora_alpha / r, or
 * lora_alpha / √r with rsLoRA (Kalajdzievski 2023, "A Rank Stabilization Scaling Factor").
 * Arguments in PEFT's order: rank first, then alpha.
 */
export function loraScaling(r: number, alpha: number, useRslora: boolean): number {
  return useRslora ? alpha / Math.sqrt(r) : alpha / r;
}

/** Plain LoRA: W' = V = W + s·ΔW. */
export const loraVariant: MergeVariant = {
  name: 'lora',
  // A (r × in) and B (out × r): Hu et al. 2021, §4.1.
  trainableParams: (r, rows, cols) => r * (rows + cols),
  exactFeature(v, _f, _n, out) {
    out.mt = v.vn;
    out.d2 = v.dd;
    out.cos = v.cosWV;
    out.omc = v.omcWV;
    // |‖v‖ − ‖w‖| = |2 w·δ + ‖δ‖²| / (‖v‖ + ‖w‖): no subtraction of near-equal norms.
    out.dm = v.m0 + v.vn > 0 ? Math.abs(2 * v.wd + v.dd) / (v.m0 + v.vn) : 0;
    out.nonFinite = false;
  },
  apply(W, f, out) {
    const [rows, cols] = storageShape(f);
    const row = new Float64Array(cols);
    const bt = rowsAreOutputs(f.layout) ? null : transposeB(f);
    for (let i = 0; i < rows; i++) {
      loraRow(W, f, i, row, bt);
      out.set(row, i * cols);
    }
  },
};

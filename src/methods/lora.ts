/**
 * Plain LoRA as a merge variant (PEFT `tuners/lora/layer.py`, `Linear.merge` without DoRA):
 * the merged weight is the LoRA sum itself.
 */
import { type MergeVariant, loraRow, rowsAreOutputs, storageShape, transposeB } from './merge.js';

/** Plain LoRA: W' = V = W + s·ΔW. */
export const loraVariant: MergeVariant = {
  name: 'lora',
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

/**
 * bitsandbytes LLM.int8 weights (`Linear8bitLt` with `has_fp16_weights=False`), decoded as bitsandbytes
 * decodes them (github.com/bitsandbytes-foundation/bitsandbytes at 95f9af3):
 * - Saved keys (nn/modules.py:1095-1117 `_save_to_state_dict`): `<module>.weight` int8 (out, in), row-major;
 *   `<module>.SCB` float32 (out,), each row's absmax; `<module>.weight_format` uint8 0 ("row", the only
 *   format still accepted on load, nn/modules.py:817-830).
 * - Quantizing: q = round(w · 127 / absmax_row) (backends/default/ops.py:164-167).
 * - Dequantizing (_ops.py:118-121 `int8_vectorwise_dequant`, which Transformers' `dequantize_bnb_weight`
 *   and PEFT's merge call): `A * stats.view(-1, 1) * 7.874015718698502e-3`, two float32 products.
 *   The result is float32.
 */

/** 1/127 as bitsandbytes writes it, as the float32 scalar torch multiplies a float32 tensor by. */
export const INV_127 = Math.fround(7.874015718698502e-3);

/** Dequantizes an int8 (rows × cols) matrix with one absmax per row. */
export function dequantizeInt8Rows(q: Int8Array, scb: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const s = scb[r]!;
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      out[i] = Math.fround(q[i]! * s) * INV_127;
    }
  }
  return out;
}

/**
 * bitsandbytes 4-bit blockwise weights (NF4 and FP4), decoded exactly as bitsandbytes decodes them.
 * Pure functions on typed arrays; the source wrapper that finds the tensors is quantized-source.ts.
 *
 * What bitsandbytes does (github.com/bitsandbytes-foundation/bitsandbytes at 95f9af3, the files named):
 * - Packing: uint8, two values per byte, the HIGH nibble first: element 2k is `byte[k] >> 4`, element
 *   2k+1 is `byte[k] & 0xF` (backends/default/ops.py:273-274 `_dequantize_4bit_compute`; the CUDA kernel
 *   does the same, csrc/kernels.cu:520-521; the quantizer packs `(q[::2] << 4) | q[1::2]`, ops.py:256).
 *   The packed tensor may be stored in another dtype (`quant_storage`); only its bytes matter.
 * - Value i = code[nibble_i] · absmax[⌊i / blocksize⌋], a float32 product (ops.py:275-283), then cast to
 *   the saved dtype with `.to(dtype)` (ops.py:285), i.e. round-to-nearest-even to bfloat16/float16.
 * - Code tables: functional.py:776-823 `get_4bit_type`, each divided by its largest |value| (line 855).
 *   `dequantize_4bit` uses these built-in tables for the quant type, not the saved `quant_map`.
 * - Double quantization (`compress_statistics`, functional.py:938-940): offset = mean(absmax); absmax −
 *   offset is 8-bit blockwise quantized (dynamic map, blocks of 256). Decoding (functional.py:1052-1056
 *   and `dequantize_blockwise`, ops.py:200-217): absmax_j = nested_code[q_j] · nested_absmax[⌊j / 256⌋]
 *   in float32, then `+= offset` in float32.
 * - Quant state (functional.py:545-578 `QuantState.as_dict(packed=True)`; utils.py:166
 *   `pack_dict_to_tensor`): the non-tensor fields are `json.dumps`-ed into a uint8 tensor
 *   `<param>.quant_state.bitsandbytes__<nf4|fp4>`: quant_type, blocksize, dtype ("bfloat16", "float16",
 *   "float32"), shape, and when nested: nested_blocksize, nested_dtype, nested_offset.
 */
import { DorascopeError } from '../../errors.js';
import { f16ToNumber, float32ToBF16Bits, numberToF16 } from '../dtypes.js';
import type { DType } from '../types.js';

export type Bnb4bitType = 'nf4' | 'fp4';

/** functional.py:788-805 (NF4: quantiles of N(0,1), QLoRA paper §3), already normalised to max 1. */
export const NF4_CODE = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
  -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
  0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/**
 * functional.py:823 (FP4: sign bit, 2 exponent bits, 1 mantissa bit, listed in bit-pattern order),
 * divided by the largest magnitude, 12, in float32 (line 855).
 */
export const FP4_CODE = Float32Array.from(
  [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3].map((v) => Math.fround(v / 12)),
);

export function codeFor(type: Bnb4bitType): Float32Array {
  return type === 'nf4' ? NF4_CODE : FP4_CODE;
}

/** Block sizes `quantize_4bit` / `dequantize_4bit` accept (functional.py, `dequantize_4bit`). */
export const BLOCK_SIZES_4BIT: readonly number[] = [32, 64, 128, 256, 512, 1024, 2048, 4096];

export interface QuantState4bit {
  readonly quantType: Bnb4bitType;
  readonly blockSize: number;
  /** The dtype the weight had before quantizing, which dequantization casts back to. */
  readonly dtype: 'F32' | 'F16' | 'BF16';
  readonly shape: readonly number[];
  /** Present with double quantization. */
  readonly nested: { readonly blockSize: number; readonly offset: number } | null;
}

const TORCH_DTYPES: Readonly<Record<string, 'F32' | 'F16' | 'BF16'>> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

/** Parses the JSON-in-uint8 quant state. `where` names the file and tensor for messages. */
export function parseQuantState(bytes: Uint8Array, where: string): QuantState4bit {
  const bad = (what: string): never => { throw new DorascopeError('E_QUANT_STATE', `${where}: ${what}`); };
  let j: unknown;
  try {
    j = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    return bad(`the quant state is not UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) return bad('the quant state is not a JSON object');
  const o = j as Record<string, unknown>;
  const quantType = o['quant_type'];
  if (quantType !== 'nf4' && quantType !== 'fp4') return bad(`quant_type ${JSON.stringify(quantType)} is not "nf4" or "fp4"`);
  const blockSize = o['blocksize'];
  if (typeof blockSize !== 'number' || !BLOCK_SIZES_4BIT.includes(blockSize)) return bad(`blocksize ${JSON.stringify(blockSize)} is not one of ${BLOCK_SIZES_4BIT.join(', ')}`);
  const dtype = typeof o['dtype'] === 'string' ? TORCH_DTYPES[o['dtype']] : undefined;
  if (!dtype) return bad(`dtype ${JSON.stringify(o['dtype'])} is not float32, float16 or bfloat16`);
  const shape = o['shape'];
  if (!Array.isArray(shape) || shape.length === 0 || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
    return bad(`shape ${JSON.stringify(shape)} is not a list of sizes`);
  }
  let nested: QuantState4bit['nested'] = null;
  if (o['nested_blocksize'] !== undefined || o['nested_offset'] !== undefined) {
    const nb = o['nested_blocksize'], off = o['nested_offset'];
    if (typeof nb !== 'number' || !Number.isSafeInteger(nb) || nb <= 0) return bad(`nested_blocksize ${JSON.stringify(nb)} is not a positive integer`);
    if (typeof off !== 'number' || !Number.isFinite(off)) return bad(`nested_offset ${JSON.stringify(off)} is not a finite number`);
    if (o['nested_dtype'] !== undefined && o['nested_dtype'] !== 'float32') return bad(`nested_dtype ${JSON.stringify(o['nested_dtype'])} is not float32`);
    nested = { blockSize: nb, offset: off };
  }
  return { quantType, blockSize, dtype, shape: shape as number[], nested };
}

/**
 * 8-bit blockwise dequantization (the nested absmax): out_j = code[q_j] · absmax[⌊j / blockSize⌋],
 * float32 (ops.py:200-217; a partial last block uses the last absmax).
 */
export function dequantizeBlockwise8(q: Uint8Array, absmax: Float32Array, code: Float32Array, blockSize: number): Float32Array {
  const out = new Float32Array(q.length);
  for (let j = 0; j < q.length; j++) out[j] = code[q[j]!]! * absmax[Math.floor(j / blockSize)]!;
  return out;
}

/** The block absmax of a double-quantized weight: the nested decode plus the offset, in float32 (functional.py:1052-1056). */
export function nestedAbsmax(q: Uint8Array, nestedAbsmaxValues: Float32Array, nestedCode: Float32Array, nestedBlockSize: number, offset: number): Float32Array {
  const a = dequantizeBlockwise8(q, nestedAbsmaxValues, nestedCode, nestedBlockSize);
  const off = Math.fround(offset); // torch.tensor(float(nested_offset)) is float32
  for (let j = 0; j < a.length; j++) a[j] = a[j]! + off; // stored back into float32: one rounding, as torch's in-place add
  return a;
}

/**
 * Unpacks and scales `n` 4-bit values (high nibble first), float32: code[nibble] · absmax[block].
 * `packed` must hold at least ⌈n/2⌉ bytes and `absmax` ⌈n / blockSize⌉ values (checked by the caller).
 */
export function dequantize4bit(packed: Uint8Array, absmax: Float32Array, code: Float32Array, blockSize: number, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const byte = packed[i >> 1]!;
    const nibble = (i & 1) === 0 ? byte >> 4 : byte & 0x0f;
    out[i] = code[nibble]! * absmax[Math.floor(i / blockSize)]!; // float64 product of two float32 is exact; the store rounds once, as float32 does
  }
  return out;
}

/** Rounds float32 values in place to `dtype` (round to nearest even), as torch's `.to(dtype)`; F32 unchanged. */
export function roundToDtype(values: Float32Array, dtype: DType): Float32Array {
  if (dtype === 'BF16') {
    const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
    for (let i = 0; i < bits.length; i++) bits[i] = float32ToBF16Bits(bits[i]!) << 16;
  } else if (dtype === 'F16') {
    for (let i = 0; i < values.length; i++) values[i] = f16ToNumber(numberToF16(values[i]!));
  }
  return values;
}

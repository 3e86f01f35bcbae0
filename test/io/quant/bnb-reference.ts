/**
 * A reference bitsandbytes quantizer and dequantizer written for the tests, apart from src/io/quant/:
 * nearest code by exhaustive search (bitsandbytes bisects between midpoints), nibbles kept unpacked
 * so the reference dequantizer never looks at the packed bytes, and checkpoints written in the exact
 * keys, dtypes and JSON that `Linear4bit._save_to_state_dict` / `Linear8bitLt._save_to_state_dict` write
 * (bitsandbytes nn/modules.py:593-607 and 1095-1117; QuantState.as_dict(packed=True),
 * functional.py:545-578, whose JSON is Python's `json.dumps` with its ", " and ": " separators).
 */
import { writeSafetensors, encodeFloat32 } from '../../../src/io/safetensors/writer.js';
import type { DType } from '../../../src/io/types.js';

/** NF4 levels as printed in bitsandbytes functional.py `get_4bit_type('nf4')` (QLoRA's NormalFloat). */
export const REF_NF4 = [
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
  -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
  0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
];
/** FP4 by bit pattern (csrc/kernels.cu comment: 0b000=0, 0b001=0.0625, 0b010=8, 0b011=12, 0b100=4, 0b101=6, 0b110=2, 0b111=3; bit 3 the sign), over 12. */
export const REF_FP4 = [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3].map((v) => Math.fround(v / 12));

const f32 = Math.fround;

/** bfloat16 rounding (nearest, ties to even) by integer arithmetic on the float32 bits. */
export function bf16(x: number): number {
  const b = new DataView(new ArrayBuffer(4));
  b.setFloat32(0, x, true);
  const bits = b.getUint32(0, true);
  let hi = bits >>> 16;
  const lo = bits & 0xffff;
  if (lo > 0x8000 || (lo === 0x8000 && (hi & 1) === 1)) hi += 1;
  b.setUint32(0, (hi << 16) >>> 0, true);
  return b.getFloat32(0, true);
}

function nearest(v: number, code: readonly number[]): number {
  let best = 0;
  for (let k = 1; k < code.length; k++) if (Math.abs(v - code[k]!) < Math.abs(v - code[best]!)) best = k;
  return best;
}

export interface Ref4bit {
  readonly nibbles: number[];
  readonly absmax: number[]; // float32 values, as dequantization uses them
  readonly packed: Uint8Array;
  readonly tensors: Record<string, { dtype: DType; shape: number[]; data: Uint8Array }>;
  /** The dequantized weight, float64 array of float32 (then dtype-rounded) values. */
  readonly dequantized: number[];
}

/** Quantizes `x` as `quantize_4bit(x, blocksize, compress_statistics=nested, quant_type)` stores it under `param`. */
export function refQuantize4bit(param: string, x: Float32Array, shape: number[], o: { type: 'nf4' | 'fp4'; blockSize: number; nested: boolean; dtype: 'float32' | 'bfloat16' }): Ref4bit {
  const code = o.type === 'nf4' ? REF_NF4 : REF_FP4;
  const n = x.length;
  const blocks = Math.ceil(n / o.blockSize);
  const am: number[] = [];
  for (let b = 0; b < blocks; b++) {
    let m = 0;
    for (let i = b * o.blockSize; i < Math.min(n, (b + 1) * o.blockSize); i++) m = Math.max(m, Math.abs(x[i]!));
    am.push(m);
  }
  const nibbles = Array.from(x, (v, i) => nearest(v / am[Math.floor(i / o.blockSize)]!, code));
  const packed = new Uint8Array(Math.ceil(n / 2));
  nibbles.forEach((q, i) => { packed[i >> 1]! |= i % 2 === 0 ? q << 4 : q; });
  const tensors: Ref4bit['tensors'] = {
    [param]: { dtype: 'U8', shape: [packed.length, 1], data: packed },
    [`${param}.quant_map`]: { dtype: 'F32', shape: [16], data: encodeFloat32('F32', code) },
  };
  let absmax = am;
  const state: Record<string, unknown> = { quant_type: o.type, blocksize: o.blockSize, dtype: o.dtype, shape };
  if (o.nested) {
    // offset = mean(absmax); absmax − offset quantized 8-bit in blocks of 256 with a 256-entry code
    // (bitsandbytes uses its dynamic map; any sorted table read from the file decodes the same way).
    const offset = f32(am.reduce((s, v) => s + v, 0) / am.length);
    const centred = am.map((v) => f32(v - offset));
    const nestedCode = Array.from({ length: 256 }, (_, k) => f32(-1 + (2 * k) / 255));
    const nb = 256;
    const nAm: number[] = [];
    for (let b = 0; b < Math.ceil(centred.length / nb); b++) nAm.push(Math.max(...centred.slice(b * nb, (b + 1) * nb).map(Math.abs)));
    const qa = centred.map((v, j) => nearest(v / nAm[Math.floor(j / nb)]!, nestedCode));
    absmax = qa.map((k, j) => f32(f32(nestedCode[k]! * nAm[Math.floor(j / nb)]!) + offset));
    tensors[`${param}.absmax`] = { dtype: 'U8', shape: [qa.length], data: Uint8Array.from(qa) };
    tensors[`${param}.nested_absmax`] = { dtype: 'F32', shape: [nAm.length], data: encodeFloat32('F32', nAm) };
    tensors[`${param}.nested_quant_map`] = { dtype: 'F32', shape: [256], data: encodeFloat32('F32', nestedCode) };
    Object.assign(state, { nested_blocksize: nb, nested_dtype: 'float32', nested_offset: offset });
  } else {
    tensors[`${param}.absmax`] = { dtype: 'F32', shape: [am.length], data: encodeFloat32('F32', am) };
  }
  const json = pyJson(state);
  tensors[`${param}.quant_state.bitsandbytes__${o.type}`] = { dtype: 'U8', shape: [json.length], data: json };
  const round = o.dtype === 'bfloat16' ? bf16 : (v: number) => v;
  const dequantized = nibbles.map((k, i) => round(f32(code[k]! * absmax[Math.floor(i / o.blockSize)]!)));
  return { nibbles, absmax, packed, tensors, dequantized };
}

/** Python's json.dumps(dict) as UTF-8 bytes: ", " and ": " separators; a float that is whole prints as `1.0`. */
export function pyJson(o: Record<string, unknown>, floats: readonly string[] = ['nested_offset']): Uint8Array {
  const val = (k: string, v: unknown): string => {
    if (Array.isArray(v)) return `[${v.map((x) => val('', x)).join(', ')}]`;
    if (typeof v === 'number' && floats.includes(k) && Number.isInteger(v)) return `${v}.0`;
    return JSON.stringify(v);
  };
  return new TextEncoder().encode(`{${Object.entries(o).map(([k, v]) => `${JSON.stringify(k)}: ${val(k, v)}`).join(', ')}}`);
}

export interface Ref8bit {
  readonly tensors: Record<string, { dtype: DType; shape: number[]; data: Uint8Array }>;
  readonly dequantized: number[];
}

/** LLM.int8 row-wise quantization of a (rows × cols) matrix under `<module>.weight` / `.SCB` / `.weight_format`. */
export function refQuantizeInt8(module: string, x: Float32Array, rows: number, cols: number): Ref8bit {
  const scb: number[] = [];
  const q = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const row = Array.from(x.subarray(r * cols, (r + 1) * cols));
    const s = f32(Math.max(...row.map(Math.abs)));
    scb.push(s);
    row.forEach((v, c) => { q[r * cols + c] = Math.round((v * 127) / s); });
  }
  const inv = f32(1 / 127);
  const dequantized = Array.from(q, (v, i) => f32(f32(v * scb[Math.floor(i / cols)]!) * inv));
  return {
    tensors: {
      [`${module}.weight`]: { dtype: 'I8', shape: [rows, cols], data: new Uint8Array(q.buffer) },
      [`${module}.SCB`]: { dtype: 'F32', shape: [rows], data: encodeFloat32('F32', scb) },
      [`${module}.weight_format`]: { dtype: 'U8', shape: [], data: Uint8Array.of(0) },
    },
    dequantized,
  };
}

export async function writeRaw(path: string, tensors: Record<string, { dtype: DType; shape: number[]; data: Uint8Array }>, metadata: Record<string, string> = { format: 'pt' }): Promise<void> {
  await writeSafetensors(path, Object.entries(tensors).map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: t.data })), metadata);
}

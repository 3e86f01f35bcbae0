/**
 * bitsandbytes 4-bit quantization (NF4/FP4, optionally with double quantization of the block absmax),
 * the inverse of bnb-4bit.ts: pure functions on typed arrays, float32 arithmetic emulated step by step
 * with Math.fround so the codes are the ones bitsandbytes picks.
 *
 * What bitsandbytes does (github.com/bitsandbytes-foundation/bitsandbytes at 95f9af3; the default
 * backend, backends/default/ops.py:233-262 `quantize_4bit`, which the CPU runs):
 * - absmax per block of `blocksize` values, in float32; scaled = clamp(x · (1 / absmax), −1, 1) with the
 *   reciprocal rounded to float32 first (`absmax.clamp(min=1e-38)`); a partial last block divides instead.
 * - The code is picked by `torch.bucketize(scaled, midpoints)` (right=False): the first midpoint ≥ the
 *   value, so a value exactly on a midpoint takes the LOWER code. Midpoints are (code[k] + code[k+1]) / 2
 *   in float32 over the sorted table. The CUDA kernel's NF4 tree (csrc/kernels.cu `dQuantizeNF4`, tests
 *   `x > pivot`) has the same pivots and the same tie rule, so NF4 codes agree on both. FP4 is sorted
 *   first and mapped back through a stable argsort (+0 at bit pattern 0 sorts before the table's second
 *   0 at pattern 8); the CUDA FP4 tree uses rounded decimal pivots on |x| and can differ near them.
 * - An odd count is padded with one 0 before packing (which NF4 codes as 7, not 0); packing is
 *   `(q[::2] << 4) | q[1::2]`: the first value in the HIGH nibble.
 * - Double quantization (functional.py `quantize_4bit`, `compress_statistics=True`): offset =
 *   mean(absmax), then absmax − offset is 8-bit blockwise quantized with the signed dynamic map in
 *   blocks of 256 (`quantize_blockwise`, ops.py:169-186, same bucketize rule).
 * Two float32 reductions are not reproduced to the last bit: torch's `mean` sums in its own order
 * (here: float64 sum, one rounding), and `create_dynamic_map` uses `torch.linspace`, whose vectorised
 * CPU path rounds differently from its scalar one (here: the scalar formula). Both results are
 * stored in the file (`nested_offset`, `nested_quant_map`) and every reader decodes with the stored
 * values, so a file written here decodes exactly as bitsandbytes decodes it.
 */
import { codeFor, type Bnb4bitType } from './bnb-4bit.js';

const f32 = Math.fround;
/** `clamp(min=1e-38)` on a float32 tensor: the bound as float32 (a subnormal). */
const TINY = f32(1e-38);

/** Midpoints of a sorted float32 table, as float32 (`(code[:-1] + code[1:]) / 2`). */
function midpoints(sorted: ArrayLike<number>): Float64Array {
  const m = new Float64Array(sorted.length - 1);
  for (let k = 0; k < m.length; k++) m[k] = f32(f32(sorted[k]! + sorted[k + 1]!) / 2);
  return m;
}

/** `torch.bucketize(v, bounds)` (right=False): the first k with bounds[k] ≥ v, else bounds.length. */
function bucket(v: number, bounds: Float64Array): number {
  let lo = 0, hi = bounds.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (bounds[mid]! >= v) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** A code table's quantizer: bucket boundaries over the sorted table and the map back to table indices. */
interface Quantizer { readonly bounds: Float64Array; readonly order: Int32Array }

function quantizerOf(code: ArrayLike<number>): Quantizer {
  // Stable argsort (Array.prototype.sort is stable): equal entries keep table order.
  const order = Int32Array.from(Array.from({ length: code.length }, (_, k) => k).sort((a, b) => code[a]! - code[b]!));
  return { bounds: midpoints(Array.from(order, (k) => code[k]!)), order };
}

/**
 * Blockwise absmax scaling and code choice shared by the 4-bit and the 8-bit quantizers: one table
 * index per value and one float32 absmax per block.
 */
function quantizeBlocks(x: ArrayLike<number>, blockSize: number, qz: Quantizer, out: Uint8Array): Float32Array {
  const n = x.length;
  const full = n - (n % blockSize);
  const absmax = new Float32Array(Math.ceil(n / blockSize));
  for (let b = 0; b < absmax.length; b++) {
    const lo = b * blockSize, hi = Math.min(n, lo + blockSize);
    let m = 0;
    for (let i = lo; i < hi; i++) m = Math.max(m, Math.abs(x[i]!));
    absmax[b] = m;
    const a = Math.max(m, TINY);
    const inv = f32(1 / a);
    for (let i = lo; i < hi; i++) {
      // full blocks multiply by the float32 reciprocal; the partial last block divides (ops.py:245-251)
      const s = Math.min(1, Math.max(-1, hi <= full ? f32(x[i]! * inv) : f32(x[i]! / a)));
      out[i] = qz.order[bucket(s, qz.bounds)]!;
    }
  }
  return absmax;
}

const QUANTIZERS = new Map<string, Quantizer>();
function cached(key: string, code: () => ArrayLike<number>): Quantizer {
  let q = QUANTIZERS.get(key);
  if (q === undefined) QUANTIZERS.set(key, (q = quantizerOf(code())));
  return q;
}

/**
 * `create_dynamic_map(signed=True)` (functional.py): 127 positive and 127 negative values
 * 10^(i−6) · mean(linspace(0.1, 1, 2^i + 1) neighbours) for i = 0…6, plus 0 and 1, sorted; float32.
 */
export function dynamicMap(): Float32Array {
  const data: number[] = [];
  const linspace = (steps: number): number[] => {
    // torch.linspace's scalar CPU formula in float32: start + step·i below halfway, end − step·(steps−1−i) above.
    const start = f32(0.1), end = 1;
    const step = f32(f32(end - start) / (steps - 1));
    const half = Math.floor(steps / 2);
    return Array.from({ length: steps }, (_, i) => (i < half ? f32(start + f32(step * i)) : f32(end - f32(step * (steps - i - 1)))));
  };
  for (let i = 0; i < 7; i++) {
    const b = linspace(2 ** i + 1);
    const scale = f32(10 ** (i - 6));
    for (let k = 0; k + 1 < b.length; k++) {
      const mean = f32(f32(b[k]! + b[k + 1]!) / 2);
      data.push(f32(scale * mean), f32(-scale * mean));
    }
  }
  data.push(0, 1);
  return Float32Array.from(data.sort((a, b) => a - b));
}

/** 8-bit blockwise quantization with a sorted 256-entry `code` (`quantize_blockwise`): codes and per-block absmax. */
export function quantizeBlockwise8(x: Float32Array, code: Float32Array, blockSize: number): { q: Uint8Array; absmax: Float32Array } {
  const q = new Uint8Array(x.length);
  const absmax = quantizeBlocks(x, blockSize, quantizerOf(code), q);
  return { q, absmax };
}

/** A weight quantized as bitsandbytes stores it. */
export interface Quantized4bit {
  readonly quantType: Bnb4bitType;
  readonly blockSize: number;
  readonly shape: readonly number[];
  /** ⌈n/2⌉ bytes, first value in the high nibble. */
  readonly packed: Uint8Array;
  /** Float32 block absmax, or (double quantization) their uint8 codes. */
  readonly absmax: Float32Array | Uint8Array;
  readonly nested: { readonly blockSize: number; readonly offset: number; readonly absmax: Float32Array; readonly code: Float32Array } | null;
}

export interface Quantize4bitOptions {
  readonly quantType: Bnb4bitType;
  /** bitsandbytes' default and Transformers' `Linear4bit`: 64. */
  readonly blockSize: number;
  /** `bnb_4bit_use_double_quant`: absmax 8-bit quantized in blocks of 256 (QLoRA paper §3). */
  readonly doubleQuant: boolean;
}

/** Nested block size bitsandbytes uses for the absmax (functional.py `quantize_4bit`: blocksize=256). */
export const NESTED_BLOCK_SIZE = 256;

/** `quantize_4bit(x.reshape(shape), blocksize, compress_statistics=doubleQuant, quant_type)`. */
export function quantize4bit(x: Float32Array, shape: readonly number[], o: Quantize4bitOptions): Quantized4bit {
  const n = x.length;
  const q = new Uint8Array(n + (n % 2));
  const qz = cached(o.quantType, () => codeFor(o.quantType));
  const absmax = quantizeBlocks(x, o.blockSize, qz, q);
  // ops.py:252-253: an odd count is padded with a scaled 0, quantized like any value
  if (n % 2 === 1) q[n] = qz.order[bucket(0, qz.bounds)]!;
  const packed = new Uint8Array(q.length / 2);
  for (let k = 0; k < packed.length; k++) packed[k] = (q[2 * k]! << 4) | q[2 * k + 1]!;
  if (!o.doubleQuant) return { quantType: o.quantType, blockSize: o.blockSize, shape: [...shape], packed, absmax, nested: null };
  let sum = 0;
  for (const a of absmax) sum += a;
  const offset = f32(sum / absmax.length);
  const centred = absmax.map((a) => a - offset); // Float32Array.map stores each difference as float32
  const code = dynamicMap();
  const nq = quantizeBlockwise8(centred, code, NESTED_BLOCK_SIZE);
  return {
    quantType: o.quantType, blockSize: o.blockSize, shape: [...shape], packed, absmax: nq.q,
    nested: { blockSize: NESTED_BLOCK_SIZE, offset, absmax: nq.absmax, code },
  };
}

/** A tensor to write: name, safetensors dtype, shape and little-endian bytes. */
export interface RawTensor {
  readonly name: string;
  readonly dtype: 'U8' | 'F32';
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

const bytesOf = (a: Float32Array | Uint8Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Python `json.dumps` of the quant state: ", " and ": " separators; a whole float offset keeps its ".0". */
function pyJson(o: Record<string, unknown>): string {
  const val = (k: string, v: unknown): string => {
    if (Array.isArray(v)) return `[${v.map((x) => val('', x)).join(', ')}]`;
    if (k === 'nested_offset' && typeof v === 'number' && Number.isInteger(v)) return `${v}.0`;
    return JSON.stringify(v);
  };
  return `{${Object.entries(o).map(([k, v]) => `${JSON.stringify(k)}: ${val(k, v)}`).join(', ')}}`;
}

/**
 * The tensors `Linear4bit._save_to_state_dict` writes for weight `param` (bitsandbytes nn/modules.py;
 * `QuantState.as_dict(packed=True)`, functional.py): `param` uint8 [⌈n/2⌉, 1], `.absmax`, `.quant_map`,
 * with double quantization `.nested_absmax` and `.nested_quant_map`, and
 * `.quant_state.bitsandbytes__<type>` holding the JSON of the remaining fields.
 * `dtype` is the torch dtype name the weight had (dequantization casts back to it).
 */
export function bnb4bitTensors(param: string, qw: Quantized4bit, dtype: 'float32' | 'float16' | 'bfloat16'): RawTensor[] {
  const state: Record<string, unknown> = { quant_type: qw.quantType, blocksize: qw.blockSize, dtype, shape: [...qw.shape] };
  const out: RawTensor[] = [
    { name: param, dtype: 'U8', shape: [qw.packed.length, 1], data: qw.packed },
    { name: `${param}.absmax`, dtype: qw.nested ? 'U8' : 'F32', shape: [qw.absmax.length], data: bytesOf(qw.absmax) },
    { name: `${param}.quant_map`, dtype: 'F32', shape: [16], data: bytesOf(codeFor(qw.quantType)) },
  ];
  if (qw.nested) {
    out.push(
      { name: `${param}.nested_absmax`, dtype: 'F32', shape: [qw.nested.absmax.length], data: bytesOf(qw.nested.absmax) },
      { name: `${param}.nested_quant_map`, dtype: 'F32', shape: [256], data: bytesOf(qw.nested.code) },
    );
    Object.assign(state, { nested_blocksize: qw.nested.blockSize, nested_dtype: 'float32', nested_offset: qw.nested.offset });
  }
  const json = new TextEncoder().encode(pyJson(state));
  out.push({ name: `${param}.quant_state.bitsandbytes__${qw.quantType}`, dtype: 'U8', shape: [json.length], data: json });
  return out;
}

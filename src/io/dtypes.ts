/**
 * The one dtype table. Every dtype's byte size, alignment (for the writer's layout) and,
 * for floating types, the decoder to float32. Kernels never branch on dtype: the reader
 * decodes once, here, at the edge.
 */
import type { DType } from './types.js';

export interface DTypeSpec {
  readonly size: number; // bytes per element
  readonly floating: boolean;
}

export const DTYPES: Readonly<Record<DType, DTypeSpec>> = {
  F64: { size: 8, floating: true },
  F32: { size: 4, floating: true },
  F16: { size: 2, floating: true },
  BF16: { size: 2, floating: true },
  F8_E4M3: { size: 1, floating: true },
  F8_E5M2: { size: 1, floating: true },
  I64: { size: 8, floating: false },
  I32: { size: 4, floating: false },
  I16: { size: 2, floating: false },
  I8: { size: 1, floating: false },
  U64: { size: 8, floating: false },
  U32: { size: 4, floating: false },
  U16: { size: 2, floating: false },
  U8: { size: 1, floating: false },
  BOOL: { size: 1, floating: false },
};

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.hasOwn(DTYPES, s);
}

export type RawArray =
  | Float64Array | Float32Array | Uint16Array | Uint8Array | Int8Array | Int16Array | Int32Array
  | BigInt64Array | Uint32Array | BigUint64Array;

/** Views little-endian bytes (already copied into an aligned buffer) as the dtype's native typed array. */
export function viewAs(dtype: DType, bytes: Uint8Array): RawArray {
  const { buffer, byteOffset } = bytes;
  const n = bytes.byteLength / DTYPES[dtype].size;
  switch (dtype) {
    case 'F64': return new Float64Array(buffer, byteOffset, n);
    case 'F32': return new Float32Array(buffer, byteOffset, n);
    case 'F16': case 'BF16': case 'U16': return new Uint16Array(buffer, byteOffset, n);
    case 'F8_E4M3': case 'F8_E5M2': case 'U8': case 'BOOL': return new Uint8Array(buffer, byteOffset, n);
    case 'I8': return new Int8Array(buffer, byteOffset, n);
    case 'I16': return new Int16Array(buffer, byteOffset, n);
    case 'I32': return new Int32Array(buffer, byteOffset, n);
    case 'U32': return new Uint32Array(buffer, byteOffset, n);
    case 'I64': return new BigInt64Array(buffer, byteOffset, n);
    case 'U64': return new BigUint64Array(buffer, byteOffset, n);
  }
}

/** IEEE 754 binary16 → number, with subnormals, ±inf and NaN. */
export function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24; // subnormal (and ±0)
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/**
 * float8 e4m3fn (OCP FP8 / torch.float8_e4m3fn): bias 7, no infinities, NaN only at S.1111.111; max 448.
 */
export function f8e4m3ToNumber(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const exp = (b >> 3) & 0xf;
  const mant = b & 0x7;
  if (exp === 15 && mant === 7) return NaN;
  if (exp === 0) return sign * (mant / 8) * 2 ** -6;
  return sign * (1 + mant / 8) * 2 ** (exp - 7);
}

/** float8 e5m2 (torch.float8_e5m2): IEEE-like, bias 15, with ±inf and NaN. */
export function f8e5m2ToNumber(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const exp = (b >> 2) & 0x1f;
  const mant = b & 0x3;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  if (exp === 0) return sign * (mant / 4) * 2 ** -14;
  return sign * (1 + mant / 4) * 2 ** (exp - 15);
}

let f16Table: Float32Array | undefined;
const f8Tables = new Map<DType, Float32Array>();

function table8(dtype: 'F8_E4M3' | 'F8_E5M2'): Float32Array {
  let t = f8Tables.get(dtype);
  if (!t) {
    const f = dtype === 'F8_E4M3' ? f8e4m3ToNumber : f8e5m2ToNumber;
    t = new Float32Array(256);
    for (let i = 0; i < 256; i++) t[i] = f(i);
    f8Tables.set(dtype, t);
  }
  return t;
}

function f16Lookup(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = f16ToNumber(i);
  }
  return f16Table;
}

/**
 * Decodes little-endian floating-point bytes into the caller's `out` (its first
 * bytes.byteLength / size elements), allocating nothing: the streaming analysis decodes row
 * blocks into one reused buffer. `bytes` must start at a multiple of the dtype's size in its
 * buffer (a pooled buffer read at offset 0 does). Same values as `decodeToFloat32`.
 */
export function decodeInto(dtype: DType, bytes: Uint8Array, out: Float32Array): void {
  const n = bytes.byteLength / DTYPES[dtype].size;
  if (!Number.isInteger(n) || n > out.length) throw new RangeError(`decodeInto: ${bytes.byteLength} bytes of ${dtype} do not fit ${out.length} float32 values`);
  const raw = viewAs(dtype, bytes);
  switch (dtype) {
    case 'F32': out.set(raw as Float32Array); return;
    case 'F64': out.set(raw as Float64Array); return; // Float32Array.set rounds to nearest, like Float32Array.from
    case 'BF16': {
      // Int32 stores keep the shifted value a small integer for the JIT (a Uint32Array store of a
      // negative int32 goes through a double); two values per 32-bit load when the bytes are
      // 4-aligned (about 1.5× faster again).
      const bits = new Int32Array(out.buffer, out.byteOffset, n);
      let i = 0;
      if (bytes.byteOffset % 4 === 0) {
        const pairs = new Int32Array(bytes.buffer, bytes.byteOffset, n >> 1);
        for (let p = 0; p < pairs.length; p++) {
          const w = pairs[p]!; // little-endian: element 2p in the low half
          bits[2 * p] = w << 16; bits[2 * p + 1] = w & -65536;
        }
        i = pairs.length * 2;
      }
      const src = raw as Uint16Array;
      for (; i < n; i++) bits[i] = src[i]! << 16;
      return;
    }
    case 'F16': {
      const t = f16Lookup();
      const src = raw as Uint16Array;
      for (let i = 0; i < n; i++) out[i] = t[src[i]!]!;
      return;
    }
    case 'F8_E4M3': case 'F8_E5M2': {
      const t = table8(dtype);
      const src = raw as Uint8Array;
      for (let i = 0; i < n; i++) out[i] = t[src[i]!]!;
      return;
    }
    default:
      throw new Error(`decodeInto: ${dtype} is not a floating dtype`);
  }
}

/** Decodes a floating tensor's raw array to float32. Returns the same array for F32. */
export function decodeToFloat32(dtype: DType, raw: RawArray): Float32Array {
  switch (dtype) {
    case 'F32': return raw as Float32Array;
    case 'F64': return Float32Array.from(raw as Float64Array);
    case 'BF16': {
      // bfloat16 is the top half of a float32: decodeInto shifts the bits up, two values per load
      // (a Uint32Array store here was about 3× slower).
      const src = raw as Uint16Array;
      const out = new Float32Array(src.length);
      decodeInto(dtype, new Uint8Array(src.buffer, src.byteOffset, src.byteLength), out);
      return out;
    }
    case 'F16': {
      const t = f16Lookup();
      const src = raw as Uint16Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = t[src[i]!]!;
      return out;
    }
    case 'F8_E4M3': case 'F8_E5M2': {
      const t = table8(dtype);
      const src = raw as Uint8Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = t[src[i]!]!;
      return out;
    }
    default:
      throw new Error(`decodeToFloat32: ${dtype} is not a floating dtype`);
  }
}

/** number → IEEE binary16 bits, round to nearest even (overflow → inf). */
export function numberToF16(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === Infinity) return sign | 0x7c00;
  if (a < 2 ** -24 / 2) return sign; // rounds to zero (exact half rounds to even = 0)
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1; // guard log2 rounding
  if (2 ** (e + 1) <= a) e += 1;
  if (e < -14) {
    const m = roundEven(a / 2 ** -24); // subnormal units
    return sign | m; // m may reach 1024 = smallest normal: the bit pattern is still right
  }
  let m = roundEven((a / 2 ** e - 1) * 1024);
  if (m === 1024) { m = 0; e += 1; }
  if (e > 15) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | m;
}

function roundEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** float32 → bfloat16 bits, round to nearest even; NaN stays a quiet NaN. */
export function float32ToBF16Bits(bits32: number): number {
  if ((bits32 & 0x7f800000) === 0x7f800000 && (bits32 & 0x7fffff) !== 0) return ((bits32 >>> 16) | 0x40) & 0xffff;
  const lsb = (bits32 >>> 16) & 1;
  return ((bits32 + 0x7fff + lsb) >>> 16) & 0xffff;
}

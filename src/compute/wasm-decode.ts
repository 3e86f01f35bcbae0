/**
 * The decode step of the fused analysis kernels: per storage dtype, the WebAssembly SIMD
 * instructions that take an address on the stack and leave float32 lanes (f32x4). The values are
 * those of io/dtypes.ts (`decodeInto`) exactly, ±0, subnormals and ±inf included; NaN stays NaN
 * (its payload may differ, which no sum can see). Everything else about the kernels is shared
 * (feature-sums.ts), so a new dtype is one entry here.
 *
 * The small floats have no WebAssembly instruction; they are decoded by integer moves and one
 * exact multiplication. Shifting the magnitude bits (exponent, mantissa) of a binary16 code to the
 * top of a float32's fields gives a float32 whose value is the code's times 2^−112 (the exponent
 * biases 127 and 15 differ by 112), subnormals included (a binary16 subnormal lands on a float32
 * subnormal: WebAssembly keeps them, IEEE 754 §6.3); multiplying by 2^112 is exact. Codes with an
 * all-ones exponent (inf, NaN) get the float32's all-ones exponent by an OR. float8 E5M2 is the
 * top byte of a binary16 (same rule, shift 21); float8 E4M3 (bias 7, no infinities, NaN only at
 * S.1111.111; OCP 8-bit Floating Point Specification 1.0, §5.3) uses 2^120 and marks only that
 * code NaN. Against lookup tables (one scalar load per element into a lane), on one core: F16
 * 1.3 ns per element pair here, 1.7–1.9 with a 65,536-entry float32 table (256 KiB, out of L1);
 * E4M3 1.2 here, 1.2–1.3 with a 256-entry one: no faster, and a table would need a home in the
 * kernel's memory. The multiplication meets a subnormal float32 for the codes with a zero exponent
 * field, which this machine (AMD EPYC) multiplies slowly when they share a vector with normal
 * values: with 10% such codes F16 costs 2.2 ns per pair, against 1.6 for a decode that re-biases the
 * exponent by an integer add and corrects the subnormal codes by an exact subtraction of 2^(1−bias)
 * (selected per lane). That one costs 1.4–1.9 ns whatever the data, and loses below ~1% subnormal
 * codes, which is where trained weights are (F16 at |w| ≈ 0.02: ~0.2%), so the multiplication stays.
 * (docs/benchmarks.md has the figures.)
 */
import {
  F32X4_MUL, I16X8_EXTEND_LOW_U8, I32X4_EXTEND_LOW_U16, I32X4_GT_S, I32X4_SHL, V_AND, V_LOAD, V_LOAD16X4_U, V_LOAD16_SPLAT,
  V_LOAD32_SPLAT, V_LOAD32_ZERO, V_LOAD8_SPLAT, V_OR, i32c, get, tee, vI32,
} from './wasm-assembler.js';

/** The storage dtypes the fused kernels decode (the names of io/types.ts `DType`). */
export type KernelDType = 'BF16' | 'F16' | 'F32' | 'F8_E4M3' | 'F8_E5M2';
export const KERNEL_DTYPES: readonly KernelDType[] = ['BF16', 'F16', 'F32', 'F8_E4M3', 'F8_E5M2'];

export function isKernelDType(d: string): d is KernelDType {
  return (KERNEL_DTYPES as readonly string[]).includes(d);
}

export interface Decoder {
  /** Bytes per element. */
  readonly size: number;
  /** address → the four elements there as f32x4. Two scratch v128 locals (a, b) are the caller's. */
  four(a: number, b: number): number[];
  /** address → the element there in lane 0 of an f32x4 (the other lanes: anything). */
  one(a: number, b: number): number[];
}

/** A minifloat's fields placed in a float32 (see the header): codes (i32 lanes) on the stack → f32x4. */
interface Minifloat {
  readonly sign: number; // the sign bit of a code
  readonly signShift: number; // moves it to bit 31
  readonly magShift: number; // moves exponent and mantissa to the top of the float32's fields
  readonly scale: number; // float32 bits of 2^(127 − bias)
  readonly special: number; // magnitudes above this are inf or NaN
  readonly specialBits: number; // OR-ed into them
}

function minifloat(m: Minifloat, a: number, b: number): number[] {
  return [
    ...tee(a), ...vI32(m.sign), ...V_AND, ...i32c(m.signShift), ...I32X4_SHL,
    ...get(a), ...vI32(m.sign - 1), ...V_AND, ...tee(b), ...i32c(m.magShift), ...I32X4_SHL, ...vI32(m.scale), ...F32X4_MUL, ...V_OR,
    ...get(b), ...vI32(m.special), ...I32X4_GT_S, ...vI32(m.specialBits), ...V_AND, ...V_OR,
  ];
}

const f32Bits = (x: number): number => new Uint32Array(Float32Array.of(x).buffer)[0]!;
const INF_EXP = 0x7f800000, QUIET_NAN = 0x7fc00000;
const F16: Minifloat = { sign: 0x8000, signShift: 16, magShift: 13, scale: f32Bits(2 ** 112), special: 0x7bff, specialBits: INF_EXP };
const E5M2: Minifloat = { sign: 0x80, signShift: 24, magShift: 21, scale: f32Bits(2 ** 112), special: 0x7b, specialBits: INF_EXP };
const E4M3: Minifloat = { sign: 0x80, signShift: 24, magShift: 20, scale: f32Bits(2 ** 120), special: 0x7e, specialBits: QUIET_NAN };

/** Four bytes → i32x4 of their values. */
const BYTES4 = [...V_LOAD32_ZERO(), ...I16X8_EXTEND_LOW_U8, ...I32X4_EXTEND_LOW_U16];

export const DECODERS: Readonly<Record<KernelDType, Decoder>> = {
  F32: { size: 4, four: () => V_LOAD(), one: () => V_LOAD32_SPLAT() },
  // bfloat16 is the top half of a float32.
  BF16: { size: 2, four: () => [...V_LOAD16X4_U(), ...i32c(16), ...I32X4_SHL], one: () => [...V_LOAD16_SPLAT(), ...i32c(16), ...I32X4_SHL] },
  // A splat load repeats the code in every byte or half of a lane; the masks of `minifloat` keep one.
  F16: { size: 2, four: (a, b) => [...V_LOAD16X4_U(), ...minifloat(F16, a, b)], one: (a, b) => [...V_LOAD16_SPLAT(), ...minifloat(F16, a, b)] },
  F8_E5M2: { size: 1, four: (a, b) => [...BYTES4, ...minifloat(E5M2, a, b)], one: (a, b) => [...V_LOAD8_SPLAT(), ...minifloat(E5M2, a, b)] },
  F8_E4M3: { size: 1, four: (a, b) => [...BYTES4, ...minifloat(E4M3, a, b)], one: (a, b) => [...V_LOAD8_SPLAT(), ...minifloat(E4M3, a, b)] },
};

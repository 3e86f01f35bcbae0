/**
 * The fused decode-and-reduce kernels against values and sums computed here: every code of every
 * 8- and 16-bit dtype decoded (through x·1 = x, exact), and per-feature sums of random blocks of
 * odd sizes (not multiples of the 4-lane step) against float64 loops written in this file, for
 * every pair of dtypes and both feature axes, with subnormals, ±0, ±inf and NaN.
 */
import { describe, expect, it } from 'vitest';
import { featureSumsKernel, featureSumsModule, type FeatureSumsKernel } from '../../src/compute/feature-sums.js';
import { KERNEL_DTYPES, type KernelDType } from '../../src/compute/wasm-decode.js';
import { rng } from '../helpers/random.js';

const SIZE: Record<KernelDType, number> = { F32: 4, BF16: 2, F16: 2, F8_E4M3: 1, F8_E5M2: 1 };

/** A code's value from its bit fields, by the formats' definitions (IEEE 754 §3.4; OCP FP8 1.0 §5.3). */
function value(dtype: KernelDType, code: number): number {
  if (dtype === 'F32') return new Float32Array(new Uint32Array([code]).buffer)[0]!;
  const [e, m, bias, ieee] = { BF16: [8, 7, 127, true], F16: [5, 10, 15, true], F8_E5M2: [5, 2, 15, true], F8_E4M3: [4, 3, 7, false] }[dtype] as [number, number, number, boolean];
  const sign = (code >> (e + m)) & 1 ? -1 : 1;
  const exp = (code >> m) & ((1 << e) - 1), mant = code & ((1 << m) - 1);
  const top = (1 << e) - 1;
  if (ieee && exp === top) return mant === 0 ? sign * Infinity : NaN;
  if (!ieee && exp === top && mant === (1 << m) - 1) return NaN; // E4M3: no infinities, NaN at S.1111.111
  return exp === 0 ? sign * mant * 2 ** (1 - bias - m) : sign * (1 + mant / 2 ** m) * 2 ** (exp - bias);
}

/** The one code of 1.0. */
const ONE: Record<KernelDType, number> = { F32: 0x3f800000, BF16: 0x3f80, F16: 0x3c00, F8_E4M3: 0x38, F8_E5M2: 0x3c };

function encode(dtype: KernelDType, codes: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(codes.length * SIZE[dtype]);
  const view = new DataView(out.buffer);
  for (let i = 0; i < codes.length; i++) {
    if (SIZE[dtype] === 4) view.setUint32(4 * i, codes[i]!, true);
    else if (SIZE[dtype] === 2) view.setUint16(2 * i, codes[i]!, true);
    else out[i] = codes[i]!;
  }
  return out;
}

/** Copies blocks into the kernel's memory at 16-byte aligned offsets; returns their addresses and one past the end. */
function place(k: FeatureSumsKernel, blocks: Uint8Array[], extra: number): { at: number[]; end: number } {
  const at: number[] = [];
  let p = 0;
  for (const b of blocks) { at.push(p); p += Math.ceil(b.byteLength / 16) * 16; }
  k.reserve(p + extra);
  blocks.forEach((b, i) => new Uint8Array(k.memory.buffer, at[i], b.byteLength).set(b));
  return { at, end: p };
}

/** Equal as float64s, NaN equal to NaN. */
const same = (a: number, b: number): boolean => (Number.isNaN(a) && Number.isNaN(b)) || a === b;

describe('feature-sum kernels', () => {
  it('assemble into valid modules for every pair of dtypes', () => {
    for (const a of KERNEL_DTYPES) for (const b of KERNEL_DTYPES) {
      expect(WebAssembly.validate(featureSumsModule(a, b)), `${a} × ${b}`).toBe(true);
      expect(featureSumsKernel(a, b)).toBeDefined();
    }
  });

  it('decode every code (sampled bit patterns for F32), in the 4-lane step and the one-at-a-time tail, on both sides', () => {
    const r = rng(5);
    for (const d of KERNEL_DTYPES) {
      let codes: number[];
      if (d === 'F32') {
        const special = [0, 0x80000000, 1, 0x807fffff, 0x00800000, 0x7f7fffff, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffffffff];
        codes = [...special, ...Array.from({ length: 4000 }, () => Math.floor(r() * 2 ** 32))];
      } else codes = Array.from({ length: 2 ** (8 * SIZE[d]) }, (_, i) => i);
      codes.push(codes[3]!, codes[codes.length - 2]!, codes[1]!); // a tail of three whatever the count (and 2^n + 3 is odd)
      const n = codes.length;
      const ones = encode(d, new Array<number>(n).fill(ONE[d]));
      const k = featureSumsKernel(d, d)!;
      // W0 = codes, W_t = 1: dot[j] = x·1 = x, and W0 = 1, W_t = codes: dot[j] = x, sst[j] = x² (one row, features along columns).
      for (const side of [0, 1]) {
        const blocks = side === 0 ? [encode(d, codes), ones] : [ones, encode(d, codes)];
        const { at, end } = place(k, blocks, 16 * n);
        new Float64Array(k.memory.buffer, end, 2 * n).fill(0);
        k.colDot(at[0]!, at[1]!, 1, n, end, end + 8 * n);
        const dot = new Float64Array(k.memory.buffer, end, n), sst = new Float64Array(k.memory.buffer, end + 8 * n, n);
        const bad = codes.filter((c, j) => !same(dot[j]!, value(d, c)) || (side === 1 && !same(sst[j]!, value(d, c) ** 2)));
        expect(bad.map((c) => c.toString(16)), `${d}, side ${side}`).toEqual([]);
      }
      // One code per row: the tail path for every code, through the row kernel.
      const { at, end } = place(k, [encode(d, codes), ones], 16 * n);
      k.rowDot(at[0]!, at[1]!, n, 1, end);
      const out = new Float64Array(k.memory.buffer, end, 2 * n);
      expect(codes.filter((c, j) => !same(out[2 * j]!, value(d, c))).map((c) => c.toString(16)), d).toEqual([]);
    }
  });

  /** Random codes whose values are finite, with zeros of both signs and subnormals mixed in. */
  function randomCodes(d: KernelDType, n: number, next: () => number): number[] {
    const bits = 8 * SIZE[d];
    const out: number[] = [];
    while (out.length < n) {
      const u = next();
      // A quarter near zero (±0 and subnormals: exponent field 0), the rest any finite code.
      const c = u < 0.25 ? (Math.floor(next() * 8) | (next() < 0.5 ? 2 ** (bits - 1) : 0)) : Math.floor(next() * 2 ** bits);
      if (Number.isFinite(value(d, c))) out.push(c);
    }
    return out;
  }

  const shapes: [number, number][] = [[1, 1], [3, 3], [5, 4], [7, 13], [13, 29], [2, 67]];
  for (const d0 of KERNEL_DTYPES) for (const dt of KERNEL_DTYPES) {
    it(`sum ${d0} W0 against ${dt} W_t as a float64 loop does, features along rows and along columns`, () => {
      const next = rng(d0.length * 31 + dt.length);
      const k = featureSumsKernel(d0, dt)!;
      for (const [rows, cols] of shapes) {
        const n = rows * cols;
        const c0 = randomCodes(d0, n, next), ct = randomCodes(dt, n, next);
        const x = c0.map((c) => value(d0, c)), y = ct.map((c) => value(dt, c));
        const { at, end } = place(k, [encode(d0, c0), encode(dt, ct)], 16 * (rows + cols) + 8 * cols);
        const mem = () => k.memory.buffer;
        // Features along rows: per-row sums in any order, so within float64 rounding.
        let diff2 = 0;
        const sq = new Float64Array(rows), dot = new Float64Array(rows), sst = new Float64Array(rows);
        for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) {
          const a = x[r * cols + j]!, b = y[r * cols + j]!;
          sq[r]! += a * a; dot[r]! += a * b; sst[r]! += b * b; diff2 += (b - a) * (b - a);
        }
        const close = (got: number, want: number, scale: number) => expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-14 * scale);
        k.rowSq(at[0]!, rows, cols, end);
        const outSq = new Float64Array(mem(), end, rows);
        for (let r = 0; r < rows; r++) close(outSq[r]!, sq[r]!, sq[r]!);
        const gotDiff2 = k.rowDot(at[0]!, at[1]!, rows, cols, end);
        const out = new Float64Array(mem(), end, 2 * rows);
        for (let r = 0; r < rows; r++) {
          let scale = 0;
          for (let j = 0; j < cols; j++) scale += Math.abs(x[r * cols + j]! * y[r * cols + j]!);
          close(out[2 * r]!, dot[r]!, scale); close(out[2 * r + 1]!, sst[r]!, sst[r]!);
        }
        close(gotDiff2, diff2, diff2);
        // Features along columns: each column's terms in row order, as the loop adds them, so the same bits;
        // the accumulators start from what they hold (here 0.5, as a later block of rows finds them).
        const cq = new Float64Array(cols).fill(0.5), cd = new Float64Array(cols).fill(0.5), cs = new Float64Array(cols).fill(0.5);
        for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) {
          const a = x[r * cols + j]!, b = y[r * cols + j]!;
          cq[j]! += a * a; cd[j]! += a * b; cs[j]! += b * b;
        }
        const acc = new Float64Array(mem(), end, 3 * cols).fill(0.5);
        k.colSq(at[0]!, rows, cols, end);
        const colDiff2 = k.colDot(at[0]!, at[1]!, rows, cols, end + 8 * cols, end + 16 * cols);
        expect([...acc]).toEqual([...cq, ...cd, ...cs]);
        close(colDiff2, diff2, diff2);
      }
    });
  }

  it('carry ±inf and NaN into the sums as the float64 loop does', () => {
    for (const d of ['F16', 'F8_E5M2', 'BF16', 'F32', 'F8_E4M3'] as const) {
      const k = featureSumsKernel(d, d)!;
      const inf = { F16: 0x7c00, F8_E5M2: 0x7c, BF16: 0x7f80, F32: 0x7f800000, F8_E4M3: -1 }[d];
      const nan = { F16: 0x7e01, F8_E5M2: 0x7d, BF16: 0xffc1, F32: 0x7fc00001, F8_E4M3: 0xff }[d];
      // 3 rows of 6: a finite row, a row with NaN in the lanes and one with ∞ (or NaN again for E4M3) in the tail.
      const finite = ONE[d];
      const c0 = [...new Array<number>(6).fill(finite), finite, nan, finite, finite, finite, finite, ...new Array<number>(5).fill(finite), inf < 0 ? nan : inf];
      const ct = new Array<number>(18).fill(finite);
      const { at, end } = place(k, [encode(d, c0), encode(d, ct)], 16 * 3);
      k.rowSq(at[0]!, 3, 6, end);
      const sq = [...new Float64Array(k.memory.buffer, end, 3)];
      expect(sq[0]).toBe(6);
      expect(Number.isNaN(sq[1])).toBe(true);
      expect(inf < 0 ? Number.isNaN(sq[2]) : sq[2] === Infinity).toBe(true);
      const diff2 = k.rowDot(at[0]!, at[1]!, 3, 6, end);
      expect(Number.isNaN(diff2)).toBe(true);
    }
  });
});

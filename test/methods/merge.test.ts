import { describe, expect, it } from 'vitest';
import { type LoraFactors, mergeModule } from '../../src/methods/merge.js';
import { loraVariant } from '../../src/methods/lora.js';
import { doraVariant } from '../../src/methods/dora.js';
import { mergeFactors } from '../../src/methods/variants.js';
import { isDorascopeError } from '../../src/errors.js';
import { rng, randn } from '../helpers/random.js';
import { maxRelErr, referenceMerge } from '../helpers/reference-merge.js';

describe('LoRA / DoRA merge math', () => {
  it('matches a hand-worked 2×2 example (LoRA and DoRA)', () => {
    // W = I, A = [1 1], B = [1; 0], s = 2  →  V = [[3, 2], [0, 1]]
    const W = new Float32Array([1, 0, 0, 1]);
    const f: LoraFactors = { layout: 'linear', r: 1, out: 2, in: 2, A: new Float32Array([1, 1]), B: new Float32Array([1, 0]), scaling: 2 };
    expect([...mergeModule(W, f, loraVariant)]).toEqual([3, 2, 0, 1]);
    // DoRA with m = [1, 5]: row 0 → [3, 2]/√13, row 1 → 5·[0, 1]
    const d = mergeFactors(W, { ...f, magnitude: new Float32Array([1, 5]) });
    expect(d[0]).toBeCloseTo(3 / Math.sqrt(13), 6);
    expect(d[1]).toBeCloseTo(2 / Math.sqrt(13), 6);
    expect([d[2], d[3]]).toEqual([0, 5]);
  });

  const cases: { name: string; layout: LoraFactors['layout']; out: number; inn: number; r: number; rowsOut: boolean }[] = [
    { name: 'linear (out, in)', layout: 'linear', out: 7, inn: 5, r: 3, rowsOut: true },
    { name: 'Conv1D (in, out), fan_in_fan_out', layout: 'conv1d', out: 6, inn: 9, r: 2, rowsOut: false },
    { name: 'conv kernel (out, in, 3, 3) flattened', layout: 'conv', out: 4, inn: 2 * 3 * 3, r: 2, rowsOut: true },
    { name: 'embedding (vocab, dim)', layout: 'embedding', out: 5, inn: 11, r: 4, rowsOut: false },
  ];
  for (const c of cases) {
    it(`${c.name}: LoRA and DoRA equal the float64 reference`, () => {
      const next = rng(c.out * 31 + c.inn);
      const W = randn(next, c.out * c.inn);
      const A = randn(next, c.r * c.inn, 0.5);
      const B = randn(next, c.out * c.r, 0.5);
      const m = randn(next, c.out).map((x) => 1 + Math.abs(x));
      const f: LoraFactors = { layout: c.layout, r: c.r, out: c.out, in: c.inn, A, B, scaling: 1.7 };
      const ref = { W, A, B, r: c.r, out: c.out, in: c.inn, scaling: 1.7, outputsAreRows: c.rowsOut };
      expect(maxRelErr(mergeModule(W, f, loraVariant), referenceMerge(ref))).toBeLessThan(1e-6);
      const dora = mergeModule(W, { ...f, magnitude: m }, doraVariant);
      expect(maxRelErr(dora, referenceMerge({ ...ref, magnitude: m }))).toBeLessThan(1e-6);
      // the DoRA output features have exactly the magnitudes m (the point of eq. 5)
      for (let o = 0; o < c.out; o++) {
        let ss = 0;
        const rows = c.rowsOut ? c.out : c.inn;
        const cols = c.rowsOut ? c.inn : c.out;
        if (c.rowsOut) for (let j = 0; j < cols; j++) ss += dora[o * cols + j]! ** 2;
        else for (let i = 0; i < rows; i++) ss += dora[i * cols + o]! ** 2;
        expect(Math.sqrt(ss)).toBeCloseTo(m[o]!, 5);
      }
    });
  }

  it('a zero-norm output feature stays zero under DoRA, never NaN (PEFT issue #2049)', () => {
    // row 1 of W is zero and B's row 1 is zero, so V's row 1 is zero
    const W = new Float32Array([1, 2, 0, 0, 3, 4]);
    const f: LoraFactors = {
      layout: 'linear', r: 1, out: 3, in: 2, A: new Float32Array([1, -1]), B: new Float32Array([0.5, 0, 0.25]),
      scaling: 1, magnitude: new Float32Array([2, 7, 1]),
    };
    const d = mergeFactors(W, f);
    expect(d.every(Number.isFinite)).toBe(true);
    expect([d[2], d[3]]).toEqual([0, 0]);
    expect(maxRelErr(d, referenceMerge({ W, A: f.A, B: f.B, r: 1, out: 3, in: 2, scaling: 1, outputsAreRows: true, magnitude: f.magnitude! }))).toBeLessThan(1e-6);
    // the same in a Conv1D layout: a zero column
    const Wc = new Float32Array([1, 0, 2, 0, 3, 0]); // (in 3, out 2); column 1 zero
    const fc: LoraFactors = { layout: 'conv1d', r: 1, out: 2, in: 3, A: new Float32Array([1, 1, 1]), B: new Float32Array([1, 0]), scaling: 1, magnitude: new Float32Array([1, 9]) };
    const dc = mergeFactors(Wc, fc);
    expect([dc[1], dc[3], dc[5]]).toEqual([0, 0, 0]);
    expect(dc.every(Number.isFinite)).toBe(true);
  });

  it('rejects factors that do not fit the base tensor with E_SHAPE_MISMATCH', () => {
    const f: LoraFactors = { layout: 'linear', r: 2, out: 3, in: 4, A: new Float32Array(8), B: new Float32Array(6), scaling: 1 };
    let err: unknown;
    try {
      mergeModule(new Float32Array(11), f, loraVariant, 'q_proj.weight');
    } catch (e) {
      err = e;
    }
    expect(isDorascopeError(err, 'E_SHAPE_MISMATCH')).toBe(true);
    expect((err as Error).message).toContain('q_proj.weight');
    expect(() => mergeModule(new Float32Array(12), { ...f, A: new Float32Array(7) }, loraVariant)).toThrow(/lora_A/);
  });
});

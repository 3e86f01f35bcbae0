import { describe, expect, it } from 'vitest';
import { initBackend, tf } from '../../src/compute/backend.js';
import { sliceRanges } from '../../src/compute/kernels/wasm-slice.js';
import { rng } from '../helpers/random.js';

/** Reference slice from the definition: out[i] = x[begin + multi-index(i)], one element at a time. */
function refSlice(x: Float32Array, shape: number[], begin: number[], size: number[]): Float32Array {
  const n = size.reduce((a, b) => a * b, 1), out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let rem = i, src = 0, stride = 1;
    const idx: number[] = [];
    for (let ax = size.length - 1; ax >= 0; ax--) { idx[ax] = rem % size[ax]!; rem = Math.floor(rem / size[ax]!); }
    for (let ax = shape.length - 1; ax >= 0; ax--) { src += (begin[ax]! + idx[ax]!) * stride; stride *= shape[ax]!; }
    out[i] = x[src]!;
  }
  return out;
}

describe('sliceRanges (pure)', () => {
  it('merges whole trailing axes into one copy and walks the rest row by row', () => {
    const calls: Array<[number, number, number]> = [];
    sliceRanges([2, 3, 4], [1, 0, 0], [1, 3, 4], 4, (d, s, n) => calls.push([d, s, n]));
    expect(calls).toEqual([[0, 48, 48]]); // x[1] is 12 contiguous floats from element 12
    calls.length = 0;
    sliceRanges([2, 3, 4], [0, 1, 2], [2, 2, 2], 4, (d, s, n) => calls.push([d, s, n]));
    // rows (i, j) ∈ {0,1}×{1,2}, 2 elements from column 2: elements 6, 10, 18, 22
    expect(calls).toEqual([[0, 24, 8], [8, 40, 8], [16, 72, 8], [24, 88, 8]]);
  });
});

describe('wasm Slice and SplitV', () => {
  const cases: Array<[number[], number[], number[]]> = [
    [[4, 4, 9, 8], [0, 0, 0, 0], [4, 4, 9, 4]], [[4, 4, 9, 8], [0, 0, 0, 4], [4, 4, 9, 4]],
    [[4, 4, 9, 8], [1, 2, 3, 1], [2, 1, 5, 6]], [[5, 7], [1, 0], [3, 7]], [[5, 7], [0, 2], [5, 3]], [[11], [3], [5]],
    [[2, 3, 2, 2, 3], [1, 0, 1, 0, 1], [1, 3, 1, 2, 2]], [[3, 4], [1, 1], [0, 2]],
  ];
  for (const [shape, begin, size] of cases)
    it(`slice of [${shape}] at [${begin}] size [${size}] equals an element-wise reference and the cpu backend`, async () => {
      const t = tf();
      const r = rng(shape.length * 13 + begin[0]!);
      const x = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => 2 * r() - 1);
      const ref = refSlice(x, shape, begin, size);
      const run = async (b: 'wasm' | 'cpu') => {
        await initBackend(b);
        const xt = t.tensor(x, shape);
        const y = t.slice(xt, begin, size);
        expect(y.shape).toEqual(size);
        const v = await y.data();
        t.dispose([xt, y]);
        return v;
      };
      const w = await run('wasm'), c = await run('cpu');
      expect([...w]).toEqual([...ref]);
      expect([...w]).toEqual([...c]);
    });

  it('split (RoPE halves, uneven parts, int32 and bool) equals slicing by hand, without leaking', async () => {
    const t = tf();
    await initBackend('wasm');
    const shape = [2, 3, 5, 8], n = 2 * 3 * 5 * 8, r = rng(9);
    const x = Float32Array.from({ length: n }, () => 2 * r() - 1);
    const xt = t.tensor(x, shape);
    const before = t.memory().numTensors;
    const [a, b] = t.split(xt, 2, -1);
    expect([...(await a!.data())]).toEqual([...refSlice(x, shape, [0, 0, 0, 0], [2, 3, 5, 4])]);
    expect([...(await b!.data())]).toEqual([...refSlice(x, shape, [0, 0, 0, 4], [2, 3, 5, 4])]);
    const parts = t.split(xt, [1, 3, 1], 2);
    let at = 0;
    for (const [i, p] of parts.entries()) {
      const z = [2, 3, [1, 3, 1][i]!, 8];
      expect([...(await p.data())]).toEqual([...refSlice(x, shape, [0, 0, at, 0], z)]);
      at += z[2]!;
    }
    t.dispose([a!, b!, ...parts]);
    expect(t.memory().numTensors).toBe(before);
    const ints = t.tensor2d([1, 2, 3, 4, 5, 6], [2, 3], 'int32');
    const [i0, i1] = t.split(ints, [1, 2], 1);
    expect([...(await i0!.data())]).toEqual([1, 4]);
    expect([...(await i1!.data())]).toEqual([2, 3, 5, 6]);
    const bools = t.tensor1d([true, false, true, true], 'bool');
    const bs = t.slice(bools, 1, 2);
    expect([...(await bs.data())]).toEqual([0, 1]);
    bs.dispose();
    t.dispose([xt, ints, i0!, i1!, bools]);
  });

  for (const axis of [0, 1, 2, -1])
    it(`concat along axis ${axis}: each input is the matching slice of the result (wasm = cpu)`, async () => {
      const t = tf();
      const r = rng(40 + axis);
      const base = [2, 3, 4];
      const ax = axis < 0 ? 3 + axis : axis;
      const lens = [1, 0, 3, 2]; // includes an empty input
      const parts = lens.map((k) => {
        const shape = [...base];
        shape[ax] = k;
        return { shape, v: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => 2 * r() - 1) };
      });
      const run = async (b: 'wasm' | 'cpu') => {
        await initBackend(b);
        const ts = parts.map((p) => t.tensor(p.v, p.shape));
        const before = t.memory().numTensors;
        const y = t.concat(ts, axis);
        const out = { shape: y.shape, v: await y.data() as Float32Array };
        y.dispose();
        expect(t.memory().numTensors).toBe(before);
        t.dispose(ts);
        return out;
      };
      const w = await run('wasm'), c = await run('cpu');
      expect(w.shape).toEqual(base.map((d, i) => (i === ax ? 6 : d)));
      expect([...w.v]).toEqual([...c.v]);
      let at = 0;
      for (const p of parts) {
        const begin = [0, 0, 0];
        begin[ax] = at;
        expect([...refSlice(w.v, w.shape, begin, p.shape)]).toEqual([...p.v]);
        at += p.shape[ax]!;
      }
    });

  it('concat of int32, and of a single non-empty input (shared, not copied)', async () => {
    const t = tf();
    await initBackend('wasm');
    const a = t.tensor2d([1, 2, 3, 4], [2, 2], 'int32'), b = t.tensor2d([5, 6], [2, 1], 'int32');
    const y = t.concat([a, b], 1);
    expect([...(await y.data())]).toEqual([1, 2, 5, 3, 4, 6]);
    const e = t.zeros([0, 2], 'int32');
    const buffers = (t.engine().backend as unknown as { numDataIds(): number }).numDataIds();
    const z = t.concat([e, a], 0);
    expect((t.engine().backend as unknown as { numDataIds(): number }).numDataIds()).toBe(buffers);
    expect([...(await z.data())]).toEqual([1, 2, 3, 4]);
    t.dispose([a, b, y, e, z]);
  });
});

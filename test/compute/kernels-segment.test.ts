import { describe, expect, it } from 'vitest';
import { initBackend, tf } from '../../src/compute/backend.js';
import { isDorascopeError } from '../../src/errors.js';
import { rng } from '../helpers/random.js';

describe('wasm UnsortedSegmentSum (gather gradient)', () => {
  it('sums rows into their segments by hand-worked example; ids outside [0, n) are skipped', async () => {
    const t = tf();
    await initBackend('wasm');
    // rows: r0=[1,2], r1=[3,4], r2=[5,6], r3=[7,8], r4=[9,10], r5=[11,12]; ids 2,0,2,-1,5,1 with 4 segments
    const x = t.tensor2d([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [6, 2]);
    const ids = t.tensor1d([2, 0, 2, -1, 5, 1], 'int32');
    const y = t.unsortedSegmentSum(x, ids, 4);
    expect(y.shape).toEqual([4, 2]);
    // seg0 = r1, seg1 = r5, seg2 = r0 + r2, seg3 = nothing
    expect([...(await y.data())]).toEqual([3, 4, 11, 12, 6, 8, 0, 0]);
    const yi = t.unsortedSegmentSum(t.cast(x, 'int32'), ids, 3);
    expect(yi.dtype).toBe('int32');
    expect([...(await yi.data())]).toEqual([3, 4, 11, 12, 6, 8]);
    t.dispose([x, ids, y, yi]);
  });

  it('makes gather trainable on wasm: the embedding gradient equals a plain loop and the cpu backend', async () => {
    const t = tf();
    const V = 7, d = 5, B = 2, T = 3, r = rng(3);
    const E = Float32Array.from({ length: V * d }, () => 2 * r() - 1);
    const W = Float32Array.from({ length: B * T * d }, () => 2 * r() - 1);
    const idv = Int32Array.from([4, 1, 4, 0, 6, 4]);
    // loss = Σ gather(E, ids) ⊙ W  →  dL/dE[v] = Σ_{positions p with ids[p] = v} W[p]
    const ref = new Float64Array(V * d);
    idv.forEach((v, p) => { for (let j = 0; j < d; j++) ref[v * d + j]! += W[p * d + j]!; });
    const grad = async (backend: 'wasm' | 'cpu') => {
      await initBackend(backend);
      const e = t.tensor2d(E, [V, d]), w = t.tensor3d(W, [B, T, d]), ids = t.tensor2d(idv, [B, T], 'int32');
      const before = t.memory().numTensors;
      const g = t.grad((x) => t.sum(t.mul(t.gather(x, ids), w)))(e);
      const out = await g.data();
      g.dispose();
      expect(t.memory().numTensors).toBe(before);
      t.dispose([e, w, ids]);
      return out;
    };
    const gw = await grad('wasm'), gc = await grad('cpu');
    for (let i = 0; i < V * d; i++) {
      expect(Math.abs(gw[i]! - ref[i]!)).toBeLessThan(1e-6);
      expect(Math.abs(gw[i]! - gc[i]!)).toBeLessThan(1e-6);
    }
  });

  it('rejects ids that do not lead x with E_SHAPE_MISMATCH', async () => {
    const t = tf();
    await initBackend('wasm');
    const x = t.zeros([4, 2]), ids = t.tensor1d([0, 1, 2], 'int32');
    let err: unknown;
    try { t.engine().runKernel('UnsortedSegmentSum', { x, segmentIds: ids }, { numSegments: 3 }); } catch (e) { err = e; }
    expect(isDorascopeError(err, 'E_SHAPE_MISMATCH')).toBe(true);
    expect((err as Error).message).toContain('[3]');
    t.dispose([x, ids]);
  });
});

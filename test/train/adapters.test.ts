import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '../../src/compute/backend.js';
import { initLora, loraVariant, type LoraParams } from '../../src/train/adapters/lora.js';
import { loraScaling } from '../../src/methods/lora.js';
import { doraVariant, initMagnitude } from '../../src/train/adapters/dora.js';
import { rng } from '../helpers/random.js';

// Seeded LCG so the test data are fixed.
function randArr(n: number, r: () => number, scale = 1): Float64Array {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = (2 * r() - 1) * scale;
  return a;
}

// Independent float64 reference: DoRA output y[i][o] = m[o]/norm[o] * Σ_k x[i][k]·W'[o][k].
function refDora(
  x: Float64Array, W: Float64Array, A: Float64Array, B: Float64Array, m: Float64Array | null,
  s: number, n: number, inp: number, out: number, r: number, fixedNorm?: Float64Array,
): { y: Float64Array; norm: Float64Array } {
  const Wp = new Float64Array(out * inp);
  for (let o = 0; o < out; o++)
    for (let k = 0; k < inp; k++) {
      let acc = W[o * inp + k]!;
      for (let j = 0; j < r; j++) acc += s * B[o * r + j]! * A[j * inp + k]!;
      Wp[o * inp + k] = acc;
    }
  const norm = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let ss = 0;
    for (let k = 0; k < inp; k++) ss += Wp[o * inp + k]! ** 2;
    norm[o] = Math.sqrt(ss);
  }
  const y = new Float64Array(n * out);
  for (let i = 0; i < n; i++)
    for (let o = 0; o < out; o++) {
      let acc = 0;
      for (let k = 0; k < inp; k++) acc += x[i * inp + k]! * Wp[o * inp + k]!;
      y[i * out + o] = m === null ? acc : (acc * m[o]!) / (fixedNorm ?? norm)[o]!;
    }
  return { y, norm };
}

const n = 3, inp = 6, out = 5, r = 2;

describe('LoRA / DoRA adapter layers', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  function setup(seed: number, nonzeroB: boolean) {
    const t = tf();
    const rand = rng(seed);
    const x = randArr(n * inp, rand), W = randArr(out * inp, rand, 0.5);
    const s = loraScaling(r, 16, false);
    const p: LoraParams = initLora(out, inp, r, s, rand);
    if (nonzeroB) p.B.assign(t.tensor2d(Float32Array.from(randArr(out * r, rand, 0.05)), [out, r]));
    const xt = t.tensor2d(Float32Array.from(x), [n, inp]);
    const Wt = t.tensor2d(Float32Array.from(W), [out, inp]);
    p.magnitude = initMagnitude(Wt, p);
    const f64 = (v: { dataSync(): ArrayLike<number> }) => Float64Array.from(v.dataSync());
    return { t, x: f64(xt), W: f64(Wt), xt, Wt, p, s, A: f64(p.A), B: f64(p.B) };
  }

  it('at init (B = 0, m = ‖W‖) LoRA and DoRA give exactly the base outputs', () => {
    const { x, W, xt, Wt, p, A, B, s } = setup(1, false);
    const base = refDora(x, W, A, B, null, s, n, inp, out, r).y;
    for (const v of [loraVariant, doraVariant(true), doraVariant(false)]) {
      const y = v.forward(xt, Wt, p).dataSync();
      for (let i = 0; i < base.length; i++) expect(y[i]).toBeCloseTo(base[i]!, 5);
    }
  });

  it('DoRA forward equals a forward with the merged weight m·W\'/‖W\'‖', () => {
    const { t, x, W, xt, Wt, p, A, B, s } = setup(2, true);
    p.magnitude!.assign(t.tensor1d(Float32Array.from(randArr(out, rng(9), 2))));
    const m = Float64Array.from(p.magnitude!.dataSync());
    const ref = refDora(x, W, A, B, m, s, n, inp, out, r).y;
    const y = doraVariant(true).forward(xt, Wt, p).dataSync();
    for (let i = 0; i < ref.length; i++) expect(y[i]).toBeCloseTo(ref[i]!, 4);
  });

  // Loss L = Σ y ⊙ R; gradients checked against central differences of the float64 reference.
  function gradCheck(detach: boolean) {
    const { t, x, W, xt, Wt, p, A, B, s } = setup(3, true);
    const m = Float64Array.from(p.magnitude!.dataSync());
    const R = randArr(n * out, rng(7));
    const Rt = t.tensor2d(Float32Array.from(R), [n, out]);
    const v = doraVariant(detach);
    const g = t.variableGrads(() => t.sum(t.mul(v.forward(xt, Wt, p), Rt)) as never, [p.magnitude!, p.A, p.B]);
    const gm = g.grads[p.magnitude!.name]!.dataSync();
    const gA = g.grads[p.A.name]!.dataSync();
    const gB = g.grads[p.B.name]!.dataSync();
    const norm0 = refDora(x, W, A, B, m, s, n, inp, out, r).norm;
    const loss = (mm: Float64Array, AA: Float64Array, BB: Float64Array) => {
      // detached: ‖W'‖ frozen at its current value, as the paper's §4.3 gradient treats it
      const y = refDora(x, W, AA, BB, mm, s, n, inp, out, r, detach ? norm0 : undefined).y;
      let l = 0;
      for (let i = 0; i < y.length; i++) l += y[i]! * R[i]!;
      return l;
    };
    const h = 1e-6;
    const fd = (at: Float64Array, f: (v: Float64Array) => number) => Float64Array.from(at, (_, j) => {
      const vp = at.slice(), vn = at.slice();
      vp[j]! += h; vn[j]! -= h;
      return (f(vp) - f(vn)) / (2 * h);
    });
    const fdm = fd(m, (mm) => loss(mm, A, B)), fdA = fd(A, (AA) => loss(m, AA, B)), fdB = fd(B, (BB) => loss(m, A, BB));
    for (let o = 0; o < out; o++) expect(gm[o]).toBeCloseTo(fdm[o]!, 3);
    for (let j = 0; j < A.length; j++) expect(gA[j]).toBeCloseTo(fdA[j]!, 3);
    for (let j = 0; j < B.length; j++) expect(gB[j]).toBeCloseTo(fdB[j]!, 3);
    return { fdA, fdB, gA, gB, gm, x, W, A, B, m, R, s, norm0 };
  }

  it('magnitude, A and B gradients match finite differences (exact norm)', () => {
    gradCheck(false);
  });

  it('detached norm: gradients match finite differences with ‖W\'‖ held constant, and differ from the exact ones', () => {
    const exact = gradCheck(false);
    const detached = gradCheck(true);
    for (const k of ['fdA', 'fdB'] as const) {
      let maxDiff = 0;
      for (let j = 0; j < exact[k].length; j++) maxDiff = Math.max(maxDiff, Math.abs(exact[k][j]! - detached[k][j]!));
      expect(maxDiff).toBeGreaterThan(1e-3);
    }
  });

  it('detached norm: A, B and m gradients equal the closed form with ‖W\'‖ a constant (float64)', () => {
    // y = (x·W'ᵀ)·diag(m/n), n constant ⇒ G = ∂L/∂W' = diag(m/n)·Rᵀ·x, ∂L/∂B = s·G·Aᵀ, ∂L/∂A = s·Bᵀ·G,
    // ∂L/∂m_o = Σ_i R[i,o]·(x·W'ᵀ)[i,o] / n_o
    const { gA, gB, gm, x, W, A, B, m, R, s, norm0 } = gradCheck(true);
    const lin = refDora(x, W, A, B, null, s, n, inp, out, r).y;
    const G = new Float64Array(out * inp);
    for (let o = 0; o < out; o++)
      for (let k = 0; k < inp; k++) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += R[i * out + o]! * x[i * inp + k]!;
        G[o * inp + k] = (acc * m[o]!) / norm0[o]!;
      }
    const close = (got: ArrayLike<number>, want: Float64Array) => {
      const scale = Math.max(...want.map(Math.abs));
      expect(scale).toBeGreaterThan(1e-2);
      for (let j = 0; j < want.length; j++) expect(Math.abs(got[j]! - want[j]!)).toBeLessThan(1e-5 * scale);
    };
    const wantB = new Float64Array(out * r), wantA = new Float64Array(r * inp), wantM = new Float64Array(out);
    for (let o = 0; o < out; o++)
      for (let j = 0; j < r; j++) {
        let acc = 0;
        for (let k = 0; k < inp; k++) acc += G[o * inp + k]! * A[j * inp + k]!;
        wantB[o * r + j] = s * acc;
      }
    for (let j = 0; j < r; j++)
      for (let k = 0; k < inp; k++) {
        let acc = 0;
        for (let o = 0; o < out; o++) acc += B[o * r + j]! * G[o * inp + k]!;
        wantA[j * inp + k] = s * acc;
      }
    for (let o = 0; o < out; o++) {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += R[i * out + o]! * lin[i * out + o]!;
      wantM[o] = acc / norm0[o]!;
    }
    close(gB, wantB);
    close(gA, wantA);
    close(gm, wantM);
  });

  it('detached norm runs no backward through ‖W\'‖: one product more than LoRA (B·A, forward only)', async () => {
    // A stop-gradient that still backpropagated zeros through B·A, square, sum and sqrt (as the
    // earlier identity customGrad did) would add the two products of B·A's gradient.
    const { t, xt, Wt, p } = setup(4, true);
    const R = t.randomUniform([n, out]);
    const products = async (v: typeof loraVariant) => {
      const prof = await t.profile(() => {
        const g = t.variableGrads(() => t.sum(t.mul(v.forward(xt, Wt, p), R)) as never, [p.A, p.B, ...(v.name === 'dora' ? [p.magnitude!] : [])]);
        t.dispose([g.value, ...Object.values(g.grads)]);
      });
      return prof.kernels.filter((k) => k.name === 'BatchMatMul').length;
    };
    const lora = await products(loraVariant);
    expect(lora).toBe(6); // x·Wᵀ, x·Aᵀ, ·Bᵀ forward; ∂B, ∂(x·Aᵀ), ∂A backward
    expect(await products(doraVariant(true))).toBe(lora + 1);
    expect(await products(doraVariant(false))).toBe(lora + 3);
    R.dispose();
  });

  it('a DoRA layer without a magnitude vector is a typed error', () => {
    const { xt, Wt, p } = setup(5, false);
    const { magnitude: _m, ...noM } = p;
    expect(() => doraVariant(true).forward(xt, Wt, noM)).toThrow(expect.objectContaining({ code: 'E_INTERNAL' }));
    expect(() => doraVariant(false).merged(Wt, noM)).toThrow(expect.objectContaining({ code: 'E_INTERNAL' }));
  });
});

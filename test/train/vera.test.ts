import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { initBackend, tf } from '../../src/compute/backend.js';
import { veraUpdate, veraVariant, dvoraVariant, type VeraParams } from '../../src/train/adapters/vera.js';
import type { WithMagnitude } from '../../src/train/adapters/dora.js';
import { train, type TrainOptions } from '../../src/train/train.js';
import { openSafetensors } from '../../src/io/safetensors/reader.js';
import { openSource } from '../../src/io/sources/open-source.js';
import { openAdapter } from '../../src/io/peft/adapter.js';
import { mergeAdapter } from '../../src/io/peft/merge-adapter.js';
import { analyze } from '../../src/analysis/analyze.js';
import { isDorascopeError } from '../../src/errors.js';
import { rng } from '../helpers/random.js';

const tmp = mkdtempSync(join(tmpdir(), 'dorascope-vera-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const f64 = (v: { dataSync(): ArrayLike<number> }) => Float64Array.from(v.dataSync());
const uniform = (n: number, r: () => number, scale: number) => Float64Array.from({ length: n }, () => (2 * r() - 1) * scale);

/**
 * The VeRA paper's update (Kopiczko et al. 2024, eq. 1) on a layer of out×in sliced from the shared
 * projections A (r×maxIn), B (maxOut×r): ΔW[o][j] = Σ_k λ_b[o]·B[o][k]·λ_d[k]·A[k][j], in float64.
 */
function veraDelta(A: Float64Array, B: Float64Array, lb: Float64Array, ld: Float64Array, r: number, maxIn: number, out: number, inp: number): Float64Array {
  const d = new Float64Array(out * inp);
  for (let o = 0; o < out; o++)
    for (let j = 0; j < inp; j++) {
      let acc = 0;
      for (let k = 0; k < r; k++) acc += lb[o]! * B[o * r + k]! * ld[k]! * A[k * maxIn + j]!;
      d[o * inp + j] = acc;
    }
  return d;
}

/** W' = W + ΔW, and with a magnitude m (DVoRA: DoRA paper eq. 5 on VeRA's ΔW) m ⊙ W'/‖W'‖_row. */
function mergeRef(W: ArrayLike<number>, delta: Float64Array, out: number, inp: number, m?: ArrayLike<number>): Float64Array {
  const V = Float64Array.from({ length: out * inp }, (_, i) => W[i]! + delta[i]!);
  if (m === undefined) return V;
  for (let o = 0; o < out; o++) {
    let ss = 0;
    for (let j = 0; j < inp; j++) ss += V[o * inp + j]! ** 2;
    for (let j = 0; j < inp; j++) V[o * inp + j] = (m[o]! / Math.sqrt(ss)) * V[o * inp + j]!;
  }
  return V;
}

/** ‖got − want‖∞ / ‖want‖∞. */
function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let d = 0, s = 0;
  for (let i = 0; i < want.length; i++) d = Math.max(d, Math.abs(got[i]! - want[i]!)), s = Math.max(s, Math.abs(want[i]!));
  return d / s;
}

describe('VeRA / DVoRA layers', () => {
  beforeAll(async () => { await initBackend('cpu'); });

  // Two layer shapes, so the shared projections are larger than the first layer on both sides.
  const r = 6, shapes = [{ out: 5, in: 7 }, { out: 9, in: 11 }];
  const h = { r, alpha: 1, rslora: false, target: ['x'], dInitial: 0.25, projectionKey: 42 };

  it('init follows PEFT: λ_b = 0, λ_d = d_initial, Kaiming-uniform projections sized to the largest layer, frozen', () => {
    const t = tf();
    const W = t.zeros([5, 7]);
    const s = veraUpdate.setup(shapes, h, () => { throw new Error('VeRA draws from its own projection generator'); });
    const [A, B] = s.shared.map((x) => x.v);
    expect(s.shared.map((x) => x.key)).toEqual(['base_model.vera_A', 'base_model.vera_B']);
    expect(A!.shape).toEqual([r, 11]);
    expect(B!.shape).toEqual([9, r]);
    expect(A!.trainable || B!.trainable).toBe(false);
    // PEFT `_kaiming_init`: U(±√3·√2/√fan_in), fan_in = the second dimension
    const a = f64(A!), b = f64(B!);
    expect(Math.max(...a.map(Math.abs))).toBeLessThanOrEqual(Math.sqrt(6 / 11));
    expect(Math.max(...a.map(Math.abs))).toBeGreaterThan(0.8 * Math.sqrt(6 / 11));
    expect(Math.max(...b.map(Math.abs))).toBeLessThanOrEqual(Math.sqrt(6 / r));
    expect(Math.max(...b.map(Math.abs))).toBeGreaterThan(0.8 * Math.sqrt(6 / r));
    const p = s.layer(shapes[0]!, W);
    expect([...p.lambdaB.dataSync()]).toEqual([0, 0, 0, 0, 0]);
    expect([...p.lambdaD.dataSync()]).toEqual(new Array(r).fill(Math.fround(0.25)));
    // the same key gives the same projections; another key others
    const again = veraUpdate.setup(shapes, h, Math.random);
    expect([...again.shared[0]!.v.dataSync()]).toEqual([...a].map(Math.fround));
    const other = veraUpdate.setup(shapes, { ...h, projectionKey: 43 }, Math.random);
    expect([...other.shared[0]!.v.dataSync()]).not.toEqual([...a].map(Math.fround));
  });

  for (const method of ['vera', 'dvora'] as const)
    it(`${method}: forward and merged weight equal the published formula in float64, on a layer smaller than the projections`, () => {
      const t = tf();
      const variant = method === 'vera' ? veraVariant : dvoraVariant(true);
      const rand = rng(7);
      const { out, in: inp } = shapes[0]!;
      const n = 4;
      const W = uniform(out * inp, rand, 0.5), x = uniform(n * inp, rand, 1);
      const Wt = t.tensor2d(Float32Array.from(W), [out, inp]);
      const s = variant.setup(shapes, h, rand);
      const p = s.layer(shapes[0]!, Wt) as WithMagnitude<VeraParams>;
      p.lambdaB.assign(t.tensor1d(Float32Array.from(uniform(out, rand, 1))));
      p.lambdaD.assign(t.tensor1d(Float32Array.from(uniform(r, rand, 1))));
      p.magnitude?.assign(t.tensor1d(Float32Array.from(uniform(out, rand, 1).map((v) => 1 + v / 2))));
      const delta = veraDelta(f64(p.A), f64(p.B), f64(p.lambdaB), f64(p.lambdaD), r, 11, out, inp);
      const Wf = f64(Wt);
      const ref = mergeRef(Wf, delta, out, inp, p.magnitude ? f64(p.magnitude) : undefined);
      expect(relErr(variant.merged(Wt, p).dataSync(), ref)).toBeLessThan(1e-6);
      const xt = t.tensor2d(Float32Array.from(x), [n, inp]);
      const y = variant.forward(xt, Wt, p).dataSync();
      const yRef = new Float64Array(n * out);
      for (let i = 0; i < n; i++) for (let o = 0; o < out; o++) {
        let acc = 0;
        for (let j = 0; j < inp; j++) acc += Math.fround(x[i * inp + j]!) * ref[o * inp + j]!;
        yRef[i * out + o] = acc;
      }
      expect(relErr(y, yRef)).toBeLessThan(1e-5);
      // the update is really there: the output differs from the base layer's
      expect(relErr(y, Array.from({ length: n * out }, (_, k) => {
        const i = Math.floor(k / out), o = k % out;
        let acc = 0;
        for (let j = 0; j < inp; j++) acc += Math.fround(x[i * inp + j]!) * Wf[o * inp + j]!;
        return acc;
      }))).toBeGreaterThan(1e-2);
    });
});

describe('VeRA / DVoRA gradients', () => {
  beforeAll(async () => { await initBackend('cpu'); });
  const r = 3, shapes = [{ out: 4, in: 5 }, { out: 6, in: 7 }];
  const h = { r, alpha: 1, rslora: false, target: ['x'], dInitial: 0.1, projectionKey: 1 };

  // λ_b, λ_d (and m) gradients of Σ y⊙R against central differences of the float64 layer; the projections get none.
  for (const [method, detach] of [['vera', true], ['dvora', false], ['dvora', true]] as const)
    it(`${method}${method === 'dvora' ? (detach ? ', detached norm' : ', exact norm') : ''}: trainable gradients match finite differences`, () => {
      const t = tf();
      const variant = method === 'vera' ? veraVariant : dvoraVariant(detach);
      const rand = rng(21);
      const { out, in: inp } = shapes[0]!;
      const n = 3;
      const W = Float64Array.from(uniform(out * inp, rand, 0.5), Math.fround), x = Float64Array.from(uniform(n * inp, rand, 1), Math.fround);
      const R = Float64Array.from(uniform(n * out, rand, 1), Math.fround);
      const Wt = t.tensor2d(Float32Array.from(W), [out, inp]);
      const p = variant.setup(shapes, h, rand).layer(shapes[0]!, Wt) as WithMagnitude<VeraParams>;
      p.lambdaB.assign(t.tensor1d(Float32Array.from(uniform(out, rand, 1))));
      p.lambdaD.assign(t.tensor1d(Float32Array.from(uniform(r, rand, 1))));
      const Av = f64(p.A), Bv = f64(p.B), lb = f64(p.lambdaB), ld = f64(p.lambdaD);
      const m = p.magnitude ? f64(p.magnitude).map((v) => v * 1.3) : undefined;
      if (m) p.magnitude!.assign(t.tensor1d(Float32Array.from(m)));
      const rowNorms = (V: Float64Array) => Float64Array.from({ length: out }, (_, o) => Math.hypot(...V.slice(o * inp, (o + 1) * inp)));
      // the norm held at its current value when detached (paper §4.3)
      const fixed = m ? rowNorms(mergeRef(W, veraDelta(Av, Bv, lb, ld, r, 7, out, inp), out, inp)) : undefined;
      const loss = (lbv: Float64Array, ldv: Float64Array, mv: Float64Array | undefined) => {
        const V = mergeRef(W, veraDelta(Av, Bv, lbv, ldv, r, 7, out, inp), out, inp);
        const scale = mv ? (detach ? fixed! : rowNorms(V)).map((nv, o) => mv[o]! / nv) : undefined;
        let l = 0;
        for (let i = 0; i < n; i++) for (let o = 0; o < out; o++) {
          let acc = 0;
          for (let j = 0; j < inp; j++) acc += x[i * inp + j]! * V[o * inp + j]!;
          l += (scale ? scale[o]! * acc : acc) * R[i * out + o]!;
        }
        return l;
      };
      const xt = t.tensor2d(Float32Array.from(x), [n, inp]), Rt = t.tensor2d(Float32Array.from(R), [n, out]);
      const vars = [p.lambdaB, p.lambdaD, ...(p.magnitude ? [p.magnitude] : [])];
      const g = t.variableGrads(() => t.sum(t.mul(variant.forward(xt, Wt, p), Rt)) as never, vars);
      const eps = 1e-6;
      const fd = (at: Float64Array, f: (v: Float64Array) => number) => Float64Array.from(at, (_, j) => {
        const vp = at.slice(), vn = at.slice();
        vp[j]! += eps; vn[j]! -= eps;
        return (f(vp) - f(vn)) / (2 * eps);
      });
      const close = (got: ArrayLike<number>, want: Float64Array) => expect(relErr(got, want)).toBeLessThan(1e-4);
      close(g.grads[p.lambdaB.name]!.dataSync(), fd(lb, (v) => loss(v, ld, m)));
      close(g.grads[p.lambdaD.name]!.dataSync(), fd(ld, (v) => loss(lb, v, m)));
      if (m) close(g.grads[p.magnitude!.name]!.dataSync(), fd(m, (v) => loss(lb, ld, v)));
      expect(p.A.trainable || p.B.trainable).toBe(false);
    });
});

describe('train --method vera|dvora, read back through inspect, merge and analyze', () => {
  // q_proj 16×16, up_proj 32×16, down_proj 16×32: the projections are 32 wide on both sides and every layer slices them.
  const small = { hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2 };
  const L = 'model.layers.0';
  const MODS = [`${L}.mlp.down_proj`, `${L}.mlp.up_proj`, `${L}.self_attn.q_proj`];
  const opts = (method: 'vera' | 'dvora'): TrainOptions => ({
    method, steps: 4, seed: 3, config: small, batchSize: 2, contextLength: 12, r: 24, lr: 0.05,
    target: ['q_proj', 'up_proj', 'down_proj'], projectionKey: 9, veraDInitial: 0.1,
  });

  async function tensors(file: string): Promise<Map<string, Float32Array>> {
    const f = await openSafetensors(file);
    try {
      const m = new Map<string, Float32Array>();
      for (const x of f.tensors) m.set(x.name, await f.readFloat32(x.name));
      return m;
    } finally {
      await f.close();
    }
  }

  for (const method of ['vera', 'dvora'] as const)
    it(`${method}: PEFT keys and config; merged weights and ΔM/ΔD equal a float64 merge; projections frozen; step 0 is the base`, async () => {
      const run = join(tmp, method), frozen = join(tmp, `${method}-lr0`);
      await train({ ...opts(method), out: run });
      await train({ ...opts(method), lr: 0, out: frozen });
      const ck = join(run, 'checkpoint-4');
      const cfg = JSON.parse(readFileSync(join(ck, 'adapter_config.json'), 'utf8'));
      expect(cfg).toMatchObject({ peft_type: 'VERA', r: 24, projection_prng_key: 9, save_projection: true, d_initial: 0.1, vera_dropout: 0, fan_in_fan_out: false, bias: 'none' });
      expect(cfg.use_dora).toBe(method === 'dvora' ? true : undefined);
      expect('lora_alpha' in cfg).toBe(false);
      expect([...cfg.target_modules].sort()).toEqual(['down_proj', 'q_proj', 'up_proj']);

      const a = await tensors(join(ck, 'adapter_model.safetensors'));
      const z = await tensors(join(frozen, 'checkpoint-4', 'adapter_model.safetensors'));
      const perModule = ['vera_lambda_b', 'vera_lambda_d', ...(method === 'dvora' ? ['vera_magnitude_vector'] : [])];
      expect([...a.keys()].sort()).toEqual(['base_model.vera_A', 'base_model.vera_B', ...MODS.flatMap((m) => perModule.map((r) => `base_model.model.${m}.${r}`))].sort());
      // frozen projections: bit for bit those of the run that did not move, at their full (r × max in), (max out × r) size
      for (const k of ['base_model.vera_A', 'base_model.vera_B']) expect(a.get(k)!.every((v, i) => Object.is(v, z.get(k)![i]))).toBe(true);
      expect(a.get('base_model.vera_A')!.length).toBe(24 * 32);
      expect(a.get('base_model.vera_B')!.length).toBe(32 * 24);
      // ...while λ_b moved off its zero init
      for (const m of MODS) expect(a.get(`base_model.model.${m}.vera_lambda_b`)!.some((v) => v !== 0), m).toBe(true);

      const adapter = await openAdapter(ck);
      try {
        expect(adapter.method).toBe(method);
        expect(adapter.exact).toBe(true);
        expect(adapter.modules.map((m) => [m.module, m.method, m.r])).toEqual(MODS.map((m) => [m, method, 24]));
      } finally {
        await adapter.close();
      }

      const base = await openSource(join(run, 'base'));
      const want = new Map<string, { w0: Float32Array; wt: Float64Array; out: number; inp: number }>();
      try {
        for (const m of MODS) {
          const [out, inp] = base.info(`${m}.weight`)!.shape as [number, number];
          const w0 = await base.read(`${m}.weight`);
          const k = `base_model.model.${m}`;
          const delta = veraDelta(Float64Array.from(a.get('base_model.vera_A')!), Float64Array.from(a.get('base_model.vera_B')!),
            Float64Array.from(a.get(`${k}.vera_lambda_b`)!), Float64Array.from(a.get(`${k}.vera_lambda_d`)!), 24, 32, out, inp);
          want.set(m, { w0, wt: mergeRef(w0, delta, out, inp, a.get(`${k}.vera_magnitude_vector`)), out, inp });
        }
      } finally {
        await base.close();
      }

      // merge: the trained adapter matches the float64 merge; the untrained one (λ_b = 0, m = ‖W0‖) gives the base back
      for (const [dir, trained] of [[ck, true], [join(frozen, 'checkpoint-4'), false]] as const) {
        const out = join(tmp, `${method}-${trained ? 'merged' : 'merged0'}`);
        const res = await mergeAdapter(join(run, 'base'), dir, out);
        expect(res.adapted).toBe(3);
        const merged = await openSource(out);
        try {
          for (const m of MODS) {
            const got = await merged.read(`${m}.weight`);
            const e = want.get(m)!;
            if (trained) {
              expect(relErr(got, e.wt), m).toBeLessThan(1e-6);
              expect(relErr(got, e.w0), m).toBeGreaterThan(1e-4); // training moved it: the comparison is not trivial
            } else {
              expect(relErr(got, e.w0), m).toBeLessThan(method === 'vera' ? 1e-12 : 1e-6);
            }
          }
        } finally {
          await merged.close();
        }
      }

      // analyze: the exact path (VeRA read as LoRA factors, DVoRA with DoRA's magnitude) and the merge path
      const ref = (w0: ArrayLike<number>, wt: ArrayLike<number>, out: number, inp: number) => {
        let dm = 0, dd = 0;
        for (let o = 0; o < out; o++) {
          let n0 = 0, nt = 0, dot = 0;
          for (let j = 0; j < inp; j++) {
            const x = w0[o * inp + j]!, y = wt[o * inp + j]!;
            n0 += x * x, nt += y * y, dot += x * y;
          }
          dm += Math.abs(Math.sqrt(nt) - Math.sqrt(n0));
          dd += 1 - dot / Math.sqrt(n0 * nt);
        }
        return { dm: dm / out, dd: dd / out };
      };
      for (const adapterPath of ['fast', 'merge'] as const) {
        const res = await analyze({ base: join(run, 'base'), runs: [{ path: run, label: method }], modules: ['q_proj', 'up_proj', 'down_proj'], write: false, quiet: true, adapterPath, workers: 0 });
        expect(res.summary.runs.map((x) => x.method)).toEqual([method]);
        for (const m of MODS) {
          const row = res.rows.find((x) => x.tensor === `${m}.weight`)!;
          const e = want.get(m)!;
          // W_t as stored: the float64 merge rounded to float32, as any merged checkpoint would hold it
          const expected = ref(e.w0, Float32Array.from(e.wt), e.out, e.inp);
          expect(Math.abs(row.delta_m - expected.dm) / expected.dm, `${adapterPath} ${m} ΔM`).toBeLessThan(1e-6);
          expect(Math.abs(row.delta_d - expected.dd) / expected.dd, `${adapterPath} ${m} ΔD`).toBeLessThan(1e-6);
        }
      }
    });

  it('the library refuses a LoRA rank wider than a target layer, naming it (VeRA\'s rank may exceed it)', async () => {
    const e = await train({ ...opts('vera'), method: 'lora', r: 40 }).then(() => undefined, (x: unknown) => x);
    expect(isDorascopeError(e, 'E_USAGE')).toBe(true);
    expect((e as Error).message).toMatch(/rank 40 is larger than model\.layers\.0\.(self_attn|mlp)\.\w+ allows \(\d+ × \d+\)/u);
  });

  it('--magnitude-only needs a magnitude (dvora takes it, vera refuses it)', async () => {
    await expect(train({ ...opts('vera'), target: ['q_proj'], magnitudeOnly: ['v_proj'] })).rejects.toSatisfy((e) => isDorascopeError(e, 'E_USAGE'));
  });

  it('the CLI: --method vera with a rank above --d-model and its VeRA options; LoRA refuses that rank', async () => {
    const err: string[] = [];
    const e = vi.spyOn(process.stderr, 'write').mockImplementation((x) => (err.push(String(x)), true));
    const o = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const out = join(tmp, 'cli');
    const args = (method: string) => ['train', '--method', method, '--steps', '2', '--layers', '1', '--d-model', '16', '--heads', '2',
      '--batch-size', '2', '--context-length', '8', '--backend', 'cpu', '--r', '40', '--quiet'];
    try {
      expect(await main([...args('vera'), '--vera-d-initial', '0.3', '--projection-prng-key', '5', '--out', out])).toBe(0);
      expect(await main(args('lora'))).toBe(2);
      expect(err.join('')).toMatch(/-r 40 is larger than --d-model 16/u);
      // Without --r, LoRA's default rank (8) is checked against the width too.
      err.length = 0;
      expect(await main(['train', '--method', 'lora', '--steps', '1', '--layers', '1', '--d-model', '4', '--heads', '1', '--backend', 'cpu', '--quiet'])).toBe(2);
      expect(err.join('')).toMatch(/-r 8 is larger than --d-model 4/u);
    } finally {
      e.mockRestore();
      o.mockRestore();
    }
    const cfg = JSON.parse(readFileSync(join(out, 'checkpoint-2', 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'VERA', r: 40, d_initial: 0.3, projection_prng_key: 5 });
    const args2 = JSON.parse(readFileSync(join(out, 'checkpoint-2', 'training_args.json'), 'utf8'));
    expect(args2).toMatchObject({ method: 'vera', r: 40, d_initial: 0.3, projection_prng_key: 5 });
  });
});

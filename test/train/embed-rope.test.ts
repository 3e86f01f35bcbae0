import { beforeAll, describe, expect, it } from 'vitest';
import type * as tfc from '@tensorflow/tfjs-core';
import { initBackend, tf } from '../../src/compute/backend.js';
import {
  disposeRopeTables, forward, forwardEmbeds, initWeights, lmLoss, rope, weightShapes, type Adapters, type LlamaConfig,
} from '../../src/train/model.js';
import { initLora, type LoraParams } from '../../src/train/adapters/lora.js';
import { loraScaling } from '../../src/methods/lora.js';
import { doraVariant, initMagnitude } from '../../src/train/adapters/dora.js';
import { rng } from '../helpers/random.js';

const randArr = (n: number, r: () => number) => Float64Array.from({ length: n }, () => 2 * r() - 1);

const cfg: LlamaConfig = {
  vocab_size: 40, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,
  num_attention_heads: 2, max_position_embeddings: 16, rms_norm_eps: 1e-6, rope_theta: 10000,
};

/** Independent float64 RoPE (HF rotate_half): out_i = x_i cos − x_{i+h} sin, out_{i+h} = x_{i+h} cos + x_i sin. */
function refRope(x: Float64Array, shape: number[], theta: number, transpose = false): Float64Array {
  const [B, H, T, hd] = shape as [number, number, number, number];
  const h = hd / 2, y = new Float64Array(x.length);
  for (let b = 0; b < B * H; b++)
    for (let p = 0; p < T; p++)
      for (let i = 0; i < h; i++) {
        const a = p * theta ** (-(2 * i) / hd), c = Math.cos(a), s = transpose ? -Math.sin(a) : Math.sin(a);
        const o = (b * T + p) * hd;
        y[o + i] = x[o + i]! * c - x[o + i + h]! * s;
        y[o + i + h] = x[o + i + h]! * c + x[o + i]! * s;
      }
  return y;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}
function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, rel: number): void {
  expect(got.length).toBe(want.length);
  const tol = rel * Math.max(maxAbs(want), 1e-30);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  expect(worst).toBeLessThanOrEqual(tol);
}

for (const backend of ['cpu', 'wasm'] as const)
  describe(`model inputs on ${backend}`, () => {
    beforeAll(async () => {
      await initBackend(backend);
      disposeRopeTables();
    });

    it('RoPE equals a float64 RoPE for several lengths, head sizes and θ, and its gradient is the inverse rotation', () => {
      const t = tf();
      const r = rng(11);
      // the same (T, hd, θ) twice (a cache hit) and neighbours that must not share its tables
      for (const [T, hd, theta] of [[7, 8, 10000], [7, 8, 10000], [5, 8, 10000], [7, 4, 10000], [7, 8, 500], [7, 8, 10000]] as const) {
        const shape = [2, 3, T, hd];
        const x = randArr(2 * 3 * T * hd, r), G = randArr(x.length, r);
        const xt = t.tensor(Float32Array.from(x), shape), Gt = t.tensor(Float32Array.from(G), shape);
        const y = t.tidy(() => rope(xt, theta).dataSync());
        expectClose(y, refRope(x, shape, theta), 1e-6);
        // L = Σ G ⊙ rope(x) is linear, so ∂L/∂x = Rᵀ G: the rotation by −angle
        const g = t.tidy(() => t.grad((v: tfc.Tensor) => t.sum(t.mul(rope(v, theta), Gt)))(xt).dataSync());
        expectClose(g, refRope(G, shape, theta, true), 1e-6);
        t.dispose([xt, Gt]);
      }
    });

    it('RoPE tables are kept across tidy scopes, reused, and freed by disposeRopeTables', () => {
      const t = tf();
      disposeRopeTables();
      const x = t.randomUniform([1, 2, 6, 8]);
      const base = t.memory().numTensors;
      t.tidy(() => { rope(x, 10000); });
      expect(t.memory().numTensors).toBe(base + 2); // cos and sin
      for (let i = 0; i < 3; i++) t.tidy(() => { rope(x, 10000); });
      expect(t.memory().numTensors).toBe(base + 2);
      t.tidy(() => { rope(x, 500); }); // another θ: its own pair
      expect(t.memory().numTensors).toBe(base + 4);
      disposeRopeTables();
      expect(t.memory().numTensors).toBe(base);
      // rebuilt after disposal, with the same values
      const y = t.tidy(() => rope(x, 10000).dataSync());
      expectClose(y, refRope(Float64Array.from(x.dataSync()), [1, 2, 6, 8], 10000), 1e-6);
      disposeRopeTables();
      x.dispose();
      expect(t.memory().numTensors).toBe(base - 1);
    });

    it('a training loss over steps leaves numTensors flat, and returns to the start once the tables are freed', () => {
      const t = tf();
      disposeRopeTables();
      const w = initWeights(cfg, rng(5), true);
      const ids = t.tensor2d(Int32Array.from({ length: 3 * 9 }, (_, i) => (i * 7) % cfg.vocab_size), [3, 9], 'int32');
      const start = t.memory().numTensors;
      const counts: number[] = [];
      for (let step = 0; step < 4; step++) {
        const { value, grads } = t.variableGrads(() => lmLoss(cfg, w, ids));
        t.dispose([value, ...Object.values(grads)]);
        counts.push(t.memory().numTensors);
      }
      expect(new Set(counts).size).toBe(1);
      disposeRopeTables();
      expect(t.memory().numTensors).toBe(start);
      t.dispose([...w.values(), ids]);
    });

    it('embedding by gather gives the logits and all gradients of one-hot × E (full weights and DoRA adapters)', () => {
      const t = tf();
      const rand = rng(21);
      const w = initWeights(cfg, rand, true);
      // DoRA on q and down with B ≠ 0, so the adapters' gradients pass through the embedding too
      const layers = new Map<string, LoraParams>();
      for (const base of ['model.layers.0.self_attn.q_proj', 'model.layers.1.mlp.down_proj']) {
        const [out, inp] = weightShapes(cfg).get(`${base}.weight`)!;
        const p = initLora(out!, inp!, 2, loraScaling(2, 4, false), rand);
        p.B.assign(t.tensor2d(Float32Array.from(randArr(out! * 2, rand)).map((v) => 0.1 * v), [out!, 2]));
        p.magnitude = initMagnitude(w.get(`${base}.weight`)!, p);
        layers.set(base, p);
      }
      const ad: Adapters = { variant: doraVariant(true), layers };
      // repeated ids (their gradient rows add up) and ids that never occur (zero rows); 0 and V−1 included
      const [B, T] = [3, 6];
      const idv = Int32Array.from([0, 5, 5, 39, 12, 5, 7, 7, 0, 3, 39, 12, 1, 2, 3, 5, 8, 13]);
      const ids = t.tensor2d(idv, [B, T], 'int32');
      const R = t.tensor2d(Float32Array.from(randArr(B * T * cfg.vocab_size, rand)), [B * T, cfg.vocab_size]);
      const vars = [...w.values(), ...[...layers.values()].flatMap((p) => [p.A, p.B, p.magnitude!])];
      // the formulation the model used before: a one-hot matrix times E, written out here
      const oneHotForward = () => {
        const oh = t.cast(t.oneHot(t.reshape(ids, [B * T]) as tfc.Tensor1D, cfg.vocab_size), 'float32');
        const h = t.reshape(t.matMul(oh, w.get('model.embed_tokens.weight')!), [B, T, cfg.hidden_size]) as tfc.Tensor3D;
        return forwardEmbeds(cfg, w, h, ad);
      };
      const run = (f: () => tfc.Tensor) => t.tidy(() => {
        const logits = f().dataSync();
        const { value, grads } = t.variableGrads(() => t.sum(t.mul(f(), R)) as tfc.Scalar, vars);
        value.dispose();
        return { logits, grads: vars.map((v) => grads[v.name]!.dataSync()) };
      });
      const got = run(() => forward(cfg, w, ids, ad)), want = run(oneHotForward);
      expectClose(got.logits, want.logits, 1e-6);
      expect(maxAbs(want.logits)).toBeGreaterThan(0);
      for (let i = 0; i < vars.length; i++) expectClose(got.grads[i]!, want.grads[i]!, 1e-5);
      // the embedding's gradient: zero rows for ids that never occur, and non-zero rows for those that do
      const gE = got.grads[0]!, d = cfg.hidden_size;
      for (let v = 0; v < cfg.vocab_size; v++) {
        const row = maxAbs(gE.subarray(v * d, (v + 1) * d));
        if (idv.includes(v)) expect(row).toBeGreaterThan(0);
        else expect(row).toBe(0);
      }
      t.dispose([...vars, ids, R]);
      disposeRopeTables();
    });
  });

/**
 * The trainer's 4-bit frozen base (src/train/quantized-base.ts): the weight tfjs dequantizes on the fly
 * is bit for bit the one the bitsandbytes reader decodes from the saved file; gradients reach the input
 * and never the codes; and the memory it holds, measured with tf.memory() / tf.profile().
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend, tf } from '../../src/compute/backend.js';
import { QuantizedBase } from '../../src/train/quantized-base.js';
import { disposeRopeTables, initWeights, lmLoss, weightShapes, type Adapters, type LlamaConfig } from '../../src/train/model.js';
import { initLora, loraVariant, type LoraParams } from '../../src/train/adapters/lora.js';
import { bnb4bitTensors } from '../../src/io/quant/bnb-4bit-quantize.js';
import { openSource } from '../../src/io/sources/open-source.js';
import { rng, randn } from '../helpers/random.js';
import { writeRaw } from '../io/quant/bnb-reference.js';
import type { DType } from '../../src/io/types.js';

const cfg: LlamaConfig = {
  vocab_size: 256, hidden_size: 64, intermediate_size: 172, num_hidden_layers: 2,
  num_attention_heads: 4, max_position_embeddings: 64, rms_norm_eps: 1e-6, rope_theta: 10000,
};

describe('4-bit frozen base in tfjs', () => {
  beforeAll(async () => { await initBackend('wasm'); });

  const shapes: Array<[number, number]> = [[130, 128], [5, 13], [172, 64]];
  for (const type of ['nf4', 'fp4'] as const) {
    for (const doubleQuant of [true, false]) {
      it(`${type}${doubleQuant ? '+dq' : ''}: the on-the-fly weight equals the reader's dequantization of the saved file, float32 bit for bit`, async () => {
        const t = tf();
        const next = rng(11);
        const dir = join(await mkdtemp(join(tmpdir(), 'ds-qbase-')), 'm');
        mkdirSync(dir, { recursive: true });
        const weights = new Map(shapes.map(([o, i], k) => [`model.layers.${k}.mlp.up_proj.weight`, t.tensor2d(randn(next, o * i, 0.05), [o, i])]));
        const qb = await QuantizedBase.quantize(weights, { quantType: type, blockSize: 64, doubleQuant });
        const raw: Record<string, { dtype: DType; shape: number[]; data: Uint8Array }> = {};
        for (const name of weights.keys()) for (const r of bnb4bitTensors(name, qb.get(name)!.stored, 'float32')) raw[r.name] = { dtype: r.dtype, shape: [...r.shape], data: r.data };
        await writeRaw(join(dir, 'model.safetensors'), raw);
        const src = await openSource(dir);
        try {
          for (const name of weights.keys()) {
            const W = qb.get(name)!.dequantize();
            expect(W.shape).toEqual(weights.get(name)!.shape);
            expect(Array.from(await W.data())).toEqual(Array.from(await src.read(name)));
            W.dispose();
          }
        } finally {
          await src.close();
          qb.dispose();
          t.dispose([...weights.values()]);
        }
      });
    }
  }

  it('apply(x) = x·Wᵀ forward, and its gradient wrt x is dy·W (W recomputed in backward)', async () => {
    const t = tf();
    const next = rng(3);
    const w = new Map([['model.layers.0.self_attn.o_proj.weight', t.tensor2d(randn(next, 24 * 64, 0.1), [24, 64])]]);
    const qb = await QuantizedBase.quantize(w, { quantType: 'nf4', blockSize: 64, doubleQuant: true });
    const q = qb.get('model.layers.0.self_attn.o_proj.weight')!;
    const x = t.tensor2d(randn(next, 5 * 64, 1), [5, 64]);
    const dy = t.tensor2d(randn(next, 5 * 24, 1), [5, 24]);
    const W = q.dequantize();
    const want = await t.matMul(x, W, false, true).data();
    expect(Array.from(await q.apply(x).data())).toEqual(Array.from(want));
    const gx = t.grad((xi) => t.sum(t.mul(q.apply(xi), dy)))(x);
    const wantGx = await t.matMul(dy, W).data();
    expect(Array.from(await gx.data())).toEqual(Array.from(wantGx));
    t.dispose([x, dy, W, gx, ...w.values()]);
    qb.dispose();
  });

  it('memory: the NF4 base holds < 0.2× the float32 base\'s bytes, and a LoRA step peaks lower', async () => {
    const t = tf();
    const linearNames = [...weightShapes(cfg).keys()].filter((n) => /_proj\.weight$/u.test(n));
    const f32Bytes = linearNames.reduce((a, n) => a + weightShapes(cfg).get(n)!.reduce((x, y) => x * y, 1) * 4, 0);

    const measure = async (quantize: boolean) => {
      const w = initWeights(cfg, rng(1));
      const layers = new Map<string, LoraParams>();
      const rand = rng(2);
      for (let l = 0; l < cfg.num_hidden_layers; l++) {
        for (const m of ['q_proj', 'v_proj']) layers.set(`model.layers.${l}.self_attn.${m}`, initLora(64, 64, 8, 2, rand));
      }
      const adapters: Adapters = { variant: loraVariant, layers };
      let qb: QuantizedBase | undefined;
      const m0 = t.memory().numBytes;
      if (quantize) {
        qb = await QuantizedBase.quantize(w, { quantType: 'nf4', blockSize: 64, doubleQuant: true });
        for (const n of linearNames) { w.get(n)!.dispose(); w.delete(n); }
      }
      const baseBytes = quantize ? t.memory().numBytes - m0 + f32Bytes : f32Bytes;
      const ids = t.tensor2d(Int32Array.from({ length: 4 * 33 }, (_, i) => (i * 7) % 256), [4, 33], 'int32');
      const vars = [...layers.values()].flatMap((p) => [p.A, p.B]);
      const held = t.memory().numBytes;
      const prof = await t.profile(() => {
        const { value, grads } = t.variableGrads(() => lmLoss(cfg, w, ids, adapters, qb), vars);
        t.dispose([value, ...Object.values(grads)]);
      });
      disposeRopeTables(); // the RoPE tables are cached across steps on purpose (model.ts)
      const after = t.memory().numBytes;
      t.dispose([ids, ...w.values(), ...vars]);
      qb?.dispose();
      return { baseBytes, qbBytes: qb?.bytes, held, peak: prof.peakBytes, leaked: after - held };
    };
    const f = await measure(false);
    const q = await measure(true);
    // What the NF4 base holds in tfjs memory, measured: packed codes (6 per int32) + float32 absmax + code table.
    expect(q.baseBytes).toBe(q.qbBytes);
    expect(q.baseBytes).toBeLessThan(0.2 * f.baseBytes);
    expect(q.leaked).toBe(0);
    expect(f.leaked).toBe(0);
    // During a step: frozen linears without an adapter dequantize again in backward; the adapted ones
    // (q, v) keep their dequantized weight on the tape. The whole step still peaks lower.
    expect(q.peak).toBeLessThan(f.peak);
    if (process.env['DORASCOPE_PRINT_MEMORY'] !== undefined) {
      process.stdout.write(`${JSON.stringify({ float32: f, nf4: q, linearFloat32Bytes: f32Bytes })}\n`);
    }
  });
});

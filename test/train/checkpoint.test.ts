import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, tf } from '../../src/compute/backend.js';
import { initWeights, lmLoss, weightShapes, type Adapters, type LlamaConfig } from '../../src/train/model.js';
import { initLora, loraVariant, type LoraParams } from '../../src/train/adapters/lora.js';
import { loraScaling } from '../../src/methods/lora.js';
import { doraVariant, initMagnitude } from '../../src/train/adapters/dora.js';
import { AdamW } from '../../src/train/adamw.js';
import { runLoop } from '../../src/train/loop.js';
import { cleanStaleTemps, saveBase, saveCheckpoint, writeFolderAtomic } from '../../src/train/checkpoint.js';
import { listRun } from '../../src/io/sources/trainer-run.js';
import { isDorascopeError } from '../../src/errors.js';
import { seededRandom } from '../../src/train/data.js';
import { mergeAdapter } from '../../src/io/peft/merge-adapter.js';
import { openSource } from '../../src/io/sources/open-source.js';
import { openMergedAdapter } from '../../src/io/peft/merged-source.js';

const cfg: LlamaConfig = {
  vocab_size: 12, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1,
  num_attention_heads: 2, max_position_embeddings: 16, rms_norm_eps: 1e-6, rope_theta: 10000,
};
const tmp = mkdtempSync(join(tmpdir(), 'dorascope-ckpt-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('checkpoints read back through the PEFT reader', () => {
  beforeAll(async () => { await initBackend('wasm'); });

  for (const method of ['lora', 'dora'] as const)
    it(`${method}: merged adapter weights equal the trainer's effective weights`, async () => {
      const t = tf();
      const rand = seededRandom(5);
      const w = initWeights(cfg, rand);
      const layers = new Map<string, LoraParams>();
      for (const m of ['self_attn.q_proj', 'self_attn.v_proj', 'mlp.down_proj']) {
        const base = `model.layers.0.${m}`;
        const [out, inp] = weightShapes(cfg).get(`${base}.weight`)!;
        const p = initLora(out!, inp!, 4, loraScaling(4, 8, true), rand);
        if (method === 'dora') p.magnitude = initMagnitude(w.get(`${base}.weight`)!, p);
        layers.set(base, p);
      }
      const ad: Adapters = { variant: method === 'lora' ? loraVariant : doraVariant(true), layers };
      const ids = t.tensor2d(Int32Array.from({ length: 20 }, (_, i) => i % 12), [2, 10], 'int32');
      const params = [...layers.values()].flatMap((p) => [p.A, p.B, ...(p.magnitude ? [p.magnitude] : [])]);
      const opt = new AdamW({ lr: 0.05 });
      await runLoop({ params, optimizer: opt, steps: 5, loss: () => lmLoss(cfg, w, ids, ad) });
      const baseDir = join(tmp, `${method}-base`), runDir = join(tmp, `${method}-run`);
      await saveBase(baseDir, cfg, w, { method });
      const ck = await saveCheckpoint(runDir, {
        step: 5, config: cfg, weights: w, adapters: ad, metadata: { backend: 'wasm', method },
        peft: { r: 4, alpha: 8, rslora: true, target: ['q_proj', 'v_proj', 'down_proj'] }, logHistory: [{ step: 5 }],
      });
      expect(JSON.parse(readFileSync(join(ck, 'trainer_state.json'), 'utf8')).global_step).toBe(5);
      const mergedDir = join(tmp, `${method}-merged`);
      const res = await mergeAdapter(baseDir, ck, mergedDir);
      expect(res.adapted).toBe(3);
      expect(existsSync(join(mergedDir, 'config.json'))).toBe(true);
      const mergedFile = await openSource(mergedDir);
      const base = await openSource(baseDir);
      const merged = await openMergedAdapter(ck, base, { closeBase: true });
      try {
        // untouched tensors are copied exactly
        expect(await mergedFile.read('lm_head.weight')).toEqual(Float32Array.from(w.get('lm_head.weight')!.dataSync()));
        for (const [mod, p] of layers) {
          const mine = t.tidy(() => ad.variant.merged(w.get(`${mod}.weight`)!, p).dataSync());
          const read = await merged.read(`${mod}.weight`);
          const fromFile = await mergedFile.read(`${mod}.weight`);
          for (let i = 0; i < read.length; i++) expect(Math.abs(fromFile[i]! - mine[i]!)).toBeLessThan(1e-6);
          let max = 0, moved = 0;
          const W0 = w.get(`${mod}.weight`)!.dataSync();
          for (let i = 0; i < read.length; i++) {
            max = Math.max(max, Math.abs(read[i]! - mine[i]!));
            moved = Math.max(moved, Math.abs(read[i]! - W0[i]!));
          }
          expect(max).toBeLessThan(1e-6);
          expect(moved).toBeGreaterThan(1e-4); // training changed the weight, so the check is not trivial
        }
      } finally {
        await merged.close();
        await mergedFile.close();
        opt.dispose();
        t.disposeVariables();
        ids.dispose();
      }
    });
});

describe('checkpoint folders are published atomically as a whole', () => {
  it('replaces an existing folder; a failing write leaves the old one and no temporary', async () => {
    const run = join(tmp, 'atomic');
    const ck = join(run, 'checkpoint-2');
    await writeFolderAtomic(ck, async (d) => { writeFileSync(join(d, 'a.txt'), 'one'); });
    await writeFolderAtomic(ck, async (d) => { writeFileSync(join(d, 'a.txt'), 'two'); });
    expect(readFileSync(join(ck, 'a.txt'), 'utf8')).toBe('two');
    const err = await writeFolderAtomic(ck, async (d) => {
      writeFileSync(join(d, 'a.txt'), 'three');
      throw new Error('disk full');
    }).catch((e: unknown) => e);
    expect(isDorascopeError(err, 'E_WRITE')).toBe(true);
    expect((err as Error).message).toContain('checkpoint-2');
    expect(readFileSync(join(ck, 'a.txt'), 'utf8')).toBe('two');
    expect(readdirSync(run)).toEqual(['checkpoint-2']);
  });

  it('readers never see a leftover temporary folder, and cleanStaleTemps removes only those', async () => {
    const run = join(tmp, 'stale');
    mkdirSync(join(run, 'checkpoint-3'), { recursive: true });
    writeFileSync(join(run, 'checkpoint-3', 'trainer_state.json'), '{"global_step": 3}');
    for (const d of ['.checkpoint-6.tmp-123-abcd1234', '.checkpoint-6.old-9-00ff00ff', '.base.tmp-1-0a0b0c0d', '.keep-me', 'checkpoints-x']) {
      mkdirSync(join(run, d));
    }
    expect((await listRun(run)).map((c) => c.name)).toEqual(['checkpoint-3']);
    expect((await cleanStaleTemps(run)).sort()).toEqual(['.base.tmp-1-0a0b0c0d', '.checkpoint-6.old-9-00ff00ff', '.checkpoint-6.tmp-123-abcd1234']);
    expect(readdirSync(run).sort()).toEqual(['.keep-me', 'checkpoint-3', 'checkpoints-x']); // (a checkpoint-<not a step> folder is an error: test/io/checkpoint-steps.test.ts)
  });
});

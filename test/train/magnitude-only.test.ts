import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { train, type TrainOptions } from '../../src/train/train.js';
import { openSafetensors } from '../../src/io/safetensors/reader.js';
import { openSource } from '../../src/io/sources/open-source.js';
import { openAdapter } from '../../src/io/peft/adapter.js';
import { openMergedAdapter } from '../../src/io/peft/merged-source.js';
import { isDorascopeError } from '../../src/errors.js';

const tmp = mkdtempSync(join(tmpdir(), 'dorascope-magonly-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const small = { hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2 };
const opts: TrainOptions = {
  method: 'dora', steps: 5, seed: 3, config: small, batchSize: 2, contextLength: 12,
  target: ['q_proj'], magnitudeOnly: ['v_proj', 'down_proj'],
};
const L = 'model.layers.0';
const MAG_ONLY = [`${L}.self_attn.v_proj`, `${L}.mlp.down_proj`];

async function tensors(file: string): Promise<Map<string, Float32Array>> {
  const f = await openSafetensors(file);
  try {
    const m = new Map<string, Float32Array>();
    for (const t of f.tensors) m.set(t.name, await f.readFloat32(t.name));
    return m;
  } finally {
    await f.close();
  }
}

describe('--magnitude-only (paper Table 6: magnitude on all modules, direction on some)', () => {
  it('trains only m there, in PEFT format; the merge gives m ⊙ W0/‖W0‖_row', async () => {
    // lr 0 leaves every tensor at its init (AdamW: p − 0·update), which is the reference
    const trained = join(tmp, 'trained'), frozen = join(tmp, 'frozen');
    await train({ ...opts, lr: 0.05, out: trained });
    await train({ ...opts, lr: 0, out: frozen });
    const ck = join(trained, 'checkpoint-5');
    const a = await tensors(join(ck, 'adapter_model.safetensors'));
    const z = await tensors(join(frozen, 'checkpoint-5', 'adapter_model.safetensors'));
    const same = (x: Float32Array, y: Float32Array) => x.length === y.length && x.every((v, i) => Object.is(v, y[i]));
    for (const mod of MAG_ONLY) {
      const k = `base_model.model.${mod}`;
      expect(same(a.get(`${k}.lora_A.weight`)!, z.get(`${k}.lora_A.weight`)!), `${mod} A frozen`).toBe(true);
      expect(a.get(`${k}.lora_B.weight`)!.every((v) => v === 0), `${mod} B = 0`).toBe(true);
      expect(same(a.get(`${k}.lora_magnitude_vector`)!, z.get(`${k}.lora_magnitude_vector`)!), `${mod} m trained`).toBe(false);
    }
    // the direction module trains all of A, B and m
    const q = `base_model.model.${L}.self_attn.q_proj`;
    expect(same(a.get(`${q}.lora_A.weight`)!, z.get(`${q}.lora_A.weight`)!)).toBe(false);
    expect(a.get(`${q}.lora_B.weight`)!.some((v) => v !== 0)).toBe(true);

    const cfg = JSON.parse(readFileSync(join(ck, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', use_dora: true });
    expect([...cfg.target_modules].sort()).toEqual(['down_proj', 'q_proj', 'v_proj']);
    const adapter = await openAdapter(ck);
    try {
      expect(adapter.modules.map((m) => [m.module, m.method]).sort()).toEqual(
        [[`${L}.mlp.down_proj`, 'dora'], [`${L}.self_attn.q_proj`, 'dora'], [`${L}.self_attn.v_proj`, 'dora']]);
    } finally {
      await adapter.close();
    }

    // merged weight through our PEFT merge = m ⊙ W0/‖W0‖_row, with the row norm in float64 here
    const baseSrc = await openSource(join(trained, 'base'));
    const merged = await openMergedAdapter(ck, baseSrc, { closeBase: true });
    const plain = await openSource(join(trained, 'base'));
    try {
      for (const mod of MAG_ONLY) {
        const info = merged.info(`${mod}.weight`)!;
        const [out, inp] = info.shape as [number, number];
        const W0 = await plain.read(`${mod}.weight`);
        const m = a.get(`base_model.model.${mod}.lora_magnitude_vector`)!;
        const got = await merged.read(`${mod}.weight`);
        let worst = 0;
        for (let o = 0; o < out; o++) {
          let ss = 0;
          for (let i = 0; i < inp; i++) ss += W0[o * inp + i]! ** 2;
          const scale = m[o]! / Math.sqrt(ss);
          for (let i = 0; i < inp; i++) {
            const want = scale * W0[o * inp + i]!;
            worst = Math.max(worst, Math.abs(got[o * inp + i]! - want) / Math.max(1e-6, Math.abs(want)));
          }
        }
        expect(worst, mod).toBeLessThan(1e-5);
        // and it differs from W0 (m moved), so the comparison is not trivial
        expect(got.some((v, i) => Math.abs(v - W0[i]!) > 1e-6)).toBe(true);
      }
    } finally {
      await merged.close();
      await plain.close();
    }
  });

  it('bad --magnitude-only options are E_USAGE errors', async () => {
    const usage = (o: Partial<TrainOptions>) => expect(train({ ...opts, ...o })).rejects.toSatisfy((e) => isDorascopeError(e, 'E_USAGE'));
    await usage({ method: 'lora' });
    await usage({ magnitudeOnly: ['q_proj'] }); // also a --target
    await usage({ magnitudeOnly: ['nope_proj'] });
  });
});

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openAdapter } from '../../src/io/peft/adapter.js';
import { openMergedAdapter } from '../../src/io/peft/merged-source.js';
import { openSource } from '../../src/io/sources/open-source.js';
import type { TensorSource } from '../../src/io/types.js';
import { DorascopeError } from '../../src/errors.js';
import { rng } from '../helpers/random.js';
import { exactValues, type FloatDType, type TestTensors, writeAdapter, writeModel } from '../helpers/models.js';
import { maxRelErr, referenceMerge } from '../helpers/reference-merge.js';

const root = mkdtempSync(join(tmpdir(), 'dorascope-peft-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const P = 'base_model.model.';
const next = rng(2024);

/** A tiny Llama-like base with a GPT-2 Conv1D, a conv kernel, an embedding and a head. */
function baseTensors(dtype: FloatDType): TestTensors {
  const t = (shape: number[], scale = 1) => ({ shape, data: exactValues(next, shape.reduce((a, b) => a * b, 1), scale), dtype });
  const v = t([4, 8]);
  v.data.fill(0, 2 * 8, 3 * 8); // row 2 of v_proj is all zero (PEFT issue #2049)
  return {
    'model.embed_tokens.weight': t([12, 8]),
    'model.layers.0.self_attn.q_proj.weight': t([8, 8]),
    'model.layers.0.self_attn.v_proj.weight': v,
    'model.layers.1.self_attn.q_proj.weight': t([8, 8]),
    'model.layers.0.mlp.c_fc.weight': t([8, 16]), // Conv1D: (in, out)
    'model.conv.weight': t([4, 3, 3, 3]),
    'lm_head.weight': t([12, 8]),
    'model.norm.weight': t([8]),
  };
}

interface Mod { module: string; r: number; a: number[]; b: number[]; emb?: boolean; mag?: number[]; out: number; in: number; rows: boolean }
const MODS: Mod[] = [
  { module: 'model.layers.0.self_attn.q_proj', r: 2, a: [2, 8], b: [8, 2], out: 8, in: 8, rows: true },
  { module: 'model.layers.0.self_attn.v_proj', r: 2, a: [2, 8], b: [4, 2], out: 4, in: 8, rows: true },
  { module: 'model.layers.1.self_attn.q_proj', r: 4, a: [4, 8], b: [8, 4], out: 8, in: 8, rows: true },
  { module: 'model.layers.0.mlp.c_fc', r: 2, a: [2, 8], b: [16, 2], out: 16, in: 8, rows: false },
  { module: 'model.conv', r: 2, a: [2, 3, 3, 3], b: [4, 2, 1, 1], mag: [1, 4, 1, 1], out: 4, in: 27, rows: true },
  { module: 'model.embed_tokens', r: 2, a: [2, 12], b: [8, 2], emb: true, out: 8, in: 12, rows: false },
];

/** Adapter tensors in PEFT's saved naming; `named` adds the adapter name as older files do. */
function adapterTensors(dtype: FloatDType, dora: boolean, named: boolean): TestTensors {
  const out: TestTensors = {};
  const n = named ? '.default' : '';
  for (const m of MODS) {
    const A = exactValues(next, m.a.reduce((x, y) => x * y, 1), 0.5);
    const B = exactValues(next, m.b.reduce((x, y) => x * y, 1), 0.5);
    if (m.module.endsWith('v_proj')) B.fill(0, 2 * 2, 3 * 2); // keeps V's row 2 at zero
    if (m.emb) {
      out[`${P}${m.module}.lora_embedding_A${n}`] = { shape: m.a, data: A, dtype };
      out[`${P}${m.module}.lora_embedding_B${n}`] = { shape: m.b, data: B, dtype };
    } else {
      out[`${P}${m.module}.lora_A${n}.weight`] = { shape: m.a, data: A, dtype };
      out[`${P}${m.module}.lora_B${n}.weight`] = { shape: m.b, data: B, dtype };
    }
    if (dora) {
      const mag = exactValues(next, m.out).map((x) => 1 + Math.abs(x));
      out[`${P}${m.module}.lora_magnitude_vector${named ? '.default.weight' : ''}`] = { shape: m.mag ?? [m.out], data: mag, dtype };
    }
  }
  out[`${P}lm_head.modules_to_save.default.weight`] = { shape: [12, 8], data: exactValues(next, 96), dtype };
  return out;
}

const CONFIG = {
  r: 2, lora_alpha: 4,
  target_modules: ['q_proj', 'v_proj', 'c_fc', 'conv', 'embed_tokens'],
  rank_pattern: { 'layers.1.self_attn.q_proj': 4 },
  alpha_pattern: { v_proj: 3 },
  modules_to_save: ['lm_head'],
  fan_in_fan_out: false, // wrong for c_fc on purpose: the layout comes from the shapes
  future_option: 'ignored',
};

/** Hand-derived scalings: alpha/r, alpha/sqrt(r) with rsLoRA, per the patterns above. */
function expectedScaling(module: string, rslora: boolean): number {
  const r = module === 'model.layers.1.self_attn.q_proj' ? 4 : 2;
  const alpha = module.endsWith('v_proj') ? 3 : 4;
  return rslora ? alpha / Math.sqrt(r) : alpha / r;
}

async function checkMerged(base: TestTensors, adapter: TestTensors, merged: TensorSource, rslora: boolean, dora: boolean): Promise<void> {
  // keys may carry the adapter name (`.lora_A.default.weight`): match with it removed
  const norm = (k: string) => k.replace(/\.default(?=\.|$)/gu, '').replace(/\.weight$/u, '');
  const get = (suffix: string) => Object.entries(adapter).find(([k]) => norm(k).endsWith(norm(suffix)))![1].data;
  for (const m of MODS) {
    const A = get(m.emb ? `${m.module}.lora_embedding_A` : `${m.module}.lora_A.weight`);
    const B = get(m.emb ? `${m.module}.lora_embedding_B` : `${m.module}.lora_B.weight`);
    const W = base[`${m.module}.weight`]!.data;
    const ref = referenceMerge({
      W, A, B, r: m.r, out: m.out, in: m.in, scaling: expectedScaling(m.module, rslora), outputsAreRows: m.rows,
      ...(dora ? { magnitude: get(`${m.module}.lora_magnitude_vector`) } : {}),
    });
    const got = await merged.read(`${m.module}.weight`);
    expect(got.every(Number.isFinite), m.module).toBe(true);
    expect(maxRelErr(got, ref), m.module).toBeLessThan(1e-6);
  }
  // modules_to_save replaces the base tensor; untouched tensors come from the base
  expect([...(await merged.read('lm_head.weight'))]).toEqual([...get('lm_head.modules_to_save.weight')]);
  expect([...(await merged.read('model.norm.weight'))]).toEqual([...base['model.norm.weight']!.data]);
}

describe('PEFT adapters merged exactly as PEFT does', () => {
  const variants: { name: string; dtype: FloatDType; baseDtype: FloatDType; dora: boolean; rslora: boolean; named: boolean }[] = [
    { name: 'LoRA (F32), rank/alpha patterns, Conv1D, conv, embedding, modules_to_save', dtype: 'F32', baseDtype: 'F32', dora: false, rslora: false, named: false },
    { name: 'rsLoRA with F16 adapter tensors and adapter-named keys', dtype: 'F16', baseDtype: 'F32', dora: false, rslora: true, named: true },
    { name: 'DoRA with BF16 adapter and BF16 base, including a zero-norm row', dtype: 'BF16', baseDtype: 'BF16', dora: true, rslora: false, named: false },
  ];
  for (const v of variants) {
    it(v.name, async () => {
      const dir = join(root, v.name.replace(/\W+/gu, '-'));
      const base = baseTensors(v.baseDtype);
      await writeModel(join(dir, 'base.safetensors'), base);
      const tensors = adapterTensors(v.dtype, v.dora, v.named);
      await writeAdapter(join(dir, 'adapter'), { ...CONFIG, use_rslora: v.rslora, use_dora: v.dora }, tensors);
      const merged = await openSource(join(dir, 'adapter'), { base: join(dir, 'base.safetensors') });
      try {
        expect(merged.kind).toBe('merged-adapter');
        await checkMerged(base, tensors, merged, v.rslora, v.dora);
        // the listing keeps the base's names, dtypes and shapes
        expect(merged.info('model.layers.0.mlp.c_fc.weight')).toMatchObject({ dtype: v.baseDtype, shape: [8, 16] });
      } finally {
        await merged.close();
      }
    });
  }

  it('exports per-module factors with the layout decided from shapes', async () => {
    const dir = join(root, 'factors');
    const base = baseTensors('F32');
    await writeModel(join(dir, 'base.safetensors'), base);
    await writeAdapter(join(dir, 'adapter'), { ...CONFIG, use_dora: true }, adapterTensors('F32', true, false));
    const b = await openSource(join(dir, 'base.safetensors'));
    const merged = await openMergedAdapter(join(dir, 'adapter'), b);
    try {
      const layouts = await Promise.all(MODS.map(async (m) => (await merged.factors(`${m.module}.weight`)).layout));
      expect(layouts).toEqual(['linear', 'linear', 'linear', 'conv1d', 'conv', 'embedding']);
      const f = await merged.factors('model.layers.1.self_attn.q_proj.weight');
      expect([f.r, f.out, f.in, f.scaling, f.magnitude?.length]).toEqual([4, 8, 8, 1, 8]);
      expect(merged.adapter.method).toBe('dora');
      expect(merged.adapted.size).toBe(MODS.length);
    } finally {
      await merged.close();
      await b.close();
    }
  });

  it('GPT-2: square Conv1D weight with fan_in_fan_out, base saved without the transformer. prefix', async () => {
    const dir = join(root, 'gpt2');
    const W = exactValues(next, 36);
    const A = exactValues(next, 12);
    const B = exactValues(next, 12);
    // GPT-2's own checkpoint names `h.0...`; PEFT's wrapped GPT2LMHeadModel says `transformer.h.0...`
    await writeModel(join(dir, 'base.safetensors'), { 'h.0.attn.c_proj.weight': { shape: [6, 6], data: W }, 'h.0.mlp.dense.weight': { shape: [6, 6], data: W } });
    const tensors: TestTensors = {
      [`${P}transformer.h.0.attn.c_proj.lora_A.weight`]: { shape: [2, 6], data: A },
      [`${P}transformer.h.0.attn.c_proj.lora_B.weight`]: { shape: [6, 2], data: B },
      [`${P}transformer.h.0.mlp.dense.lora_A.weight`]: { shape: [2, 6], data: A },
      [`${P}transformer.h.0.mlp.dense.lora_B.weight`]: { shape: [6, 2], data: B },
    };
    for (const fanInFanOut of [true, false]) {
      await writeAdapter(join(dir, `a${fanInFanOut}`), { r: 2, lora_alpha: 4, fan_in_fan_out: fanInFanOut }, tensors);
      const merged = await openSource(join(dir, `a${fanInFanOut}`), { base: join(dir, 'base.safetensors') });
      const ref = (rows: boolean) => referenceMerge({ W, A, B, r: 2, out: 6, in: 6, scaling: 2, outputsAreRows: rows });
      // c_proj is a Conv1D by name whatever the flag (PEFT forces fan_in_fan_out for Conv1D);
      // a square `dense` follows the flag
      expect(maxRelErr(await merged.read('h.0.attn.c_proj.weight'), ref(false))).toBeLessThan(1e-6);
      expect(maxRelErr(await merged.read('h.0.mlp.dense.weight'), ref(!fanInFanOut))).toBeLessThan(1e-6);
      await merged.close();
    }
  });

  it('reads the NVlabs/DoRA format (weight_m_wdecomp.weight, shape (out, 1))', async () => {
    const dir = join(root, 'nvlabs');
    const W = exactValues(next, 4 * 6);
    const A = exactValues(next, 2 * 6);
    const B = exactValues(next, 4 * 2);
    const m = new Float32Array([1, 2, 3, 4]);
    await writeModel(join(dir, 'base.safetensors'), { 'layers.0.q_proj.weight': { shape: [4, 6], data: W } });
    await writeAdapter(join(dir, 'adapter'), { r: 2, lora_alpha: 2, target_modules: ['q_proj'] }, {
      [`${P}layers.0.q_proj.lora_A.weight`]: { shape: [2, 6], data: A },
      [`${P}layers.0.q_proj.lora_B.weight`]: { shape: [4, 2], data: B },
      [`${P}layers.0.q_proj.weight_m_wdecomp.weight`]: { shape: [4, 1], data: m },
    });
    const merged = await openSource(join(dir, 'adapter'), { base: join(dir, 'base.safetensors') });
    const got = await merged.read('layers.0.q_proj.weight');
    await merged.close();
    expect(maxRelErr(got, referenceMerge({ W, A, B, r: 2, out: 4, in: 6, scaling: 1, outputsAreRows: true, magnitude: m }))).toBeLessThan(1e-6);
  });
});

describe('bad adapters give typed errors', () => {
  const dir = join(root, 'bad');
  const W = exactValues(next, 4 * 6);
  beforeAll(async () => {
    await writeModel(join(dir, 'base.safetensors'), { 'layers.0.q_proj.weight': { shape: [4, 6], data: W } });
  });
  async function code(config: Record<string, unknown>, tensors: TestTensors, name: string): Promise<DorascopeError> {
    await writeAdapter(join(dir, name), config, tensors);
    try {
      const s = await openSource(join(dir, name), { base: join(dir, 'base.safetensors') });
      await s.close();
    } catch (e) {
      if (e instanceof DorascopeError) return e;
      throw e;
    }
    throw new Error('expected an error');
  }
  const A = { shape: [2, 6], data: new Float32Array(12) };
  const B = { shape: [4, 2], data: new Float32Array(8) };

  it('rank in the file differs from the config → E_SHAPE_MISMATCH naming module and rank_pattern key', async () => {
    const e = await code({ r: 2, lora_alpha: 2, rank_pattern: { q_proj: 3 } }, { [`${P}layers.0.q_proj.lora_A.weight`]: A, [`${P}layers.0.q_proj.lora_B.weight`]: B }, 'rank');
    expect(e.code).toBe('E_SHAPE_MISMATCH');
    expect(e.message).toContain('layers.0.q_proj');
    expect(e.message).toContain('"q_proj"');
  });
  it('lora_A without lora_B → E_ADAPTER_KEYS', async () => {
    expect((await code({ r: 2, lora_alpha: 2 }, { [`${P}layers.0.q_proj.lora_A.weight`]: A }, 'noB')).code).toBe('E_ADAPTER_KEYS');
  });
  it('use_dora without magnitudes → E_ADAPTER_KEYS', async () => {
    expect((await code({ r: 2, lora_alpha: 2, use_dora: true }, { [`${P}layers.0.q_proj.lora_A.weight`]: A, [`${P}layers.0.q_proj.lora_B.weight`]: B }, 'nomag')).code).toBe('E_ADAPTER_KEYS');
  });
  it('a module the base does not have → E_MISSING_TENSOR; shapes that fit no layout → E_SHAPE_MISMATCH', async () => {
    expect((await code({ r: 2, lora_alpha: 2 }, { [`${P}layers.0.k_proj.lora_A.weight`]: A, [`${P}layers.0.k_proj.lora_B.weight`]: B }, 'nomod')).code).toBe('E_MISSING_TENSOR');
    const B5 = { shape: [5, 2], data: new Float32Array(10) };
    expect((await code({ r: 2, lora_alpha: 2 }, { [`${P}layers.0.q_proj.lora_A.weight`]: A, [`${P}layers.0.q_proj.lora_B.weight`]: B5 }, 'shape')).code).toBe('E_SHAPE_MISMATCH');
  });
  it('missing lora_alpha → E_ADAPTER_CONFIG; adapter_model.bin only → E_PICKLE', async () => {
    expect((await code({ r: 2 }, { [`${P}layers.0.q_proj.lora_A.weight`]: A, [`${P}layers.0.q_proj.lora_B.weight`]: B }, 'noalpha')).code).toBe('E_ADAPTER_CONFIG');
    const d = join(dir, 'pickled');
    await writeAdapter(d, { r: 2, lora_alpha: 2 }, { x: A });
    rmSync(join(d, 'adapter_model.safetensors'));
    writeFileSync(join(d, 'adapter_model.bin'), 'pickle');
    await expect(openAdapter(d)).rejects.toMatchObject({ code: 'E_PICKLE' });
  });
});

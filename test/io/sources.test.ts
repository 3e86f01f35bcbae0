import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { openSource } from '../../src/io/sources/open-source.js';
import { DorascopeError } from '../../src/errors.js';
import { rng } from '../helpers/random.js';
import { exactValues, type TestTensors, writeModel, writeSharded } from '../helpers/models.js';

const FIX = resolve(dirname(fileURLToPath(import.meta.url)), '../fixtures');
const root = mkdtempSync(join(tmpdir(), 'dorascope-src-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function failure(p: Promise<unknown>): Promise<DorascopeError> {
  try {
    const s = await p;
    await (s as { close?: () => Promise<void> }).close?.();
  } catch (e) {
    if (e instanceof DorascopeError) return e;
    throw e;
  }
  throw new Error('expected a DorascopeError');
}

const next = rng(7);
const MODEL: TestTensors = {
  'model.layers.0.mlp.up_proj.weight': { shape: [6, 4], data: exactValues(next, 24), dtype: 'BF16' },
  'model.layers.0.self_attn.q_proj.weight': { shape: [4, 4], data: exactValues(next, 16), dtype: 'F16' },
  'model.layers.1.self_attn.q_proj.weight': { shape: [4, 4], data: exactValues(next, 16) },
  'model.norm.weight': { shape: [4], data: exactValues(next, 4) },
  'lm_head.weight': { shape: [10, 4], data: exactValues(next, 40) },
};

describe('checkpoint sources', () => {
  it('a real torch-written file: names, shapes and values from the fixture README', async () => {
    const s = await openSource(join(FIX, 'diffai', 'simple_base.safetensors'));
    try {
      expect(s.kind).toBe('file');
      expect(s.info('fc1.weight')).toMatchObject({ dtype: 'F32', shape: [64, 128] });
      expect(s.info('fc3.weight')?.shape).toEqual([10, 32]);
      expect((await s.read('fc2.weight')).length).toBe(32 * 64);
      await expect(s.read('nope')).rejects.toMatchObject({ code: 'E_MISSING_TENSOR' });
    } finally {
      await s.close();
    }
    const f = await openSource(join(FIX, 'safetensors-samples', 'f.safetensors'));
    expect([...(await f.read('f'))]).toEqual([-3, -2, -1, 0, 1, 2]);
    expect(f.metadata).toEqual({ test: 'a' });
    await f.close();
  });

  it('a folder with model.safetensors, and one with a single other .safetensors file', async () => {
    const d = join(root, 'folder');
    await writeModel(join(d, 'model.safetensors'), MODEL);
    const s = await openSource(d);
    expect(s.kind).toBe('folder');
    expect(s.list().map((t) => t.name)).toEqual(Object.keys(MODEL).sort());
    expect([...(await s.read('model.layers.0.mlp.up_proj.weight'))]).toEqual([...MODEL['model.layers.0.mlp.up_proj.weight']!.data]);
    await s.close();
    const d2 = join(root, 'folder2');
    mkdirSync(d2);
    copyFileSync(join(FIX, 'diffai', 'small_model.safetensors'), join(d2, 'weights.safetensors'));
    const s2 = await openSource(d2);
    expect(s2.info('fc.weight')?.shape).toEqual([5, 10]);
    await s2.close();
  });

  it('a sharded folder reads every tensor from the shard its index names', async () => {
    const d = join(root, 'sharded');
    await writeSharded(d, MODEL, 3);
    const s = await openSource(d);
    try {
      expect(s.kind).toBe('sharded');
      expect(s.list().map((t) => t.name)).toEqual(Object.keys(MODEL).sort());
      for (const [n, t] of Object.entries(MODEL)) {
        expect(s.info(n)).toMatchObject({ dtype: t.dtype ?? 'F32', shape: t.shape });
        expect([...(await s.read(n))]).toEqual([...t.data]);
      }
      expect(s.metadata['format']).toBe('pt');
    } finally {
      await s.close();
    }
  });

  it('sharded index errors: missing shard, a name the shard does not hold, no weight_map, escaping paths', async () => {
    const d = join(root, 'badshard');
    const wm = await writeSharded(d, MODEL, 2);
    const index = join(d, 'model.safetensors.index.json');
    const names = Object.keys(wm);
    writeFileSync(index, JSON.stringify({ weight_map: { ...wm, [names[0]!]: 'model-00009-of-00009.safetensors' } }));
    let e = await failure(openSource(d));
    expect(e.code).toBe('E_INDEX');
    expect(e.message).toContain('model-00009-of-00009.safetensors');
    // name mapped to the other (existing) shard
    const other = Object.values(wm).find((f) => f !== wm[names[0]!])!;
    writeFileSync(index, JSON.stringify({ weight_map: { ...wm, [names[0]!]: other } }));
    e = await failure(openSource(d));
    expect(e.code).toBe('E_INDEX');
    expect(e.message).toContain(names[0]!);
    writeFileSync(index, JSON.stringify({ metadata: {} }));
    expect((await failure(openSource(d))).code).toBe('E_INDEX');
    writeFileSync(index, JSON.stringify({ weight_map: { a: '../x.safetensors' } }));
    expect((await failure(openSource(d))).code).toBe('E_INDEX');
    writeFileSync(index, '{"weight_map": ');
    expect((await failure(openSource(d))).code).toBe('E_INDEX');
  });

  it('an org/name id resolves through a fake Hugging Face cache', async () => {
    const hub = join(root, 'hub');
    const snap = join(hub, 'models--acme--tiny', 'snapshots', 'c'.repeat(40));
    mkdirSync(join(hub, 'models--acme--tiny', 'refs'), { recursive: true });
    writeFileSync(join(hub, 'models--acme--tiny', 'refs', 'main'), 'c'.repeat(40));
    await writeSharded(snap, MODEL, 2);
    const s = await openSource('acme/tiny', { env: { HF_HUB_CACHE: hub } });
    expect(s.kind).toBe('sharded');
    expect(s.list().length).toBe(Object.keys(MODEL).length);
    await s.close();
    expect((await failure(openSource('acme/other', { env: { HF_HUB_CACHE: hub } }))).code).toBe('E_HF_CACHE');
  });

  it('a text file posing as a model is E_UNSUPPORTED_FORMAT; a Trainer run is not one source', async () => {
    writeFileSync(join(root, 'notes.txt'), 'hi');
    expect((await failure(openSource(join(root, 'notes.txt')))).code).toBe('E_UNSUPPORTED_FORMAT');
    mkdirSync(join(root, 'run', 'checkpoint-1'), { recursive: true });
    expect((await failure(openSource(join(root, 'run')))).code).toBe('E_USAGE');
  });
});

import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { rng } from '../helpers/random.js';
import { exactValues, type TestTensors, writeAdapter, writeModel, writeSharded } from '../helpers/models.js';

const FIX = resolve(dirname(fileURLToPath(import.meta.url)), '../fixtures');
const root = mkdtempSync(join(tmpdir(), 'dorascope-inspect-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => (err.push(String(s)), true));
  const l = vi.spyOn(console, 'log').mockImplementation((...a) => void out.push(`${a.join(' ')}\n`));
  try {
    const code = await main(argv);
    return { code, out: out.join(''), err: err.join('') };
  } finally {
    o.mockRestore();
    e.mockRestore();
    l.mockRestore();
  }
}

async function json(argv: string[]): Promise<any> {
  const r = await run([...argv, '--json']);
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.out);
}

const prod = (s: number[]) => s.reduce((a, b) => a * b, 1);

// From test/fixtures/README.md (files written by torch + the reference safetensors library).
const SAMPLE_DTYPES: Record<string, string> = { b: 'I8', B: 'U8', h: 'I16', H: 'U16', i: 'I32', I: 'U32', e: 'F16', f: 'F32', d: 'F64' };
const MLP: Record<string, number[]> = { 'fc1.weight': [64, 128], 'fc1.bias': [64], 'fc2.weight': [32, 64], 'fc2.bias': [32], 'fc3.weight': [10, 32], 'fc3.bias': [10] };

describe('dorascope inspect', () => {
  it('lists every safetensors-samples fixture: one [6] tensor per type code, metadata {test: a}', async () => {
    for (const f of readdirSync(join(FIX, 'safetensors-samples')).filter((x) => x.endsWith('.safetensors'))) {
      const r = await json(['inspect', join(FIX, 'safetensors-samples', f)]);
      const code = f.replace('.safetensors', '');
      const expected = code === 'overall' ? Object.keys(SAMPLE_DTYPES) : [code];
      expect(r.kind).toBe('file');
      expect(r.tensors.map((t: any) => t.name).sort()).toEqual([...expected].sort());
      for (const t of r.tensors) expect([t.dtype, t.shape, t.params]).toEqual([SAMPLE_DTYPES[t.name], [6], 6]);
      expect(r.totals.params).toBe(6 * expected.length);
      expect(r.metadata).toEqual({ test: 'a' });
    }
  });

  it('lists every diffai fixture with the documented shapes and parameter counts', async () => {
    for (const f of readdirSync(join(FIX, 'diffai')).filter((x) => x.endsWith('.safetensors'))) {
      const r = await json(['inspect', join(FIX, 'diffai', f)]);
      const shapes: Record<string, number[]> = Object.fromEntries(r.tensors.map((t: any) => [t.name, t.shape]));
      if (f === 'small_model.safetensors') expect(shapes).toEqual({ 'fc.weight': [5, 10], 'fc.bias': [5] });
      else if (f === 'transformer.safetensors') {
        expect(shapes['embedding.weight']).toEqual([1000, 128]);
        expect(shapes['transformer.self_attn.in_proj_weight']).toEqual([384, 128]);
      } else expect(shapes).toEqual(MLP);
      for (const t of r.tensors) {
        expect(t.dtype).toBe('F32');
        expect(t.params).toBe(prod(t.shape));
        expect(t.bytes).toBe(4 * prod(t.shape));
      }
      expect(r.totals.by_dtype.F32.params).toBe(r.tensors.reduce((s: number, t: any) => s + prod(t.shape), 0));
    }
    // the MLP by hand: 64·128+64 + 32·64+32 + 10·32+10
    expect((await json(['inspect', join(FIX, 'diffai', 'simple_base.safetensors')])).totals.params).toBe(10666);
  });

  const next = rng(99);
  const MODEL: TestTensors = {
    'model.layers.0.self_attn.q_proj.weight': { shape: [4, 4], data: exactValues(next, 16), dtype: 'BF16' },
    'model.layers.0.self_attn.v_proj.weight': { shape: [2, 4], data: exactValues(next, 8), dtype: 'F16' },
    'model.norm.weight': { shape: [4], data: exactValues(next, 4) },
    'lm_head.weight': { shape: [10, 4], data: exactValues(next, 40) },
  };

  it('a generated sharded model: totals by dtype from headers', async () => {
    const d = join(root, 'sharded');
    await writeSharded(d, MODEL, 2);
    const r = await json(['inspect', d]);
    expect(r.kind).toBe('sharded');
    expect(r.totals.by_dtype).toEqual({ BF16: { tensors: 1, params: 16, bytes: 32 }, F16: { tensors: 1, params: 8, bytes: 16 }, F32: { tensors: 2, params: 44, bytes: 176 } });
    const text = await run(['inspect', d]);
    expect(text.code).toBe(0);
    expect(text.out).toContain('kind: sharded');
    expect(text.out).toMatch(/model\.layers\.0\.self_attn\.q_proj\.weight\s+BF16\s+\[4, 4\]\s+16/u);
  });

  it('an adapter: method, r, alpha, scaling, targets and the base tensor each module touches', async () => {
    const d = join(root, 'adapter-case');
    await writeModel(join(d, 'base.safetensors'), MODEL);
    const P = 'base_model.model.model.layers.0.self_attn.';
    await writeAdapter(join(d, 'adapter'), { r: 2, lora_alpha: 8, use_rslora: true, use_dora: true, target_modules: ['q_proj', 'v_proj'], base_model_name_or_path: 'acme/tiny' }, {
      [`${P}q_proj.lora_A.weight`]: { shape: [2, 4], data: exactValues(next, 8) },
      [`${P}q_proj.lora_B.weight`]: { shape: [4, 2], data: exactValues(next, 8) },
      [`${P}q_proj.lora_magnitude_vector`]: { shape: [4], data: exactValues(next, 4) },
      [`${P}v_proj.lora_A.weight`]: { shape: [2, 4], data: exactValues(next, 8) },
      [`${P}v_proj.lora_B.weight`]: { shape: [2, 2], data: exactValues(next, 4) },
      [`${P}v_proj.lora_magnitude_vector`]: { shape: [2], data: exactValues(next, 2) },
    });
    const r = await json(['inspect', join(d, 'adapter'), '--base', join(d, 'base.safetensors')]);
    expect(r.kind).toBe('adapter');
    expect(r.adapter).toMatchObject({ method: 'dora', r: 2, lora_alpha: 8, use_rslora: true, scaling: 8 / Math.sqrt(2), target_modules: ['q_proj', 'v_proj'] });
    expect(r.adapter.modules.map((m: any) => [m.base_tensor, m.layout, m.base_shape])).toEqual([
      ['model.layers.0.self_attn.q_proj.weight', 'linear', [4, 4]],
      ['model.layers.0.self_attn.v_proj.weight', 'linear', [2, 4]],
    ]);
    const text = await run(['inspect', join(d, 'adapter')]);
    expect(text.out).toContain('adapter: DORA, r 2, lora_alpha 8');
    expect(text.out).toContain('→ model.layers.0.self_attn.v_proj.weight');
  });

  it('a Trainer run: checkpoints in step order', async () => {
    const d = join(root, 'run');
    for (const n of [20, 3, 100]) await writeModel(join(d, `checkpoint-${n}`, 'model.safetensors'), MODEL);
    writeFileSync(join(d, 'checkpoint-20', 'trainer_state.json'), '{"global_step": 20, "log_history": [{"loss": NaN}]}');
    const r = await json(['inspect', d]);
    expect(r.kind).toBe('run');
    expect(r.checkpoints.map((c: any) => [c.name, c.step, c.step_from, c.kind, c.tensors])).toEqual([
      ['checkpoint-3', 3, 'name', 'folder', 4], ['checkpoint-20', 20, 'trainer_state', 'folder', 4], ['checkpoint-100', 100, 'name', 'folder', 4],
    ]);
  });

  it('errors are one line with a code and exit 1; --help has examples', async () => {
    mkdirSync(join(root, 'pick'));
    writeFileSync(join(root, 'pick', 'model.pt'), 'x');
    const r = await run(['inspect', join(root, 'pick', 'model.pt')]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^dorascope: error \[E_PICKLE\]: .*model\.pt/u);
    const m = await run(['inspect', join(root, 'missing.safetensors')]);
    expect([m.code, m.err.includes('[E_NOT_FOUND]')]).toEqual([1, true]);
    const h = await run(['inspect', '--help']);
    expect(h.out).toContain('Examples:');
    expect(h.out).toContain('--base');
  });
});

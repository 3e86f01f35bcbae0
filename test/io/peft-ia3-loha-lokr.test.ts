/**
 * IA³, LoHa and LoKr adapters, written here in PEFT's on-disk layout (adapter_config.json with
 * `peft_type`, `base_model.model.<module>.<param>` keys without `.weight`), read, inspected, merged
 * and analysed. Every expected number comes from this file: hand-worked IA³ values, and float64
 * loops of the published formulas (LoHa: (w1_a·w1_b) ⊙ (w2_a·w2_b)·alpha/r; LoKr: kron(w1, w2)·alpha/r
 * by an index loop), written apart from src/methods.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { analyze } from '../../src/analysis/analyze.js';
import { isDorascopeError } from '../../src/errors.js';
import { formatInspect, inspect } from '../../src/io/inspect.js';
import { mergeAdapter } from '../../src/io/peft/merge-adapter.js';
import { openAdapter } from '../../src/io/peft/adapter.js';
import { openSource } from '../../src/io/sources/open-source.js';
import { trainableParams } from '../../src/report/trainable-params.js';
import { rng } from '../helpers/random.js';
import { exactValues, type TestTensors, writeAdapter, writeModel } from '../helpers/models.js';
import { refDecomposition } from '../helpers/decomposition.js';

const root = mkdtempSync(join(tmpdir(), 'dorascope-lycoris-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const P = 'base_model.model.';
const next = rng(1313);
const f32 = (xs: number[]) => Float32Array.from(xs);

async function readAll(path: string): Promise<Record<string, Float32Array>> {
  const src = await openSource(path);
  try {
    const out: Record<string, Float32Array> = {};
    for (const t of src.list()) out[t.name] = await src.read(t.name);
    return out;
  } finally {
    await src.close();
  }
}


function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, rel = 1e-6): void {
  expect(got.length).toBe(want.length);
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]!));
  for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(rel * scale);
}

describe('IA³', () => {
  const dir = join(root, 'ia3');
  const W = f32([1, 2, 3, 4, 5, 6]); // (out 2, in 3)
  it('merges a 2×3 case by hand: outputs scaled for attention (and its bias), inputs for a feed-forward module', async () => {
    await writeModel(join(dir, 'base.safetensors'), {
      'model.layers.0.self_attn.q_proj.weight': { shape: [2, 3], data: W },
      'model.layers.0.self_attn.q_proj.bias': { shape: [2], data: f32([1, -3]) },
      'model.layers.0.mlp.down_proj.weight': { shape: [2, 3], data: W },
      'model.layers.0.mlp.down_proj.bias': { shape: [2], data: f32([7, 8]) },
    });
    // PEFT `IA3Layer.update_layer`: (out, 1) for a non-feed-forward module, (1, in) for a feed-forward one.
    await writeAdapter(join(dir, 'adapter'), {
      peft_type: 'IA3', target_modules: ['q_proj', 'down_proj'], feedforward_modules: ['down_proj'], fan_in_fan_out: false,
      init_ia3_weights: true, modules_to_save: null, inference_mode: true,
    }, {
      [`${P}model.layers.0.self_attn.q_proj.ia3_l`]: { shape: [2, 1], data: f32([2, 0.5]) },
      [`${P}model.layers.0.mlp.down_proj.ia3_l`]: { shape: [1, 3], data: f32([1, 2, -1]) },
    });
    await mergeAdapter(join(dir, 'base.safetensors'), join(dir, 'adapter'), join(dir, 'merged'));
    const m = await readAll(join(dir, 'merged', 'model.safetensors'));
    expect([...m['model.layers.0.self_attn.q_proj.weight']!]).toEqual([2, 4, 6, 2, 2.5, 3]);
    expect([...m['model.layers.0.self_attn.q_proj.bias']!]).toEqual([2, -1.5]);
    expect([...m['model.layers.0.mlp.down_proj.weight']!]).toEqual([1, 4, -3, 4, 10, -6]);
    expect([...m['model.layers.0.mlp.down_proj.bias']!]).toEqual([7, 8]); // feed-forward: bias untouched
  });

  it('with fan_in_fan_out (GPT-2 Conv1D, (in, out)) scales the columns; a base without a bias is fine', async () => {
    const d = join(root, 'ia3-gpt2');
    await writeModel(join(d, 'base.safetensors'), { 'h.0.attn.c_attn.weight': { shape: [3, 2], data: W } });
    await writeAdapter(join(d, 'adapter'), { peft_type: 'IA3', target_modules: ['c_attn'], feedforward_modules: [], fan_in_fan_out: true }, {
      [`${P}transformer.h.0.attn.c_attn.ia3_l`]: { shape: [2, 1], data: f32([10, -1]) },
    });
    await mergeAdapter(join(d, 'base.safetensors'), join(d, 'adapter'), join(d, 'merged'));
    const m = await readAll(join(d, 'merged', 'model.safetensors'));
    expect([...m['h.0.attn.c_attn.weight']!]).toEqual([10, -2, 30, -4, 50, -6]);
  });

  it('analyze measures the merged weights: ΔM and ΔD of the hand-worked W′', async () => {
    const res = await analyze({ base: join(dir, 'base.safetensors'), runs: [{ path: join(dir, 'adapter'), label: 'ia3' }], write: false, quiet: true });
    const q = res.rows.find((r) => r.tensor === 'model.layers.0.self_attn.q_proj.weight')!;
    const want = refDecomposition(W, [2, 4, 6, 2, 2.5, 3], 2, 3);
    expect(q.method).toBe('ia3');
    expect(q.delta_m).toBeCloseTo(want.dm, 12);
    expect(q.delta_d).toBeCloseTo(want.dd, 12); // row 0 only grows: cos = 1 there
    const dn = res.rows.find((r) => r.tensor === 'model.layers.0.mlp.down_proj.weight')!;
    const wd = refDecomposition(W, [1, 4, -3, 4, 10, -6], 2, 3);
    expect(dn.delta_m).toBeCloseTo(wd.dm, 12);
    expect(dn.delta_d).toBeCloseTo(wd.dd, 12);
    expect(wd.dd).toBeGreaterThan(0.1);
  });

  it('inspect names the method and each module', async () => {
    const r = await inspect(join(dir, 'adapter'), { base: join(dir, 'base.safetensors') });
    expect(r.adapter?.method).toBe('ia3');
    expect(r.adapter?.modules.map((m) => m.base_tensor)).toContain('model.layers.0.self_attn.q_proj.bias');
    expect(formatInspect(r)).toMatch(/adapter: IA3/u);
  });
});

// ---- LoHa and LoKr: random factors, float64 references ------------------------------------------

const OUT = 4, IN = 6;
const W0 = exactValues(next, OUT * IN);
const rand = (shape: number[]) => ({ shape, data: exactValues(next, shape.reduce((a, b) => a * b, 1), 0.5) });

function matmul(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): number[] {
  const o = new Array<number>(m * n).fill(0);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) o[i * n + j]! += a[i * k + p]! * b[p * n + j]!;
  return o;
}

async function roundTrip(name: string, config: Record<string, unknown>, tensors: TestTensors, want: Record<string, number[]>) {
  const dir = join(root, name);
  await writeModel(join(dir, 'base.safetensors'), {
    'model.layers.0.self_attn.q_proj.weight': { shape: [OUT, IN], data: W0 },
    'model.layers.0.self_attn.v_proj.weight': { shape: [OUT, IN], data: W0 },
  });
  await writeAdapter(join(dir, 'adapter'), config, tensors);
  await mergeAdapter(join(dir, 'base.safetensors'), join(dir, 'adapter'), join(dir, 'merged'));
  const m = await readAll(join(dir, 'merged', 'model.safetensors'));
  const res = await analyze({ base: join(dir, 'base.safetensors'), runs: [{ path: join(dir, 'adapter'), label: name }], write: false, quiet: true });
  for (const [t, w] of Object.entries(want)) {
    expectClose(m[t]!, w);
    const row = res.rows.find((r) => r.tensor === t)!;
    const ref = refDecomposition(W0, w, OUT, IN);
    expect(row.method).toBe(config['peft_type'] === 'LOHA' ? 'loha' : 'lokr');
    expect(Math.abs(row.delta_m - ref.dm)).toBeLessThanOrEqual(1e-6 * ref.dm);
    expect(Math.abs(row.delta_d - ref.dd)).toBeLessThanOrEqual(1e-6 * ref.dd);
    expect(ref.dd).toBeGreaterThan(1e-4);
  }
  // Worker threads (analysis/pool.ts) open the adapter themselves: same numbers.
  const viaWorkers = await analyze({ base: join(dir, 'base.safetensors'), runs: [{ path: join(dir, 'adapter'), label: name }], write: false, quiet: true, workers: 2 });
  expect(viaWorkers.rows.map((x) => [x.tensor, x.delta_m, x.delta_d])).toEqual(res.rows.map((x) => [x.tensor, x.delta_m, x.delta_d]));
  const r = await inspect(join(dir, 'adapter'));
  expect(formatInspect(r)).toContain(`adapter: ${String(config['peft_type'])}`);
  return dir;
}

describe('trainable parameters (report)', () => {
  const t = (tensor: string, rows: number, cols: number) => ({ tensor, rows, cols });
  it('IA³: one per output feature, or per input feature for a feed-forward module; LoHa: 2r(out + in); LoKr: by factorization()', () => {
    const ia3 = { peft_type: 'IA3', target_modules: ['q_proj', 'down_proj'], feedforward_modules: ['down_proj'] };
    expect(trainableParams('ia3', ia3, [t('model.layers.0.self_attn.q_proj.weight', 2, 3), t('model.layers.0.mlp.down_proj.weight', 2, 3), t('model.layers.0.mlp.up_proj.weight', 2, 3)])).toBe(2 + 3);
    const loha = { peft_type: 'LOHA', r: 2, alpha: 4, rank_pattern: { v_proj: 4 }, target_modules: ['q_proj', 'v_proj'] };
    expect(trainableParams('loha', loha, [t('a.q_proj.weight', 4, 6), t('a.v_proj.weight', 4, 6)])).toBe(2 * 2 * 10 + 2 * 4 * 10);
    // 4 = 2·2, 6 = 2·3 (PEFT's factorization): w1 full 2×2 = 4; r = 1 < max(2, 3)/2, so w2 = w2_a (2×1) @ w2_b (1×3): 5.
    expect(trainableParams('lokr', { peft_type: 'LOKR', r: 1, target_modules: ['q_proj'] }, [t('a.q_proj.weight', 4, 6)])).toBe(4 + 5);
    // 64 = 8·8 both ways: r = 8 is not below 8/2, so w1 and w2 are full (64 each); with decompose_both and r = 2 both factored (2·16 each).
    expect(trainableParams('lokr', { peft_type: 'LOKR', r: 8, target_modules: ['q_proj'] }, [t('a.q_proj.weight', 64, 64)])).toBe(128);
    expect(trainableParams('lokr', { peft_type: 'LOKR', r: 2, decompose_both: true, target_modules: ['q_proj'] }, [t('a.q_proj.weight', 64, 64)])).toBe(64);
    // decompose_factor 4: 128 = 4·32 on both sides; r = 2 < 32/2, so w2 = 2·(32 + 32), w1 full 4·4.
    expect(trainableParams('lokr', { peft_type: 'LOKR', r: 2, decompose_factor: 4, target_modules: ['q_proj'] }, [t('a.q_proj.weight', 128, 128)])).toBe(16 + 128);
  });
});

describe('LoHa', () => {
  it('merges (w1_a·w1_b) ⊙ (w2_a·w2_b) · alpha/r, with alpha_pattern per module, and analyze agrees with the float64 merge', async () => {
    const r = 2;
    const q = { a1: rand([OUT, r]), b1: rand([r, IN]), a2: rand([OUT, r]), b2: rand([r, IN]) };
    const v = { a1: rand([OUT, r]), b1: rand([r, IN]), a2: rand([OUT, r]), b2: rand([r, IN]) };
    const t: TestTensors = {};
    for (const [mod, f] of [['q_proj', q], ['v_proj', v]] as const) {
      const k = `${P}model.layers.0.self_attn.${mod}`;
      t[`${k}.hada_w1_a`] = f.a1; t[`${k}.hada_w1_b`] = f.b1; t[`${k}.hada_w2_a`] = f.a2; t[`${k}.hada_w2_b`] = f.b2;
    }
    const ref = (f: typeof q, s: number) => {
      const p1 = matmul(f.a1.data, f.b1.data, OUT, r, IN), p2 = matmul(f.a2.data, f.b2.data, OUT, r, IN);
      return Array.from(W0, (w, i) => w + p1[i]! * p2[i]! * s);
    };
    const dir = await roundTrip('loha', {
      peft_type: 'LOHA', r, alpha: 3, alpha_pattern: { v_proj: 8 }, rank_pattern: {}, target_modules: ['q_proj', 'v_proj'],
      use_effective_conv2d: false, rank_dropout: 0.1, module_dropout: 0.1, init_weights: true,
    }, t, { 'model.layers.0.self_attn.q_proj.weight': ref(q, 3 / 2), 'model.layers.0.self_attn.v_proj.weight': ref(v, 8 / 2) });
    const a = await openAdapter(join(dir, 'adapter'));
    try {
      expect(a.method).toBe('loha');
      expect(a.exact).toBe(false);
      expect(a.modules.map((m) => m.scaling)).toEqual([1.5, 4]);
    } finally {
      await a.close();
    }
  });

  it('refuses a lone Tucker core and a missing factor with typed errors', async () => {
    const base = { [`${P}model.layers.0.self_attn.q_proj.hada_w1_a`]: rand([OUT, 2]), [`${P}model.layers.0.self_attn.q_proj.hada_w1_b`]: rand([2, IN]),
      [`${P}model.layers.0.self_attn.q_proj.hada_w2_a`]: rand([OUT, 2]) };
    const d1 = join(root, 'loha-missing');
    await writeAdapter(d1, { peft_type: 'LOHA', r: 2, alpha: 2 }, base);
    await expect(openAdapter(d1)).rejects.toSatisfy((e: unknown) => isDorascopeError(e, 'E_ADAPTER_KEYS') && e.message.includes('hada_w2_b'));
    const d2 = join(root, 'loha-tucker');
    await writeModel(join(d2, 'base.safetensors'), { 'model.layers.0.self_attn.q_proj.weight': { shape: [OUT, IN], data: W0 } });
    await writeAdapter(join(d2, 'adapter'), { peft_type: 'LOHA', r: 2, alpha: 2 }, { ...base,
      [`${P}model.layers.0.self_attn.q_proj.hada_w2_b`]: rand([2, IN]), [`${P}model.layers.0.self_attn.q_proj.hada_t1`]: rand([2, 2, 1, 1]) });
    await expect(mergeAdapter(join(d2, 'base.safetensors'), join(d2, 'adapter'), join(d2, 'out')))
      .rejects.toSatisfy((e: unknown) => isDorascopeError(e, 'E_ADAPTER_KEYS') && e.message.includes('hada_t2'));
  });
});

describe('LoKr', () => {
  /** kron of (a × c) and (b × d), by the definition: K[i1·b + i2, j1·d + j2] = x[i1, j1] · y[i2, j2]. */
  function kronRef(x: ArrayLike<number>, a: number, c: number, y: ArrayLike<number>, b: number, d: number): number[] {
    const o = new Array<number>(a * b * c * d).fill(0);
    for (let i1 = 0; i1 < a; i1++) for (let j1 = 0; j1 < c; j1++) for (let i2 = 0; i2 < b; i2++) for (let j2 = 0; j2 < d; j2++) {
      o[(i1 * b + i2) * (c * d) + j1 * d + j2] = x[i1 * c + j1]! * y[i2 * d + j2]!;
    }
    return o;
  }

  it('merges kron(w1, w2) · alpha/r with full or factored w1 and w2 (out 4 = 2·2, in 6 = 2·3)', async () => {
    const r = 1;
    // q_proj: lokr_w1 full (2, 2), w2 = lokr_w2_a (2, r) @ lokr_w2_b (r, 3); v_proj: w1 = w1_a @ w1_b, lokr_w2 full.
    const q = { w1: rand([2, 2]), w2a: rand([2, r]), w2b: rand([r, 3]) };
    const v = { w1a: rand([2, r]), w1b: rand([r, 2]), w2: rand([2, 3]) };
    const k = (m: string) => `${P}model.layers.0.self_attn.${m}`;
    const t: TestTensors = {
      [`${k('q_proj')}.lokr_w1`]: q.w1, [`${k('q_proj')}.lokr_w2_a`]: q.w2a, [`${k('q_proj')}.lokr_w2_b`]: q.w2b,
      [`${k('v_proj')}.lokr_w1_a`]: v.w1a, [`${k('v_proj')}.lokr_w1_b`]: v.w1b, [`${k('v_proj')}.lokr_w2`]: v.w2,
    };
    const s = 2 / r;
    const dq = kronRef(q.w1.data, 2, 2, matmul(q.w2a.data, q.w2b.data, 2, r, 3), 2, 3);
    const dv = kronRef(matmul(v.w1a.data, v.w1b.data, 2, r, 2), 2, 2, v.w2.data, 2, 3);
    await roundTrip('lokr', {
      peft_type: 'LOKR', r, alpha: 2, target_modules: ['q_proj', 'v_proj'], decompose_both: false, decompose_factor: -1,
      use_effective_conv2d: false, rank_dropout: 0, module_dropout: 0, rank_dropout_scale: false,
    }, t, {
      'model.layers.0.self_attn.q_proj.weight': Array.from(W0, (w, i) => w + s * dq[i]!),
      'model.layers.0.self_attn.v_proj.weight': Array.from(W0, (w, i) => w + s * dv[i]!),
    });
  });

  it('a Kronecker product of the wrong size is E_SHAPE_MISMATCH naming the tensor', async () => {
    const d = join(root, 'lokr-bad');
    await writeModel(join(d, 'base.safetensors'), { 'model.layers.0.self_attn.q_proj.weight': { shape: [OUT, IN], data: W0 } });
    await writeAdapter(join(d, 'adapter'), { peft_type: 'LOKR', r: 1, alpha: 1 }, {
      [`${P}model.layers.0.self_attn.q_proj.lokr_w1`]: rand([2, 2]), [`${P}model.layers.0.self_attn.q_proj.lokr_w2`]: rand([2, 2]),
    });
    await expect(mergeAdapter(join(d, 'base.safetensors'), join(d, 'adapter'), join(d, 'out')))
      .rejects.toSatisfy((e: unknown) => isDorascopeError(e, 'E_SHAPE_MISMATCH') && e.message.includes('q_proj'));
  });
});

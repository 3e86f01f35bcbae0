/**
 * Statistics never include garbage: NaN/±Inf in the base tensor (not only in a checkpoint) and
 * zero-size tensors give flagged rows, and every statistic's n counts only the rows it used.
 */
import { describe, expect, it } from 'vitest';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { analyze } from '../../src/analysis/analyze.js';
import { decompose } from '../../src/analysis/decompose.js';
import type { DecompositionRow } from '../../src/analysis/table.js';
import { usableRow } from '../../src/analysis/run-summary.js';
import { rng, randn } from '../helpers/random.js';
import { writeAdapter, writeModel, type TestTensors } from '../helpers/models.js';
import { pearsonLoop } from '../helpers/pearson.js';

/** Pearson r of y on x, and Spearman ρ as Pearson on average ranks, written plainly in float64. */
function ranks(v: number[]): number[] {
  return v.map((a) => v.filter((b) => b < a).length + (v.filter((b) => b === a).length + 1) / 2);
}

const MODS = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];
const name = (l: number, m: string) => `model.layers.${l}.self_attn.${m}.weight`;
const [OUT, IN] = [12, 10];

/** A 3-layer base and a full fine-tune of it (every tensor changed by a small finite step). */
function model(seed: number): { base: TestTensors; ft: TestTensors } {
  const next = rng(seed);
  const base: TestTensors = {}, ft: TestTensors = {};
  for (let l = 0; l < 3; l++) {
    for (const m of MODS) {
      const w = randn(next, OUT * IN, 0.1);
      base[name(l, m)] = { shape: [OUT, IN], data: w };
      ft[name(l, m)] = { shape: [OUT, IN], data: w.map((v) => v + 0.02 * (l + 1) * (next() - 0.5)) };
    }
  }
  return { base, ft };
}

function expectStatsOver(rows: DecompositionRow[], s: { n: number; pearson_r: number | null; spearman_rho: number | null }): void {
  const ok = rows.filter((r) => r.flag === '');
  expect(s.n).toBe(ok.length);
  const x = ok.map((r) => r.delta_d), y = ok.map((r) => r.delta_m);
  expect(s.pearson_r).toBeCloseTo(pearsonLoop(x, y), 12);
  expect(s.spearman_rho).toBeCloseTo(pearsonLoop(ranks(x), ranks(y)), 12);
}

describe('non-finite values in the base tensor', () => {
  it('flag the row non_finite (NaN deltas), out of n, r and ρ, whether the checkpoint is finite or not', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ds-nonfinite-'));
    const { base, ft } = model(11);
    base[name(0, 'q_proj')]!.data[7] = NaN;
    base[name(1, 'k_proj')]!.data[0] = Infinity;
    base[name(2, 'v_proj')]!.data[3] = -Infinity;
    ft[name(2, 'o_proj')]!.data[5] = NaN; // a checkpoint's NaN, as before
    await writeModel(join(dir, 'base.safetensors'), base);
    await writeModel(join(dir, 'ft.safetensors'), ft);
    const res = await analyze({ base: join(dir, 'base.safetensors'), runs: [{ path: join(dir, 'ft.safetensors'), label: 'ft' }], write: false, quiet: true, workers: 0 });
    const bad = res.rows.filter((r) => r.flag !== '');
    expect(bad.map((r) => [r.tensor, r.flag]).sort()).toEqual([
      [name(0, 'q_proj'), 'non_finite'], [name(1, 'k_proj'), 'non_finite'], [name(2, 'o_proj'), 'non_finite'], [name(2, 'v_proj'), 'non_finite'],
    ]);
    for (const r of bad) { expect(r.delta_m).toBeNaN(); expect(r.delta_d).toBeNaN(); expect(r.rel_delta_fro).toBeNaN(); }
    for (const r of res.rows.filter(usableRow)) { expect(Number.isFinite(r.delta_m)).toBe(true); expect(Number.isFinite(r.delta_d)).toBe(true); }
    const s = res.summary.runs[0]!;
    expect(s.overall.n).toBe(12 - 4);
    expectStatsOver(res.rows, s.overall);
    expect(s.modules['q_proj']!.n).toBe(2);
    expect(s.modules['o_proj']!.n).toBe(2);
  });

  it('of an adapted tensor: flagged on the adapter fast path and the merge path alike (a guard: both paths already flagged it)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ds-nonfinite-ad-'));
    const next = rng(12);
    const { base } = model(13);
    base[name(1, 'q_proj')]!.data[2] = NaN;
    await writeModel(join(dir, 'base.safetensors'), base);
    const t: TestTensors = {};
    for (let l = 0; l < 3; l++) {
      const p = `base_model.model.${name(l, 'q_proj').replace(/\.weight$/u, '')}`;
      t[`${p}.lora_A.weight`] = { shape: [2, IN], data: randn(next, 2 * IN, 0.3) };
      t[`${p}.lora_B.weight`] = { shape: [OUT, 2], data: randn(next, OUT * 2, 0.05) };
      t[`${p}.lora_magnitude_vector`] = { shape: [OUT], data: Float32Array.from({ length: OUT }, () => 0.3 + 0.1 * next()) };
    }
    await writeAdapter(join(dir, 'ad'), { r: 2, lora_alpha: 4, use_dora: true, target_modules: ['q_proj'] }, t);
    for (const adapterPath of ['fast', 'merge'] as const) {
      const res = await analyze({ base: join(dir, 'base.safetensors'), runs: [{ path: join(dir, 'ad'), label: 'ad' }], write: false, quiet: true, workers: 0, adapterPath, product: 'js', modules: ['q_proj'] });
      expect(res.rows.map((r) => r.flag)).toEqual(['', 'non_finite', '']);
      expect(res.summary.runs[0]!.overall.n).toBe(2);
    }
  });
});

describe('zero-size tensors', () => {
  it('give `empty` rows (NaN deltas) that no statistic counts, for 0 rows and for 0 columns', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ds-empty-'));
    const { base, ft } = model(21);
    for (const t of [base, ft]) {
      t['model.layers.0.mlp.up_proj.weight'] = { shape: [0, IN], data: new Float32Array(0) };
      t['model.layers.0.mlp.down_proj.weight'] = { shape: [OUT, 0], data: new Float32Array(0) };
    }
    await writeModel(join(dir, 'base.safetensors'), base);
    await writeModel(join(dir, 'ft.safetensors'), ft);
    const res = await analyze({ base: join(dir, 'base.safetensors'), runs: [{ path: join(dir, 'ft.safetensors'), label: 'ft' }], write: false, quiet: true, workers: 0 });
    const empty = res.rows.filter((r) => r.flag === 'empty');
    expect(empty.map((r) => r.module).sort()).toEqual(['down_proj', 'up_proj']);
    for (const r of empty) { expect(r.delta_m).toBeNaN(); expect(r.delta_d).toBeNaN(); expect(r.zero_rows).toBe(0); }
    const s = res.summary.runs[0]!;
    expect(s.overall.n).toBe(12);
    expect(Object.keys(s.modules).sort()).toEqual(['k_proj', 'o_proj', 'q_proj', 'v_proj']);
    expectStatsOver(res.rows, s.overall);
  });

  it('decompose flags them itself', () => {
    const z = new Float32Array(0);
    expect(decompose(z, z, 0, 5, 'rows').flag).toBe('empty');
    const d = decompose(z, z, 5, 0, 'rows');
    expect([d.k, d.flag, d.deltaM]).toEqual([5, 'empty', NaN]);
  });
});

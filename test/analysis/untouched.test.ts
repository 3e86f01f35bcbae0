/**
 * Tensors a run did not change: an adapter's untouched modules and a full checkpoint equal to the
 * base bit for bit give ΔM = ΔD = 0 exactly with flag `unchanged`, stay out of every statistic, and
 * an adapter's untouched tensors are never read (neither the base's copy nor a merge).
 */
import { describe, expect, it } from 'vitest';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { analyze, type AnalyzeOptions } from '../../src/analysis/analyze.js';
import { decompose } from '../../src/analysis/decompose.js';
import { openTaskCheckpoint, runTensorTask, type TaskCheckpoint, type TaskOptions } from '../../src/analysis/tensor-task.js';
import { readDecomposition, type DecompositionRow } from '../../src/analysis/table.js';
import { openSource } from '../../src/io/sources/open-source.js';
import { loadAnalysis } from '../../src/report/load.js';
import { buildFigures } from '../../src/report/render.js';
import type { TensorSource } from '../../src/io/types.js';
import { rng, randn } from '../helpers/random.js';
import { writeAdapter, writeModel, type TestTensors } from '../helpers/models.js';
import { pearsonLoop } from '../helpers/pearson.js';

const H = 16, F = 24, R = 4, LAYERS = 2;
const MODULES: Record<string, [string, number, number]> = {
  q_proj: ['self_attn', H, H], k_proj: ['self_attn', H, H], v_proj: ['self_attn', H, H], o_proj: ['self_attn', H, H],
  gate_proj: ['mlp', F, H], up_proj: ['mlp', F, H], down_proj: ['mlp', H, F],
};
const ADAPTED = new Set(['q_proj', 'v_proj']);
const tensorName = (l: number, m: string) => `model.layers.${l}.${MODULES[m]![0]}.${m}.weight`;

/** Pearson r written plainly (float64, two passes), apart from src/analysis/stats.ts. */
/**
 * A 2-layer Llama-like base (q, k, v, o, gate, up, down) and a DoRA run of 3 checkpoints adapting
 * q and v. `poison`: the untouched base tensors hold only NaN, so any read that reaches a
 * decomposition shows up as a `non_finite` row.
 */
async function fixture(poison = false): Promise<{ dir: string; base: TestTensors }> {
  const dir = await mkdtemp(join(tmpdir(), 'ds-untouched-'));
  const next = rng(2024);
  const base: TestTensors = {};
  for (let l = 0; l < LAYERS; l++) {
    for (const [m, [, out, inn]] of Object.entries(MODULES)) {
      const data = poison && !ADAPTED.has(m) ? new Float32Array(out * inn).fill(NaN) : randn(next, out * inn, 0.05);
      base[tensorName(l, m)] = { shape: [out, inn], data };
    }
  }
  await writeModel(join(dir, 'base.safetensors'), base);
  for (let ck = 1; ck <= 3; ck++) {
    const t: TestTensors = {};
    for (let l = 0; l < LAYERS; l++) {
      for (const m of ADAPTED) {
        const p = `base_model.model.${tensorName(l, m).replace(/\.weight$/u, '')}`;
        t[`${p}.lora_A.weight`] = { shape: [R, H], data: randn(next, R * H, 0.2) };
        t[`${p}.lora_B.weight`] = { shape: [H, R], data: randn(next, H * R, 0.01 * ck * (l + 1)) };
        t[`${p}.lora_magnitude_vector`] = { shape: [H], data: Float32Array.from({ length: H }, () => 0.2 + 0.05 * next()) };
      }
    }
    await writeAdapter(join(dir, 'run', `checkpoint-${ck * 10}`), { r: R, lora_alpha: 8, use_dora: true, target_modules: [...ADAPTED] }, t);
  }
  return { dir, base };
}

const run = (dir: string, extra: Partial<AnalyzeOptions> = {}) =>
  analyze({ base: join(dir, 'base.safetensors'), runs: [{ path: join(dir, 'run'), label: 'dora' }], write: false, quiet: true, workers: 0, ...extra });

function expectUnchangedRow(r: DecompositionRow): void {
  expect(r.flag, r.tensor).toBe('unchanged');
  expect(r.delta_m).toBe(0);
  expect(r.delta_d).toBe(0);
  expect(r.rel_delta_fro).toBe(0);
  // Never read: the base's norms are unknown, so the means are NaN (docs/analysis.md).
  expect(r.mean_m0).toBeNaN();
  expect(r.mean_mt).toBeNaN();
}

describe('tensors an adapter run does not change', () => {
  it('give exactly-zero `unchanged` rows, and the run\'s r is the r over the adapted rows alone (fast and merge paths)', async () => {
    const { dir } = await fixture();
    for (const adapterPath of ['fast', 'merge'] as const) {
      const all = await run(dir, { adapterPath, product: 'js' });
      expect(all.rows).toHaveLength(LAYERS * 7 * 3);
      const touched = all.rows.filter((r) => ADAPTED.has(r.module));
      for (const r of all.rows.filter((x) => !ADAPTED.has(x.module))) expectUnchangedRow(r);
      for (const r of touched) {
        expect(r.flag).toBe('');
        expect(r.delta_m).toBeGreaterThan(0);
      }
      const s = all.summary.runs[0]!;
      expect(s.overall.n).toBe(touched.length);
      expect(s.overall.pearson_r).toBeCloseTo(pearsonLoop(touched.map((r) => r.delta_d), touched.map((r) => r.delta_m)), 12);
      expect(Object.keys(s.modules).sort()).toEqual(['q_proj', 'v_proj']);
      expect(s.modules['q_proj']!.n).toBe(LAYERS * 3);
      // The same analysis restricted to q,v gives the same rows and statistics.
      const qv = await run(dir, { adapterPath, product: 'js', modules: ['q_proj', 'v_proj'] });
      expect(qv.rows).toEqual(touched);
      expect(qv.summary.runs[0]!.overall).toEqual(s.overall);
    }
  });

  it('are written to the tables with their flag, and the report plots only the adapted modules', async () => {
    const { dir } = await fixture();
    const out = join(dir, 'out');
    await run(dir, { write: true, out, product: 'js' });
    const back = await readDecomposition(out);
    expect(back.filter((r) => r.flag === 'unchanged')).toHaveLength(LAYERS * 5 * 3);
    const a = await loadAnalysis(out);
    expect([...new Set(a.rows.map((r) => r.module))].sort()).toEqual(['q_proj', 'v_proj']);
    const f2 = buildFigures(a.rows, a.runs).figures.find((f) => f.id === 'fig2')!;
    const menus = f2.layout.updatemenus as { buttons: { label: string }[] }[];
    expect(menus[0]!.buttons.map((b) => b.label)).toEqual(['q_proj', 'v_proj']);
  });

  it('are never read: the base\'s copy is not read (counted through a wrapping source), nor merged', async () => {
    const { dir } = await fixture();
    const inner = await openSource(join(dir, 'base.safetensors'));
    const reads: string[] = [];
    const base: TensorSource = { path: inner.path, kind: inner.kind, metadata: inner.metadata, list: () => inner.list(), info: (n) => inner.info(n), close: () => inner.close(),
      read: (n) => { reads.push(n); return inner.read(n); } };
    const cks: TaskCheckpoint[] = [];
    for (const ck of [10, 20, 30]) cks.push(await openTaskCheckpoint(join(dir, 'run', `checkpoint-${ck}`), base));
    try {
      for (const adapterPath of ['fast', 'merge'] as const) {
        const o: TaskOptions = { perRow: false, adapterPath, product: 'js' };
        reads.length = 0;
        for (let l = 0; l < LAYERS; l++) {
          for (const [m, [, out, inn]] of Object.entries(MODULES)) {
            const res = await runTensorTask(base, cks, tensorName(l, m), [out, inn], o);
            expect(res).toHaveLength(3);
            for (const { d, bytes } of res) {
              expect(d.flag).toBe(ADAPTED.has(m) ? '' : 'unchanged');
              if (!ADAPTED.has(m)) { expect(d.deltaM).toBe(0); expect(d.deltaD).toBe(0); expect(bytes).toBe(0); }
            }
          }
        }
        const adaptedNames = [...Array(LAYERS).keys()].flatMap((l) => [...ADAPTED].map((m) => tensorName(l, m)));
        // Fast path: W0 once per adapted tensor. Merge path: W0 once, plus once per checkpoint's merge.
        const perTensor = adapterPath === 'fast' ? 1 : 1 + cks.length;
        expect(reads.slice().sort()).toEqual(adaptedNames.flatMap((n) => Array<string>(perTensor).fill(n)).sort());
      }
    } finally {
      for (const c of cks) await c.source.close();
      await inner.close();
    }
  });

  it('never reach a decomposition through analyze, with or without workers: NaN-only untouched base tensors still give `unchanged` rows', async () => {
    const { dir } = await fixture(true);
    for (const workers of [0, 1]) {
      const res = await run(dir, { workers });
      for (const r of res.rows.filter((x) => !ADAPTED.has(x.module))) expectUnchangedRow(r);
      expect(res.rows.filter((r) => r.flag === '')).toHaveLength(LAYERS * 2 * 3);
      expect(res.summary.runs[0]!.overall.n).toBe(LAYERS * 2 * 3);
    }
  });

  it('beside a full checkpoint that changes them: the adapter\'s rows stay unchanged, the full checkpoint\'s are measured', async () => {
    const { dir, base } = await fixture();
    // A full fine-tune that changes layer 0's k_proj and leaves every other tensor bit-for-bit equal.
    const next = rng(99);
    const ft: TestTensors = {};
    const k0 = tensorName(0, 'k_proj');
    for (const [n, t] of Object.entries(base)) ft[n] = n === k0 ? { shape: t.shape, data: t.data.map((v) => v + 0.01 * (next() - 0.5)) } : t;
    await writeModel(join(dir, 'ft.safetensors'), ft);
    const res = await analyze({ base: join(dir, 'base.safetensors'), runs: [{ path: join(dir, 'run'), label: 'dora' }, { path: join(dir, 'ft.safetensors'), label: 'ft' }],
      write: false, quiet: true, workers: 0, product: 'js' });
    const k0rows = res.rows.filter((r) => r.tensor === k0);
    expect(k0rows.map((r) => [r.run, r.flag])).toEqual([['dora', 'unchanged'], ['dora', 'unchanged'], ['dora', 'unchanged'], ['ft', '']]);
    for (const r of k0rows.slice(0, 3)) expectUnchangedRow(r);
    const ref = decompose(base[k0]!.data, ft[k0]!.data, H, H, 'rows');
    // The streaming task sums on the WebAssembly kernels, in another order than decompose's loop: float64 rounding apart.
    expect(Math.abs(k0rows[3]!.delta_m - ref.deltaM)).toBeLessThanOrEqual(1e-12 * ref.deltaM);
    expect(Math.abs(k0rows[3]!.delta_d - ref.deltaD)).toBeLessThanOrEqual(1e-12 * ref.deltaD);
    // Every other tensor of the full checkpoint equals the base: exact zeros, flagged, with the base's means.
    const ftRows = res.rows.filter((r) => r.run === 'ft' && r.tensor !== k0);
    expect(ftRows).toHaveLength(LAYERS * 7 - 1);
    for (const r of ftRows) {
      expect(r.flag, r.tensor).toBe('unchanged');
      expect(r.delta_m).toBe(0);
      expect(r.delta_d).toBe(0);
      expect(r.rel_delta_fro).toBe(0);
      const w = base[r.tensor]!;
      const [out, inn] = w.shape as [number, number];
      let sum = 0;
      for (let n = 0; n < out; n++) sum += Math.hypot(...w.data.subarray(n * inn, (n + 1) * inn));
      expect(r.mean_m0).toBeCloseTo(sum / out, 12);
      expect(r.mean_mt).toBe(r.mean_m0);
    }
    expect(res.summary.runs[1]!.overall.n).toBe(1);
  });
});

describe('decompose of a tensor equal to the base bit for bit', () => {
  it('gives ΔM = ΔD = 0 exactly and the flag; one differing bit (−0 for +0) is measured as usual', () => {
    const next = rng(3);
    const w0 = randn(next, 7 * 33, 1);
    w0[5] = 0;
    const d = decompose(w0, w0.slice(), 7, 33, 'rows', true);
    expect([d.deltaM, d.deltaD, d.relDeltaFro, d.flag]).toEqual([0, 0, 0, 'unchanged']);
    expect(d.m0).toBeUndefined();
    const neg = w0.slice();
    neg[5] = -0;
    expect(decompose(w0, neg, 7, 33, 'cols').flag).toBe('');
  });
});

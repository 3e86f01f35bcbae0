import { describe, expect, it } from 'vitest';
import { mkdtemp, readFile } from 'node:fs/promises';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { decompose } from '../../src/analysis/decompose.js';
import { correlate, averageRanks } from '../../src/analysis/stats.js';
import { parseTensorName } from '../../src/analysis/names.js';
import { analyze } from '../../src/analysis/analyze.js';
import { readDecomposition, DECOMPOSITION_COLUMNS } from '../../src/analysis/table.js';
import { main } from '../../src/cli/main.js';
import { isDorascopeError } from '../../src/errors.js';
import { rng, randn } from '../helpers/random.js';
import { writeAdapter, writeModel } from '../helpers/models.js';

const DIFFAI = new URL('../fixtures/diffai/', import.meta.url).pathname;

/** The paper's definition, written plainly over JS arrays of rows (features as rows). */
function reference(w0: number[][], wt: number[][]): { dm: number; dd: number } {
  let dm = 0, dd = 0;
  for (let n = 0; n < w0.length; n++) {
    const a = w0[n]!, b = wt[n]!;
    const na = Math.hypot(...a), nb = Math.hypot(...b);
    const cos = na === 0 && nb === 0 ? 1 : na === 0 || nb === 0 ? 0 : a.reduce((s, v, i) => s + v * b[i]!, 0) / (na * nb);
    dm += Math.abs(nb - na);
    dd += 1 - cos;
  }
  return { dm: dm / w0.length, dd: dd / w0.length };
}

const toRows = (w: Float32Array, r: number, c: number) => Array.from({ length: r }, (_, i) => Array.from(w.subarray(i * c, (i + 1) * c)));
const transpose = (m: number[][]) => m[0]!.map((_, j) => m.map((row) => row[j]!));

describe('decompose (paper §3.2)', () => {
  const next = rng(7);
  const [R, C] = [9, 13];
  const w0 = randn(next, R * C), wt = randn(next, R * C);
  it('matches a plain float64 loop, features as rows and as columns (Conv1D)', () => {
    const ref = reference(toRows(w0, R, C), toRows(wt, R, C));
    const d = decompose(w0, wt, R, C, 'rows');
    expect(d.deltaM).toBeCloseTo(ref.dm, 12);
    expect(d.deltaD).toBeCloseTo(ref.dd, 12);
    const refC = reference(transpose(toRows(w0, R, C)), transpose(toRows(wt, R, C)));
    const dc = decompose(w0, wt, R, C, 'cols');
    expect(dc.k).toBe(C);
    expect(dc.deltaM).toBeCloseTo(refC.dm, 12);
    expect(dc.deltaD).toBeCloseTo(refC.dd, 12);
  });
  it('W0 against itself gives 0 and 0', () => {
    const d = decompose(w0, w0, R, C, 'rows');
    expect(d.deltaM).toBe(0);
    expect(d.deltaD).toBeLessThan(1e-12);
  });
  it('scaling every row by c > 0 gives ΔD = 0 and ΔM = |c − 1|·mean(m0)', () => {
    const c = 1.75;
    const scaled = w0.map((v) => v * c);
    const d = decompose(w0, new Float32Array(scaled), R, C, 'rows');
    expect(d.deltaD).toBeLessThan(1e-7);
    const meanM0 = toRows(w0, R, C).reduce((s, r) => s + Math.hypot(...r), 0) / R;
    expect(d.deltaM).toBeCloseTo(0.75 * meanM0, 6);
    expect(d.shrunkRows).toBe(0);
    expect(decompose(w0, new Float32Array(w0.map((v) => v * 0.5)), R, C, 'rows').shrunkRows).toBe(R);
  });
  it('a rotation within each row keeps ΔM = 0 and gives ΔD = 1 − cos θ', () => {
    const w = new Float32Array([3, 4, 0, 0, 1, 0]); // three rows of two: (3,4), (0,0), (1,0)
    const th = 0.3;
    const rot = new Float32Array(6);
    for (let i = 0; i < 3; i++) {
      const x = w[2 * i]!, y = w[2 * i + 1]!;
      rot[2 * i] = Math.cos(th) * x - Math.sin(th) * y;
      rot[2 * i + 1] = Math.sin(th) * x + Math.cos(th) * y;
    }
    const d = decompose(w, rot, 3, 2, 'rows');
    expect(d.deltaM).toBeLessThan(1e-6);
    // Row 2 is zero in both: cos = 1 by definition; rows 1 and 3 turn by θ.
    expect(d.deltaD).toBeCloseTo((2 * (1 - Math.cos(th))) / 3, 6);
    expect(d.zeroRows).toBe(1);
  });
  it('a row that becomes zero counts with cos = 0; NaN is flagged, not averaged', () => {
    const d = decompose(new Float32Array([1, 0, 0, 1]), new Float32Array([0, 0, 0, 2]), 2, 2, 'rows');
    expect(d.deltaD).toBeCloseTo(0.5, 12); // (1 − 0 + 1 − 1) / 2
    expect(d.deltaM).toBeCloseTo(1, 12); // (|0 − 1| + |2 − 1|) / 2
    expect(d.zeroRows).toBe(1);
    expect(d.shrunkRows).toBe(1); // row 1 went from norm 1 to 0; row 2 grew from 1 to 2
    const bad = decompose(new Float32Array([1, 0]), new Float32Array([NaN, 0]), 1, 2, 'rows');
    expect(bad.nonFinite).toBe(true);
    expect(Number.isNaN(bad.deltaM)).toBe(true);
  });
});

describe('statistics against hand-computed values', () => {
  it('Pearson, slope and intercept for x = 1,2,3; y = 2,4,7', () => {
    // mx = 2, my = 13/3; Sxy = 5, Sxx = 2, Syy = 114/9 → r = 5/√(228/9), slope 2.5, intercept 13/3 − 5.
    const s = correlate([1, 2, 3], [2, 4, 7], 200);
    expect(s.pearson_r).toBeCloseTo(5 / Math.sqrt(228 / 9), 12);
    expect(s.slope).toBeCloseTo(2.5, 12);
    expect(s.intercept).toBeCloseTo(13 / 3 - 5, 12);
    expect(s.spearman_rho).toBeCloseTo(1, 12);
    expect(s.r_ci95![0]).toBeLessThanOrEqual(s.r_ci95![1]);
  });
  it('average ranks for ties, and a perfect negative relation', () => {
    expect(Array.from(averageRanks([10, 20, 20, 30]))).toEqual([1, 2.5, 2.5, 4]);
    const s = correlate([1, 2, 3, 4], [8, 6, 4, 2]);
    expect(s.pearson_r).toBeCloseTo(-1, 12);
    expect(s.slope).toBeCloseTo(-2, 12);
    expect(s.slope_ci95).toEqual([expect.closeTo(-2, 9), expect.closeTo(-2, 9)]);
  });
  it('undefined statistics are null', () => {
    const s = correlate([1, 1, 1], [1, 2, 3]);
    expect(s.pearson_r).toBeNull();
    expect(s.slope).toBeNull();
    expect(correlate([1, 2], [1, 2]).pearson_r).toBeNull();
  });
  it('the same data give the same bootstrap intervals (seeded)', () => {
    const x = [0.1, 0.3, 0.2, 0.5, 0.4, 0.7], y = [1, 2, 2.5, 2, 3.5, 3];
    expect(correlate(x, y)).toEqual(correlate(x, y));
  });
});

describe('tensor names', () => {
  it.each([
    ['model.layers.12.self_attn.q_proj.weight', 12, 'q_proj'],
    ['model.layers.3.mlp.down_proj.weight', 3, 'down_proj'],
    ['transformer.h.5.attn.c_attn.weight', 5, 'c_attn'],
    ['encoder.layer.2.attention.self.query.weight', 2, 'query'],
    ['model.encoder.layers.1.self_attn.v_proj.weight', 1, 'v_proj'],
    ['encoder.block.4.layer.0.SelfAttention.q.weight', 4, 'q'],
    ['vit.encoder.layer.7.attention.attention.key.weight', 7, 'key'],
    ['fc1.weight', -1, 'fc1'],
  ])('%s → layer %i, %s', (name, layer, module) => {
    expect(parseTensorName(name)).toMatchObject({ layer, module });
  });
});

describe('analyze', () => {
  it('the real diffai checkpoint series: every row equals the plain loop on bytes decoded in the test', async () => {
    const out = await mkdtemp(join(tmpdir(), 'ds-an-'));
    const runs = ['checkpoint_epoch_10', 'checkpoint_epoch_50'].map((n) => ({ path: join(DIFFAI, `${n}.safetensors`), label: n }));
    const res = await analyze({ base: join(DIFFAI, 'checkpoint_epoch_0.safetensors'), runs, modulesRegex: '^fc\\d\\.weight$', out, quiet: true });
    expect(res.rows).toHaveLength(6);
    const load = async (n: string) => {
      const bytes = await readFile(join(DIFFAI, `${n}.safetensors`));
      const len = Number(bytes.readBigUInt64LE(0));
      const hdr = JSON.parse(bytes.subarray(8, 8 + len).toString('utf8'));
      return (t: string) => {
        const [b, e] = hdr[t].data_offsets;
        const [r, c] = hdr[t].shape;
        const dv = new DataView(bytes.buffer, bytes.byteOffset + 8 + len + b, e - b);
        return Array.from({ length: r }, (_, i) => Array.from({ length: c }, (_, j) => dv.getFloat32((i * c + j) * 4, true)));
      };
    };
    const base = await load('checkpoint_epoch_0');
    for (const row of res.rows) {
      const ck = await load(row.run);
      const ref = reference(base(row.tensor), ck(row.tensor));
      expect(row.delta_m).toBeCloseTo(ref.dm, 10);
      expect(row.delta_d).toBeCloseTo(ref.dd, 10);
    }
    // The Arrow file reads back with apache-arrow, with the documented columns, order and types.
    const table = tableFromIPC(await readFile(join(out, 'decomposition.arrow')));
    expect(table.schema.fields.map((f) => f.name)).toEqual(DECOMPOSITION_COLUMNS.map(([n]) => n));
    expect(table.schema.fields.map((f) => String(f.type))).toEqual(DECOMPOSITION_COLUMNS.map(([, t]) => ({ dict: 'Dictionary<Int32, Utf8>', 'utf8?': 'Utf8', int32: 'Int32', int64: 'Int64', float64: 'Float64' })[t]));
    expect(table.numRows).toBe(6);
    const back = await readDecomposition(out);
    expect(back.map((r) => r.delta_d)).toEqual(res.rows.map((r) => r.delta_d));
    const csv = (await readFile(join(out, 'decomposition.csv'), 'utf8')).trim().split('\n');
    expect(csv[0]).toBe(DECOMPOSITION_COLUMNS.map(([n]) => n).join(','));
    expect(csv).toHaveLength(7);
    const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'));
    const r10 = res.rows.filter((r) => r.run === 'checkpoint_epoch_10');
    expect(summary.runs[0].overall.n).toBe(3);
    expect(summary.runs[0].overall.slope).toBeCloseTo(correlate(r10.map((r) => r.delta_d), r10.map((r) => r.delta_m), 0).slope!, 12);
  });

  it('LoRA, rsLoRA and DoRA adapter runs agree with analysing their merged weights (merged in the test, float64)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ds-an-ad-'));
    const next = rng(11);
    const [out_, in_, r] = [6, 8, 2];
    const W = randn(next, out_ * in_);
    const names = ['model.layers.0.self_attn.q_proj', 'model.layers.1.self_attn.q_proj'];
    const base: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const n of names) base[`${n}.weight`] = { shape: [out_, in_], data: W.map((v) => v + next() * 0.1) };
    await writeModel(join(dir, 'base.safetensors'), base);
    for (const [label, cfg] of [['lora', { use_rslora: false, use_dora: false }], ['rslora', { use_rslora: true, use_dora: false }], ['dora', { use_rslora: false, use_dora: true }]] as const) {
      const run = join(dir, label);
      const adapterTensors: Record<string, { shape: number[]; data: Float32Array }> = {};
      const merged: Record<string, { shape: number[]; data: Float32Array }> = {};
      const s = cfg.use_rslora ? 4 / Math.sqrt(r) : 4 / r;
      for (const n of names) {
        const A = randn(next, r * in_), B = randn(next, out_ * r), m = Float32Array.from({ length: out_ }, () => 0.5 + next());
        adapterTensors[`base_model.model.${n}.lora_A.weight`] = { shape: [r, in_], data: A };
        adapterTensors[`base_model.model.${n}.lora_B.weight`] = { shape: [out_, r], data: B };
        if (cfg.use_dora) adapterTensors[`base_model.model.${n}.lora_magnitude_vector`] = { shape: [out_], data: m };
        const w0 = base[`${n}.weight`]!.data;
        const V = new Float64Array(out_ * in_);
        for (let i = 0; i < out_; i++) for (let j = 0; j < in_; j++) {
          let acc = 0;
          for (let k = 0; k < r; k++) acc += B[i * r + k]! * A[k * in_ + j]!;
          V[i * in_ + j] = w0[i * in_ + j]! + s * acc;
        }
        if (cfg.use_dora) for (let i = 0; i < out_; i++) {
          let nn = 0;
          for (let j = 0; j < in_; j++) nn += V[i * in_ + j]! ** 2;
          for (let j = 0; j < in_; j++) V[i * in_ + j] = (m[i]! / Math.sqrt(nn)) * V[i * in_ + j]!;
        }
        merged[`${n}.weight`] = { shape: [out_, in_], data: Float32Array.from(V) };
      }
      await writeAdapter(join(run, 'checkpoint-10'), { r, lora_alpha: 4, target_modules: ['q_proj'], ...cfg }, adapterTensors);
      writeFileSync(join(run, 'checkpoint-10', 'trainer_state.json'), '{"global_step": 10, "best_metric": NaN}');
      mkdirSync(join(dir, `${label}-merged`), { recursive: true });
      await writeModel(join(dir, `${label}-merged`, 'model.safetensors'), merged);
      const res = await analyze({ base: join(dir, 'base.safetensors'), runs: [{ path: run, label }, { path: join(dir, `${label}-merged`), label: 'merged' }], write: false, quiet: true });
      const a = res.rows.filter((x) => x.run === label), b = res.rows.filter((x) => x.run === 'merged');
      expect(a).toHaveLength(2);
      expect(a[0]!.method).toBe(cfg.use_dora ? 'dora' : 'lora');
      expect(a[0]!.step).toBe(10);
      for (let i = 0; i < 2; i++) {
        expect(a[i]!.delta_m).toBeCloseTo(b[i]!.delta_m, 6);
        expect(a[i]!.delta_d).toBeCloseTo(b[i]!.delta_d, 6);
      }
      expect(res.summary.runs[0]!.adapter).toMatchObject({ r, use_rslora: cfg.use_rslora, use_dora: cfg.use_dora });
    }
  });

  it('a shape that differs from the base is an error naming the file and tensor; the CLI maps it to exit 1', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ds-an-bad-'));
    await writeModel(join(dir, 'base.safetensors'), { 'model.layers.0.mlp.up_proj.weight': { shape: [2, 3], data: new Float32Array(6).fill(1) } });
    await writeModel(join(dir, 'ck.safetensors'), { 'model.layers.0.mlp.up_proj.weight': { shape: [3, 2], data: new Float32Array(6).fill(1) } });
    await expect(analyze({ base: join(dir, 'base.safetensors'), runs: [{ path: join(dir, 'ck.safetensors') }], write: false, quiet: true }))
      .rejects.toSatisfy((e: unknown) => isDorascopeError(e, 'E_SHAPE_MISMATCH') && e.message.includes('up_proj') && e.message.includes('ck.safetensors'));
    const err: string[] = [];
    const orig = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => (err.push(String(s)), true)) as typeof process.stderr.write;
    let code: number;
    try {
      code = await main(['analyze', '--base', join(dir, 'base.safetensors'), join(dir, 'ck.safetensors'), '--out', join(dir, 'o'), '--quiet']);
    } finally {
      process.stderr.write = orig;
    }
    expect(code).toBe(1);
    expect(err.join('')).toMatch(/E_SHAPE_MISMATCH/);
  });

  it('analyze --report writes report.html with the run labels, through the CLI', async () => {
    const out = await mkdtemp(join(tmpdir(), 'ds-an-rep-'));
    const orig = process.stdout.write.bind(process.stdout);
    process.stdout.write = (() => true) as typeof process.stdout.write;
    let code: number;
    try {
      // The README's order: a --label, then its run as a positional (needs nargs 1 on --label).
      code = await main(['analyze', '--base', join(DIFFAI, 'checkpoint_epoch_0.safetensors'),
        '--label', `late=${join(DIFFAI, 'checkpoint_epoch_50.safetensors')}`, join(DIFFAI, 'checkpoint_epoch_50.safetensors'),
        '--modules-regex', '^fc', '--out', out, '--quiet', '--report']);
    } finally {
      process.stdout.write = orig;
    }
    expect(code).toBe(0);
    const html = await readFile(join(out, 'report.html'), 'utf8');
    expect(html).toContain('late');
    expect((await readDecomposition(out)).map((r) => r.run)).toEqual(['late', 'late', 'late']);
  });
});

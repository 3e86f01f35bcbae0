import { describe, expect, it } from 'vitest';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { adapterDecompose, type SeriesFactors } from '../../src/analysis/exact-adapter-series.js';
import { jsProduct, tfjsProduct, type BaseProduct } from '../../src/compute/base-times-a.js';
import { analyze, type AnalyzeOptions } from '../../src/analysis/analyze.js';
import type { DecompositionRow } from '../../src/analysis/table.js';
import { rng } from '../helpers/random.js';
import { writeAdapter, writeModel } from '../helpers/models.js';

// ---- data like a real fine-tune -------------------------------------------------------------
/** N(0, sd²) by Box–Muller, as float32. */
function normal(next: () => number, n: number, sd: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = sd * Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  return out;
}
/** PEFT's lora_A init: kaiming_uniform_(a=√5) → U(−1/√fan_in, 1/√fan_in). */
function kaiming(next: () => number, r: number, inDim: number): Float32Array {
  const b = 1 / Math.sqrt(inDim);
  return Float32Array.from({ length: r * inDim }, () => (next() * 2 - 1) * b);
}

// ---- the definition, written plainly in float64 (features as rows) ---------------------------
/**
 * ΔM and ΔD of W′ against W0 where feature n of W′ is v_n = w_n + s·Σ_k B[n,k]·A[k,:], rescaled
 * to m_n·v_n/‖v_n‖ for DoRA. 1 − cos is taken as ‖ŵ − v̂‖²/2 (exact in real numbers, no
 * cancellation in float64), |m_t − m_0| directly.
 */
function reference(w0: Float32Array, out: number, inDim: number, f: SeriesFactors): { dm: number; dd: number } {
  let dm = 0, dd = 0;
  const v = new Float64Array(inDim);
  for (let n = 0; n < out; n++) {
    for (let j = 0; j < inDim; j++) {
      let acc = 0;
      for (let k = 0; k < f.r; k++) acc += f.B[n * f.r + k]! * f.A[k * inDim + j]!;
      v[j] = w0[n * inDim + j]! + f.scaling * acc;
    }
    let nw = 0, nv = 0;
    for (let j = 0; j < inDim; j++) { nw += w0[n * inDim + j]! ** 2; nv += v[j]! ** 2; }
    nw = Math.sqrt(nw); nv = Math.sqrt(nv);
    let scale = 1;
    if (f.magnitude) scale = f.magnitude[n]! / nv;
    let mt = Math.abs(scale) * nv;
    if (f.magnitude) mt = Math.abs(f.magnitude[n]!);
    let diff = 0;
    for (let j = 0; j < inDim; j++) diff += (w0[n * inDim + j]! / nw - (scale * v[j]!) / mt) ** 2;
    dm += Math.abs(mt - nw);
    dd += diff / 2;
  }
  return { dm: dm / out, dd: dd / out };
}

function rowNorms2(w0: Float32Array, out: number, inDim: number): Float64Array {
  const ww = new Float64Array(out);
  for (let n = 0; n < out; n++) for (let j = 0; j < inDim; j++) ww[n]! += w0[n * inDim + j]! ** 2;
  return ww;
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

describe('adapter fast path: exact algebra against the float64 definition', () => {
  const out = 192, inDim = 256, r = 8;
  const next = rng(2402);
  const w0 = normal(next, out * inDim, 0.02);
  const ww = rowNorms2(w0, out, inDim);
  const A = kaiming(next, r, inDim);
  const Btrained = normal(next, out * r, 0.01);
  const Btiny = normal(next, out * r, 1e-7);
  const mag = (B: Float32Array, s: number) => {
    // A trained-like DoRA magnitude: ‖v_n‖ perturbed by ±1%.
    const m = new Float32Array(out);
    const f: SeriesFactors = { r, A, B, scaling: s };
    for (let n = 0; n < out; n++) {
      let nv = 0;
      for (let j = 0; j < inDim; j++) {
        let acc = 0;
        for (let k = 0; k < r; k++) acc += B[n * r + k]! * A[k * inDim + j]!;
        nv += (w0[n * inDim + j]! + f.scaling * acc) ** 2;
      }
      m[n] = Math.sqrt(nv) * (1 + 0.01 * (next() * 2 - 1));
    }
    return m;
  };
  const cases: [string, SeriesFactors][] = [
    ['LoRA', { r, A, B: Btrained, scaling: 16 / r }],
    ['rsLoRA', { r, A, B: Btrained, scaling: 16 / Math.sqrt(r) }],
    ['LoRA, tiny B', { r, A, B: Btiny, scaling: 16 / r }],
    ['DoRA', { r, A, B: Btrained, scaling: 16 / r, magnitude: mag(Btrained, 16 / r) }],
    ['DoRA, tiny B', { r, A, B: Btiny, scaling: 16 / r, magnitude: mag(Btiny, 16 / r) }],
  ];

  for (const [engine, product] of [['js', jsProduct], ['tfjs', tfjsProduct]] as [string, BaseProduct][]) {
    it(`${engine} product: LoRA, rsLoRA, DoRA, trained and tiny B, within 1e-6 relative`, async () => {
      // All checkpoints stacked into one product, as the analysis does.
      const R = cases.length * r;
      const stack = new Float32Array(R * inDim);
      cases.forEach(([, f], i) => stack.set(f.A, i * r * inDim));
      const c = await product(w0, stack, out, inDim, R, true);
      cases.forEach(([name, f], i) => {
        const d = adapterDecompose(f, inDim, ww, c, R, i * r);
        const ref = reference(w0, out, inDim, f);
        expect(ref.dd, name).toBeGreaterThan(0);
        expect(rel(d.deltaM, ref.dm), `${name} ΔM ${d.deltaM} vs ${ref.dm}`).toBeLessThan(1e-6);
        expect(rel(d.deltaD, ref.dd), `${name} ΔD ${d.deltaD} vs ${ref.dd}`).toBeLessThan(1e-6);
        expect(d.zeroRows).toBe(0);
      });
    });
  }

  it('zero B gives exactly 0 and 0 for LoRA; DoRA with m = ‖w‖ too', async () => {
    const B = new Float32Array(out * r);
    const c = await jsProduct(w0, A, out, inDim, r, true);
    const d = adapterDecompose({ r, A, B, scaling: 2 }, inDim, ww, c, r, 0);
    expect(d.deltaM).toBe(0);
    expect(d.deltaD).toBe(0);
    const m = Float32Array.from(ww, (x) => Math.sqrt(x));
    const e = adapterDecompose({ r, A, B, scaling: 2, magnitude: m }, inDim, ww, c, r, 0);
    expect(e.deltaD).toBe(0);
    // |m_n − ‖w_n‖| is only the float32 rounding of m.
    expect(e.deltaM).toBeLessThan(1e-8);
  });

  it('DoRA signs and zeros: m < 0 flips the direction, m = 0 is a zero row (cos 0)', async () => {
    const c = await jsProduct(w0, A, out, inDim, r, true);
    const base = cases[3]![1];
    const m = Float32Array.from(base.magnitude!);
    m[0] = -m[0]!; m[1] = 0;
    const d = adapterDecompose({ ...base, magnitude: m }, inDim, ww, c, r, 0, true);
    const ref = reference(w0, out, inDim, { ...base, magnitude: m });
    // The reference's ‖ŵ − v̂‖²/2 for m = 0 divides by 0; row 1 by the zero-row rule instead: 1 − cos = 1.
    expect(d.cos![0]).toBeLessThan(-0.99);
    expect(d.cos![1]).toBe(0);
    expect(d.mt![1]).toBe(0);
    expect(d.zeroRows).toBe(1);
    const refNoRow1 = reference(w0.subarray(2 * inDim), out - 2, inDim, { ...base, B: base.B.subarray(2 * r), magnitude: m.subarray(2) });
    const row0 = 1 - d.cos![0]!;
    expect(rel(d.deltaD, (refNoRow1.dd * (out - 2) + row0 + 1) / out)).toBeLessThan(1e-9);
    expect(Number.isFinite(ref.dm)).toBe(true);
    expect(rel(d.deltaM, ref.dm)).toBeLessThan(1e-9);
  });

  it('NaN in B is flagged, not averaged', async () => {
    const B = Float32Array.from(Btrained);
    B[5] = NaN;
    const c = await jsProduct(w0, A, out, inDim, r, true);
    const d = adapterDecompose({ r, A, B, scaling: 2 }, inDim, ww, c, r, 0);
    expect(d.nonFinite).toBe(true);
    expect(d.deltaM).toBeNaN();
  });

  it('features as columns (GPT-2 Conv1D): the js and tfjs products agree with the float64 loop', async () => {
    // W0 stored (in, out); c[n, j] = Σ_i W0[i, n]·A[j, i].
    const wT = new Float32Array(inDim * out);
    for (let n = 0; n < out; n++) for (let i = 0; i < inDim; i++) wT[i * out + n] = w0[n * inDim + i]!;
    const cRows = await jsProduct(w0, A, out, inDim, r, true);
    for (const p of [jsProduct, tfjsProduct]) {
      const cCols = await p(wT, A, out, inDim, r, false);
      let maxErr = 0, scale = 0;
      for (let i = 0; i < out * r; i++) { maxErr = Math.max(maxErr, Math.abs(cCols[i]! - cRows[i]!)); scale = Math.max(scale, Math.abs(cRows[i]!)); }
      expect(maxErr / scale).toBeLessThan(p === jsProduct ? 1e-12 : 1e-5);
    }
  });
});

// ---- through analyze(): fast path vs merge path vs the definition ---------------------------
describe('analyze: adapter runs by the fast path', () => {
  async function series(opts: { conv1d?: boolean; dora?: boolean; rslora?: boolean; patterns?: boolean }) {
    const dir = await mkdtemp(join(tmpdir(), 'ds-an-fast-'));
    const next = rng(opts.conv1d ? 7 : 9);
    const out = 96, inDim = 64, r = 4;
    const modules = opts.conv1d ? ['transformer.h.0.attn.c_attn', 'transformer.h.1.attn.c_attn'] : ['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj'];
    const w: Record<string, Float32Array> = {};
    const baseT: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const m of modules) {
      w[m] = normal(next, out * inDim, 0.02); // features as rows (out, in)
      let data = w[m];
      let shape = [out, inDim];
      if (opts.conv1d) {
        data = new Float32Array(inDim * out);
        for (let n = 0; n < out; n++) for (let i = 0; i < inDim; i++) data[i * out + n] = w[m][n * inDim + i]!;
        shape = [inDim, out];
      }
      baseT[`${m}.weight`] = { shape, data };
    }
    await writeModel(join(dir, 'base.safetensors'), baseT);
    const expected: Record<string, { dm: number; dd: number }[]> = {};
    const rankPattern = { v_proj: 6 }, alphaPattern = { v_proj: 3 };
    for (let ck = 1; ck <= 3; ck++) {
      const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
      for (const m of modules) {
        const mr = opts.patterns && m.endsWith('v_proj') ? rankPattern.v_proj : r;
        const alpha = opts.patterns && m.endsWith('v_proj') ? alphaPattern.v_proj : 8;
        const s = opts.rslora ? alpha / Math.sqrt(mr) : alpha / mr;
        const A = kaiming(next, mr, inDim), B = normal(next, out * mr, 0.01 * ck);
        const magnitude = opts.dora ? Float32Array.from({ length: out }, () => 0.3 + 0.05 * next()) : undefined;
        tensors[`base_model.model.${m}.lora_A.weight`] = { shape: [mr, inDim], data: A };
        tensors[`base_model.model.${m}.lora_B.weight`] = { shape: [out, mr], data: B };
        if (magnitude) tensors[`base_model.model.${m}.lora_magnitude_vector`] = { shape: [out], data: magnitude };
        (expected[m] ??= []).push(reference(w[m]!, out, inDim, { r: mr, A, B, scaling: s, magnitude }));
      }
      await writeAdapter(join(dir, 'run', `checkpoint-${ck * 10}`), {
        r, lora_alpha: 8, use_dora: opts.dora ?? false, use_rslora: opts.rslora ?? false, fan_in_fan_out: opts.conv1d ?? false,
        target_modules: opts.conv1d ? ['c_attn'] : ['q_proj', 'v_proj'],
        ...(opts.patterns ? { rank_pattern: rankPattern, alpha_pattern: alphaPattern } : {}),
      }, tensors);
    }
    return { dir, modules, expected };
  }

  const run = (dir: string, extra: Partial<AnalyzeOptions>) =>
    analyze({ base: join(dir, 'base.safetensors'), runs: [{ path: join(dir, 'run'), label: 'run' }], write: false, quiet: true, ...extra });

  const variants: [string, Parameters<typeof series>[0]][] = [
    ['LoRA', {}], ['rsLoRA', { rslora: true }], ['DoRA', { dora: true }],
    ['LoRA with rank_pattern/alpha_pattern', { patterns: true }], ['DoRA with rank_pattern/alpha_pattern', { dora: true, patterns: true }],
    ['GPT-2 Conv1D (fan_in_fan_out) LoRA', { conv1d: true }], ['GPT-2 Conv1D (fan_in_fan_out) DoRA', { conv1d: true, dora: true }],
  ];
  for (const [name, opts] of variants) {
    it(`${name}: fast path = float64 definition (1e-6), merge path agrees`, async () => {
      const { dir, modules, expected } = await series(opts);
      const byTensor = (rows: DecompositionRow[], m: string) => rows.filter((x) => x.tensor === `${m}.weight`).sort((a, b) => a.step - b.step);
      for (const product of ['js', 'tfjs'] as const) {
        const fast = await run(dir, { product, perRow: true });
        for (const m of modules) {
          const rows = byTensor(fast.rows, m);
          expect(rows.map((x) => x.step)).toEqual([10, 20, 30]);
          rows.forEach((x, i) => {
            expect(rel(x.delta_m, expected[m]![i]!.dm), `${product} ${m} ΔM`).toBeLessThan(1e-6);
            expect(rel(x.delta_d, expected[m]![i]!.dd), `${product} ${m} ΔD`).toBeLessThan(1e-6);
          });
        }
      }
      const merged = await run(dir, { adapterPath: 'merge' });
      const fast = await run(dir, { product: 'js' });
      for (const m of modules) {
        const a = byTensor(fast.rows, m), b = byTensor(merged.rows, m);
        a.forEach((x, i) => {
          // The merge path rounds W′ to float32; it agrees to that precision.
          expect(rel(x.delta_m, b[i]!.delta_m)).toBeLessThan(1e-4);
          expect(rel(x.delta_d, b[i]!.delta_d)).toBeLessThan(1e-3);
          expect(x.mean_m0).toBeCloseTo(b[i]!.mean_m0, 9);
          expect(rel(x.mean_mt, b[i]!.mean_mt)).toBeLessThan(1e-6);
          expect(rel(x.rel_delta_fro, b[i]!.rel_delta_fro)).toBeLessThan(1e-3);
          expect(x.zero_rows).toBe(b[i]!.zero_rows);
          expect(x.shrunk_rows).toBe(b[i]!.shrunk_rows);
          expect(x.method).toBe(opts.dora ? 'dora' : 'lora');
        });
      }
    });
  }

  it('conv kernels (out, in, kh, kw): fast path = float64 definition over the flattened (in·kh·kw) features, merge path agrees', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ds-an-conv-'));
    const next = rng(77);
    const [out, cin, kh, kw, r] = [24, 8, 3, 3, 4];
    const inDim = cin * kh * kw;
    const name = 'model.layers.0.conv';
    const w0 = normal(next, out * inDim, 0.05);
    await writeModel(join(dir, 'base.safetensors'), { [`${name}.weight`]: { shape: [out, cin, kh, kw], data: w0 } });
    const expected: { dm: number; dd: number }[] = [];
    for (const ck of [1, 2]) {
      const A = kaiming(next, r, inDim), B = normal(next, out * r, 0.05 * ck);
      const magnitude = Float32Array.from({ length: out }, () => 0.5 + next());
      await writeAdapter(join(dir, 'run', `checkpoint-${ck}`), { r, lora_alpha: 4, use_dora: true, target_modules: ['conv'] }, {
        [`base_model.model.${name}.lora_A.weight`]: { shape: [r, cin, kh, kw], data: A },
        [`base_model.model.${name}.lora_B.weight`]: { shape: [out, r, 1, 1], data: B },
        [`base_model.model.${name}.lora_magnitude_vector`]: { shape: [out], data: magnitude },
      });
      expected.push(reference(w0, out, inDim, { r, A, B, scaling: 4 / r, magnitude }));
    }
    const fast = await run(dir, { product: 'js' });
    const merged = await run(dir, { adapterPath: 'merge' });
    expect(fast.rows.map((x) => [x.method, x.rows, x.cols])).toEqual([['dora', out, inDim], ['dora', out, inDim]]);
    fast.rows.forEach((x, i) => {
      expect(rel(x.delta_m, expected[i]!.dm)).toBeLessThan(1e-6);
      expect(rel(x.delta_d, expected[i]!.dd)).toBeLessThan(1e-6);
      expect(rel(x.delta_d, merged.rows[i]!.delta_d)).toBeLessThan(1e-3);
      expect(rel(x.delta_m, merged.rows[i]!.delta_m)).toBeLessThan(1e-4);
    });
  });

  it('analyze takes the fast path: with a tiny update (B ~ 1e-9) it keeps the definition, where W′ in float32 loses δ', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ds-an-tiny-'));
    const next = rng(5);
    const [out, inDim, r] = [64, 48, 4];
    const name = 'model.layers.0.self_attn.q_proj';
    const w0 = normal(next, out * inDim, 0.02);
    await writeModel(join(dir, 'base.safetensors'), { [`${name}.weight`]: { shape: [out, inDim], data: w0 } });
    const A = kaiming(next, r, inDim), B = normal(next, out * r, 1e-9);
    await writeAdapter(join(dir, 'run', 'checkpoint-1'), { r, lora_alpha: 8, target_modules: ['q_proj'] }, {
      [`base_model.model.${name}.lora_A.weight`]: { shape: [r, inDim], data: A },
      [`base_model.model.${name}.lora_B.weight`]: { shape: [out, r], data: B },
    });
    const ref = reference(w0, out, inDim, { r, A, B, scaling: 2 });
    expect(ref.dd).toBeGreaterThan(0);
    const fast = (await run(dir, {})).rows[0]!;
    const merged = (await run(dir, { adapterPath: 'merge' })).rows[0]!;
    expect(rel(fast.delta_m, ref.dm)).toBeLessThan(1e-6);
    expect(rel(fast.delta_d, ref.dd)).toBeLessThan(1e-6);
    // The merge path rounds W0 + δ to float32 (relative step 6e-8, about |δ|/|w| here): its ΔD is off by far more.
    expect(rel(merged.delta_d, ref.dd)).toBeGreaterThan(1e-3);
  });
});

import { afterAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Float64, Int32, RecordBatchFileWriter, RecordBatchStreamWriter, Table, Utf8, makeVector, tableFromIPC, vectorFromArray, type RecordBatch } from 'apache-arrow';
import { loadAnalysis } from '../../src/report/load.js';
import { binFeatures, type FeatureHistograms } from '../../src/report/feature-histograms.js';
import { histogramFigure } from '../../src/report/figures/histograms.js';
import { isDorascopeError } from '../../src/errors.js';
import { writePerRow } from '../../src/analysis/table.js';
import { grid, writeAnalysis, writeFeatureRows } from './helpers.js';
import { rng } from '../helpers/random.js';

describe('per-feature histograms, hand-worked', () => {
  it('bin |m_t − m_0| and 1 − cos of the chosen layer at the last step', async () => {
    const dir = await writeAnalysis(grid('dora', 'dora', 2, ['q_proj'], [5, 9]));
    await writeFeatureRows(dir, [
      { run: 'dora', step: 5, layer: 0, m0: 1, mt: 9, cos: 0 }, // earlier step: sets the edges, not shown
      { run: 'dora', step: 9, layer: 0, m0: 1, mt: 1.5, cos: 0.75 },
      { run: 'dora', step: 9, layer: 0, m0: 2, mt: 1.25, cos: 1 },
      { run: 'dora', step: 9, layer: 1, m0: 2, mt: 2, cos: 0.5 },
    ]);
    // |Δm| ∈ {8, 0.5, 0.75, 0}: 4 bins on [0, 8] → edges 0, 2, 4, 6, 8. 1 − cos ∈ {1, 0.25, 0, 0.5}: edges 0, .25, .5, .75, 1.
    const f = (await binFeatures(join(dir, 'rows.arrow'), 4))!;
    expect(Array.from(f.scales.get('q_proj')!.dm!.edges)).toEqual([0, 2, 4, 6, 8]);
    expect(Array.from(f.scales.get('q_proj')!.dcos!.edges)).toEqual([0, 0.25, 0.5, 0.75, 1]);
    const h = histogramFigure('hist', f);
    expect(h.data.length).toBe(2); // 1 run × 1 module × (|Δm|, 1 − cos)
    // layer 0 (shown first): |Δm| 0.5 and 0.75 in bin 0; 1 − cos 0.25 in bin 1 (edges include their left end), 0 in bin 0.
    expect(h.data.map((t) => t.y)).toEqual([[2, 0, 0, 0, 0], [1, 1, 0, 0, 0]]);
    expect(h.data[0]!.x).toEqual([1, 3, 5, 7, 9]); // centres, then the "above" bar
    expect(h.title).toContain('step 9');
    expect(h.data[0]!.hovertemplate).toBe('run dora<br>layer 0 · q_proj<br>step 9<br>|m_t − m_0| %{customdata}: %{y} features<extra></extra>');
    expect((h.data[0]!.customdata as string[])[0]).toBe('in [0.000, 2.000)');
    // The dropdown's layer 1: |Δm| 0 in bin 0; 1 − cos 0.5 in bin 2.
    const buttons = (h.layout.updatemenus as { buttons: { label: string; args: [{ y: number[][] }, number[]] }[] }[])[0]!.buttons;
    expect(buttons.map((b) => b.label)).toEqual(['layer 0', 'layer 1']);
    expect(buttons[1]!.args[0].y).toEqual([[1, 0, 0, 0, 0], [0, 0, 1, 0, 0]]);
    // loadAnalysis bins the same file with the default bins.
    expect((await loadAnalysis(dir)).features!.rows).toBe(4);
  });

  it('a run name cannot inject markup or a %{…} field into the hover template', async () => {
    const dir = await writeAnalysis(grid('r%{x}<b>', 'dora', 1, ['q_proj'], [1]));
    await writeFeatureRows(dir, [{ run: 'r%{x}<b>', step: 1, layer: 0, m0: 1, mt: 2, cos: 0.5 }]);
    const h = histogramFigure('hist', (await loadAnalysis(dir)).features!);
    expect(String(h.data[0]!.hovertemplate)).toMatch(/^run r&#37;\{x\}&lt;b&gt;<br>/u);
  });

  it('reads rows.arrow as `analyze --per-row` writes it, and the IPC stream format too', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dorascope-hist-'));
    const base = { checkpoint: 'checkpoint-2', step: 2, tensor: 'model.layers.3.self_attn.v_proj.weight', layer: 3, module: 'v_proj' };
    // |Δm| ∈ {0, 1, 3}, 1 − cos ∈ {0, 0.5, 1}; 2 bins each: |Δm| edges 0, 1.5, 3 and 1 − cos edges 0, 0.5, 1.
    await writePerRow(dir, [{ run: 'ft', ...base, row: 0, m0: 1, mt: 1, cos: 1 }, { run: 'ft', ...base, row: 1, m0: 1, mt: 2, cos: 0.5 },
      { run: 'ft', ...base, row: 2, m0: 4, mt: 1, cos: 0 }]);
    const f = (await binFeatures(join(dir, 'rows.arrow'), 2))!;
    expect(f.groups.map((g) => [g.run, g.layer, g.module, g.step, g.rows])).toEqual([['ft', 3, 'v_proj', 2, 3]]);
    expect(Array.from(f.groups[0]!.dm)).toEqual([2, 1, 0, 0]); // 0 and 1 below 1.5; 3 in the last (closed) bin
    expect(Array.from(f.groups[0]!.dcos)).toEqual([1, 2, 0, 0]); // 0.5 and 1 in the upper bin
    const t = tableFromIPC(await readFile(join(dir, 'rows.arrow')));
    await writeFile(join(dir, 'stream.arrow'), RecordBatchStreamWriter.writeAll(t).toUint8Array(true));
    const s = (await binFeatures(join(dir, 'stream.arrow'), 2))!;
    expect(Array.from(s.groups[0]!.dm)).toEqual([2, 1, 0, 0]);
    expect(Array.from(s.groups[0]!.dcos)).toEqual([1, 2, 0, 0]);
  });

  it('no rows.arrow: no histograms', async () => {
    const dir = await writeAnalysis(grid('lora', 'lora', 1, ['q_proj'], [1]));
    expect((await loadAnalysis(dir)).features).toBeNull();
  });
});

// ---- a generated rows.arrow of a few hundred thousand rows, many record batches --------------------------

interface Gen { run: string[]; module: string[]; layer: number[]; step: number[]; m0: number[]; mt: number[]; cos: number[] }

/**
 * 2 runs × 2 modules × 3 layers × 3 steps = 36 groups of `features` rows, written as record batches of
 * `batch` rows (not aligned with the groups, so a group spans batches). v_proj changes 10× more than q_proj;
 * every 4,999th feature is an outlier (×1,000), every 1,009th has cos NaN (a zero row).
 */
async function generate(path: string, features: number, batch: number, seed = 7): Promise<Gen> {
  const rnd = rng(seed);
  const g: Gen = { run: [], module: [], layer: [], step: [], m0: [], mt: [], cos: [] };
  for (const run of ['lora', 'dora']) for (const step of [10, 20, 30]) for (let layer = 0; layer < 3; layer++) for (const module of ['q_proj', 'v_proj']) {
    const scale = (module === 'v_proj' ? 10 : 1) * step / 30;
    for (let k = 0; k < features; k++) {
      const n = g.run.length;
      const m0 = 1 + rnd();
      const d = (rnd() - 0.5) * 0.01 * scale * (n % 4999 === 0 ? 1000 : 1);
      g.run.push(run); g.module.push(module); g.layer.push(layer); g.step.push(step);
      g.m0.push(m0); g.mt.push(m0 + d); g.cos.push(n % 1009 === 0 ? NaN : 1 - rnd() ** 3 * 1e-3 * scale);
    }
  }
  const batches: RecordBatch[] = [];
  for (let a = 0; a < g.run.length; a += batch) {
    const s = <T,>(x: T[]): T[] => x.slice(a, a + batch);
    const f64 = (x: number[]) => makeVector({ type: new Float64(), data: Float64Array.from(s(x)) });
    const i32 = (x: number[]) => makeVector({ type: new Int32(), data: Int32Array.from(s(x)) });
    const t = new Table({ run: vectorFromArray(s(g.run), new Utf8()), checkpoint: vectorFromArray(s(g.step).map((x) => `checkpoint-${x}`), new Utf8()),
      step: i32(g.step), tensor: vectorFromArray(s(g.layer).map((l) => `model.layers.${l}.q_proj.weight`), new Utf8()), layer: i32(g.layer),
      module: vectorFromArray(s(g.module), new Utf8()), row: i32(g.layer), m0: f64(g.m0), mt: f64(g.mt), cos: f64(g.cos) });
    batches.push(...t.batches);
  }
  await writeFile(path, RecordBatchFileWriter.writeAll(batches).toUint8Array(true));
  return g;
}

/** The bin of x: a linear scan over the edges (left-closed, the last bin closed), written apart from bins.ts. */
function scanBin(x: number, edges: ArrayLike<number>): number {
  const B = edges.length - 1;
  if (!Number.isFinite(x)) return B + 1;
  if (x > edges[B]!) return B;
  for (let k = 0; k < B - 1; k++) if (x >= edges[k]! && x < edges[k + 1]!) return k;
  return B - 1;
}

/** Every array anywhere in the figure, with its length. */
function arrays(v: unknown, out: number[] = []): number[] {
  if (Array.isArray(v)) { out.push(v.length); v.forEach((x) => arrays(x, out)); }
  else if (v && typeof v === 'object') Object.values(v).forEach((x) => arrays(x, out));
  return out;
}

describe('per-feature histograms of a large rows.arrow', () => {
  const FEATURES = 8000; // × 36 groups = 288,000 rows
  const BINS = 40;
  let gen: Gen, f: FeatureHistograms;
  const dirs: string[] = []; // ≈ 35 MB of generated files, removed afterwards
  afterAll(async () => { await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))); });

  it('counts equal an independent binning, group by group; totals equal the row count', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dorascope-hist-'));
    dirs.push(dir);
    gen = await generate(join(dir, 'rows.arrow'), FEATURES, 10_007);
    f = (await binFeatures(join(dir, 'rows.arrow'), BINS))!;
    expect(f.rows).toBe(36 * FEATURES);
    expect(f.groups.length).toBe(36);
    const want = new Map<string, { dm: number[]; dcos: number[]; rows: number }>();
    for (let i = 0; i < gen.run.length; i++) {
      const key = `${gen.run[i]}/${gen.module[i]}/${gen.layer[i]}/${gen.step[i]}`;
      let w = want.get(key);
      if (!w) want.set(key, w = { dm: new Array(BINS + 2).fill(0), dcos: new Array(BINS + 2).fill(0), rows: 0 });
      const sc = f.scales.get(gen.module[i]!)!;
      w.dm[scanBin(Math.abs(gen.mt[i]! - gen.m0[i]!), sc.dm!.edges)]!++;
      w.dcos[scanBin(1 - gen.cos[i]!, sc.dcos!.edges)]!++;
      w.rows++;
    }
    let total = 0;
    for (const g of f.groups) {
      const w = want.get(`${g.run}/${g.module}/${g.layer}/${g.step}`)!;
      expect(Array.from(g.dm)).toEqual(w.dm);
      expect(Array.from(g.dcos)).toEqual(w.dcos);
      expect(g.rows).toBe(w.rows);
      total += g.dm.reduce((a, b) => a + b, 0);
      expect(g.dcos.reduce((a, b) => a + b, 0)).toBe(g.rows);
    }
    expect(total).toBe(36 * FEATURES);
    // The outliers went to the "above" bin and NaN cosines to "not finite", not into the bars.
    expect(f.groups.reduce((a, g) => a + g.dm[BINS]!, 0)).toBeGreaterThan(0);
    expect(f.groups.reduce((a, g) => a + g.dcos[BINS + 1]!, 0)).toBe(gen.cos.filter(Number.isNaN).length);
  }, 60_000);

  it('edges: lo = the minimum, hi between the 99.9th percentile and 1/16 above it, ≤ 0.1% above hi', () => {
    for (const module of ['q_proj', 'v_proj']) {
      const idx = gen.module.flatMap((m, i) => (m === module ? [i] : []));
      const values = { dm: idx.map((i) => Math.abs(gen.mt[i]! - gen.m0[i]!)), dcos: idx.map((i) => 1 - gen.cos[i]!).filter(Number.isFinite) };
      for (const quantity of ['dm', 'dcos'] as const) {
        const v = values[quantity].sort((a, b) => a - b);
        const s = f.scales.get(module)![quantity]!;
        const p999 = v[Math.ceil(0.999 * v.length) - 1]!;
        expect(s.lo).toBe(v[0]);
        expect(s.max).toBe(v[v.length - 1]);
        expect(s.hi).toBeGreaterThanOrEqual(p999);
        expect(s.hi).toBeLessThanOrEqual(p999 * (1 + 1 / 16));
        expect(v.filter((x) => x > s.hi).length).toBeLessThanOrEqual(0.001 * v.length);
      }
    }
    // v_proj changes 10× more: its own scale, not q_proj's.
    expect(f.scales.get('v_proj')!.dm!.hi / f.scales.get('q_proj')!.dm!.hi).toBeGreaterThan(5);
  });

  it('the page holds counts and edges only: no array longer than bins + 1, size independent of rows', async () => {
    const h = histogramFigure('hist', f);
    expect(h.data.length).toBe(2 * 2 * 2); // runs × modules × quantities
    expect(Math.max(...arrays(h))).toBeLessThanOrEqual(Math.max(BINS + 1, h.data.length));
    // Layer 0 at step 30 of lora, q_proj: the counts of that group (bins and "above").
    const g = f.groups.find((x) => x.run === 'lora' && x.module === 'q_proj' && x.layer === 0 && x.step === 30)!;
    expect(h.data[0]!.y).toEqual(Array.from(g.dm.subarray(0, BINS + 1)));
    expect(h.data.map((t) => t.visible)).toEqual([true, true, 'legendonly', 'legendonly', true, true, 'legendonly', 'legendonly']);
    // The same groups with 10× fewer rows make a page of nearly the same size.
    const small = await mkdtemp(join(tmpdir(), 'dorascope-hist-'));
    dirs.push(small);
    await generate(join(small, 'rows.arrow'), FEATURES / 10, 997);
    const hs = histogramFigure('hist', (await binFeatures(join(small, 'rows.arrow'), BINS))!);
    const [a, b] = [JSON.stringify(h).length, JSON.stringify(hs).length];
    expect(Math.abs(a - b) / b).toBeLessThan(0.15);
  }, 60_000);
});

// ---- bad files ----------------------------------------------------------------------------------------

const badDirs: string[] = [];
afterAll(async () => { await Promise.all(badDirs.map((d) => rm(d, { recursive: true, force: true }))); });
async function badFile(cols: Record<string, ReturnType<typeof makeVector>>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'dorascope-hist-bad-'));
  badDirs.push(dir);
  await writeFile(join(dir, 'rows.arrow'), RecordBatchFileWriter.writeAll(new Table(cols)).toUint8Array(true));
  return join(dir, 'rows.arrow');
}
const ok = {
  run: vectorFromArray(['a'], new Utf8()), module: vectorFromArray(['q_proj'], new Utf8()),
  layer: makeVector(Int32Array.from([0])), step: makeVector(Int32Array.from([1])),
  m0: makeVector(Float64Array.from([1])), mt: makeVector(Float64Array.from([2])), cos: makeVector(Float64Array.from([0.5])),
};

async function errorOf(p: Promise<unknown>): Promise<Error> {
  try { await p; } catch (e) { return e as Error; }
  throw new Error('expected an error');
}

describe('bad rows.arrow', () => {
  it('a missing column names the file and the column', async () => {
    const { cos: _, ...rest } = ok;
    const path = await badFile(rest);
    const e = await errorOf(binFeatures(path));
    expect(isDorascopeError(e, 'E_ANALYSIS_DIR')).toBe(true);
    expect(e.message).toContain(path);
    expect(e.message).toContain('no column "cos"');
  });

  it('a column of the wrong type names the file, the column and its type', async () => {
    for (const [name, v] of [['layer', vectorFromArray(['0'], new Utf8())], ['m0', vectorFromArray(['1'], new Utf8())],
      ['run', makeVector(Int32Array.from([3]))]] as const) {
      const path = await badFile({ ...ok, [name]: v });
      const e = await errorOf(binFeatures(path));
      expect(isDorascopeError(e, 'E_ANALYSIS_DIR')).toBe(true);
      expect(e.message).toContain(path);
      expect(e.message).toContain(`column "${name}" has type`);
    }
  });

  it('a null layer names the row; a file that is not Arrow names the file', async () => {
    const path = await badFile({ ...ok, layer: vectorFromArray([null], new Int32()) });
    const e = await errorOf(binFeatures(path));
    expect(isDorascopeError(e, 'E_ANALYSIS_DIR')).toBe(true);
    expect(e.message).toBe(`"${path}" row 0: column "layer" is null`);
    await writeFile(path, 'not arrow at all, but long enough to have a footer');
    const e2 = await errorOf(binFeatures(path));
    expect(isDorascopeError(e2, 'E_ANALYSIS_DIR')).toBe(true);
    expect(e2.message).toContain(path);
  });
});

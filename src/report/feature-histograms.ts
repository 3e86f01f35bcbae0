/**
 * Per-feature histograms from rows.arrow (`analyze --per-row`, schema in docs/analysis.md) without holding its
 * rows: two passes, each reading one record batch at a time (positional reads through a FileHandle; arrow-js
 * reads a file-format *stream* whole, so a Node ReadStream would not do).
 *   1. per module and quantity: min, max and a quantile sketch → fixed edges (rule in bins.ts);
 *   2. per (run, layer, module, step) and quantity: counts in those bins.
 * Memory is groups × (bins + 2) counts plus one record batch, whatever the number of rows. The quantities are
 * |m_t − m_0| (absolute, weight units) and 1 − cos(W_t, W_0) of one output feature; their means over features
 * are ΔM and ΔD (DoRA paper §3, Eq. 5).
 */
import { open } from 'node:fs/promises';
import { DataType, RecordBatchReader, type Data, type RecordBatch, type Schema } from 'apache-arrow';
import { DorascopeError, q } from '../errors.js';
import { NOT_FINITE, QuantileSketch, binOf, chooseScale, countsLength, type BinScale } from './bins.js';

export const QUANTITIES = ['dm', 'dcos'] as const;
export type Quantity = typeof QUANTITIES[number];

/** One (run, layer, module, step): `rows` features, counts per quantity (layout in bins.ts: bins, above, not finite). */
export interface FeatureGroup { run: string; layer: number; module: string; step: number; rows: number; dm: Float64Array; dcos: Float64Array }

export interface FeatureHistograms {
  file: string; rows: number; bins: number;
  /** Per module: each quantity's edges (null: no finite value of it in that module). */
  scales: Map<string, Record<Quantity, BinScale | null>>;
  groups: FeatureGroup[];
}

/** Bins per quantity and module when the caller does not say: enough to show a shape, few enough to hover. */
export const DEFAULT_BINS = 50;

const bad = (msg: string, details?: Record<string, unknown>): DorascopeError => new DorascopeError('E_ANALYSIS_DIR', msg, details);

const KEY_STRINGS = ['run', 'module'] as const;
const KEY_INTS = ['layer', 'step'] as const;
const VALUES = ['m0', 'mt', 'cos'] as const;

/** Checks the columns the histograms read, by type (not just presence): a wrong type must not bin garbage. */
function checkSchema(path: string, schema: Schema): void {
  const field = (name: string) => {
    const f = schema.fields.find((x) => x.name === name);
    if (!f) throw bad(`${q(path)} has no column ${q(name)} (rows.arrow columns: ${schema.fields.map((x) => x.name).join(', ')})`, { path, column: name });
    return f.type;
  };
  const wrong = (name: string, type: DataType, want: string): DorascopeError =>
    bad(`${q(path)} column ${q(name)} has type ${String(type)}; expected ${want}`, { path, column: name, type: String(type) });
  for (const n of KEY_STRINGS) {
    const t = field(n);
    if (!(DataType.isUtf8(t) || (DataType.isDictionary(t) && DataType.isUtf8(t.dictionary)))) throw wrong(n, t, 'utf8 (or dictionary of utf8)');
  }
  for (const n of KEY_INTS) {
    const t = field(n);
    if (!DataType.isInt(t)) throw wrong(n, t, 'an integer');
  }
  for (const n of VALUES) {
    const t = field(n);
    // Float16 arrives as raw uint16 bits in arrow-js: refused rather than read as numbers.
    if (!((DataType.isFloat(t) && t.precision !== 0) || DataType.isInt(t))) throw wrong(n, t, 'float64 (or float32, or an integer)');
  }
}

/** A string column of one batch: `same(i)` says row i equals row i − 1 without decoding; `get(i)` decodes. */
interface StrCol { same(i: number): boolean; get(i: number): string }
const utf8 = new TextDecoder();

function strCol(path: string, name: string, d: Data, base: number): StrCol {
  if (d.nullCount > 0) for (let i = 0; i < d.length; i++) if (!d.getValid(i)) throw bad(`${q(path)} row ${base + i}: column ${q(name)} is null`, { path, column: name, row: base + i });
  if (DataType.isDictionary(d.type)) {
    const idx = d.values as unknown as ArrayLike<number>;
    const dict = d.dictionary!;
    return { same: (i) => idx[i] === idx[i - 1], get: (i) => String(dict.get(Number(idx[i]))) };
  }
  const off = d.valueOffsets as Int32Array, bytes = d.values as Uint8Array;
  return {
    same(i) {
      const a = off[i - 1]!, b = off[i]!, e = off[i + 1]!;
      if (e - b !== b - a) return false;
      for (let k = 0; k < b - a; k++) if (bytes[a + k] !== bytes[b + k]) return false;
      return true;
    },
    get: (i) => utf8.decode(bytes.subarray(off[i]!, off[i + 1]!)),
  };
}

/** An integer key column as numbers; nulls refused (a feature must belong to a layer and a step). */
function intCol(path: string, name: string, d: Data, base: number): ArrayLike<number> {
  if (d.nullCount > 0) for (let i = 0; i < d.length; i++) if (!d.getValid(i)) throw bad(`${q(path)} row ${base + i}: column ${q(name)} is null`, { path, column: name, row: base + i });
  const v = d.values as unknown as ArrayLike<number | bigint>;
  return typeof v[0] === 'bigint' ? Float64Array.from(v as ArrayLike<bigint>, Number) : v as ArrayLike<number>;
}

/** A value column as numbers, nulls as NaN (counted as "not finite", like the NaN a zero row's cos gives). */
function numCol(d: Data): ArrayLike<number> {
  const v = d.values as unknown as ArrayLike<number | bigint>;
  const big = typeof v[0] === 'bigint';
  if (d.nullCount === 0 && !big) return v as ArrayLike<number>;
  const out = new Float64Array(d.length);
  for (let i = 0; i < d.length; i++) out[i] = d.nullCount > 0 && !d.getValid(i) ? NaN : Number(v[i]);
  return out;
}

interface Columns { run: StrCol; module: StrCol; layer: ArrayLike<number>; step: ArrayLike<number>; m0: ArrayLike<number>; mt: ArrayLike<number>; cos: ArrayLike<number> }

function columns(path: string, b: RecordBatch, base: number): Columns {
  const child = (n: string): Data => b.data.children[b.schema.fields.findIndex((f) => f.name === n)]!;
  return {
    run: strCol(path, 'run', child('run'), base), module: strCol(path, 'module', child('module'), base),
    layer: intCol(path, 'layer', child('layer'), base), step: intCol(path, 'step', child('step'), base),
    m0: numCol(child('m0')), mt: numCol(child('mt')), cos: numCol(child('cos')),
  };
}

/** Calls `each` with every record batch of the file, one at a time; errors name the file. */
async function eachBatch(path: string, each: (b: RecordBatch, base: number) => void): Promise<number> {
  const fh = await open(path, 'r');
  let rows = 0;
  try {
    let reader: Awaited<ReturnType<typeof RecordBatchReader.from>>;
    try { reader = await RecordBatchReader.from(fh); await reader.open(); } catch (e) {
      throw bad(`${q(path)} is not an Arrow IPC file: ${(e as Error).message}`, { path });
    }
    if (!reader.schema) throw bad(`${q(path)} is not an Arrow IPC file (no schema)`, { path });
    checkSchema(path, reader.schema);
    for (;;) {
      let r: Awaited<ReturnType<typeof reader.next>>;
      try { r = await reader.next(); } catch (e) { throw bad(`${q(path)}: cannot read record batch after row ${rows}: ${(e as Error).message}`, { path, row: rows }); }
      if (r.done) break;
      each(r.value, rows);
      rows += r.value.numRows;
    }
  } finally {
    await fh.close().catch(() => undefined);
  }
  return rows;
}

/** Reads `path` (rows.arrow) twice and bins it; null when the file does not exist (an analysis without --per-row). */
export async function binFeatures(path: string, bins = DEFAULT_BINS): Promise<FeatureHistograms | null> {
  if (!Number.isInteger(bins) || bins < 1) throw new DorascopeError('E_USAGE', `histogram bins must be a positive integer, got ${bins}`);
  try { await (await open(path, 'r')).close(); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw bad(`cannot read ${q(path)}: ${(e as Error).message}`, { path });
  }

  // Pass 1: the edges. The module changes once per tensor, so its sketch is looked up only then.
  const sketches = new Map<string, Record<Quantity, QuantileSketch>>();
  const rows1 = await eachBatch(path, (b, base) => {
    const c = columns(path, b, base);
    let s: Record<Quantity, QuantileSketch> | undefined;
    for (let i = 0; i < b.numRows; i++) {
      if (i === 0 || !c.module.same(i)) {
        const m = c.module.get(i);
        s = sketches.get(m);
        if (!s) sketches.set(m, s = { dm: new QuantileSketch(), dcos: new QuantileSketch() });
      }
      s!.dm.add(Math.abs(c.mt[i]! - c.m0[i]!));
      s!.dcos.add(1 - c.cos[i]!);
    }
  });
  const scales = new Map<string, Record<Quantity, BinScale | null>>();
  for (const [m, s] of sketches) scales.set(m, { dm: chooseScale(s.dm, bins), dcos: chooseScale(s.dcos, bins) });

  // Pass 2: the counts. The group changes once per tensor; a byte comparison with the previous row finds that.
  const groups: FeatureGroup[] = [];
  const byKey = new Map<string, FeatureGroup>();
  const n = countsLength(bins);
  const changed = (): DorascopeError => bad(`${q(path)} changed while it was being read`, { path });
  const rows2 = await eachBatch(path, (b, base) => {
    const c = columns(path, b, base);
    let g: FeatureGroup | undefined, sDm: Float64Array | null = null, sDc: Float64Array | null = null;
    for (let i = 0; i < b.numRows; i++) {
      if (i === 0 || !c.run.same(i) || !c.module.same(i) || c.layer[i] !== c.layer[i - 1] || c.step[i] !== c.step[i - 1]) {
        const run = c.run.get(i), module = c.module.get(i), layer = c.layer[i]!, step = c.step[i]!;
        const key = `${run}\u0000${module}\u0000${layer}\u0000${step}`;
        g = byKey.get(key);
        if (!g) {
          g = { run, layer, module, step, rows: 0, dm: new Float64Array(n), dcos: new Float64Array(n) };
          byKey.set(key, g);
          groups.push(g);
        }
        const sc = scales.get(module);
        if (!sc) throw changed();
        sDm = sc.dm?.edges ?? null; sDc = sc.dcos?.edges ?? null;
      }
      g!.rows++;
      const dm = Math.abs(c.mt[i]! - c.m0[i]!), dc = 1 - c.cos[i]!;
      const kDm = sDm ? binOf(dm, sDm, bins) : bins + NOT_FINITE, kDc = sDc ? binOf(dc, sDc, bins) : bins + NOT_FINITE;
      if (kDm < 0 || kDc < 0) throw changed();
      g!.dm[kDm]!++;
      g!.dcos[kDc]!++;
    }
  });
  if (rows1 !== rows2) throw changed();
  return { file: path, rows: rows2, bins, scales, groups };
}

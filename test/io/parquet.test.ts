/**
 * The Parquet tables read back by another program: DuckDB (its own C++ Parquet reader, not
 * parquet-wasm's) must see the rows of the Arrow file, value for value, with the same types, and
 * the per-row table in row groups of at most PER_ROW_BATCH rows.
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { tableFromIPC, type Table } from 'apache-arrow';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PER_ROW_BATCH, PerRowWriter, writeDecomposition, type DecompositionRow, type PerRowRecord } from '../../src/analysis/table.js';

let dir: string | undefined;
let con: DuckDBConnection;
beforeAll(async () => { con = await (await DuckDBInstance.create(':memory:')).connect(); });
afterAll(() => con.closeSync());
afterEach(async () => { if (dir) await rm(dir, { recursive: true, force: true }); dir = undefined; });

const sqlPath = (p: string): string => `'${p.replace(/'/gu, "''")}'`;
async function query(sql: string): Promise<Record<string, unknown>[]> {
  return (await con.runAndReadAll(sql)).getRowObjects() as Record<string, unknown>[];
}

/** DuckDB's name for an Arrow type: what `describe` must print for the Parquet column. */
function duckType(arrowType: string): string {
  if (arrowType === 'Utf8' || arrowType.startsWith('Dictionary<')) return 'VARCHAR';
  return ({ Int32: 'INTEGER', Int64: 'BIGINT', Float64: 'DOUBLE' } as Record<string, string>)[arrowType] ?? `? ${arrowType}`;
}

/** Every row of an Arrow file as plain values (bigint → number, as DuckDB's BIGINT is compared below). */
function arrowRows(t: Table): Record<string, unknown>[] {
  return t.toArray().map((r) => Object.fromEntries(Object.entries((r as { toJSON(): Record<string, unknown> }).toJSON()).map(([k, v]) => [k, typeof v === 'bigint' ? Number(v) : v])));
}

async function expectSameTable(arrowPath: string, parquetPath: string): Promise<Table> {
  const t = tableFromIPC(await readFile(arrowPath));
  const described = await query(`describe select * from read_parquet(${sqlPath(parquetPath)})`);
  expect(described.map((d) => [d['column_name'], d['column_type']])).toEqual(t.schema.fields.map((f) => [f.name, duckType(String(f.type))]));
  const back = (await query(`select * from read_parquet(${sqlPath(parquetPath)})`))
    .map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'bigint' ? Number(v) : v])));
  expect(back).toEqual(arrowRows(t));
  return t;
}

const row = (over: Partial<DecompositionRow>): DecompositionRow => ({
  run: 'lora', method: 'lora', checkpoint: 'checkpoint-10', step: 10, module: 'q_proj', layer: 0, tensor: 'model.layers.0.self_attn.q_proj.weight',
  rows: 4, cols: 3, delta_m: 0.25, delta_d: 0.001, zero_rows: 0, shrunk_rows: 1, rel_delta_fro: 0.1, mean_m0: 1.5, mean_mt: 1.25, flag: '', ...over,
});

describe('Parquet tables, read by DuckDB', () => {
  it('decomposition: the Arrow rows and types, null flags (also in the CSV), dictionary strings', async () => {
    dir = await mkdtemp(join(tmpdir(), 'dorascope-parquet-'));
    const rows = [
      row({}),
      row({ run: 'ft', method: 'ft', layer: 1, tensor: 'model.layers.1.self_attn.q_proj.weight', delta_m: -0.5, delta_d: 0.25 }),
      row({ checkpoint: 'checkpoint-20', step: 20, module: 'v_proj', tensor: 'model.layers.0.self_attn.v_proj.weight', delta_m: 0, delta_d: 0, flag: 'unchanged' }),
      row({ delta_m: Number.NaN, delta_d: Number.NaN, flag: 'non_finite', run: 'run, "quoted"' }),
    ];
    await writeDecomposition(dir, rows);
    expect((await readdir(dir)).sort()).toEqual(['decomposition.arrow', 'decomposition.csv', 'decomposition.parquet']);
    const t = await expectSameTable(join(dir, 'decomposition.arrow'), join(dir, 'decomposition.parquet'));
    expect(t.getChild('flag')!.nullCount).toBe(2);
    for (const name of ['run', 'method', 'checkpoint', 'module', 'tensor']) expect(String(t.schema.fields.find((f) => f.name === name)!.type)).toBe('Dictionary<Int32, Utf8>');
    const flags = await query(`select flag from read_parquet(${sqlPath(join(dir, 'decomposition.parquet'))})`);
    expect(flags.map((f) => f['flag'])).toEqual([null, null, 'unchanged', 'non_finite']);
    // The CSV twin: an empty cell, which DuckDB (like pandas and polars) reads as missing.
    const csv = await query(`select flag, run from read_csv(${sqlPath(join(dir, 'decomposition.csv'))}, header = true)`);
    expect(csv.map((f) => f['flag'])).toEqual([null, null, 'unchanged', 'non_finite']);
    expect(csv[3]!['run']).toBe('run, "quoted"');
  });

  it('--format parquet writes the Parquet table only', async () => {
    dir = await mkdtemp(join(tmpdir(), 'dorascope-parquet-'));
    await writeDecomposition(dir, [row({})], ['parquet']);
    expect(await readdir(dir)).toEqual(['decomposition.parquet']);
    expect(await query(`select count(*)::INTEGER n from read_parquet(${sqlPath(join(dir, 'decomposition.parquet'))})`)).toEqual([{ n: 1 }]);
  });

  it('rows.parquet: streamed in row groups of PER_ROW_BATCH rows, equal to rows.arrow', async () => {
    dir = await mkdtemp(join(tmpdir(), 'dorascope-parquet-'));
    const record = (i: number): PerRowRecord => ({ run: `run${i % 2}`, checkpoint: `checkpoint-${i % 3}`, step: 10 * (i % 3), tensor: `t${i % 5}`, layer: i % 5, module: 'q_proj', row: i, m0: i / 3, mt: i / 7, cos: Math.cos(i) });
    const vocabulary = { run: ['run0', 'run1'], checkpoint: ['checkpoint-0', 'checkpoint-1', 'checkpoint-2'], tensor: ['t0', 't1', 't2', 't3', 't4'], module: ['q_proj'] };
    const w = await PerRowWriter.open(dir, vocabulary, ['arrow', 'parquet']);
    const n = PER_ROW_BATCH + 3000;
    w.add(Array.from({ length: 2000 }, (_, i) => record(i)));
    w.add(Array.from({ length: n - 2000 }, (_, i) => record(2000 + i)));
    expect(await readdir(dir)).not.toContain('rows.parquet');
    await w.commit();
    expect((await readdir(dir)).sort()).toEqual(['rows.arrow', 'rows.parquet']);
    const p = sqlPath(join(dir, 'rows.parquet'));
    const groups = await query(`select row_group_id, max(row_group_num_rows)::INTEGER n from parquet_metadata(${p}) group by row_group_id order by row_group_id`);
    // Batches fill a row group up to PER_ROW_BATCH rows, then it is flushed: the writer holds one at most.
    expect(groups.map((g) => g['n'])).toEqual([PER_ROW_BATCH, 3000]);
    // Sums computed here in float64 from the same records, independently of both files.
    let m0 = 0, cos = 0;
    for (let i = 0; i < n; i++) { m0 += record(i).m0; cos += record(i).cos; }
    const [agg] = await query(`select count(*)::INTEGER n, sum(m0) m0, sum(cos) cos, count(distinct tensor)::INTEGER tensors from read_parquet(${p})`);
    expect(agg!['n']).toBe(n);
    expect(agg!['m0'] as number).toBeCloseTo(m0, 6);
    expect(agg!['cos'] as number).toBeCloseTo(cos, 6);
    expect(agg!['tensors']).toBe(5);
    await expectSameTable(join(dir, 'rows.arrow'), join(dir, 'rows.parquet'));
  });

  it('rows.parquet without records still has the schema; abort leaves nothing', async () => {
    dir = await mkdtemp(join(tmpdir(), 'dorascope-parquet-'));
    const vocabulary = { run: [], checkpoint: [], tensor: [], module: [] };
    const w = await PerRowWriter.open(dir, vocabulary, ['arrow', 'parquet']);
    await w.commit();
    await expectSameTable(join(dir, 'rows.arrow'), join(dir, 'rows.parquet'));
    await rm(join(dir, 'rows.parquet'));
    await rm(join(dir, 'rows.arrow'));
    const a = await PerRowWriter.open(dir, { run: ['r'], checkpoint: ['c'], tensor: ['t'], module: ['m'] }, ['arrow', 'parquet']);
    a.add([{ run: 'r', checkpoint: 'c', step: 1, tensor: 't', layer: 0, module: 'm', row: 0, m0: 1, mt: 1, cos: 1 }]);
    await a.abort();
    expect(await readdir(dir)).toEqual([]);
  });
});

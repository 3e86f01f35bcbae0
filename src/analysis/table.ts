/**
 * The analysis tables: `decomposition.arrow` (Arrow IPC file format, which pandas
 * `read_feather`, polars and DuckDB read) and the same rows as CSV. Column order and types are
 * part of the public contract (README, "Output schema").
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Float64, Int32, Table, Utf8, makeVector, tableFromIPC, tableToIPC, vectorFromArray } from 'apache-arrow';
import { DorascopeError, q } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';

export interface DecompositionRow {
  run: string;
  method: string;
  checkpoint: string;
  step: number;
  module: string;
  layer: number;
  tensor: string;
  rows: number;
  cols: number;
  delta_m: number;
  delta_d: number;
  zero_rows: number;
  rel_delta_fro: number;
  mean_m0: number;
  mean_mt: number;
  flag: string;
}

export interface PerRowRecord {
  run: string; checkpoint: string; step: number; tensor: string; layer: number; module: string;
  row: number; m0: number; mt: number; cos: number;
}

type ColType = 'utf8' | 'int32' | 'float64';

export const DECOMPOSITION_COLUMNS: ReadonlyArray<readonly [keyof DecompositionRow, ColType]> = [
  ['run', 'utf8'], ['method', 'utf8'], ['checkpoint', 'utf8'], ['step', 'int32'], ['module', 'utf8'],
  ['layer', 'int32'], ['tensor', 'utf8'], ['rows', 'int32'], ['cols', 'int32'], ['delta_m', 'float64'],
  ['delta_d', 'float64'], ['zero_rows', 'int32'], ['rel_delta_fro', 'float64'], ['mean_m0', 'float64'],
  ['mean_mt', 'float64'], ['flag', 'utf8'],
];

export const PER_ROW_COLUMNS: ReadonlyArray<readonly [keyof PerRowRecord, ColType]> = [
  ['run', 'utf8'], ['checkpoint', 'utf8'], ['step', 'int32'], ['tensor', 'utf8'], ['layer', 'int32'],
  ['module', 'utf8'], ['row', 'int32'], ['m0', 'float64'], ['mt', 'float64'], ['cos', 'float64'],
];

function toTable<T>(rows: readonly T[], columns: ReadonlyArray<readonly [keyof T, ColType]>): Table {
  const cols: Record<string, ReturnType<typeof makeVector>> = {};
  for (const [name, type] of columns) {
    const values = rows.map((r) => r[name]);
    cols[name as string] = type === 'utf8'
      ? vectorFromArray(values as string[], new Utf8())
      : type === 'int32'
        ? makeVector({ type: new Int32(), data: Int32Array.from(values as number[]) })
        : makeVector({ type: new Float64(), data: Float64Array.from(values as number[]) });
  }
  return new Table(cols);
}

function csvField(v: unknown): string {
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : String(v);
  const s = String(v);
  return /[",\n\r]/u.test(s) ? `"${s.replace(/"/gu, '""')}"` : s;
}

export function toCsv<T>(rows: readonly T[], columns: ReadonlyArray<readonly [keyof T, ColType]>): string {
  const lines = [columns.map(([n]) => String(n)).join(',')];
  for (const r of rows) lines.push(columns.map(([n]) => csvField(r[n])).join(','));
  return `${lines.join('\n')}\n`;
}

export async function writeDecomposition(dir: string, rows: readonly DecompositionRow[]): Promise<void> {
  await writeFileAtomic(join(dir, 'decomposition.arrow'), tableToIPC(toTable(rows, DECOMPOSITION_COLUMNS), 'file'));
  await writeFileAtomic(join(dir, 'decomposition.csv'), toCsv(rows, DECOMPOSITION_COLUMNS));
}

export async function writePerRow(dir: string, rows: readonly PerRowRecord[]): Promise<void> {
  await writeFileAtomic(join(dir, 'rows.arrow'), tableToIPC(toTable(rows, PER_ROW_COLUMNS), 'file'));
}

/** Loads `DIR/decomposition.arrow` into plain rows (for notebooks and scripts). */
export async function readDecomposition(dir: string): Promise<DecompositionRow[]> {
  const path = join(dir, 'decomposition.arrow');
  let table: Table;
  try {
    table = tableFromIPC(await readFile(path));
  } catch (e) {
    throw new DorascopeError('E_ANALYSIS_DIR', `cannot read ${q(path)}: ${(e as Error).message}`, { path }, { cause: e });
  }
  const out: DecompositionRow[] = [];
  for (const r of table.toArray() as Array<Record<string, unknown>>) {
    const row = {} as Record<string, unknown>;
    for (const [name, type] of DECOMPOSITION_COLUMNS) {
      const v = r[name];
      row[name] = type === 'utf8' ? String(v ?? '') : Number(v);
    }
    out.push(row as unknown as DecompositionRow);
  }
  return out;
}

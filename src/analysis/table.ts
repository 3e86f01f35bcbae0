/**
 * The analysis tables: `decomposition.arrow` (Arrow IPC file format, which pandas
 * `read_feather`, polars and DuckDB read) and the same rows as CSV. Column order and types are
 * part of the public contract (docs/analysis.md, "Output schema").
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Float64, Int32, Int64, RecordBatchFileWriter, Table, Utf8, makeVector, tableFromIPC, tableToIPC, vectorFromArray } from 'apache-arrow';
import { DorascopeError, q } from '../errors.js';
import { csvStringCell } from '../io/escape.js';
import { openAtomic, writeFileAtomic, type AtomicFile } from '../io/atomic.js';
import { writeError } from '../io/write-error.js';

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
  shrunk_rows: number;
  rel_delta_fro: number;
  mean_m0: number;
  mean_mt: number;
  /** '' or why no statistic may use the row: `empty`, `non_finite`, `unchanged` (decompose.ts `RowFlag`). */
  flag: string;
}

export interface PerRowRecord {
  run: string; checkpoint: string; step: number; tensor: string; layer: number; module: string;
  row: number; m0: number; mt: number; cos: number;
}

// `step` is int64: a Trainer's global_step may pass 2^31 (and int32 would wrap it silently).
// Steps are JS numbers, exact up to 2^53; larger ones are refused where they are read.
type ColType = 'utf8' | 'int32' | 'int64' | 'float64';

export const DECOMPOSITION_COLUMNS: ReadonlyArray<readonly [keyof DecompositionRow, ColType]> = [
  ['run', 'utf8'], ['method', 'utf8'], ['checkpoint', 'utf8'], ['step', 'int64'], ['module', 'utf8'],
  ['layer', 'int32'], ['tensor', 'utf8'], ['rows', 'int32'], ['cols', 'int32'], ['delta_m', 'float64'],
  ['delta_d', 'float64'], ['zero_rows', 'int32'], ['shrunk_rows', 'int32'], ['rel_delta_fro', 'float64'], ['mean_m0', 'float64'],
  ['mean_mt', 'float64'], ['flag', 'utf8'],
];

export const PER_ROW_COLUMNS: ReadonlyArray<readonly [keyof PerRowRecord, ColType]> = [
  ['run', 'utf8'], ['checkpoint', 'utf8'], ['step', 'int64'], ['tensor', 'utf8'], ['layer', 'int32'],
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
        : type === 'int64'
          ? makeVector({ type: new Int64(), data: BigInt64Array.from(values as number[], (v) => BigInt(v)) })
          : makeVector({ type: new Float64(), data: Float64Array.from(values as number[]) });
  }
  return new Table(cols);
}

function csvField(v: unknown): string {
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : String(v);
  return csvStringCell(String(v)); // formula-looking strings neutralised (OWASP)
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

/** Rows per record batch of rows.arrow: readers (the report's histograms) hold one batch at a time. */
export const PER_ROW_BATCH = 65_536;

/**
 * `DIR/rows.arrow` written as the analysis goes, one or more record batches per
 * tensor, so the per-feature records never sit in memory all at once (a 70B
 * model has ~10^8 of them). The Arrow IPC file goes to a temporary file beside
 * the destination and appears only at `commit` (an interrupted run leaves none).
 */
export class PerRowWriter {
  private wrote = false;
  /** The first failed write (a full disk): once the drain stops, the writer's queue is closed. */
  private failure: unknown;
  private constructor(private readonly file: AtomicFile, private readonly writer: RecordBatchFileWriter, private readonly drained: Promise<void>) {
    drained.catch((e: unknown) => { this.failure ??= e; });
  }

  static async open(dir: string): Promise<PerRowWriter> {
    const file = await openAtomic(join(dir, 'rows.arrow'));
    const writer = new RecordBatchFileWriter();
    // The writer is an async byte queue: drain it to the file as batches arrive.
    const drained = (async () => {
      for await (const chunk of writer) await file.fh.write(chunk);
    })();
    drained.catch(() => undefined); // surfaced by commit
    return new PerRowWriter(file, writer, drained);
  }

  /** Appends records (any number; split into batches of PER_ROW_BATCH rows). */
  add(rows: readonly PerRowRecord[]): void {
    // Report the write that failed (ENOSPC…), not the closed queue it left behind.
    if (this.failure !== undefined) throw writeError(this.file.path, this.failure);
    try {
      for (let i = 0; i < rows.length; i += PER_ROW_BATCH) {
        for (const b of toTable(rows.slice(i, i + PER_ROW_BATCH), PER_ROW_COLUMNS).batches) this.writer.write(b);
        this.wrote = true;
      }
    } catch (e) {
      throw writeError(this.file.path, this.failure ?? e);
    }
  }

  async commit(): Promise<void> {
    // An analysis without per-feature rows still gets a valid file with the schema.
    try {
      if (this.failure !== undefined) throw this.failure;
      if (!this.wrote) this.writer.write(toTable([], PER_ROW_COLUMNS));
      this.writer.finish();
      await this.drained;
    } catch (e) {
      await this.file.abort();
      throw writeError(this.file.path, e);
    }
    await this.file.commit();
  }

  async abort(): Promise<void> {
    this.writer.abort();
    await this.drained.catch(() => undefined);
    await this.file.abort();
  }
}

/** Writes `DIR/rows.arrow` from records in memory (tests, small analyses), in batches of PER_ROW_BATCH. */
export async function writePerRow(dir: string, rows: readonly PerRowRecord[]): Promise<void> {
  const w = await PerRowWriter.open(dir);
  try {
    w.add(rows);
  } catch (e) {
    await w.abort();
    throw e;
  }
  await w.commit();
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

/**
 * The analysis tables: `decomposition` as Arrow IPC file (pandas `read_feather`, polars), Parquet
 * (DuckDB, Spark, pandas) and CSV, with one schema. Column order and types are part of the public
 * contract (docs/analysis.md, "Output schema"). Strings that repeat on every row (run, method,
 * checkpoint, module, tensor) are dictionary columns; a row without a flag has a null `flag` on
 * disk (an empty CSV cell, which pandas and polars read as missing) and `''` in memory.
 */
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Dictionary, Float64, Int32, Int64, RecordBatchFileWriter, RecordBatchReader, Table, Utf8, makeData, makeVector, tableFromIPC, tableToIPC, vectorFromArray, type Vector } from 'apache-arrow';
import { DorascopeError, q } from '../errors.js';
import { csvStringCell } from '../io/escape.js';
import { openAtomic, writeFileAtomic, type AtomicFile } from '../io/atomic.js';
import { writeError } from '../io/write-error.js';
import { ParquetStreamWriter, writeParquetFile } from '../io/parquet.js';
import { TABLE_FORMATS, type TableFormat } from './table-formats.js';

export { parseFormats, TABLE_FORMATS, type TableFormat } from './table-formats.js';

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

/** `dict`: dictionary-encoded utf8 (int32 indices); `utf8?`: utf8 whose empty string is written as null. */
// `step` is int64: a Trainer's global_step may pass 2^31 (and int32 would wrap it silently).
// Steps are JS numbers, exact up to 2^53; larger ones are refused where they are read.
type ColType = 'dict' | 'utf8?' | 'int32' | 'int64' | 'float64';

export const DECOMPOSITION_COLUMNS: ReadonlyArray<readonly [keyof DecompositionRow, ColType]> = [
  ['run', 'dict'], ['method', 'dict'], ['checkpoint', 'dict'], ['step', 'int64'], ['module', 'dict'],
  ['layer', 'int32'], ['tensor', 'dict'], ['rows', 'int32'], ['cols', 'int32'], ['delta_m', 'float64'],
  ['delta_d', 'float64'], ['zero_rows', 'int32'], ['shrunk_rows', 'int32'], ['rel_delta_fro', 'float64'], ['mean_m0', 'float64'],
  ['mean_mt', 'float64'], ['flag', 'utf8?'],
];

export const PER_ROW_COLUMNS: ReadonlyArray<readonly [keyof PerRowRecord, ColType]> = [
  ['run', 'dict'], ['checkpoint', 'dict'], ['step', 'int64'], ['tensor', 'dict'], ['layer', 'int32'],
  ['module', 'dict'], ['row', 'int32'], ['m0', 'float64'], ['mt', 'float64'], ['cos', 'float64'],
];

/**
 * A dictionary fixed before the first batch (the vocabulary is known: run labels, checkpoint and
 * tensor names), so every record batch of a streamed file shares it: the Arrow IPC file format
 * allows no replacement dictionary between batches.
 */
interface FixedDictionary {
  readonly type: Dictionary<Utf8, Int32>;
  readonly values: Vector<Utf8>;
  readonly index: ReadonlyMap<string, number>;
}

/**
 * Dictionary ids are the column's position: apache-arrow otherwise numbers dictionaries from a
 * process-wide counter, and the same rows would give different bytes in a second analysis.
 */
const dictionaryType = (id: number): Dictionary<Utf8, Int32> => new Dictionary(new Utf8(), new Int32(), id);

function fixedDictionary(vocabulary: Iterable<string>, id: number): FixedDictionary {
  const words = [...new Set(vocabulary)];
  return { type: dictionaryType(id), values: vectorFromArray(words, new Utf8()), index: new Map(words.map((w, i) => [w, i])) };
}

function toTable<T>(rows: readonly T[], columns: ReadonlyArray<readonly [keyof T, ColType]>, dicts?: ReadonlyMap<keyof T, FixedDictionary>): Table {
  const cols: Record<string, Vector> = {};
  for (const [c, [name, type]] of columns.entries()) {
    const values = rows.map((r) => r[name]);
    const fixed = dicts?.get(name);
    cols[name as string] = fixed
      ? makeVector(makeData({
        type: fixed.type, length: values.length, dictionary: fixed.values,
        data: Int32Array.from(values as string[], (v) => {
          const i = fixed.index.get(v);
          if (i === undefined) throw new DorascopeError('E_INTERNAL', `${String(name)} ${q(v)} is not in the table's dictionary`);
          return i;
        }),
      }))
      : type === 'dict'
      ? vectorFromArray(values as string[], dictionaryType(c))
      : type === 'utf8?'
      ? vectorFromArray((values as string[]).map((v) => (v === '' ? null : v)), new Utf8())
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

export async function writeDecomposition(dir: string, rows: readonly DecompositionRow[], formats: readonly TableFormat[] = TABLE_FORMATS): Promise<void> {
  const table = toTable(rows, DECOMPOSITION_COLUMNS);
  if (formats.includes('arrow')) await writeFileAtomic(join(dir, 'decomposition.arrow'), tableToIPC(table, 'file'));
  if (formats.includes('parquet')) await writeParquetFile(join(dir, 'decomposition.parquet'), table);
  if (formats.includes('csv')) await writeFileAtomic(join(dir, 'decomposition.csv'), toCsv(rows, DECOMPOSITION_COLUMNS));
}

/** The strings of the per-row table's dictionary columns, known before the first record. */
export interface PerRowVocabulary {
  readonly run: readonly string[];
  readonly checkpoint: readonly string[];
  readonly tensor: readonly string[];
  readonly module: readonly string[];
}

/** Rows per record batch of rows.arrow: readers (the report's histograms) hold one batch at a time. */
export const PER_ROW_BATCH = 65_536;

/**
 * `DIR/rows.arrow` and `DIR/rows.parquet` written as the analysis goes, one or more record batches
 * per tensor (Parquet: row groups of PER_ROW_BATCH rows), so the per-feature records never sit in memory all at once (a
 * 70B model has ~10^8 of them). Each file goes to a temporary file beside the destination and
 * appears only at `commit` (an interrupted run leaves none). No CSV: at 10^8 lines it would help
 * no one.
 */
export class PerRowWriter {
  private wrote = false;
  /** The first failed write of rows.arrow (a full disk): once the drain stops, the writer's queue is closed. */
  private failure: unknown;
  private constructor(
    private readonly arrow: { file: AtomicFile; writer: RecordBatchFileWriter; drained: Promise<void> } | undefined,
    private readonly parquet: ParquetStreamWriter | undefined,
    private readonly dicts: ReadonlyMap<keyof PerRowRecord, FixedDictionary>,
  ) {
    arrow?.drained.catch((e: unknown) => { this.failure ??= e; });
  }

  static async open(dir: string, vocabulary: PerRowVocabulary, formats: readonly TableFormat[] = TABLE_FORMATS): Promise<PerRowWriter> {
    const dicts = new Map<keyof PerRowRecord, FixedDictionary>(
      (['run', 'checkpoint', 'tensor', 'module'] as const).map((k) => [k, fixedDictionary(vocabulary[k], PER_ROW_COLUMNS.findIndex(([n]) => n === k))]));
    let arrow: { file: AtomicFile; writer: RecordBatchFileWriter; drained: Promise<void> } | undefined;
    let parquet: ParquetStreamWriter | undefined;
    try {
      if (formats.includes('arrow')) {
        const file = await openAtomic(join(dir, 'rows.arrow'));
        const writer = new RecordBatchFileWriter();
        // The writer is an async byte queue: drain it to the file as batches arrive.
        const drained = (async () => {
          for await (const chunk of writer) await file.fh.write(chunk);
        })();
        drained.catch(() => undefined); // surfaced by commit
        arrow = { file, writer, drained };
      }
      if (formats.includes('parquet')) parquet = await ParquetStreamWriter.open(join(dir, 'rows.parquet'), toTable([], PER_ROW_COLUMNS, dicts), PER_ROW_BATCH);
    } catch (e) {
      await new PerRowWriter(arrow, parquet, dicts).abort();
      throw e;
    }
    return new PerRowWriter(arrow, parquet, dicts);
  }

  /** Appends records (any number; split into batches of PER_ROW_BATCH rows). */
  add(rows: readonly PerRowRecord[]): void {
    // Report the write that failed (ENOSPC…), not the closed queue it left behind.
    const path = this.arrow?.file.path ?? 'rows.parquet';
    if (this.failure !== undefined) throw writeError(path, this.failure);
    try {
      for (let i = 0; i < rows.length; i += PER_ROW_BATCH) {
        const table = toTable(rows.slice(i, i + PER_ROW_BATCH), PER_ROW_COLUMNS, this.dicts);
        if (this.arrow) for (const b of table.batches) this.arrow.writer.write(b);
        this.parquet?.write(table);
        this.wrote = true;
      }
    } catch (e) {
      throw writeError(path, this.failure ?? e);
    }
  }

  async commit(): Promise<void> {
    if (this.arrow) {
      const { file, writer, drained } = this.arrow;
      try {
        if (this.failure !== undefined) throw this.failure;
        // An analysis without per-feature rows still gets a valid file with the schema.
        if (!this.wrote) writer.write(toTable([], PER_ROW_COLUMNS, this.dicts));
        writer.finish();
        await drained;
      } catch (e) {
        await file.abort();
        await this.parquet?.abort();
        throw writeError(file.path, e);
      }
      await file.commit();
    }
    await this.parquet?.commit();
  }

  async abort(): Promise<void> {
    if (this.arrow) {
      // After a failed write the writer's queue is already closed: nothing is left to abort there.
      try { this.arrow.writer.abort(); } catch { /* closed */ }
      await this.arrow.drained.catch(() => undefined);
      await this.arrow.file.abort();
    }
    await this.parquet?.abort();
  }
}

/** Writes `DIR/rows.arrow` (and .parquet) from records in memory (tests, small analyses), in batches of PER_ROW_BATCH. */
export async function writePerRow(dir: string, rows: readonly PerRowRecord[], formats: readonly TableFormat[] = TABLE_FORMATS): Promise<void> {
  const vocabulary = {
    run: rows.map((r) => r.run), checkpoint: rows.map((r) => r.checkpoint), tensor: rows.map((r) => r.tensor), module: rows.map((r) => r.module),
  };
  const w = await PerRowWriter.open(dir, vocabulary, formats);
  try {
    w.add(rows);
  } catch (e) {
    await w.abort();
    throw e;
  }
  await w.commit();
}

/**
 * The records of a `rows.arrow` (PerRowWriter's file), one record batch at a time, so that a file of
 * 10⁸ records is never in memory whole. E_ANALYSIS_DIR names the file when it is missing or is not one.
 */
export async function* readPerRowBatches(path: string): AsyncGenerator<PerRowRecord[]> {
  const bad = (msg: string, e: unknown) => new DorascopeError('E_ANALYSIS_DIR', `${q(path)}: ${msg}: ${(e as Error).message}`, { path }, { cause: e });
  let fh: Awaited<ReturnType<typeof open>>;
  try { fh = await open(path, 'r'); } catch (e) { throw bad('cannot read the per-feature table', e); }
  try {
    let reader: Awaited<ReturnType<typeof RecordBatchReader.from>>;
    try { reader = await RecordBatchReader.from(fh); await reader.open(); } catch (e) { throw bad('not an Arrow IPC file', e); }
    for (;;) {
      let r: Awaited<ReturnType<typeof reader.next>>;
      try { r = await reader.next(); } catch (e) { throw bad('cannot read a record batch', e); }
      if (r.done) break;
      const b = r.value;
      const cols = PER_ROW_COLUMNS.map(([name, type]) => {
        const v = b.getChild(name);
        if (v === null) throw bad(`no column ${q(name)}`, new Error('missing column'));
        return { name, type, data: v.toArray() as ArrayLike<unknown> };
      });
      const out: PerRowRecord[] = [];
      for (let i = 0; i < b.numRows; i++) {
        const rec: Record<string, unknown> = {};
        for (const { name, type, data } of cols) rec[name] = type === 'dict' ? String(data[i]) : Number(data[i]);
        out.push(rec as unknown as PerRowRecord);
      }
      yield out;
    }
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/**
 * Columns every `decomposition.arrow` has had since the first release; the others (`rows`, `cols`,
 * `flag`, …) came later, and a folder written before them still loads, with them absent.
 */
const REQUIRED_COLUMNS: ReadonlySet<keyof DecompositionRow> = new Set([
  'run', 'method', 'checkpoint', 'step', 'module', 'layer', 'tensor', 'delta_m', 'delta_d',
] as const);

/** The rows of a `decomposition.arrow`, and which of the optional columns the file has. */
export interface DecompositionTable {
  readonly path: string;
  readonly rows: DecompositionRow[];
  /** Columns present in the file; an absent number column reads as NaN, an absent text column as ''. */
  readonly columns: ReadonlySet<string>;
}

/**
 * Loads and checks `DIR/decomposition.arrow`: an E_ANALYSIS_DIR error names the file and the
 * missing column or the bad value. Columns are read whole (one typed array each), not row by row.
 */
export async function readDecompositionTable(dir: string): Promise<DecompositionTable> {
  const path = join(dir, 'decomposition.arrow');
  const bad = (msg: string, cause?: unknown) => new DorascopeError('E_ANALYSIS_DIR', msg, { path }, cause === undefined ? undefined : { cause });
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw bad(`${q(path)} is missing (run \`dorascope analyze --out ${dir}\` first)`, e);
    throw bad(`cannot read ${q(path)}: ${(e as Error).message}`, e);
  }
  let table: Table;
  try {
    table = tableFromIPC(bytes);
  } catch (e) {
    throw bad(`${q(path)} is not an Arrow IPC file: ${(e as Error).message}`, e);
  }
  const columns = new Set<string>();
  const values = DECOMPOSITION_COLUMNS.map(([name, type]) => {
    const v = table.getChild(name);
    if (v === null) {
      if (REQUIRED_COLUMNS.has(name)) throw bad(`${q(path)} has no column ${q(name)}`);
    } else {
      columns.add(name);
    }
    return { name, type, data: (v?.toArray() ?? []) as ArrayLike<unknown> };
  });
  const steps = values.find((v) => v.name === 'step')?.data ?? [];
  const rows: DecompositionRow[] = [];
  for (let i = 0; i < table.numRows; i++) {
    const row: Record<string, unknown> = {};
    for (const { name, type, data } of values) {
      const v = data[i];
      // Null flags (and older folders' empty strings) are '' in memory: run-summary.ts usableRow.
      row[name] = type === 'dict' || type === 'utf8?' ? String(v ?? '') : Number(v);
    }
    const r = row as unknown as DecompositionRow;
    if (!Number.isFinite(r.step)) throw bad(`${q(path)} row ${i} (tensor ${q(r.tensor)}): step ${q(String(steps[i]))} is not a number`);
    rows.push(r);
  }
  return { path, rows, columns };
}

/** Loads `DIR/decomposition.arrow` into plain rows (for notebooks and scripts). */
export async function readDecomposition(dir: string): Promise<DecompositionRow[]> {
  return (await readDecompositionTable(dir)).rows;
}

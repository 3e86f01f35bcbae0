/**
 * Parquet output beside the Arrow IPC files, for readers without an Arrow IPC reader (DuckDB
 * offline, pandas without pyarrow's IPC support, Spark). The bytes come from parquet-wasm (the
 * Rust `parquet` crate's ArrowWriter compiled to WebAssembly); the Arrow schema travels inside the
 * file (the `ARROW:schema` key), so pyarrow and polars get the same types back, dictionary
 * columns included.
 *
 * `ParquetStreamWriter` writes record batches as they arrive: the Rust ArrowWriter gathers them
 * into a row group of `rowGroup` rows, flushes it to the file, and so holds one row group in
 * memory at most; the bytes go to a temporary file that appears only at `commit`.
 * parquet-wasm is loaded on first use: its 5 MB of WebAssembly costs nothing to commands that
 * write no Parquet. Its ES module build is used, compiled with the
 * asynchronous `WebAssembly.instantiate` (V8 compiles on background threads); the package's Node
 * entry compiles synchronously, which held the calling thread for about 0.2 s.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tableToIPC, type Table } from 'apache-arrow';
import { openAtomic, writeFileAtomic, type AtomicFile } from './atomic.js';
import { writeError } from './write-error.js';

type ParquetWasm = typeof import('parquet-wasm/esm');
let wasm: Promise<ParquetWasm> | undefined;
const loadWasm = (): Promise<ParquetWasm> => (wasm ??= (async () => {
  const pw = await import('parquet-wasm/esm');
  const bytes = await readFile(createRequire(import.meta.url).resolve('parquet-wasm/esm/parquet_wasm_bg.wasm'));
  await pw.default({ module_or_path: bytes });
  return pw;
})());

/** Snappy (what pandas and DuckDB write by default); at most `rowGroup` rows per row group. */
function properties(pw: ParquetWasm, rowGroup: number) {
  return new pw.WriterPropertiesBuilder().setCompression(pw.Compression.SNAPPY).setMaxRowGroupSize(rowGroup)
    .setCreatedBy('dorascope (parquet-wasm)').build();
}

/** The Parquet bytes of an Arrow table held in memory (one row group per `rowGroup` rows). */
export async function parquetBytes(table: Table, rowGroup = 1 << 20): Promise<Uint8Array> {
  const pw = await loadWasm();
  return pw.writeParquet(pw.Table.fromIPCStream(tableToIPC(table, 'stream')), properties(pw, rowGroup));
}

/** Writes an Arrow table held in memory to `path` as Parquet, atomically. */
export async function writeParquetFile(path: string, table: Table): Promise<void> {
  let bytes: Uint8Array;
  try {
    bytes = await parquetBytes(table);
  } catch (e) {
    throw writeError(path, e);
  }
  await writeFileAtomic(path, bytes);
}

/**
 * A Parquet file written batch by batch. Every batch must have the schema of the first; the file
 * gets that schema even when no batch has rows (`empty`, given at open).
 */
export class ParquetStreamWriter {
  private controller: ReadableStreamDefaultController<unknown> | undefined;
  private drained: Promise<void> | undefined;
  /** The first failed write (a full disk): later batches are refused rather than queued for no reader. */
  private failure: unknown;

  private constructor(private readonly pw: ParquetWasm, private readonly file: AtomicFile, private readonly empty: Table, private readonly rowGroup: number) {}

  /** `empty`: a table with the schema and no rows; `rowGroup`: the most rows per row group. */
  static async open(path: string, empty: Table, rowGroup: number): Promise<ParquetStreamWriter> {
    const pw = await loadWasm();
    return new ParquetStreamWriter(pw, await openAtomic(path), empty, rowGroup);
  }

  /** Appends a batch of rows (to the row group being filled; a full one goes to the file). */
  write(table: Table): void {
    if (this.failure !== undefined) throw writeError(this.file.path, this.failure);
    if (table.numRows === 0) return;
    const batches = this.pw.Table.fromIPCStream(tableToIPC(table, 'stream')).recordBatches();
    if (!this.controller) {
      let ctl!: ReadableStreamDefaultController<unknown>;
      const source = new ReadableStream({ start: (c) => { ctl = c; } }, { highWaterMark: 0 });
      this.controller = ctl;
      // transformParquetStream resolves only once it has read the first batch (the schema comes
      // from it), so the first batch is queued before anything awaits it.
      const out = this.pw.transformParquetStream(source, properties(this.pw, this.rowGroup));
      for (const b of batches) ctl.enqueue(b);
      this.drained = (async () => {
        for await (const chunk of (await out) as ReadableStream<Uint8Array>) await this.file.fh.write(chunk);
      })();
      this.drained.catch((e: unknown) => { this.failure ??= e; }); // surfaced by the next write or commit
      return;
    }
    for (const b of batches) this.controller.enqueue(b);
  }

  async commit(): Promise<void> {
    try {
      if (this.controller) {
        this.controller.close();
        await this.drained;
      } else {
        await this.file.fh.write(await parquetBytes(this.empty));
      }
    } catch (e) {
      await this.file.abort();
      throw writeError(this.file.path, e);
    }
    await this.file.commit();
  }

  async abort(): Promise<void> {
    try { this.controller?.error(new Error('aborted')); } catch { /* already closed */ }
    await this.drained?.catch(() => undefined);
    await this.file.abort();
  }
}

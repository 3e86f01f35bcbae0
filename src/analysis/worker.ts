/**
 * An analysis worker thread (pool.ts): told the base and the checkpoints (its first message), it
 * opens them itself (headers only), then runs tensor tasks (tensor-task.ts) as the main thread
 * sends their names, one at a time, and posts back the decompositions (per-row arrays
 * transferred, not copied); after the tasks, one of them writes the decomposition tables while the
 * main thread computes the statistics. Errors go back as
 * data (code and message) so the main thread rethrows the same DorascopeError.
 */
import { parentPort } from 'node:worker_threads';
import { DorascopeError } from '../errors.js';
import { openSource } from '../io/sources/open-source.js';
import type { TensorSource } from '../io/types.js';
import type { DecompositionRow } from './table.js';
import type { TableFormat } from './table-formats.js';
import { openTaskCheckpoint, runTensorTask, TaskScratch, type TaskCheckpoint, type TaskOptions } from './tensor-task.js';

export interface WorkerInit {
  readonly base: string;
  readonly checkpoints: readonly string[];
  readonly options: TaskOptions;
}

export type WorkerRequest =
  | { readonly init: WorkerInit }
  | { readonly id: number; readonly name: string; readonly shape: readonly number[] }
  | { readonly id: number; readonly tables: { readonly dir: string; readonly rows: readonly DecompositionRow[]; readonly formats: readonly TableFormat[] } }
  | { readonly close: true };

export type WorkerReply =
  | { readonly id: number; readonly results: import('./tensor-task.js').TaskResult[] }
  | { readonly id: number; readonly written: true }
  | { readonly id: number; readonly error: { readonly code: string | undefined; readonly message: string } };

function errorData(e: unknown): { code: string | undefined; message: string } {
  if (e instanceof DorascopeError) return { code: e.code, message: e.message };
  return { code: undefined, message: e instanceof Error ? `${e.message}\n${e.stack ?? ''}` : String(e) };
}

async function start(): Promise<void> {
  const port = parentPort;
  if (!port) return;
  let base: TensorSource | undefined;
  const cks: TaskCheckpoint[] = [];
  let options: TaskOptions | undefined;
  let opening: Promise<void> | undefined;
  // Tasks run strictly one after another: memory stays one task's worth per worker.
  let chain: Promise<void> = Promise.resolve();
  const scratch = new TaskScratch();
  port.on('message', (msg: WorkerRequest) => {
    if ('init' in msg) {
      // This thread has nothing to do while a block is read: blocking reads cost least (stream-task.ts).
      options = { ...msg.init.options, blockingReads: true };
      opening = (async () => {
        base = await openSource(msg.init.base);
        for (const p of msg.init.checkpoints) cks.push(await openTaskCheckpoint(p, base));
      })();
      opening.catch(() => undefined); // the first task reports it
      return;
    }
    chain = chain.then(async () => {
      if ('close' in msg) {
        await opening?.catch(() => undefined);
        for (const c of cks) await c.source.close().catch(() => undefined);
        await base?.close().catch(() => undefined);
        port.close();
        return;
      }
      try {
        if ('tables' in msg) {
          const { writeDecomposition } = await import('./table.js');
          await writeDecomposition(msg.tables.dir, msg.tables.rows, msg.tables.formats);
          port.postMessage({ id: msg.id, written: true } satisfies WorkerReply);
          return;
        }
        if (!opening || !options) throw new DorascopeError('E_INTERNAL', 'analysis worker: a task came before the files to open');
        await opening;
        const results = await runTensorTask(base!, cks, msg.name, msg.shape, options, scratch);
        const transfer: ArrayBuffer[] = [];
        for (const r of results) for (const a of [r.d.m0, r.d.mt, r.d.cos]) if (a) transfer.push(a.buffer as ArrayBuffer);
        port.postMessage({ id: msg.id, results } satisfies WorkerReply, transfer);
      } catch (e) {
        port.postMessage({ id: msg.id, error: errorData(e) } satisfies WorkerReply);
      }
    });
  });
}

await start();

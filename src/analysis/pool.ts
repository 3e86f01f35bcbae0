/**
 * A pool of analysis workers (worker.ts) so both cores work: each worker runs whole tensor tasks
 * (read, decode, decompose; tensor-task.ts) while the others do the same on the next tensors.
 * Results come back per task and the caller consumes them in tensor order, so the tables are
 * identical with and without workers. Memory: one task per worker at a time (the caller bounds
 * how many are queued).
 *
 * Starting a worker takes about a tenth of a second (a V8 isolate, then its modules). The CLI
 * starts them (`prestartWorkers`) before it loads the analysis, so that they are ready when the
 * first tensor is; the pool adopts them, and spares it does not need are left to exit with the
 * process (they hold no file and keep no event loop alive).
 *
 * The worker script is `worker.js` beside this file: in dist/ when run as the CLI or library;
 * when this file runs from src/ (vitest runs the TypeScript directly and Node cannot start a
 * .ts worker) the compiled dist/analysis/worker.js is used, which `npm test` builds first.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { DorascopeError, type ErrorCode } from '../errors.js';
import type { DecompositionRow } from './table.js';
import type { TableFormat } from './table-formats.js';
import type { TaskResult } from './tensor-task.js';
import type { WorkerInit, WorkerReply, WorkerRequest } from './worker.js';

/** The worker script for this build, or undefined when none is found (then the analysis runs on the main thread). */
export function workerUrl(): URL | undefined {
  for (const rel of ['./worker.js', '../../dist/analysis/worker.js']) {
    const u = new URL(rel, import.meta.url);
    if (existsSync(fileURLToPath(u))) return u;
  }
  return undefined;
}

interface Pending {
  readonly resolve: (r: TaskResult[] | undefined) => void;
  readonly reject: (e: unknown) => void;
}

interface Slot {
  readonly worker: Worker;
  readonly pending: Map<number, Pending>;
  dead: boolean;
  /** Called once nothing is pending (close waits for them: a worker may still be writing the tables). */
  readonly drained: (() => void)[];
}

/** Settles when the slot has no request pending. */
function drained(slot: Slot): Promise<void> {
  return slot.pending.size === 0 ? Promise.resolve() : new Promise((res) => slot.drained.push(res));
}

function settled(slot: Slot): void {
  if (slot.pending.size === 0) for (const res of slot.drained.splice(0)) res();
}

/** A worker with its handlers: replies settle its pending requests; an error or an exit fails them. */
function spawn(url: URL): Slot {
  const slot: Slot = { worker: new Worker(url), pending: new Map(), dead: false, drained: [] };
  const failAll = (e: unknown) => {
    slot.dead = true;
    for (const p of slot.pending.values()) p.reject(e);
    slot.pending.clear();
    settled(slot);
  };
  slot.worker.on('message', (m: WorkerReply) => {
    const p = slot.pending.get(m.id);
    if (!p) return;
    slot.pending.delete(m.id);
    if ('results' in m) p.resolve(m.results);
    else if ('written' in m) p.resolve(undefined);
    else p.reject(m.error.code === undefined
      ? new DorascopeError('E_INTERNAL', `analysis worker: ${m.error.message}`)
      : new DorascopeError(m.error.code as ErrorCode, m.error.message));
    settled(slot);
  });
  slot.worker.on('error', (e) => failAll(new DorascopeError('E_INTERNAL', `analysis worker failed: ${e.message}`, {}, { cause: e })));
  slot.worker.on('exit', (code) => failAll(new DorascopeError('E_INTERNAL', `analysis worker exited (code ${code}) with tasks pending`)));
  return slot;
}

/** Workers started ahead of an analysis, not yet adopted by a pool (unreferenced: they do not keep the process alive). */
const spares: Slot[] = [];

/**
 * Starts `n` workers now, for the next `AnalysisPool.start` of this thread to adopt. Nothing
 * happens where no worker script is found.
 */
export function prestartWorkers(n: number): void {
  const url = n > 0 ? workerUrl() : undefined;
  if (!url) return;
  for (let i = 0; i < n; i++) {
    const slot = spawn(url);
    slot.worker.unref();
    spares.push(slot);
  }
}

/** How many prestarted workers wait for a pool. */
export function spareWorkers(): number {
  return spares.filter((s) => !s.dead).length;
}

export class AnalysisPool {
  private nextId = 0;
  private closed = false;
  private closing: Promise<void> | undefined;

  private constructor(private readonly slots: Slot[]) {}

  /** `n` workers (prestarted ones first), each opening the base and checkpoints of `init`. */
  static start(n: number, init: WorkerInit, url: URL): AnalysisPool {
    const slots: Slot[] = [];
    while (slots.length < n && spares.length > 0) {
      const s = spares.shift()!;
      if (s.dead) continue;
      s.worker.ref();
      slots.push(s);
    }
    while (slots.length < n) slots.push(spawn(url));
    for (const s of slots) s.worker.postMessage({ init } satisfies WorkerRequest);
    return new AnalysisPool(slots);
  }

  get size(): number {
    return this.slots.length;
  }

  /** Runs one tensor task on the least busy worker. */
  run(name: string, shape: readonly number[]): Promise<TaskResult[]> {
    return this.send((id) => ({ id, name, shape: [...shape] })) as Promise<TaskResult[]>;
  }

  /**
   * Writes the decomposition tables (table.ts `writeDecomposition`) on a worker, so that the
   * calling thread can compute the statistics meanwhile: the writers' code (Arrow's, parquet-wasm's)
   * runs for the first time in the process either way, and two cores do the two at once.
   */
  async writeTables(dir: string, rows: readonly DecompositionRow[], formats: readonly TableFormat[]): Promise<void> {
    await this.send((id) => ({ id, tables: { dir, rows, formats } }));
  }

  /** Sends a request to the least busy live worker; settles with its reply. */
  private send(request: (id: number) => WorkerRequest): Promise<TaskResult[] | undefined> {
    const live = this.slots.filter((s) => !s.dead);
    if (this.closed || live.length === 0) return Promise.reject(new DorascopeError('E_INTERNAL', 'analysis pool is closed'));
    const slot = live.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    const id = this.nextId++;
    return new Promise<TaskResult[] | undefined>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.worker.postMessage(request(id));
    });
  }

  /**
   * Lets workers close their files and exit; terminates any that has not exited `graceMs` later.
   * With `finish`, each worker first completes what it was asked (a worker may be writing the
   * tables); without it (after a failure), queued tasks are cut short by that delay. Safe to call
   * again: the first call's promise.
   */
  close(finish = false, graceMs = 1000): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      await Promise.all(this.slots.map(async (s) => {
        if (finish) await drained(s);
        if (s.dead) return;
        s.dead = true;
        const exited = new Promise<void>((res) => s.worker.once('exit', () => res()));
        s.worker.postMessage({ close: true } satisfies WorkerRequest);
        const timer = setTimeout(() => { void s.worker.terminate(); }, graceMs);
        await exited;
        clearTimeout(timer);
      }));
    })();
    return this.closing;
  }
}

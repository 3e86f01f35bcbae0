/**
 * A pool of analysis workers (worker.ts) so both cores work: each worker runs whole tensor tasks
 * (read, decode, decompose; tensor-task.ts) while the others do the same on the next tensors.
 * Results come back per task and the caller consumes them in tensor order, so the tables are
 * identical with and without workers. Memory: one task per worker at a time (the caller bounds
 * how many are queued).
 *
 * The worker script is `worker.js` beside this file: in dist/ when run as the CLI or library;
 * when this file runs from src/ (vitest runs the TypeScript directly and Node cannot start a
 * .ts worker) the compiled dist/analysis/worker.js is used, which `npm test` builds first.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { DorascopeError, type ErrorCode } from '../errors.js';
import type { TaskResult } from './tensor-task.js';
import type { WorkerInit, WorkerReply } from './worker.js';

/** The worker script for this build, or undefined when none is found (then the analysis runs on the main thread). */
export function workerUrl(): URL | undefined {
  for (const rel of ['./worker.js', '../../dist/analysis/worker.js']) {
    const u = new URL(rel, import.meta.url);
    if (existsSync(fileURLToPath(u))) return u;
  }
  return undefined;
}

interface Pending {
  readonly resolve: (r: TaskResult[]) => void;
  readonly reject: (e: unknown) => void;
}

interface Slot {
  readonly worker: Worker;
  readonly pending: Map<number, Pending>;
  dead: boolean;
}

export class AnalysisPool {
  private nextId = 0;
  private closed = false;

  private constructor(private readonly slots: Slot[]) {}

  static start(n: number, init: WorkerInit, url: URL): AnalysisPool {
    const slots: Slot[] = [];
    for (let i = 0; i < n; i++) {
      const slot: Slot = { worker: new Worker(url, { workerData: init }), pending: new Map(), dead: false };
      const failAll = (e: unknown) => {
        slot.dead = true;
        for (const p of slot.pending.values()) p.reject(e);
        slot.pending.clear();
      };
      slot.worker.on('message', (m: WorkerReply) => {
        const p = slot.pending.get(m.id);
        if (!p) return;
        slot.pending.delete(m.id);
        if ('results' in m) p.resolve(m.results);
        else p.reject(m.error.code === undefined
          ? new DorascopeError('E_INTERNAL', `analysis worker: ${m.error.message}`)
          : new DorascopeError(m.error.code as ErrorCode, m.error.message));
      });
      slot.worker.on('error', (e) => failAll(new DorascopeError('E_INTERNAL', `analysis worker failed: ${e.message}`, {}, { cause: e })));
      slot.worker.on('exit', (code) => failAll(new DorascopeError('E_INTERNAL', `analysis worker exited (code ${code}) with tasks pending`)));
      slots.push(slot);
    }
    return new AnalysisPool(slots);
  }

  get size(): number {
    return this.slots.length;
  }

  /** Runs one tensor task on the least busy worker. */
  run(name: string, shape: readonly number[]): Promise<TaskResult[]> {
    const live = this.slots.filter((s) => !s.dead);
    if (this.closed || live.length === 0) return Promise.reject(new DorascopeError('E_INTERNAL', 'analysis pool is closed'));
    const slot = live.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
    const id = this.nextId++;
    return new Promise<TaskResult[]>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.worker.postMessage({ id, name, shape: [...shape] });
    });
  }

  /** Lets workers close their files and exit; terminates any that do not within a second. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.slots.map(async (s) => {
      if (s.dead) return;
      s.dead = true;
      const exited = new Promise<void>((res) => s.worker.once('exit', () => res()));
      s.worker.postMessage({ close: true });
      const timer = setTimeout(() => { void s.worker.terminate(); }, 1000);
      await exited;
      clearTimeout(timer);
    }));
  }
}

/**
 * One unit of the streaming analysis: a base tensor against every checkpoint of every run. The
 * base tensor is read once and its feature norms are reused for all checkpoints; adapter
 * checkpoints that the fast path covers share one stacked product (adapter-fast-path.ts); the others
 * are read (or merged) one at a time. Peak memory: W0, one W_t (or merged copy), and the product.
 * Full checkpoints in safetensors files take the streaming path instead (stream-task.ts): row
 * blocks of W0 and every W_t into reused buffers, a few MiB whatever the tensor.
 *
 * A tensor that an adapter checkpoint does not adapt (no module on it in the adapter's weights,
 * no modules_to_save replacement) is the base tensor itself: that checkpoint gets an `unchanged`
 * row without reading or merging anything, and when no checkpoint changes the tensor the base is
 * not read either. A zero-size tensor gets `empty` rows, nothing read.
 *
 * The same function runs on the main thread and inside the analysis workers (worker.ts), so the
 * numbers do not depend on whether workers are used. Header checks (missing tensors, shapes) are
 * done by the caller before any task starts.
 */
import { openMergedAdapter, type MergedAdapterSource } from '../io/peft/merged-source.js';
import { isAdapterDir } from '../io/peft/adapter.js';
import { openSource } from '../io/sources/open-source.js';
import type { TensorSource } from '../io/types.js';
import { fastAdapterDecompose, fastPathApplies, type ProductChoice } from './adapter-fast-path.js';
import { decompose, emptyDecomposition, featureNorms, unchangedDecomposition, type Decomposition } from './decompose.js';
import { featureAxisFor } from './names.js';
import { canStream, streamDecompose } from './stream-task.js';

export interface TaskCheckpoint {
  readonly source: TensorSource;
  /** Set for a PEFT adapter checkpoint (the fast path reads its factors). */
  readonly adapter?: MergedAdapterSource | undefined;
}

export interface TaskOptions {
  readonly perRow: boolean;
  readonly adapterPath: 'fast' | 'merge';
  readonly product: ProductChoice;
  /** Elements per row block of the streaming path (default `BLOCK_ELEMENTS`); tests make it small to split tensors. */
  readonly blockElements?: number | undefined;
}

export interface TaskResult {
  readonly d: Decomposition;
  /** Checkpoint bytes this result read (the tensor's bytes in its file, or the adapter factors'). */
  readonly bytes: number;
}

/** Whether checkpoint `ck` may hold a tensor `name` other than the base's (false only for an adapter that leaves it alone). */
export function mayChange(ck: TaskCheckpoint, name: string): boolean {
  return ck.adapter === undefined || ck.adapter.touches(name);
}

/** Decomposes base tensor `name` (shape `shape`) against each checkpoint, in order. */
export async function runTensorTask(base: TensorSource, cks: readonly TaskCheckpoint[], name: string, shape: readonly number[], o: TaskOptions): Promise<TaskResult[]> {
  const rows = shape[0]!;
  const cols = shape.slice(1).reduce((a, b) => a * b, 1);
  const axis = featureAxisFor(name);
  const features = axis === 'rows' ? rows : cols;
  if (rows * cols === 0) return cks.map(() => ({ d: emptyDecomposition(features), bytes: 0 }));
  const changes = cks.map((c) => mayChange(c, name));
  const out = new Array<TaskResult | undefined>(cks.length);
  changes.forEach((c, i) => { if (!c) out[i] = { d: unchangedDecomposition(features), bytes: 0 }; });
  if (!changes.includes(true)) return out as TaskResult[];
  // Adapter checkpoints the fast path covers share one stacked product (adapter-fast-path.ts); the others are
  // read one at a time, the next one's read started before this one's ΔM/ΔD pass so that its file I/O runs
  // on libuv's thread pool meanwhile (one more tensor in memory: still a few, as the header says).
  const fast = o.adapterPath === 'fast'
    ? cks.map((c, i) => (changes[i] && c.adapter !== undefined && fastPathApplies(c.adapter, name, axis) ? i : -1)).filter((i) => i >= 0)
    : [];
  const todo = cks.map((_, i) => i).filter((i) => changes[i] && !fast.includes(i));
  // Full checkpoints in files (the common case): row blocks into reused buffers, nothing whole in memory (stream-task.ts).
  if (fast.length === 0 && canStream(base, name) && todo.every((i) => canStream(cks[i]!.source, name))) {
    const ds = await streamDecompose(base, todo.map((i) => cks[i]!.source), name, rows, cols, axis, o.perRow, o.blockElements);
    todo.forEach((i, k) => { out[i] = { d: ds[k]!, bytes: cks[i]!.source.info(name)!.byteLength }; });
    return out as TaskResult[];
  }
  const start = (k: number): Promise<Float32Array> | undefined => {
    if (k >= todo.length) return undefined;
    const p = cks[todo[k]!]!.source.read(name);
    p.catch(() => undefined); // awaited below; keeps a failure from being reported as unhandled meanwhile
    return p;
  };
  const w0Read = base.read(name);
  let next = fast.length === 0 ? start(0) : undefined; // with a fast-path product to run first, read later
  const w0 = await w0Read;
  const norms0 = featureNorms(w0, rows, cols, axis);
  if (fast.length > 0) {
    const res = await fastAdapterDecompose(name, w0, rows, cols, axis, norms0, fast.map((i) => cks[i]!.adapter!), o.product, o.perRow);
    fast.forEach((ci, k) => { out[ci] = res[k]; });
    next = start(0);
  }
  for (let k = 0; k < todo.length; k++) {
    const i = todo[k]!;
    const wt = await next!;
    next = start(k + 1);
    const src = cks[i]!.source;
    out[i] = { d: decompose(w0, wt, rows, cols, axis, o.perRow, norms0), bytes: src.info(name)?.byteLength || wt.byteLength };
  }
  return out as TaskResult[];
}

/** Opens one checkpoint as a task sees it: a PEFT adapter folder merged onto `base`, else any source. */
export async function openTaskCheckpoint(path: string, base: TensorSource): Promise<TaskCheckpoint> {
  if (isAdapterDir(path)) {
    const adapter = await openMergedAdapter(path, base);
    return { source: adapter, adapter };
  }
  return { source: await openSource(path) };
}

/**
 * One unit of the streaming analysis: a base tensor against every checkpoint of every run. The
 * base tensor is read once and its feature norms are reused for all checkpoints; adapter
 * checkpoints that the fast path covers share one stacked product (adapter-fast.ts); the others
 * are read (or merged) one at a time. Peak memory: W0, one W_t (or merged copy), and the product.
 *
 * The same function runs on the main thread and inside the analysis workers (worker.ts), so the
 * numbers do not depend on whether workers are used. Header checks (missing tensors, shapes) are
 * done by the caller before any task starts.
 */
import { openMergedAdapter, type MergedAdapterSource } from '../io/peft/merged-source.js';
import { isAdapterDir } from '../io/peft/adapter.js';
import { openSource } from '../io/sources/open-source.js';
import type { TensorSource } from '../io/types.js';
import { fastAdapterDecompose, fastPathApplies, type ProductChoice } from './adapter-fast.js';
import { decompose, featureNorms, type Decomposition } from './decompose.js';
import { featureAxisFor } from './names.js';

export interface TaskCheckpoint {
  readonly source: TensorSource;
  /** Set for a PEFT adapter checkpoint (the fast path reads its factors). */
  readonly adapter?: MergedAdapterSource | undefined;
}

export interface TaskOptions {
  readonly perRow: boolean;
  readonly adapterPath: 'fast' | 'merge';
  readonly product: ProductChoice;
}

export interface TaskResult {
  readonly d: Decomposition;
  /** Checkpoint bytes this result read (the tensor's bytes in its file, or the adapter factors'). */
  readonly bytes: number;
}

/** Decomposes base tensor `name` (shape `shape`) against each checkpoint, in order. */
export async function runTensorTask(base: TensorSource, cks: readonly TaskCheckpoint[], name: string, shape: readonly number[], o: TaskOptions): Promise<TaskResult[]> {
  const rows = shape[0]!;
  const cols = shape.slice(1).reduce((a, b) => a * b, 1);
  const axis = featureAxisFor(name);
  const w0 = await base.read(name);
  const norms0 = featureNorms(w0, rows, cols, axis);
  const out = new Array<TaskResult | undefined>(cks.length);
  if (o.adapterPath === 'fast') {
    const idx = cks.map((c, i) => (c.adapter !== undefined && fastPathApplies(c.adapter, name, axis) ? i : -1)).filter((i) => i >= 0);
    const res = await fastAdapterDecompose(name, w0, rows, cols, axis, norms0, idx.map((i) => cks[i]!.adapter!), o.product, o.perRow);
    idx.forEach((ci, k) => { out[ci] = res[k]; });
  }
  for (let i = 0; i < cks.length; i++) {
    if (out[i]) continue;
    const src = cks[i]!.source;
    const wt = await src.read(name);
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

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
import { accumulateSquares, decompose, emptyDecomposition, featureNorms, unchangedDecomposition, type Decomposition, type FeatureAxis } from './decompose.js';
import { featureAxisFor } from './names.js';
import { canStream, streamDecompose } from './stream-task.js';
import { DTYPES, decodeInto } from '../io/dtypes.js';

/**
 * Buffers one thread's tasks reuse for W0 (its stored bytes and their float32 decoding), grown to
 * the largest tensor read: a fresh buffer per tensor costs more in page faults and zeroing than
 * the decode itself. One per analysis thread (tasks on a thread run one at a time); it lives as
 * long as the analysis that made it.
 */
/** Elements decoded per block before their squares are summed (128 KiB of float32: stays in L2). */
const NORM_BLOCK = 1 << 15;

export class TaskScratch {
  private bytes: ArrayBuffer | undefined;
  private floats: ArrayBuffer | undefined;

  /**
   * W0 of `name` (rows×cols) read and decoded into the reused buffers, with its feature norms
   * (`featureNorms`' values: the same sums in the same order), or undefined when the source cannot
   * read into them. The norms are taken block by block right after each block is decoded, while it
   * is still in cache, instead of in a second pass over the whole tensor.
   */
  async readBase(base: TensorSource, name: string, rows: number, cols: number, axis: FeatureAxis): Promise<{ w0: Float32Array; norms: Float64Array } | undefined> {
    const info = base.info(name);
    if (base.readBytesInto === undefined || info === undefined || info.quant !== undefined || !DTYPES[info.dtype].floating) return undefined;
    const size = DTYPES[info.dtype].size, n = rows * cols;
    if (info.byteLength !== n * size) return undefined;
    if (this.floats === undefined || this.floats.byteLength < 4 * n) this.floats = new ArrayBuffer(4 * n);
    const w0 = new Float32Array(this.floats, 0, n);
    const s = new Float64Array(axis === 'rows' ? rows : cols);
    if (info.dtype === 'F32') {
      await base.readBytesInto(name, new Uint8Array(this.floats, 0, 4 * n), 0);
      accumulateSquares(s, w0, 0, rows, cols, axis);
    } else {
      if (this.bytes === undefined || this.bytes.byteLength < info.byteLength) this.bytes = new ArrayBuffer(info.byteLength);
      const bytes = new Uint8Array(this.bytes, 0, info.byteLength);
      await base.readBytesInto(name, bytes, 0);
      // An even number of rows a block keeps every block's bytes 4-aligned (decodeInto's two-values-per-load path).
      const step = Math.max(2, 2 * Math.floor(NORM_BLOCK / cols / 2));
      for (let r0 = 0; r0 < rows; r0 += step) {
        const r1 = Math.min(rows, r0 + step);
        const block = w0.subarray(r0 * cols, r1 * cols);
        decodeInto(info.dtype, bytes.subarray(r0 * cols * size, r1 * cols * size), block);
        accumulateSquares(s, block, r0, r1 - r0, cols, axis);
      }
    }
    for (let k = 0; k < s.length; k++) s[k] = Math.sqrt(s[k]!);
    return { w0, norms: s };
  }
}

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
  /** Blocking reads in the streaming path (a worker thread's: stream-task.ts `BlockReads`). */
  readonly blockingReads?: boolean | undefined;
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

/**
 * Decomposes base tensor `name` (shape `shape`) against each checkpoint, in order. With `scratch`,
 * W0 of the adapter fast path is read into its reused buffers (the caller runs one task at a time on it).
 */
export async function runTensorTask(base: TensorSource, cks: readonly TaskCheckpoint[], name: string, shape: readonly number[], o: TaskOptions,
  scratch?: TaskScratch): Promise<TaskResult[]> {
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
    const ds = await streamDecompose(base, todo.map((i) => cks[i]!.source), name, rows, cols, axis, o.perRow, o.blockElements, undefined, 'auto', o.blockingReads);
    todo.forEach((i, k) => { out[i] = { d: ds[k]!, bytes: cks[i]!.source.info(name)!.byteLength }; });
    return out as TaskResult[];
  }
  const start = (k: number): Promise<Float32Array> | undefined => {
    if (k >= todo.length) return undefined;
    const p = cks[todo[k]!]!.source.read(name);
    p.catch(() => undefined); // awaited below; keeps a failure from being reported as unhandled meanwhile
    return p;
  };
  // The fast path (the only caller here that has W0 to itself while the task runs) reads it into reused buffers.
  const pooled = fast.length > 0 ? await scratch?.readBase(base, name, rows, cols, axis) : undefined;
  const w0Read = pooled ? Promise.resolve(pooled.w0) : base.read(name);
  let next = fast.length === 0 ? start(0) : undefined; // with a fast-path product to run first, read later
  const w0 = await w0Read;
  const norms0 = pooled?.norms ?? featureNorms(w0, rows, cols, axis);
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

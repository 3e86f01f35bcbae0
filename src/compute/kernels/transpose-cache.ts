import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { WasmBackend } from './wasm-backend.js';

/**
 * Keeps the transpose of a long-lived matrix for as long as the matrix lives.
 *
 * A linear layer computes x·Wᵀ; the wasm matmul needs Wᵀ materialised, and
 * XNNPACK packs its right operand once per tensor id and caches the packing.
 * With a fresh Wᵀ on every call, every forward pass pays a transpose and a
 * packing (~30 % of that product at d_model 256). Frozen weights (LoRA/DoRA
 * bases, evaluation) never change, so keeping their transpose saves both.
 *
 * Which matrices are long-lived is learnt, not declared: a matrix is cached
 * the second time it is transposed (a trained weight gets a new tensor at
 * every optimizer step and is transposed once per step, so it never is).
 * Entries go when their source's buffer is freed (checked on every use:
 * tfjs never writes into an existing buffer, so a live source means a valid
 * transpose), and the cache holds at most `budgetBytes` of transposes.
 */
export class TransposeCache {
  // keyed by the source's dataId; a reshape shares the dataId, so the source shape is checked too
  private readonly cached = new Map<object, { t: TensorInfo; rows: number; cols: number }>();
  private readonly seen = new Set<object>();
  private bytes = 0;

  /**
   * `enabled` is asked before each new entry: tfjs's test mode (flag IS_TEST) counts a buffer that a
   * kernel keeps as a leak of that kernel, so there nothing is kept.
   */
  constructor(private readonly budgetBytes: number, private readonly enabled: () => boolean = () => true) {}

  /**
   * The transpose of 2-D `x`: `owned` is true when the caller must dispose it
   * (not cached), false when the cache keeps it.
   */
  get(be: WasmBackend, x: TensorInfo, transpose: () => TensorInfo): { t: TensorInfo; owned: boolean } {
    this.sweep(be);
    const [rows, cols] = x.shape as [number, number];
    const hit = this.cached.get(x.dataId);
    if (hit !== undefined) {
      if (hit.rows === rows && hit.cols === cols) return { t: hit.t, owned: false };
      return { t: transpose(), owned: true }; // the same buffer seen with another shape
    }
    const size = 4 * rows * cols;
    if (this.seen.has(x.dataId) && this.bytes + size <= this.budgetBytes && this.enabled()) {
      this.seen.delete(x.dataId);
      const t = transpose();
      this.cached.set(x.dataId, { t, rows, cols });
      this.bytes += size;
      return { t, owned: false };
    }
    this.seen.add(x.dataId);
    return { t: transpose(), owned: true };
  }

  /** Frees the transposes whose source is gone and forgets sources seen once that are gone. */
  sweep(be: WasmBackend): void {
    for (const [src, e] of this.cached)
      if (!be.dataIdMap.has(src)) {
        this.bytes -= 4 * e.rows * e.cols;
        be.disposeData(e.t.dataId);
        this.cached.delete(src);
      }
    for (const src of this.seen) if (!be.dataIdMap.has(src)) this.seen.delete(src);
  }

  /** Frees every cached transpose (for tests and for callers that want the memory back now). */
  clear(be: WasmBackend): void {
    for (const e of this.cached.values()) be.disposeData(e.t.dataId);
    this.cached.clear();
    this.seen.clear();
    this.bytes = 0;
  }

  get size(): number {
    return this.cached.size;
  }
}

import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { planMatMul } from './matmul-plan.js';
import type { TransposeCache } from './transpose-cache.js';
import { copyInto, heapView, relabel, releaseView, swapLastTwo, type WasmBackend } from './wasm-backend.js';

/**
 * `BatchMatMul` for the wasm backend that always reaches XNNPACK.
 *
 * tfjs-backend-wasm 4.22 (src/cc/batch_mat_mul_impl.cc) runs XNNPACK's
 * fully-connected operator only when neither operand is transposed and both
 * batches are 1; every other case — every matmul gradient (dA = dC·Bᵀ,
 * dB = Aᵀ·dC), `x·Wᵀ` linears and batched attention — falls to a scalar
 * triple loop that measured 0.5–0.9 GFLOP/s here against 10–19 GFLOP/s for
 * XNNPACK (docs/benchmarks.md). So we bring every product to that one fast form:
 *  - a transposed operand is transposed explicitly (the wasm Transpose kernel
 *    moves K·N elements, cheap next to the 2·M·K·N product);
 *  - when B has no batch (a linear layer applied to [batch, M, K]) the batch
 *    folds into the rows: one [batch·M, K]·[K, N] product;
 *  - otherwise (attention: batch = B·heads) we loop over the output batch and
 *    call the plain product on zero-copy views of each matrix, reusing a B
 *    view when broadcasting repeats it (XNNPACK caches its packed weights on
 *    the B tensor id).
 * A transposed unbatched B (x·Wᵀ) goes through `cache`, which keeps the
 * transpose of matrices that are used again (frozen weights; see there).
 * `plain` is the backend's original kernel, called only with untransposed
 * operands of batch 1; `transpose` is the backend's Transpose kernel. Every
 * other intermediate is released before returning, also when a call throws.
 */
export function wasmBatchMatMul(plain: KernelFunc, transpose: KernelFunc, cache?: TransposeCache): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const a = inputs.a as TensorInfo, b = inputs.b as TensorInfo;
    const tA = Boolean(attrs?.transposeA), tB = Boolean(attrs?.transposeB);
    // Non-float32 products: the original kernel reports them (wasm supports float32 only).
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return plain({ inputs, backend, attrs: attrs ?? {} });
    const be = backend as WasmBackend;
    const p = planMatMul(a.shape, b.shape, tA, tB);
    if (p.batch * p.m * p.n === 0) return be.makeOutput(p.outShape, 'float32');
    if (p.k === 0) {
      // An empty sum: zeros (XNNPACK is not asked to handle a zero-width operand).
      const z = be.makeOutput(p.outShape, 'float32');
      const off = be.dataIdMap.get(z.dataId).memoryOffset;
      be.wasm.HEAPU8.fill(0, off, off + 4 * p.batch * p.m * p.n);
      return z;
    }
    const flat = { transposeA: false, transposeB: false };
    const a2 = tA ? swapLastTwo(transpose, be, a) : a;
    let b2: TensorInfo | undefined, ownB = tB;
    try {
      if (tB && p.batchB === 1 && cache !== undefined) {
        const c = cache.get(be, relabel(b, [p.n, p.k]), () => swapLastTwo(transpose, be, relabel(b, [p.n, p.k])));
        b2 = c.t;
        ownB = c.owned;
      } else b2 = tB ? swapLastTwo(transpose, be, b) : b;
      if (p.batchB === 1) {
        const out = plain({
          inputs: { a: relabel(a2, [p.batchA * p.m, p.k]), b: relabel(b2, [p.k, p.n]) }, backend, attrs: flat,
        }) as TensorInfo;
        return relabel(out, p.outShape);
      }
      return batched(plain, be, a2, b2, p.m, p.k, p.n, p.aIndex, p.bIndex, p.outShape);
    } finally {
      if (tA) be.disposeData(a2.dataId);
      if (ownB && b2 !== undefined) be.disposeData(b2.dataId);
    }
  };
}

/** One plain product per output matrix, on views; each result is copied into place and freed. */
function batched(plain: KernelFunc, be: WasmBackend, a: TensorInfo, b: TensorInfo, m: number, k: number, n: number,
  aIndex: Int32Array, bIndex: Int32Array, outShape: number[]): TensorInfo {
  const out = be.makeOutput(outShape, 'float32');
  const bViews = new Map<number, TensorInfo>();
  const flat = { transposeA: false, transposeB: false };
  try {
    for (let i = 0; i < aIndex.length; i++) {
      const bi = bIndex[i]!;
      let vb = bViews.get(bi);
      if (vb === undefined) bViews.set(bi, (vb = heapView(be, b, bi * k * n, [k, n])));
      const va = heapView(be, a, aIndex[i]! * m * k, [m, k]);
      let r: TensorInfo;
      try {
        r = plain({ inputs: { a: va, b: vb }, backend: be, attrs: flat }) as TensorInfo;
      } finally {
        releaseView(be, va);
      }
      copyInto(be, out, i * m * n, r, m * n);
      be.disposeData(r.dataId);
    }
    return out;
  } catch (e) {
    be.disposeData(out.dataId);
    throw e;
  } finally {
    for (const v of bViews.values()) releaseView(be, v);
  }
}

import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { DorascopeError } from '../../errors.js';

/**
 * Pure kernel: out[ids[i]] += x[i] over rows of `inner` elements (TensorFlow's
 * UnsortedSegmentSum). Ids outside [0, numSegments) are skipped, as TensorFlow
 * does for negative ids and tfjs-backend-cpu does for all of them. `out` must
 * be zeroed by the caller.
 */
export function segmentSum(x: Float32Array | Int32Array, ids: Int32Array, inner: number, numSegments: number,
  out: Float32Array | Int32Array): void {
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i]!;
    if (s < 0 || s >= numSegments) continue;
    const src = i * inner, dst = s * inner;
    for (let j = 0; j < inner; j++) out[dst + j]! += x[src + j]!;
  }
}

interface HeapBackend {
  makeOutput(shape: number[], dtype: 'float32' | 'int32'): TensorInfo;
  typedArrayFromHeap(x: TensorInfo): Float32Array | Int32Array | Uint8Array;
}

/**
 * `UnsortedSegmentSum` for the wasm backend, which has none in 4.22 — and it
 * is the gradient of `gather` (tfjs-core GatherV2_grad), so without it an
 * embedding lookup cannot be trained on wasm. One pass over x; the
 * output is zeroed first (wasm heap memory is reused).
 */
export const wasmUnsortedSegmentSum: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as HeapBackend;
  const x = inputs.x as TensorInfo, ids = inputs.segmentIds as TensorInfo;
  const numSegments = Number(attrs?.numSegments);
  const lead = ids.shape.length;
  if (!Number.isInteger(numSegments) || numSegments < 0)
    throw new DorascopeError('E_SHAPE_MISMATCH', `unsortedSegmentSum: numSegments must be a non-negative integer, got ${String(attrs?.numSegments)}`);
  if (ids.dtype !== 'int32' || (x.dtype !== 'float32' && x.dtype !== 'int32') ||
    lead > x.shape.length || ids.shape.some((d, i) => d !== x.shape[i]))
    throw new DorascopeError('E_SHAPE_MISMATCH',
      `unsortedSegmentSum: segment ids ${ids.dtype} [${ids.shape.join(',')}] must be int32 and lead x ${x.dtype} [${x.shape.join(',')}]`);
  const innerShape = x.shape.slice(lead);
  const inner = innerShape.reduce((a, b) => a * b, 1);
  const out = be.makeOutput([numSegments, ...innerShape], x.dtype);
  // views after the allocation: growing the heap detaches earlier ones
  const o = be.typedArrayFromHeap(out) as Float32Array | Int32Array;
  o.fill(0);
  segmentSum(be.typedArrayFromHeap(x) as Float32Array | Int32Array, be.typedArrayFromHeap(ids) as Int32Array, inner, numSegments, o);
  return out;
};

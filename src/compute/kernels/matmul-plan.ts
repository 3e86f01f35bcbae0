import { DorascopeError } from '../../errors.js';

/**
 * Shapes of a (batched) matrix product C = op(A)·op(B), op = identity or the
 * transpose of the last two axes, and the batch axes in front of them broadcast the
 * NumPy way — the semantics of tfjs's `BatchMatMul` and `tf.matMul`. Pure:
 * shapes in, sizes and index maps out; the wasm kernel turns it into calls.
 */
export interface MatMulPlan {
  /** Rows of op(A), the shared axis, columns of op(B). */
  m: number;
  k: number;
  n: number;
  /** Output shape: broadcast batch axes then [m, n]. */
  outShape: number[];
  /** Number of matrices in A, in B (products of their batch axes) and in C. */
  batchA: number;
  batchB: number;
  batch: number;
  /** For output matrix i, the index of the A and B matrices it multiplies (broadcasting repeats them). */
  aIndex: Int32Array;
  bIndex: Int32Array;
}

const prod = (s: readonly number[]): number => s.reduce((x, y) => x * y, 1);

/** Throws E_SHAPE_MISMATCH naming both shapes when the product is undefined. */
export function planMatMul(aShape: readonly number[], bShape: readonly number[], transposeA: boolean, transposeB: boolean): MatMulPlan {
  const desc = () => `A [${aShape.join(',')}]${transposeA ? 'ᵀ' : ''} · B [${bShape.join(',')}]${transposeB ? 'ᵀ' : ''}`;
  if (aShape.length < 2 || bShape.length < 2)
    throw new DorascopeError('E_SHAPE_MISMATCH', `matMul needs rank ≥ 2 operands: ${desc()}`, { aShape, bShape });
  const ra = aShape.length, rb = bShape.length;
  const m = aShape[transposeA ? ra - 1 : ra - 2]!, ka = aShape[transposeA ? ra - 2 : ra - 1]!;
  const kb = bShape[transposeB ? rb - 1 : rb - 2]!, n = bShape[transposeB ? rb - 2 : rb - 1]!;
  if (ka !== kb)
    throw new DorascopeError('E_SHAPE_MISMATCH', `matMul inner sizes differ (${ka} vs ${kb}): ${desc()}`, { aShape, bShape, transposeA, transposeB });
  // Broadcast the batch axes right-aligned (NumPy rule): equal, or one of them is 1.
  const ba = aShape.slice(0, -2), bb = bShape.slice(0, -2);
  const rank = Math.max(ba.length, bb.length);
  const batchShape: number[] = [];
  for (let i = 0; i < rank; i++) {
    const x = ba[ba.length - rank + i] ?? 1, y = bb[bb.length - rank + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1)
      throw new DorascopeError('E_SHAPE_MISMATCH', `matMul batch axes do not broadcast (${x} vs ${y}): ${desc()}`, { aShape, bShape });
    batchShape.push(x === 1 ? y : x);
  }
  const batch = prod(batchShape);
  const aIndex = new Int32Array(batch), bIndex = new Int32Array(batch);
  // Walk the output batch index in row-major order; a size-1 axis of an operand has stride 0.
  const strides = (dims: readonly number[]): number[] => {
    const s = new Array<number>(rank).fill(0);
    let acc = 1;
    for (let i = rank - 1, j = dims.length - 1; i >= 0; i--, j--) {
      const d = j >= 0 ? dims[j]! : 1;
      s[i] = d === 1 ? 0 : acc;
      acc *= d;
    }
    return s;
  };
  const sa = strides(ba), sb = strides(bb);
  for (let i = 0; i < batch; i++) {
    let rem = i, ia = 0, ib = 0;
    for (let ax = rank - 1; ax >= 0; ax--) {
      const c = rem % batchShape[ax]!;
      rem = (rem - c) / batchShape[ax]!;
      ia += c * sa[ax]!;
      ib += c * sb[ax]!;
    }
    aIndex[i] = ia;
    bIndex[i] = ib;
  }
  return { m, k: ka, n, outShape: [...batchShape, m, n], batchA: prod(ba), batchB: prod(bb), batch, aIndex, bIndex };
}

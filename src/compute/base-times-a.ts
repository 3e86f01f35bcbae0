/**
 * The one expensive product of the adapter fast path (analysis/exact-adapter-series.ts): c = W0·Aᵀ for the A
 * matrices of all checkpoints of a module stacked into one (R×in) matrix, so W0 is read once.
 * The result is `out` rows of R values (feature n's row holds w_n·a_j for every stacked row j).
 *
 * Two implementations behind one signature:
 * - `js`: a plain float64 loop (~1 GFLOP/s); exact to float64 rounding, used for small modules
 *   and as the reference.
 * - `tfjs`: tfjs-backend-wasm's matmul, which runs at 13–19 GFLOP/s only when neither operand is
 *   transposed and the batch is 1 (tfjs-backend-wasm
 *   src/cc/batch_mat_mul_impl.cc); any transposed operand falls to a naive loop under
 *   1 GFLOP/s. So the layouts are chosen to need no transpose flag: for features as rows,
 *   W0 (out×in) · Aᵀ (in×R), with Aᵀ built once in JS (R·in values, cheap); for features as
 *   columns (GPT-2 Conv1D, W0 stored (in×out)), A (R×in) · W0 (in×out), transposed back in JS
 *   (R·out values). It multiplies in float32 with float32 sums; the resulting error per feature
 *   is ~1e-7·√in relative and averages out over the features of ΔM/ΔD (measured in the tests
 *   against a float64 loop: well inside 1e-6).
 */
import { useWasm } from './backend.js';
import { tf } from './tfjs.js';

export type ProductEngine = 'js' | 'tfjs';

/**
 * c (out×R, row-major) from W0 in storage layout and the stacked A (R×in).
 * `featuresAreRows`: W0 is (out×in); otherwise (in×out). Float64 from the float64 loop; float32
 * from a float32 matmul, returned as it comes (widening it to float64 is exact, so the consumer
 * does that per element instead of in a fresh copy of out·R values).
 */
export type BaseProduct = (w0: Float32Array, aStack: Float32Array, out: number, inDim: number, R: number, featuresAreRows: boolean) => Promise<Float32Array | Float64Array>;

export const jsProduct: BaseProduct = (w0, aStack, out, inDim, R, featuresAreRows) => {
  const c = new Float64Array(out * R);
  if (featuresAreRows) {
    for (let n = 0; n < out; n++) {
      const wo = n * inDim;
      for (let j = 0; j < R; j++) {
        const ao = j * inDim;
        let acc = 0;
        for (let i = 0; i < inDim; i++) acc += w0[wo + i]! * aStack[ao + i]!;
        c[n * R + j] = acc;
      }
    }
    return Promise.resolve(c);
  }
  // W0 is (in×out): accumulate cᵀ (R×out) along contiguous rows of W0, then transpose.
  const ct = new Float64Array(R * out);
  for (let i = 0; i < inDim; i++) {
    const wo = i * out;
    for (let j = 0; j < R; j++) {
      const a = aStack[j * inDim + i]!;
      if (a === 0) continue;
      const co = j * out;
      for (let n = 0; n < out; n++) ct[co + n]! += a * w0[wo + n]!;
    }
  }
  for (let j = 0; j < R; j++) for (let n = 0; n < out; n++) c[n * R + j] = ct[j * out + n]!;
  return Promise.resolve(c);
};

/** tfjs-backend-wasm's matmul, with no transposed operand (see the header). */
export const tfjsProduct: BaseProduct = async (w0, aStack, out, inDim, R, featuresAreRows) => {
  const restore = await useWasm();
  try {
    return compute(w0, aStack, out, inDim, R, featuresAreRows);
  } finally {
    await restore();
  }
};

/**
 * Aᵀ of the last product, reused: `compute` is synchronous from filling it to the matmul's copy
 * into the backend, so no other product can touch it meanwhile; a fresh array per product costs
 * page faults on new memory.
 */
let atScratch = new Float32Array(0);

function compute(w0: Float32Array, aStack: Float32Array, out: number, inDim: number, R: number, featuresAreRows: boolean): Float32Array {
  const t = tf();
  if (featuresAreRows) {
    if (atScratch.length < inDim * R) atScratch = new Float32Array(inDim * R);
    const at = atScratch.subarray(0, inDim * R);
    for (let j = 0; j < R; j++) {
      const ao = j * inDim;
      for (let i = 0; i < inDim; i++) at[i * R + j] = aStack[ao + i]!;
    }
    return matmulNoTranspose(t, w0, at, out, inDim, R);
  }
  const ct = matmulNoTranspose(t, aStack, w0, R, inDim, out);
  const c = new Float32Array(out * R);
  for (let j = 0; j < R; j++) {
    const co = j * out;
    for (let n = 0; n < out; n++) c[n * R + j] = ct[co + n]!;
  }
  return c;
};

/** (m×k)·(k×n) on the current tfjs backend, both operands as stored; tensors disposed before returning. */
export function matmulNoTranspose(t: ReturnType<typeof tf>, a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float32Array {
  const ta = t.tensor2d(a, [m, k], 'float32');
  const tb = t.tensor2d(b, [k, n], 'float32');
  const tc = t.matMul(ta, tb, false, false);
  try {
    return tc.dataSync() as Float32Array;
  } finally {
    ta.dispose(); tb.dispose(); tc.dispose();
  }
}

/** The product for an engine name. */
export function productFor(engine: ProductEngine): BaseProduct {
  return engine === 'js' ? jsProduct : tfjsProduct;
}

import type { KernelConfig, KernelFunc } from '@tensorflow/tfjs-core';
import { DorascopeError } from '../../errors.js';
import type { Tf } from '../tfjs.js';
import { TransposeCache } from './transpose-cache.js';
import { wasmBatchMatMul } from './wasm-batch-matmul.js';
import { wasmCast, wasmIdentity } from './wasm-identity.js';
import { wasmConcat, wasmSlice, wasmSplitV } from './wasm-slice.js';
import { wasmUnsortedSegmentSum } from './wasm-unsorted-segment-sum.js';

const ours = new WeakSet<KernelFunc>();
const originals = new Map<string, KernelConfig>();

let registeredWith: Tf | undefined;

/** Transposes of frozen weights kept by the wasm matmul (≤ 64 MiB; transpose-cache.ts); none in tfjs's test mode. */
export const wasmTransposeCache = new TransposeCache(64 * 2 ** 20, () => registeredWith?.env().getBool('IS_TEST') !== true);

/**
 * Replaces six tfjs-backend-wasm kernels with ours: `BatchMatMul` (every
 * shape reaches XNNPACK; wasm-batch-matmul.ts), zero-copy `Identity` and
 * same-dtype `Cast` (wasm-identity.ts), heap-copy `Slice`, `SplitV` and
 * `Concat` (wasm-slice.ts), and adds the missing
 * `UnsortedSegmentSum` (gather's gradient). Call after
 * `@tensorflow/tfjs-backend-wasm` is loaded (its import registers the
 * kernels), before or after the backend initialises: each original kernel's
 * setup function (which binds its C++ entry point) is kept, so tfjs runs it
 * at initialisation either way, and ours call the original for the cases
 * they do not handle. Idempotent.
 */
export function registerWasmKernels(t: Tf): void {
  registeredWith = t;
  const get = (name: string): KernelConfig => {
    const k = t.getKernel(name, 'wasm');
    if (k === undefined)
      throw new DorascopeError('E_BACKEND', `wasm kernel ${name} is not registered: load @tensorflow/tfjs-backend-wasm before registerWasmKernels`, { backend: 'wasm' });
    return k;
  };
  const transpose = get('Transpose').kernelFunc;
  const replace = (name: string, make: (orig: KernelFunc) => KernelFunc) => {
    const orig = get(name);
    if (ours.has(orig.kernelFunc)) return;
    const fn = make(orig.kernelFunc);
    ours.add(fn);
    originals.set(name, orig);
    t.unregisterKernel(name, 'wasm');
    t.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: fn, ...(orig.setupFunc ? { setupFunc: orig.setupFunc } : {}) });
  };
  replace('BatchMatMul', (orig) => wasmBatchMatMul(orig, transpose, wasmTransposeCache));
  replace('Identity', wasmIdentity);
  replace('Cast', wasmCast);
  replace('Slice', (orig) => wasmSlice(orig, t));
  replace('SplitV', (orig) => wasmSplitV(orig, t));
  replace('Concat', (orig) => wasmConcat(orig, t));
  // Missing on wasm (gather's gradient); ours unless a later tfjs brings its own.
  if (t.getKernel('UnsortedSegmentSum', 'wasm') === undefined)
    t.registerKernel({ kernelName: 'UnsortedSegmentSum', backendName: 'wasm', kernelFunc: wasmUnsortedSegmentSum });
}

/**
 * Puts tfjs-backend-wasm's own kernels back (for `bench:train --baseline`,
 * which measures what ours gain) and frees the transpose cache.
 */
export function restoreWasmKernels(t: Tf): void {
  for (const [name, orig] of originals) {
    const cur = t.getKernel(name, 'wasm');
    if (cur === undefined || !ours.has(cur.kernelFunc)) continue;
    t.unregisterKernel(name, 'wasm');
    t.registerKernel(orig);
  }
  originals.clear();
  const be = t.findBackend('wasm');
  if (be !== null) wasmTransposeCache.clear(be as unknown as Parameters<TransposeCache['clear']>[0]);
}

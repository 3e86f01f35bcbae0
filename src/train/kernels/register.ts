import type { KernelFunc } from '@tensorflow/tfjs-core';
import { DorascopeError } from '../../errors.js';
import type { Tf } from '../backend.js';
import { wasmBatchMatMul } from './wasm_batch_matmul.js';

const ours = new WeakSet<KernelFunc>();

/**
 * Replaces tfjs-backend-wasm's `BatchMatMul` with `wasmBatchMatMul` (see
 * there for why). Call after `@tensorflow/tfjs-backend-wasm` is loaded (its
 * import registers the kernels), before or after the backend initialises:
 * the original kernel's setup function (which binds its C++ entry point) is
 * kept, so tfjs runs it at initialisation either way. Idempotent.
 */
export function registerWasmKernels(t: Tf): void {
  const orig = t.getKernel('BatchMatMul', 'wasm');
  const tr = t.getKernel('Transpose', 'wasm');
  if (orig === undefined || tr === undefined)
    throw new DorascopeError('E_BACKEND', 'wasm kernels are not registered: load @tensorflow/tfjs-backend-wasm before registerWasmKernels', { backend: 'wasm' });
  if (ours.has(orig.kernelFunc)) return;
  const fn = wasmBatchMatMul(orig.kernelFunc, tr.kernelFunc);
  ours.add(fn);
  t.unregisterKernel('BatchMatMul', 'wasm');
  t.registerKernel({ kernelName: 'BatchMatMul', backendName: 'wasm', kernelFunc: fn, ...(orig.setupFunc ? { setupFunc: orig.setupFunc } : {}) });
}

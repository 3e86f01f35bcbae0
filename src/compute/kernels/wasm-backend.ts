import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';

/**
 * The members of tfjs-backend-wasm 4.x's `BackendWasm` that our kernels use.
 * Declared structurally (not imported) so the dependency is visible in one
 * place; `test/compute/kernels*.test.ts` fails if a tfjs upgrade changes them.
 *
 * Tensor memory lives on the wasm heap: `dataIdMap.get(id).memoryOffset` is a
 * byte offset, and the C++ side knows a tensor by the integer `id` that
 * `registerTensor` (called by `makeOutput`) gave it. `tfjs.disposeData(id)`
 * only forgets the id (and drops XNNPACK operators cached on it); the JS
 * `disposeData` is what frees the memory (tfjs-backend-wasm src/cc/backend.cc).
 */
export interface WasmBackend {
  makeOutput(shape: number[], dtype: 'float32', memoryOffset?: number): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
  dataIdMap: { get(dataId: object): { id: number; memoryOffset: number }; has(dataId: object): boolean; delete(dataId: object): boolean };
  wasm: { HEAPU8: Uint8Array; tfjs: { disposeData(id: number): void } };
}

/**
 * A tensor that aliases `count` float32 elements of `src` starting at element
 * `start`, without copying. Release it with `releaseView`, never `disposeData`
 * (which would free memory the view does not own).
 */
export function heapView(be: WasmBackend, src: TensorInfo, start: number, shape: number[]): TensorInfo {
  return be.makeOutput(shape, 'float32', be.dataIdMap.get(src.dataId).memoryOffset + 4 * start);
}

export function releaseView(be: WasmBackend, view: TensorInfo): void {
  be.wasm.tfjs.disposeData(be.dataIdMap.get(view.dataId).id);
  be.dataIdMap.delete(view.dataId);
}

/** Copies `count` float32 elements from `src` into `dst` at element `at` (a memmove on the heap). */
export function copyInto(be: WasmBackend, dst: TensorInfo, at: number, src: TensorInfo, count: number): void {
  const from = be.dataIdMap.get(src.dataId).memoryOffset;
  const to = be.dataIdMap.get(dst.dataId).memoryOffset + 4 * at;
  // HEAPU8 is re-read here: an allocation may have grown (and so replaced) the heap buffer.
  be.wasm.HEAPU8.copyWithin(to, from, from + 4 * count);
}

/** The same data seen with another shape of equal size (no copy, no new owner). */
export function relabel(x: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: x.dataId, shape, dtype: x.dtype };
}

/** Transposes the last two axes with the backend's own Transpose kernel; the caller disposes the result. */
export function swapLastTwo(transpose: KernelFunc, be: WasmBackend, x: TensorInfo): TensorInfo {
  const r = x.shape.length;
  const perm = [...Array(r).keys()];
  perm[r - 2] = r - 1;
  perm[r - 1] = r - 2;
  return transpose({ inputs: { x }, backend: be, attrs: { perm } }) as TensorInfo;
}

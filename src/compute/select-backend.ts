/**
 * `selectBackend` for the library's public API: the same function as backend.ts's, imported when called, so
 * importing the package loads no TensorFlow.js and its published types do not need tfjs's.
 */
import type { BackendChoice, BackendInfo } from './backend-types.js';

/** Selects the training backend (`auto`: webgpu on a hardware adapter, else tensorflow, else wasm); see backend.ts. */
export async function selectBackend(choice: BackendChoice): Promise<BackendInfo> {
  return (await import('./backend.js')).selectBackend(choice);
}

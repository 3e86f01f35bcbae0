import { hasPackage, requireOptional, TFJS_PACKAGES } from '../optional.js';

// tfjs-core is loaded through its CJS bundle (`tf-core.node.js`, package
// "main") with createRequire, because the backend bundles require that same
// file: one engine, one kernel registry, shared by the trainer and the analysis.
// It is an optional dependency: training and the tfjs product of the adapter fast path need it,
// the rest of the analysis does not (the fast path falls back to its float64 JS product).

export type Tf = typeof import('@tensorflow/tfjs-core');

let tfInstance: Tf | undefined;

/** The single tfjs-core instance of the process (backend.ts selects its backend and registers gradients). */
export function tf(): Tf {
  if (tfInstance === undefined) {
    tfInstance = requireOptional<Tf>('@tensorflow/tfjs-core', "tfjs (train, reproduce, demo; analyze's product: 'tfjs')", '@tensorflow/tfjs-core', TFJS_PACKAGES);
  }
  return tfInstance;
}

/** Whether tfjs-core and its wasm backend are installed (the analysis's `product: 'auto'` asks). */
let tfjsWasmInstalled: boolean | undefined;
export function hasTfjsWasm(): boolean {
  tfjsWasmInstalled ??= hasPackage('@tensorflow/tfjs-core') && hasPackage('@tensorflow/tfjs-backend-wasm');
  return tfjsWasmInstalled;
}

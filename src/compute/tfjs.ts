import { createRequire } from 'node:module';

// tfjs-core is loaded through its CJS bundle (`tf-core.node.js`, package
// "main") with createRequire, because the backend bundles require that same
// file: one engine, one kernel registry, shared by the trainer and the analysis.
const require = createRequire(import.meta.url);

export type Tf = typeof import('@tensorflow/tfjs-core');

let tfInstance: Tf | undefined;

/** The single tfjs-core instance of the process (backend.ts selects its backend and registers gradients). */
export function tf(): Tf {
  if (tfInstance === undefined) {
    tfInstance = require('@tensorflow/tfjs-core') as Tf;
  }
  return tfInstance;
}

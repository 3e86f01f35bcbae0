import { createRequire, register } from 'node:module';
import { DorascopeError } from '../errors.js';

// tfjs-core is loaded through its CJS bundle (`tf-core.node.js`, package
// "main") with createRequire, because the backend bundles require that same
// file: one engine, one kernel registry. That bundle registers no gradients,
// and the gradient configs exist only as ESM files with extensionless relative
// imports (`./gradients/Abs_grad`), which Node's ESM resolver rejects (issue 5).
// Rather than pulling the ~300 MB `@tensorflow/tfjs` umbrella, we install a
// tiny resolve hook (module.register, Node ≥ 20.6) that adds `.js` to
// extensionless relative imports *inside tfjs-core/dist only*, then import
// `register_all_gradients`. tfjs keeps its registries and engine on a global
// (`_tfGlobals`, `_tfengine`), so gradients registered by the ESM copy serve
// the CJS ops.
const require = createRequire(import.meta.url);

const HOOK = `export async function resolve(spec, ctx, next) {
  try { return await next(spec, ctx); } catch (e) {
    if (ctx.parentURL && ctx.parentURL.includes('/@tensorflow/tfjs-core/dist/') &&
        spec.startsWith('.') && !spec.endsWith('.js')) return next(spec + '.js', ctx);
    throw e;
  }
}`;

let gradientsReady: Promise<void> | undefined;

/** Registers tfjs-core's gradient functions once (see the comment above). */
export function registerGradients(): Promise<void> {
  gradientsReady ??= (async () => {
    tf();
    register('data:text/javascript,' + encodeURIComponent(HOOK));
    const url = new URL('file://' + require.resolve('@tensorflow/tfjs-core/dist/register_all_gradients.js'));
    await import(url.href);
  })();
  return gradientsReady;
}

export type Tf = typeof import('@tensorflow/tfjs-core');
export type BackendName = 'cpu' | 'wasm';

let tfInstance: Tf | undefined;

/** The single tfjs-core instance shared by the trainer (with gradients registered). */
export function tf(): Tf {
  if (tfInstance === undefined) {
    tfInstance = require('@tensorflow/tfjs-core') as Tf;
  }
  return tfInstance;
}

/**
 * Selects a backend once; checks the boolean `setBackend` returns (it resolves
 * false instead of throwing when initialisation fails) and names the backend.
 */
export async function initBackend(name: BackendName): Promise<BackendName> {
  const t = tf();
  await registerGradients();
  if (name === 'cpu') {
    require('@tensorflow/tfjs-backend-cpu');
  } else {
    const wasm = require('@tensorflow/tfjs-backend-wasm') as {
      setWasmPaths: (p: string) => void;
    };
    // Absolute folder holding the .wasm binaries; nothing is fetched over the network.
    const dir = require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm');
    wasm.setWasmPaths(dir.slice(0, dir.lastIndexOf('/') + 1));
  }
  const ok = await t.setBackend(name);
  if (!ok || t.getBackend() !== name) {
    throw new DorascopeError('E_BACKEND', `tfjs backend '${name}' failed to initialise`, { backend: name });
  }
  await t.ready();
  return name;
}

import { createRequire, register } from 'node:module';
import { DorascopeError } from '../errors.js';
import { isModuleNotFound, requireOptional, resolveOptional, TFJS_PACKAGES } from '../optional.js';
import { registerWasmKernels } from './kernels/register.js';
import { tf, type Tf } from './tfjs.js';

export { tf, type Tf } from './tfjs.js';

// tfjs-core is loaded through its CJS bundle (tfjs.ts). That bundle registers no gradients,
// and the gradient configs exist only as ESM files with extensionless relative
// imports (`./gradients/Abs_grad`), which Node's ESM resolver rejects
// (ERR_MODULE_NOT_FOUND: ESM requires full file names).
// Rather than pulling the ~300 MB `@tensorflow/tfjs` umbrella, we install a
// tiny resolve hook (module.register, Node ≥ 20.6) that adds `.js` to
// extensionless relative imports *inside tfjs-core/dist only*, then import
// `register_all_gradients`. tfjs keeps its registries and engine on a global
// (`_tfGlobals`, `_tfengine`), so gradients registered by the ESM copy serve
// the CJS ops.
const require = createRequire(import.meta.url);

// The hook tries `spec + '.js'` first for tfjs-core's own relative imports:
// failing first and retrying doubled the round trips to the loader-hook
// thread, which made this registration take ~4 s on a loaded 2-core machine.
const HOOK = `export async function resolve(spec, ctx, next) {
  if (ctx.parentURL && ctx.parentURL.includes('/@tensorflow/tfjs-core/dist/') &&
      spec.startsWith('.') && !spec.endsWith('.js')) {
    try { return await next(spec + '.js', ctx); } catch { /* a directory or a real extension: resolve as written */ }
  }
  return next(spec, ctx);
}`;

let gradientsReady: Promise<void> | undefined;

/** Registers tfjs-core's gradient functions once (see the comment above). */
export function registerGradients(): Promise<void> {
  gradientsReady ??= (async () => {
    tf();
    register(`data:text/javascript,${encodeURIComponent(HOOK)}`);
    const url = new URL(`file://${resolveOptional('@tensorflow/tfjs-core', 'training (tfjs gradients)', '@tensorflow/tfjs-core/dist/register_all_gradients.js', TFJS_PACKAGES)}`);
    await import(url.href);
  })();
  return gradientsReady;
}

import { BACKEND_CHOICES, type BackendChoice, type BackendInfo, type BackendName } from './backend-types.js';
export { BACKEND_CHOICES, type BackendChoice, type BackendInfo, type BackendName };


/**
 * Selects a backend once; checks the boolean `setBackend` returns (it resolves
 * false instead of throwing when initialisation fails) and names the backend.
 * Backend priorities are never relied on: webgpu's registered priority beats
 * wasm even on a software adapter (Mesa's llvmpipe, 13× slower than wasm), so `auto` decides explicitly:
 * webgpu on a hardware adapter, else tensorflow when a binding is installed,
 * else wasm.
 */
export async function initBackend(choice: BackendChoice): Promise<BackendName> {
  return (await selectBackend(choice)).name;
}

/** `initBackend` with the details: device, software adapter, what `auto` skipped and why. */
export async function selectBackend(choice: BackendChoice): Promise<BackendInfo> {
  const t = tf();
  await registerGradients();
  if (choice !== 'auto') {
    return activate(t, choice, false);
  }
  const skipped: string[] = [];
  for (const name of ['webgpu', 'tensorflow'] as const) {
    try {
      return { ...(await activate(t, name, true)), skipped };
    } catch (e) {
      // A backend whose optional package is not installed is skipped like one that fails to start.
      if (!(e instanceof DorascopeError) || (e.code !== 'E_BACKEND' && e.code !== 'E_MISSING_DEPENDENCY')) throw e;
      skipped.push(`${name}: ${e.message}`);
    }
  }
  return { ...(await activate(t, 'wasm', false)), skipped };
}

let wasmLoaded = false;

/**
 * Loads tfjs-backend-wasm (the .wasm binaries are read from node_modules, never fetched) and
 * registers our kernels on it (kernels/register.ts: XNNPACK for every matmul shape). The one
 * wasm set-up, used by `selectBackend` and by `useWasm` (the analysis's forward matmul).
 */
export function loadWasm(t: Tf = tf()): void {
  if (!wasmLoaded) {
    const purpose = "tfjs's wasm backend";
    const wasm = requireOptional<{ setWasmPaths: (p: string) => void }>('@tensorflow/tfjs-backend-wasm', purpose, '@tensorflow/tfjs-backend-wasm', TFJS_PACKAGES);
    // Absolute folder holding the .wasm binaries; nothing is fetched over the network.
    const dir = resolveOptional('@tensorflow/tfjs-backend-wasm', purpose, '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm', TFJS_PACKAGES);
    wasm.setWasmPaths(dir.slice(0, dir.lastIndexOf('/') + 1));
    wasmLoaded = true;
  }
  registerWasmKernels(t); // idempotent
}

/**
 * Makes the wasm backend current and returns a function that restores the previous one (the
 * trainer may hold tensors on `cpu` in the same process). Not `selectBackend`: that also
 * registers tfjs's gradients through an ESM resolve hook, seconds of imports that a forward
 * matmul does not need.
 */
export async function useWasm(): Promise<() => Promise<void>> {
  const t = tf();
  loadWasm(t);
  const previous = t.getBackend() as string | undefined;
  if (previous === 'wasm') return async () => undefined;
  if (!(await t.setBackend('wasm')) || t.getBackend() !== 'wasm') {
    throw new DorascopeError('E_BACKEND', "tfjs backend 'wasm' failed to initialise (for the adapter fast path; --adapter-path merge avoids it)");
  }
  await t.ready();
  return async () => { if (previous !== undefined) await t.setBackend(previous); };
}

async function activate(t: Tf, name: BackendName, hardwareOnly: boolean): Promise<BackendInfo> {
  let device = 'CPU';
  let software = false;
  if (name === 'cpu') {
    requireOptional('@tensorflow/tfjs-backend-cpu', "tfjs's cpu backend (--backend cpu)");
    device = 'CPU (tfjs-backend-cpu, plain JavaScript)';
  } else if (name === 'wasm') {
    loadWasm(t);
    device = 'CPU (tfjs-backend-wasm, SIMD, one thread)';
  } else if (name === 'webgpu') {
    const gpu = await openWebgpu(hardwareOnly);
    device = gpu.device;
    software = gpu.software;
    // tfjs-backend-webgpu registers itself only if `navigator.gpu` exists when
    // it is loaded, and its backend factory calls navigator.gpu.requestAdapter
    // during setBackend. Node has no navigator (20) or one without `gpu` (21+),
    // so lend one for exactly that long, then put the original back: leaving a
    // fake navigator around misleads other libraries' browser detection.
    const saved = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
    Object.defineProperty(globalThis, 'navigator', { value: { gpu: gpu.gpu }, configurable: true, writable: true });
    try {
      requireOptional('@tensorflow/tfjs-backend-webgpu', "tfjs's webgpu backend (--backend webgpu)");
      const ok = await t.setBackend('webgpu');
      if (!ok || t.getBackend() !== 'webgpu') {
        throw new DorascopeError('E_BACKEND', `tfjs backend 'webgpu' failed to initialise on ${device}`, { backend: name });
      }
      await t.ready();
    } finally {
      if (saved) Object.defineProperty(globalThis, 'navigator', saved);
      else delete (globalThis as { navigator?: unknown }).navigator;
    }
    return { name, device, software, skipped: [] };
  } else {
    device = loadTensorflowBinding();
  }
  const ok = await t.setBackend(name);
  if (!ok || t.getBackend() !== name) {
    throw new DorascopeError('E_BACKEND', `tfjs backend '${name}' failed to initialise`, { backend: name });
  }
  await t.ready();
  return { name, device, software, skipped: [] };
}

interface WebgpuModule { create(options: string[]): unknown; globals: Record<string, unknown> }
interface GpuLike { requestAdapter(o?: { powerPreference?: string }): Promise<AdapterLike | null> }
interface AdapterLike { info?: { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter?: boolean }; isFallbackAdapter?: boolean }

let webgpuCache: { gpu: GpuLike; device: string; software: boolean } | undefined;

/**
 * Opens Dawn (the `webgpu` npm package, prebuilt for linux-x64) and its
 * high-performance adapter. On a machine without a GPU, Dawn runs on Mesa's
 * software Vulkan (llvmpipe) when mesa-vulkan-drivers ≥ 25 is installed
 * (bookworm-backports); that adapter reports itself as a fallback/software
 * one, which `auto` rejects and an explicit `--backend webgpu` accepts.
 */
async function openWebgpu(hardwareOnly: boolean): Promise<{ gpu: GpuLike; device: string; software: boolean }> {
  if (webgpuCache === undefined) {
    let mod: WebgpuModule;
    try {
      mod = (await import('webgpu')) as unknown as WebgpuModule;
    } catch (e) {
      // E_BACKEND either way, so that `auto` moves on; the message says how to install it when absent.
      const hint = isModuleNotFound(e, 'webgpu') ? ' (an optional dependency: `npm install webgpu`)' : '';
      throw new DorascopeError('E_BACKEND', `the 'webgpu' package (Dawn) could not be loaded${hint}: ${(e as Error).message}`, { backend: 'webgpu' });
    }
    // GPUBufferUsage, GPUMapMode, ...: tfjs reads these as browser globals.
    for (const [k, v] of Object.entries(mod.globals)) {
      if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
    }
    const gpu = mod.create([]) as GpuLike;
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (adapter === null) {
      throw new DorascopeError('E_BACKEND', 'no WebGPU adapter: Dawn found no Vulkan driver (install the GPU vendor\'s Vulkan driver, or mesa-vulkan-drivers ≥ 25 for the software one)', { backend: 'webgpu' });
    }
    const info = adapter.info ?? {};
    const software = adapter.isFallbackAdapter === true || info.isFallbackAdapter === true ||
      info.architecture === 'software' || /llvmpipe|lavapipe|swiftshader/i.test(`${info.device ?? ''} ${info.description ?? ''}`);
    const device = [info.vendor, info.description || info.device].filter((x) => x).join(' ') || 'unknown WebGPU adapter';
    webgpuCache = { gpu, device: software ? `${device} (software)` : device, software };
  }
  if (hardwareOnly && webgpuCache.software) {
    throw new DorascopeError('E_BACKEND', `only a software WebGPU adapter (${webgpuCache.device}); pass --backend webgpu to use it anyway`, { backend: 'webgpu' });
  }
  return webgpuCache;
}

/**
 * The `tensorflow` backend comes from @tensorflow/tfjs-node-gpu (CUDA) or
 * @tensorflow/tfjs-node, which the user installs: they are not dependencies,
 * because their install script downloads libtensorflow 2.9.1 from Google
 * storage, which has answered 403 since August 2026 (tfjs issue #8742).
 */
function loadTensorflowBinding(): string {
  const missing: string[] = [];
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      require.resolve(pkg);
    } catch {
      missing.push(pkg);
      continue;
    }
    try {
      require(pkg);
    } catch (e) {
      throw new DorascopeError('E_BACKEND',
        `${pkg} is installed but failed to load (${(e as Error).message.split('\n')[0]}). ` +
        'Its native libtensorflow is usually missing because the install-time download failed: reinstall with ' +
        'TFJS_NODE_CDN_STORAGE=<your mirror> or place libtensorflow 2.9.1 in its deps/ folder (docs/train.md, "Backends")', { backend: 'tensorflow' });
    }
    return pkg.endsWith('-gpu') ? 'CUDA (libtensorflow via @tensorflow/tfjs-node-gpu)' : 'CPU (libtensorflow via @tensorflow/tfjs-node)';
  }
  throw new DorascopeError('E_BACKEND',
    `no TensorFlow binding installed (${missing.join(', ')}): install @tensorflow/tfjs-node-gpu (CUDA) or @tensorflow/tfjs-node ` +
    'with a reachable libtensorflow mirror (docs/train.md, "Backends"), or use --backend webgpu|wasm', { backend: 'tensorflow' });
}

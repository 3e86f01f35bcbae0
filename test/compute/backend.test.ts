import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { selectBackend, tf } from '../../src/compute/backend.js';
import { DorascopeError } from '../../src/errors.js';
import { train } from '../../src/train/train.js';
import { openSafetensors } from '../../src/io/safetensors/reader.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rng } from '../helpers/random.js';

// Backend selection. CI installs Mesa's software Vulkan (llvmpipe)
// from bookworm-backports, so the webgpu path runs there for correctness;
// where no Vulkan driver exists at all the webgpu cases are skipped, visibly.
const require = createRequire(import.meta.url);
const hasBinding = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'].some((p) => {
  try { require.resolve(p); return true; } catch { return false; }
});

async function webgpuAvailable(): Promise<boolean> {
  try {
    await selectBackend('webgpu');
    return true;
  } catch (e) {
    if (e instanceof DorascopeError && e.code === 'E_BACKEND') return false;
    throw e;
  }
}
const gpu = await webgpuAvailable();

/** Uniform [-1, 1) from the project's seeded generator. */
function uniform(seed: number): () => number {
  const r = rng(seed);
  return () => r() * 2 - 1;
}

describe('backend selection', () => {
  it.skipIf(hasBinding)('tensorflow without a binding installed is a typed error that says what to install', async () => {
    const err = await selectBackend('tensorflow').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DorascopeError);
    expect((err as DorascopeError).code).toBe('E_BACKEND');
    expect((err as Error).message).toContain('@tensorflow/tfjs-node-gpu');
    expect((err as Error).message).toContain('--backend webgpu|wasm');
  });

  it('auto takes webgpu only on a hardware adapter, and says why it passed over the others', async () => {
    const info = await selectBackend('auto');
    expect(tf().getBackend()).toBe(info.name);
    if (info.name === 'webgpu') {
      expect(info.software).toBe(false);
    } else {
      expect(info.skipped[0]).toMatch(/^webgpu: /);
      if (!hasBinding) {
        expect(info.name).toBe('wasm');
        expect(info.skipped[1]).toMatch(/^tensorflow: no TensorFlow binding installed/);
      }
    }
  });

  it.runIf(gpu)('webgpu: matmuls with every transpose and their gradient equal a float64 loop', async () => {
    const info = await selectBackend('webgpu');
    expect(info.name).toBe('webgpu');
    expect(tf().getBackend()).toBe('webgpu');
    const t = tf();
    const m = 7, k = 33, n = 5;
    const r = uniform(3);
    const a = Float32Array.from({ length: m * k }, r);
    const b = Float32Array.from({ length: k * n }, r);
    // Reference: C = A·B and d/dA Σ (A·B)∘G = G·Bᵀ, with G a fixed weighting.
    const g = Float32Array.from({ length: m * n }, r);
    const c64 = new Float64Array(m * n), dA64 = new Float64Array(m * k);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p]! * b[p * n + j]!;
      c64[i * n + j] = s;
    }
    for (let i = 0; i < m; i++) for (let p = 0; p < k; p++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += g[i * n + j]! * b[p * n + j]!;
      dA64[i * k + p] = s;
    }
    const A = t.tensor2d(a, [m, k]), B = t.tensor2d(b, [k, n]), G = t.tensor2d(g, [m, n]);
    const At = t.transpose(A), Bt = t.transpose(B);
    for (const [x, y, ta, tb] of [[A, B, false, false], [At, B, true, false], [A, Bt, false, true], [At, Bt, true, true]] as const) {
      // `await data()`: dataSync throws on webgpu in Node.
      const got = await t.matMul(x, y, ta, tb).data();
      for (let i = 0; i < m * n; i++) expect(Math.abs(got[i]! - c64[i]!)).toBeLessThan(1e-4 * (1 + Math.abs(c64[i]!)));
    }
    const dA = await t.grad((x) => t.sum(t.mul(t.matMul(x as typeof A, B), G)))(A).data();
    for (let i = 0; i < m * k; i++) expect(Math.abs(dA[i]! - dA64[i]!)).toBeLessThan(1e-4 * (1 + Math.abs(dA64[i]!)));
    for (const x of [A, B, G, At, Bt]) x.dispose();
  });

  it.runIf(gpu)('webgpu: a short DoRA run of the real model lowers the held-out loss and records its backend', async () => {
    const out = await mkdtemp(join(tmpdir(), 'dorascope-webgpu-'));
    try {
      const res = await train({
        method: 'dora', backend: 'webgpu', steps: 8, seed: 1, lr: 3e-2, batchSize: 4, contextLength: 16, out,
        config: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2 },
      });
      expect(res.backend).toBe('webgpu');
      expect(res.evalLossAfter).toBeLessThan(res.evalLossBefore);
      const f = await openSafetensors(join(out, 'checkpoint-8', 'adapter_model.safetensors'));
      try {
        expect(f.metadata?.['backend']).toBe('webgpu');
      } finally {
        await f.close();
      }
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});


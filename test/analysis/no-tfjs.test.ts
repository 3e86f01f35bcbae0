/**
 * An analysis-only install (`npm install --omit=optional`) has no tfjs. Here the compute/tfjs.ts
 * module is replaced by one that behaves as it does then (tf() throws E_MISSING_DEPENDENCY, the
 * installed check says no): the adapter fast path's `auto` product must fall back to the float64
 * JS product on a module big enough that it would otherwise pick tfjs, and an explicit
 * `product: 'tfjs'` must say which package to install.
 */
import { describe, expect, it, vi } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { analyze } from '../../src/analysis/analyze.js';
import { AUTO_TFJS_MIN_MACS } from '../../src/analysis/adapter-fast-path.js';
import { isDorascopeError } from '../../src/errors.js';
import { hasPackage, requireOptional } from '../../src/optional.js';
import { rng } from '../helpers/random.js';
import { writeAdapter, writeModel } from '../helpers/models.js';

vi.mock('../../src/compute/tfjs.js', async () => {
  const { missingDependency, TFJS_PACKAGES } = await import('../../src/optional.js');
  return {
    tf: () => { throw missingDependency('@tensorflow/tfjs-core', 'tfjs (test: not installed)', undefined, TFJS_PACKAGES); },
    hasTfjsWasm: () => false,
  };
});

describe('without tfjs installed', () => {
  it('requireOptional names the package to install; hasPackage tells installed from absent', () => {
    let err: unknown;
    try { requireOptional('dorascope-no-such-package', 'the test'); } catch (e) { err = e; }
    expect(isDorascopeError(err, 'E_MISSING_DEPENDENCY')).toBe(true);
    expect((err as Error).message).toContain('npm install dorascope-no-such-package');
    expect((err as Error).message).toContain('the test');
    expect(hasPackage('apache-arrow')).toBe(true);
    expect(hasPackage('dorascope-no-such-package')).toBe(false);
  });

  it("the adapter fast path's auto product falls back to the JS product; explicit tfjs says what to install", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ds-no-tfjs-'));
    const next = rng(5);
    const out = 512, inDim = 512, r = 8;
    const m = 'model.layers.0.self_attn.q_proj';
    const w0 = Float32Array.from({ length: out * inDim }, () => (next() - 0.5) * 0.04);
    await writeModel(join(dir, 'base.safetensors'), { [`${m}.weight`]: { shape: [out, inDim], data: w0 } });
    for (const step of [10, 20]) {
      await writeAdapter(join(dir, 'run', `checkpoint-${step}`), { r, lora_alpha: 16, target_modules: ['q_proj'] }, {
        [`base_model.model.${m}.lora_A.weight`]: { shape: [r, inDim], data: Float32Array.from({ length: r * inDim }, () => (next() - 0.5) * 0.08) },
        [`base_model.model.${m}.lora_B.weight`]: { shape: [out, r], data: Float32Array.from({ length: out * r }, () => (next() - 0.5) * 0.02) },
      });
    }
    // Both checkpoints stack into one product of out·in·2r MACs: `auto` would choose tfjs for it.
    expect(out * inDim * 2 * r).toBeGreaterThanOrEqual(AUTO_TFJS_MIN_MACS);
    const run = (product: 'auto' | 'js' | 'tfjs') =>
      analyze({ base: join(dir, 'base.safetensors'), runs: [{ path: join(dir, 'run'), label: 'run' }], write: false, quiet: true, product });
    const auto = await run('auto');
    const js = await run('js');
    expect(auto.rows.map((x) => x.step)).toEqual([10, 20]);
    expect(auto.rows.map((x) => [x.delta_m, x.delta_d])).toEqual(js.rows.map((x) => [x.delta_m, x.delta_d]));
    expect(auto.rows.every((x) => x.delta_d > 0 && x.delta_m > 0)).toBe(true);
    const err = await run('tfjs').then(() => undefined, (e: unknown) => e);
    expect(isDorascopeError(err, 'E_MISSING_DEPENDENCY')).toBe(true);
    expect((err as Error).message).toContain('npm install @tensorflow/tfjs-core @tensorflow/tfjs-backend-wasm');
    await rm(dir, { recursive: true, force: true });
  });
});

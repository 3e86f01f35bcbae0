import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { analyze, workerCount, AUTO_WORKERS_MIN_ELEMENTS } from '../../src/analysis/analyze.js';
import { AnalysisPool, prestartWorkers, spareWorkers, workerUrl } from '../../src/analysis/pool.js';
import { writeSafetensors } from '../../src/io/safetensors/writer.js';
import { isDorascopeError } from '../../src/errors.js';
import { rng, randn } from '../helpers/random.js';
import { writeAdapter, writeModel } from '../helpers/models.js';

/** A base, two full checkpoints (one with a NaN), and a DoRA adapter run with a Conv1D-free Llama layout. */
async function fixture(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ds-an-workers-'));
  const next = rng(31);
  const names: [string, number[]][] = [];
  for (let l = 0; l < 3; l++) {
    names.push([`model.layers.${l}.self_attn.q_proj.weight`, [24, 16]], [`model.layers.${l}.self_attn.v_proj.weight`, [24, 16]], [`model.layers.${l}.mlp.up_proj.weight`, [40, 16]]);
  }
  const base = Object.fromEntries(names.map(([n, s]) => [n, { shape: s, data: randn(next, s[0]! * s[1]!, 0.05), dtype: 'BF16' as const }]));
  await writeModel(join(dir, 'base.safetensors'), base);
  for (const c of [1, 2]) {
    const ck = Object.fromEntries(names.map(([n, s]) => [n, { shape: s, data: base[n]!.data.map((v) => v + (next() - 0.5) * 0.01 * c) }]));
    if (c === 2) ck[names[4]![0]]!.data[3] = NaN;
    await writeModel(join(dir, `ck${c}.safetensors`), ck);
  }
  for (const step of [5, 10]) {
    const t: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [n] of names.filter(([x]) => /q_proj|v_proj/u.test(x))) {
      const m = `base_model.model.${n.replace(/\.weight$/u, '')}`;
      t[`${m}.lora_A.weight`] = { shape: [4, 16], data: randn(next, 64, 0.25) };
      t[`${m}.lora_B.weight`] = { shape: [24, 4], data: randn(next, 96, 0.01 * step) };
      t[`${m}.lora_magnitude_vector`] = { shape: [24], data: randn(next, 24, 0.05).map((v) => 0.2 + v) };
    }
    await writeAdapter(join(dir, 'dora', `checkpoint-${step}`), { r: 4, lora_alpha: 8, use_dora: true, target_modules: ['q_proj', 'v_proj'] }, t);
  }
  return dir;
}

describe('analysis workers', () => {
  it('the worker script is found (dist/analysis/worker.js, built by npm test)', () => {
    expect(workerUrl()?.pathname).toMatch(/dist\/analysis\/worker\.js$/u);
  });

  it('prestarted workers are adopted by the next analysis, which gives the same rows and statistics', async () => {
    const dir = await fixture();
    const opts = { base: join(dir, 'base.safetensors'), write: false as const, quiet: true, runs: [{ path: join(dir, 'ck1.safetensors') }, { path: join(dir, 'dora'), label: 'dora' }] };
    const seq = await analyze({ ...opts, workers: 0 });
    prestartWorkers(2);
    expect(spareWorkers()).toBe(2);
    const par = await analyze({ ...opts, workers: 2 });
    expect(spareWorkers()).toBe(0);
    expect(par.rows).toEqual(seq.rows);
    expect(par.summary).toEqual(seq.summary);
  });

  it('rows and per-row tables are identical with and without workers (full, adapter fast and merge paths, NaN flag)', async () => {
    const dir = await fixture();
    const opts = {
      base: join(dir, 'base.safetensors'), write: false as const, quiet: true, perRow: true,
      runs: [{ path: join(dir, 'ck1.safetensors') }, { path: join(dir, 'ck2.safetensors') }, { path: join(dir, 'dora'), label: 'dora' }],
    };
    for (const adapterPath of ['fast', 'merge'] as const) {
      const seq = await analyze({ ...opts, adapterPath, workers: 0 });
      const par = await analyze({ ...opts, adapterPath, workers: 2 });
      expect(seq.rows).toHaveLength(9 * 2 + 9 * 2); // the adapter run has every base tensor (up_proj unadapted: ΔM = ΔD = 0)
      expect(seq.rows.some((r) => r.flag === 'non_finite')).toBe(true);
      // Same order, same numbers to the bit (NaN included).
      expect(par.rows).toEqual(seq.rows);
      expect(par.summary).toEqual(seq.summary);
    }
    // Per-row tables: written and read back through Arrow.
    const out0 = join(dir, 'o0'), out2 = join(dir, 'o2');
    await analyze({ ...opts, write: true, out: out0, workers: 0 });
    await analyze({ ...opts, write: true, out: out2, workers: 3 });
    const { readFile } = await import('node:fs/promises');
    expect(Buffer.compare(await readFile(join(out0, 'rows.arrow')), await readFile(join(out2, 'rows.arrow')))).toBe(0);
    expect(Buffer.compare(await readFile(join(out0, 'decomposition.arrow')), await readFile(join(out2, 'decomposition.arrow')))).toBe(0);
  });

  it('every dtype, features along rows and along columns (Conv1D): the same table bytes with 0, 1 and 2 workers', async () => {
    const { readFile } = await import('node:fs/promises');
    const next = rng(47);
    for (const dtype of ['BF16', 'F16', 'F32', 'F8_E4M3', 'F8_E5M2'] as const) {
      const dir = await mkdtemp(join(tmpdir(), `ds-an-wdt-${dtype}-`));
      // Odd sizes (no multiple of the kernels' four lanes), both feature axes, and a NaN in one checkpoint.
      const shapes: [string, number[]][] = [
        ['transformer.h.0.attn.c_attn.weight', [21, 39]], ['transformer.h.0.mlp.c_fc.weight', [21, 53]],
        ['model.layers.0.self_attn.q_proj.weight', [27, 19]], ['model.layers.1.mlp.up_proj.weight', [33, 21]],
      ];
      const base = Object.fromEntries(shapes.map(([n, sh]) => [n, { shape: sh, data: randn(next, sh[0]! * sh[1]!, 0.05), dtype }]));
      await writeModel(join(dir, 'base.safetensors'), base);
      for (const c of [1, 2]) {
        const ck = Object.fromEntries(shapes.map(([n, sh]) => [n, { shape: sh, data: base[n]!.data.map((v) => v * (1 + 0.1 * c * (next() - 0.5))), dtype }]));
        if (c === 2) ck[shapes[1]![0]]!.data[5] = NaN;
        await writeModel(join(dir, `ck${c}.safetensors`), ck);
      }
      const tables: Buffer[][] = [];
      for (const workers of [0, 1, 2]) {
        const out = join(dir, `w${workers}`);
        const res = await analyze({ base: join(dir, 'base.safetensors'), runs: [{ path: join(dir, 'ck1.safetensors') }, { path: join(dir, 'ck2.safetensors') }], out, quiet: true, perRow: true, workers });
        expect(res.rows.map((r) => r.flag).sort()).toEqual(['', '', '', '', '', '', '', 'non_finite']);
        // With workers, one of them writes the decomposition tables (pool.ts writeTables): the same bytes.
        tables.push(await Promise.all(['rows.arrow', 'decomposition.arrow', 'decomposition.parquet', 'decomposition.csv', 'summary.json'].map((f) => readFile(join(out, f)))));
      }
      for (const t of tables.slice(1)) t.forEach((b, i) => expect(Buffer.compare(b, tables[0]![i]!), dtype).toBe(0));
    }
  });

  it('the CLI (bin/dorascope.js → dist/) finds its workers and writes the same table', async () => {
    const dir = await fixture();
    const { spawnSync } = await import('node:child_process');
    const { readFile } = await import('node:fs/promises');
    const bin = new URL('../../bin/dorascope.js', import.meta.url).pathname;
    const args = ['analyze', '--base', join(dir, 'base.safetensors'), join(dir, 'ck1.safetensors'), join(dir, 'dora'), '--quiet'];
    const res = spawnSync(process.execPath, [bin, ...args, '--workers', '2', '--out', join(dir, 'cli')], { encoding: 'utf8' });
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
    const manifest = JSON.parse(await readFile(join(dir, 'cli', 'manifest.json'), 'utf8'));
    expect(manifest.timings.workers).toBe(2);
    await analyze({ base: join(dir, 'base.safetensors'), runs: [{ path: join(dir, 'ck1.safetensors') }, { path: join(dir, 'dora') }], out: join(dir, 'lib'), quiet: true, workers: 0 });
    expect(await readFile(join(dir, 'cli', 'decomposition.csv'), 'utf8')).toBe(await readFile(join(dir, 'lib', 'decomposition.csv'), 'utf8'));
  });

  it('closing to finish lets a worker complete what it was asked (the tables it writes); closing after a failure cuts it short', async () => {
    const dir = await fixture();
    const init = { base: join(dir, 'base.safetensors'), checkpoints: [join(dir, 'ck1.safetensors')], options: { perRow: false, adapterPath: 'fast' as const, product: 'js' as const } };
    const name = 'model.layers.0.mlp.up_proj.weight';
    // No grace at all: only waiting for the request keeps the worker alive until it has answered.
    const finishing = AnalysisPool.start(1, init, workerUrl()!);
    const done = finishing.run(name, [40, 16]);
    await finishing.close(true, 0);
    expect((await done)[0]!.d.k).toBe(40);
    const cut = AnalysisPool.start(1, init, workerUrl()!);
    const cutShort = cut.run(name, [40, 16]);
    await cut.close(false, 0);
    await expect(cutShort).rejects.toSatisfy((e: unknown) => isDorascopeError(e, 'E_INTERNAL'));
  });

  it('an error inside a worker comes back as the same typed error', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ds-an-werr-'));
    // An integer weight passes the header checks but cannot be decoded to float: E_DTYPE from base.read in the task.
    const tensors = [{ name: 'model.layers.0.mlp.up_proj.weight', dtype: 'I32' as const, shape: [2, 2], data: new Uint8Array(16) }];
    await writeSafetensors(join(dir, 'base.safetensors'), tensors);
    await writeSafetensors(join(dir, 'ck.safetensors'), tensors);
    for (const workers of [0, 2]) {
      await expect(analyze({ base: join(dir, 'base.safetensors'), runs: [{ path: join(dir, 'ck.safetensors') }], write: false, quiet: true, workers }))
        .rejects.toSatisfy((e: unknown) => isDorascopeError(e, 'E_DTYPE') && e.message.includes('up_proj'));
    }
  });

  it('automatic worker count: none for small analyses; bad counts are usage errors', () => {
    expect(workerCount(undefined, 1000)).toBe(0);
    expect(workerCount(undefined, AUTO_WORKERS_MIN_ELEMENTS - 1)).toBe(0);
    expect(workerCount(undefined, AUTO_WORKERS_MIN_ELEMENTS)).toBe(availableParallelism() >= 2 ? 2 : 0);
    expect(workerCount(3, 0)).toBe(Math.min(3, availableParallelism())); // clamped to the cores
    expect(() => workerCount(-1, 0)).toThrow(/whole number/u);
    expect(() => workerCount(NaN, 0)).toThrow(/whole number/u);
  });
});

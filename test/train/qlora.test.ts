/**
 * QLoRA and QDoRA end to end: `train --quantize nf4` writes the adapter (PEFT) and the 4-bit base
 * (bitsandbytes' keys, config.json quantization_config); inspect, merge and analyze --quantized-base
 * read what it wrote, and the merged weights equal a float64 merge written here from the dequantized base.
 */
import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { train } from '../../src/train/train.js';
import { inspect } from '../../src/io/inspect.js';
import { mergeAdapter } from '../../src/io/peft/merge-adapter.js';
import { openSource } from '../../src/io/sources/open-source.js';
import { isDorascopeError } from '../../src/errors.js';
import { maxRelErr, referenceMerge } from '../helpers/reference-merge.js';
import { runQuiet } from '../helpers/cli-quiet.js';
import { refDecomposition } from '../helpers/decomposition.js';

const small = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2 };
const d = 32;

async function readAll(path: string, names: string[]): Promise<Map<string, Float32Array>> {
  const src = await openSource(path);
  try {
    const m = new Map<string, Float32Array>();
    for (const n of names) m.set(n, await src.read(n));
    return m;
  } finally {
    await src.close();
  }
}


describe('train --quantize nf4 → inspect → merge → analyze --quantized-base', () => {
  for (const method of ['lora', 'dora'] as const) {
    it(`Q${method.toUpperCase()}: the trainer's files round-trip, merged weights equal a float64 merge on the dequantized base`, async () => {
      const out = mkdtempSync(join(tmpdir(), `ds-q${method}-`));
      const res = await train({ method, steps: 3, seed: 1, config: small, batchSize: 2, contextLength: 16, out, quantize: 'nf4', backend: 'wasm' });
      expect(Number.isFinite(res.evalLossAfter)).toBe(true);
      const qbase = join(out, 'quantized-base'), ck = join(out, 'checkpoint-3');

      // The base as Transformers saves a load_in_4bit model.
      const cfg = JSON.parse(readFileSync(join(qbase, 'config.json'), 'utf8'));
      expect(cfg.quantization_config).toMatchObject({ quant_method: 'bitsandbytes', load_in_4bit: true, bnb_4bit_quant_type: 'nf4', bnb_4bit_use_double_quant: true });
      const args = JSON.parse(readFileSync(join(ck, 'training_args.json'), 'utf8'));
      expect(args.quantization).toEqual({ quant_method: 'bitsandbytes', bnb_4bit_quant_type: 'nf4', blocksize: 64, bnb_4bit_use_double_quant: true });
      const info = await inspect(qbase);
      const Q = 'model.layers.0.self_attn.q_proj.weight';
      expect(info.tensors.find((t) => t.name === Q)).toMatchObject({ dtype: 'F32', shape: [d, d], quant: { type: 'nf4', blockSize: 64, doubleQuant: true } });
      expect(info.tensors.find((t) => t.name === 'model.layers.0.mlp.down_proj.weight')?.quant?.type).toBe('nf4');
      expect(info.tensors.find((t) => t.name === 'lm_head.weight')?.quant).toBeUndefined();

      // merge onto the 4-bit base, against the float64 reference on the dequantized weight
      const merged = join(out, 'merged');
      await mergeAdapter(qbase, ck, merged);
      expect(JSON.parse(readFileSync(join(merged, 'config.json'), 'utf8')).quantization_config).toBeUndefined();
      const mods = ['q_proj', 'v_proj'].map((m) => `model.layers.0.self_attn.${m}`);
      const base = await readAll(qbase, mods.map((m) => `${m}.weight`));
      const full = await readAll(join(out, 'base'), mods.map((m) => `${m}.weight`));
      const keys = mods.flatMap((m) => [`base_model.model.${m}.lora_A.weight`, `base_model.model.${m}.lora_B.weight`, ...(method === 'dora' ? [`base_model.model.${m}.lora_magnitude_vector`] : [])]);
      const ad = await readAll(ck, keys);
      const got = await readAll(merged, mods.map((m) => `${m}.weight`));
      const refs = new Map<string, number[]>();
      for (const m of mods) {
        const W = base.get(`${m}.weight`)!;
        // the 4-bit base is not the float32 one (so the checks below can tell them apart)
        expect(maxRelErr(W, full.get(`${m}.weight`)!)).toBeGreaterThan(1e-3);
        const ref = referenceMerge({
          W, A: ad.get(`base_model.model.${m}.lora_A.weight`)!, B: ad.get(`base_model.model.${m}.lora_B.weight`)!, r: 8, out: d, in: d, scaling: 16 / 8, outputsAreRows: true,
          ...(method === 'dora' ? { magnitude: ad.get(`base_model.model.${m}.lora_magnitude_vector`)! } : {}),
        });
        expect(maxRelErr(got.get(`${m}.weight`)!, ref)).toBeLessThan(1e-6);
        refs.set(m, ref);
      }

      // analyze: the run against the dequantized base, and the quantization step against the float32 base
      const { analyze } = await import('../../src/analysis/analyze.js');
      for (const adapterPath of ['fast', 'merge'] as const) {
        const a = await analyze({ base: join(out, 'base'), quantizedBase: qbase, runs: [{ path: out, label: `q${method}` }], modules: ['q_proj', 'v_proj'], write: false, quiet: true, workers: 0, adapterPath });
        expect(a.summary.runs.map((x) => x.run)).toEqual(['quantization', `q${method}`]);
        for (const m of mods) {
          const W = base.get(`${m}.weight`)!;
          const row = a.rows.find((x) => x.run === `q${method}` && x.tensor === `${m}.weight`)!;
          const e = refDecomposition(W, refs.get(m)!, d, d);
          expect(Math.abs(row.delta_m - e.dm) / e.dm, `${adapterPath} ${m} ΔM`).toBeLessThan(1e-6);
          expect(Math.abs(row.delta_d - e.dd) / e.dd, `${adapterPath} ${m} ΔD`).toBeLessThan(1e-5);
          const qrow = a.rows.find((x) => x.run === 'quantization' && x.tensor === `${m}.weight`)!;
          const eq = refDecomposition(full.get(`${m}.weight`)!, W, d, d);
          expect(Math.abs(qrow.delta_m - eq.dm) / eq.dm).toBeLessThan(1e-6);
          expect(Math.abs(qrow.delta_d - eq.dd) / eq.dd).toBeLessThan(1e-5);
        }
      }
    });
  }

  it('QDoRA\'s magnitude starts at the row norms of the DEQUANTIZED weight (PEFT dequantize_module_weight)', async () => {
    const out = mkdtempSync(join(tmpdir(), 'ds-qdora-m-'));
    // lr 0: the saved magnitude is the initial one
    await train({ method: 'dora', steps: 1, seed: 2, config: small, batchSize: 2, contextLength: 16, out, quantize: 'nf4', doubleQuant: false, lr: 0, backend: 'wasm' });
    const Q = 'model.layers.0.self_attn.q_proj';
    const [qw] = [...(await readAll(join(out, 'quantized-base'), [`${Q}.weight`])).values()];
    const [fw] = [...(await readAll(join(out, 'base'), [`${Q}.weight`])).values()];
    const [m] = [...(await readAll(join(out, 'checkpoint-1'), [`base_model.model.${Q}.lora_magnitude_vector`])).values()];
    const norms = (w: Float32Array) => Array.from({ length: d }, (_, i) => Math.hypot(...w.subarray(i * d, (i + 1) * d)));
    expect(maxRelErr(m!, norms(qw!))).toBeLessThan(1e-6);
    expect(maxRelErr(m!, norms(fw!))).toBeGreaterThan(1e-4);
    expect(JSON.parse(readFileSync(join(out, 'quantized-base', 'config.json'), 'utf8')).quantization_config.bnb_4bit_use_double_quant).toBe(false);
  });

  it('FP4 without double quantization: --resume continues bitwise like an uninterrupted run', async () => {
    const opts = { method: 'lora' as const, seed: 3, config: small, batchSize: 2, contextLength: 16, quantize: 'fp4' as const, doubleQuant: false, backend: 'wasm' as const };
    const whole = await train({ ...opts, steps: 3 });
    const out = mkdtempSync(join(tmpdir(), 'ds-qres-'));
    await train({ ...opts, steps: 2, out });
    const resumed = await train({ ...opts, steps: 3, out, resume: true });
    expect(resumed.startStep).toBe(2);
    expect(resumed.logHistory.map((h) => h.loss)).toEqual(whole.logHistory.map((h) => h.loss));
    const cfg = JSON.parse(readFileSync(join(out, 'quantized-base', 'config.json'), 'utf8'));
    expect(cfg.quantization_config).toMatchObject({ bnb_4bit_quant_type: 'fp4', bnb_4bit_use_double_quant: false });
    // a resume with other quantization settings is refused (training_args.json differs)
    const e = await train({ ...opts, quantize: 'nf4', steps: 4, out, resume: true }).then(() => undefined, (x: unknown) => x);
    expect(isDorascopeError(e, 'E_CHECKPOINT')).toBe(true);
    expect((e as Error).message).toContain('quantization');
  });

  it('the CLI: --quantize fp4 --quant-block-size 128 --no-double-quant reach the saved base; --double-quant alone is a usage error', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'ds-qcli-')), 'run');
    const r = await runQuiet(['train', '--method', 'lora', '--steps', '1', '--layers', '1', '--d-model', '32', '--heads', '2', '--batch-size', '2', '--context-length', '16',
      '--backend', 'wasm', '--quantize', 'fp4', '--quant-block-size', '128', '--no-double-quant', '--out', out, '--quiet']);
    expect(r.code).toBe(0);
    const info = await inspect(join(out, 'quantized-base'));
    expect(info.tensors.find((t) => t.name === 'model.layers.0.self_attn.v_proj.weight')?.quant).toMatchObject({ type: 'fp4', blockSize: 128, doubleQuant: false });
    const bad = await runQuiet(['train', '--method', 'lora', '--steps', '1', '--double-quant', '--quiet']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--quantize');
  });

  it('options are checked before any set-up', async () => {
    const err = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);
    const out = mkdtempSync(join(tmpdir(), 'ds-qopt-'));
    expect(isDorascopeError(await err(train({ method: 'full', steps: 1, quantize: 'nf4', out: join(out, 'a') })), 'E_USAGE')).toBe(true);
    expect(isDorascopeError(await err(train({ method: 'lora', steps: 1, quantize: 'nf4', quantBlockSize: 48, out: join(out, 'b') })), 'E_USAGE')).toBe(true);
    expect(isDorascopeError(await err(train({ method: 'lora', steps: 1, doubleQuant: true, out: join(out, 'c') })), 'E_USAGE')).toBe(true);
    expect(existsSync(join(out, 'a'))).toBe(false);
  });
});

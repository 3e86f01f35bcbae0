import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { train } from '../../src/train/train.js';
import { loadSotu } from '../../src/train/data.js';
import { isDorascopeError } from '../../src/errors.js';

const small = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2 };

describe('train(options) on real SOTU text (wasm)', () => {
  it('the byte data split is by document and recorded with the package version', () => {
    const d = loadSotu(1998, 2000);
    expect(d.dataset).toMatch(/^@stdlib\/datasets-sotu@\d+\.\d+\.\d+ years 1998-2000$/);
    expect(new TextDecoder().decode(d.validation.slice(0, 200))).not.toEqual(new TextDecoder().decode(d.train.slice(0, 200)));
    expect(d.train.length).toBeGreaterThan(d.validation.length);
  });

  it('full fine-tuning lowers the held-out loss from ≈ ln 256 and is deterministic given a seed', async () => {
    const opts = { method: 'full' as const, steps: 40, seed: 7, backend: 'wasm' as const, config: small, batchSize: 4, contextLength: 16, lr: 1e-2 };
    const a = await train(opts);
    expect(a.backend).toBe('wasm');
    expect(Math.abs(a.evalLossBefore - Math.log(256))).toBeLessThan(0.1);
    expect(a.evalLossAfter).toBeLessThan(a.evalLossBefore - 1);
    const b = await train(opts);
    expect(b.logHistory.map((h) => h.loss)).toEqual(a.logHistory.map((h) => h.loss));
  });

  it('dora on q,v reports eval losses in its log history and writes checkpoints', async () => {
    const out = mkdtempSync(join(tmpdir(), 'dorascope-train-'));
    const res = await train({ method: 'dora', steps: 10, seed: 1, config: small, batchSize: 2, contextLength: 16, evalEvery: 5, out, saveEvery: 5 });
    expect(res.checkpoints.map((c) => basename(c))).toEqual(['checkpoint-5', 'checkpoint-10']);
    const state = JSON.parse(readFileSync(join(out, 'checkpoint-10', 'trainer_state.json'), 'utf8'));
    expect(state.global_step).toBe(10);
    expect(state.log_history.filter((h: { eval_loss?: number }) => h.eval_loss !== undefined)).toHaveLength(2);
    // Hugging Face's key names only (transformers' Trainer: loss, learning_rate, eval_loss, eval_<metric>).
    for (const h of state.log_history) expect(Object.keys(h).every((k) => ['step', 'loss', 'learning_rate', 'eval_loss', 'eval_accuracy'].includes(k))).toBe(true);
    // metrics.jsonl holds the same entries, one a line, with the time each was logged.
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    expect(lines.map(({ wall_time: _t, ...e }) => e)).toEqual(state.log_history);
    for (const l of lines) expect(Math.abs(l['wall_time']! - Date.now() / 1000)).toBeLessThan(600);
    expect(JSON.parse(readFileSync(join(out, 'checkpoint-10', 'adapter_config.json'), 'utf8')).use_dora).toBe(true);
    expect(existsSync(join(out, 'base', 'model.safetensors'))).toBe(true);
    // --init from the written base: the adapters start at the same held-out loss as the base run did
    const again = await train({ method: 'lora', steps: 1, seed: 1, init: join(out, 'base'), batchSize: 2, contextLength: 16 });
    expect(again.config.hidden_size).toBe(32);
    expect(Math.abs(again.evalLossBefore - res.evalLossBefore)).toBeLessThan(1e-5);
    rmSync(out, { recursive: true, force: true });
    expect(res.logHistory.filter((h) => h.eval_loss !== undefined).map((h) => h.step)).toEqual([5, 10]);
    expect(Number.isFinite(res.evalLossAfter)).toBe(true);
  });

  it('rejects bad options with typed errors', async () => {
    await expect(train({ method: 'lora', steps: 0 })).rejects.toSatisfy((e) => isDorascopeError(e, 'E_USAGE'));
    await expect(train({ method: 'lora', steps: 1, target: ['nope'], config: small }))
      .rejects.toSatisfy((e) => isDorascopeError(e, 'E_USAGE'));
  });
});

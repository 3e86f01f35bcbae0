import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { train, type TrainOptions } from '../../src/train/train.js';
import { openSafetensors } from '../../src/io/safetensors/reader.js';
import { isDorascopeError } from '../../src/errors.js';

const tmp = mkdtempSync(join(tmpdir(), 'dorascope-resume-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const small = { hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2 };
const bytes = (p: string) => readFileSync(p);
const history = (ck: string) => JSON.parse(readFileSync(join(ck, 'trainer_state.json'), 'utf8')).log_history;

/**
 * The interrupted run is the same run with its last checkpoint removed (what a stop right after
 * checkpoint-3 leaves), plus a temporary folder a killed writer would leave; `--resume` must
 * ignore and remove it and end with the same bytes as the run that was never interrupted.
 */
async function resumeMatches(method: TrainOptions['method'], opts: Partial<TrainOptions>): Promise<void> {
  const base: TrainOptions = {
    method, steps: 6, saveEvery: 3, seed: 11, config: small, batchSize: 2, contextLength: 12,
    lrScheduler: 'cosine', warmupSteps: 2, weightDecay: 0.01, ...opts,
  };
  const whole = join(tmp, `${method}-whole`), cut = join(tmp, `${method}-cut`);
  await train({ ...base, out: whole });
  await train({ ...base, out: cut });
  rmSync(join(cut, 'checkpoint-6'), { recursive: true });
  const stale = join(cut, `.checkpoint-6.tmp-99999-deadbeef`);
  mkdirSync(stale);
  writeFileSync(join(stale, 'adapter_model.safetensors'), 'half a file');
  const res = await train({ ...base, out: cut, resume: true });
  expect(res.startStep).toBe(3);
  expect(res.resumedFrom).toBe(join(cut, 'checkpoint-3'));
  expect(existsSync(stale)).toBe(false);
  expect(readdirSync(cut).filter((n) => n.startsWith('.'))).toEqual([]);
  const file = method === 'full' ? 'model.safetensors' : 'adapter_model.safetensors';
  const [a, b] = [join(whole, 'checkpoint-6'), join(cut, 'checkpoint-6')];
  // bitwise: weights, optimizer moments and step, and the logged losses and rates
  expect(bytes(join(b, file)).equals(bytes(join(a, file)))).toBe(true);
  expect(bytes(join(b, 'optimizer.safetensors')).equals(bytes(join(a, 'optimizer.safetensors')))).toBe(true);
  expect(history(b)).toEqual(history(a));
  // and training did move the weights away from checkpoint-3 (so equality is not trivial)
  expect(bytes(join(cut, 'checkpoint-3', file)).equals(bytes(join(b, file)))).toBe(false);
  // resuming a finished run trains nothing and rewrites nothing
  const again = await train({ ...base, out: cut, resume: true });
  expect([again.startStep, again.checkpoints.length]).toEqual([6, 0]);
  expect(bytes(join(b, file)).equals(bytes(join(a, file)))).toBe(true);
}

describe('--resume continues bitwise like an uninterrupted run (wasm)', () => {
  it('dora with a cosine schedule and a magnitude-only module', async () => {
    await resumeMatches('dora', { target: ['q_proj', 'v_proj'], magnitudeOnly: ['down_proj'] });
  });

  it('dvora with a magnitude-only module (shared frozen projections restored, not trained)', async () => {
    await resumeMatches('dvora', { r: 32, target: ['q_proj', 'up_proj'], magnitudeOnly: ['down_proj'] });
  });

  it('full fine-tuning (model.safetensors + moments of every weight)', async () => {
    await resumeMatches('full', {});
  });

  it('lora on the cpu backend, linear schedule', async () => {
    await resumeMatches('lora', { backend: 'cpu', lrScheduler: 'linear', target: ['q_proj', 'up_proj'] });
  });

  it('the optimizer file holds K.exp_avg / K.exp_avg_sq per trainable tensor and the step', async () => {
    const f = await openSafetensors(join(tmp, 'dora-whole', 'checkpoint-6', 'optimizer.safetensors'));
    try {
      expect(f.metadata['step']).toBe('6');
      expect(f.metadata['optimizer']).toBe('AdamW');
      const names = f.tensors.map((t) => t.name);
      expect(names).toContain('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight.exp_avg_sq');
      expect(names).toContain('base_model.model.model.layers.0.mlp.down_proj.lora_magnitude_vector.exp_avg');
      // magnitude-only: A and B are frozen, so they have no moments
      expect(names.some((n) => n.includes('down_proj.lora_A') || n.includes('down_proj.lora_B'))).toBe(false);
      // 2 direction modules × (A, B, m) + 1 magnitude-only × m, two moments each
      expect(names).toHaveLength(2 * (2 * 3 + 1));
    } finally {
      await f.close();
    }
    const sched = JSON.parse(readFileSync(join(tmp, 'dora-whole', 'checkpoint-6', 'scheduler.json'), 'utf8'));
    expect(sched).toMatchObject({ lr_scheduler_type: 'cosine', warmup_steps: 2, num_training_steps: 6, last_epoch: 6 });
    const rng = JSON.parse(readFileSync(join(tmp, 'dora-whole', 'checkpoint-3', 'rng_state.json'), 'utf8'));
    expect(rng.data).toEqual({ algorithm: 'mulberry32', seed: 12, draws: 3 * 2 }); // 3 steps × 2 windows
  });

  it('refuses to resume with other options, without a checkpoint, or from an incomplete one (E_CHECKPOINT)', async () => {
    const base: TrainOptions = { method: 'dora', steps: 6, seed: 11, config: small, batchSize: 2, contextLength: 12, target: ['q_proj', 'v_proj'], magnitudeOnly: ['down_proj'], lrScheduler: 'cosine', warmupSteps: 2, weightDecay: 0.01 };
    const src = join(tmp, 'dora-whole');
    const other = await train({ ...base, r: 4, out: src, resume: true }).catch((e: unknown) => e);
    expect(isDorascopeError(other, 'E_CHECKPOINT')).toBe(true);
    expect((other as Error).message).toMatch(/r = 8, this run asks 4/);
    const empty = join(tmp, 'empty');
    mkdirSync(empty);
    await expect(train({ ...base, out: empty, resume: true })).rejects.toSatisfy((e) => isDorascopeError(e, 'E_CHECKPOINT'));
    const broken = join(tmp, 'broken');
    cpSync(src, broken, { recursive: true });
    rmSync(join(broken, 'checkpoint-6', 'optimizer.safetensors'));
    await expect(train({ ...base, out: broken, resume: true })).rejects.toSatisfy(
      (e) => isDorascopeError(e, 'E_CHECKPOINT') && /optimizer\.safetensors/.test((e as Error).message));
    // a truncated optimizer file is a typed reader error, not a crash
    cpSync(join(src, 'checkpoint-6', 'optimizer.safetensors'), join(broken, 'checkpoint-6', 'optimizer.safetensors'));
    const opt = join(broken, 'checkpoint-6', 'optimizer.safetensors');
    writeFileSync(opt, readFileSync(opt).subarray(0, 200));
    await expect(train({ ...base, out: broken, resume: true })).rejects.toSatisfy((e) => isDorascopeError(e));
    await expect(train({ ...base, resume: true })).rejects.toSatisfy((e) => isDorascopeError(e, 'E_USAGE'));
    writeFileSync(join(broken, 'checkpoint-6', 'trainer_state.json'), '{"global_step": 6, "log_hist');
    await expect(train({ ...base, out: broken, resume: true })).rejects.toSatisfy(
      (e) => isDorascopeError(e, 'E_TRAINER_STATE') && /checkpoint-6\/trainer_state\.json/.test((e as Error).message));
  });

  it('a fresh run refuses an --out that holds an earlier run\'s checkpoints (E_USAGE), and leaves them alone', async () => {
    const src = join(tmp, 'full-whole');
    const before = bytes(join(src, 'checkpoint-6', 'model.safetensors'));
    const err = await train({ method: 'full', steps: 2, seed: 3, config: small, batchSize: 2, contextLength: 12, out: src }).catch((e: unknown) => e);
    expect(isDorascopeError(err, 'E_USAGE')).toBe(true);
    expect((err as Error).message).toMatch(/checkpoint-3, checkpoint-6.*--resume/);
    expect(bytes(join(src, 'checkpoint-6', 'model.safetensors')).equals(before)).toBe(true);
  });

  it('--warmup-ratio with a longer --steps on resume: warmup is re-resolved for the new length, as HF does', async () => {
    const out = join(tmp, 'ratio');
    const base: TrainOptions = { method: 'lora', steps: 4, saveEvery: 2, seed: 5, config: small, batchSize: 2, contextLength: 12, lr: 0.01, lrScheduler: 'linear', warmupRatio: 0.5 };
    await train({ ...base, out });
    const res = await train({ ...base, steps: 8, out, resume: true });
    expect(res.startStep).toBe(4);
    // linear with warmup ⌈8·0.5⌉ = 4: step n applies λ(n−1); steps 5..8 → λ(4..7) = (8−k)/(8−4)
    const rates = res.logHistory.filter((h) => h.step > 4).map((h) => h.learning_rate);
    const expected = [4, 5, 6, 7].map((k) => 0.01 * (8 - k) / 4);
    expect(rates).toHaveLength(4);
    rates.forEach((r, i) => expect(r).toBeCloseTo(expected[i]!, 12));
  });
});


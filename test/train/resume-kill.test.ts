import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/compute/backend.js';
import { initWeights, type LlamaConfig } from '../../src/train/model.js';
import { saveBase } from '../../src/train/checkpoint.js';
import { seededRandom } from '../../src/train/data.js';

// A real `dorascope train` process (the built dist/, as users run it) is SIGKILLed while it
// writes a checkpoint; `--resume` must then finish the run with exactly the bytes of a run
// that was never interrupted, and leave the --init base untouched. The kill point is made
// deterministic from outside the library: test/helpers/pause-after-weights.mjs, preloaded with
// `node --import`, stops the process once checkpoint-6's weights file is written.
const root = fileURLToPath(new URL('../../', import.meta.url));
const bin = join(root, 'bin', 'dorascope.js');
const pauseHook = new URL('../helpers/pause-after-weights.mjs', import.meta.url).href;
const tmp = mkdtempSync(join(tmpdir(), 'dorascope-kill-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const cfg: LlamaConfig = {
  vocab_size: 256, hidden_size: 16, intermediate_size: 40, num_hidden_layers: 1,
  num_attention_heads: 2, max_position_embeddings: 32, rms_norm_eps: 1e-6, rope_theta: 10000,
};
const baseDir = join(tmp, 'base');
const args = (out: string) => [
  bin, 'train', '--method', 'dora', '--init', baseDir, '--steps', '6', '--save-every', '3', '--seed', '5',
  '--target', 'q_proj,v_proj', '--magnitude-only', 'o_proj', '--lr-scheduler', 'linear', '--warmup-steps', '2',
  '--batch-size', '2', '--context-length', '12', '--backend', 'wasm', '--out', out,
];
const run = (a: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, a, { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
const hashes = (dir: string) =>
  Object.fromEntries(readdirSync(dir).map((f) => [f, createHash('sha256').update(readFileSync(join(dir, f))).digest('hex')]));

describe('a train process killed mid-checkpoint resumes to the same weights', () => {
  beforeAll(async () => {
    if (!existsSync(join(root, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
    await initBackend('wasm');
    await saveBase(baseDir, cfg, initWeights(cfg, seededRandom(77)), { note: 'test base' });
  });

  it('SIGKILL between the files of checkpoint-6, then --resume', async () => {
    const before = hashes(baseDir);
    const whole = join(tmp, 'whole');
    const ref = run(args(whole));
    expect(ref.status, ref.stderr).toBe(0);
    // not a terminal: the progress reporter writes plain lines with step, loss, tokens/s and ETA
    expect(ref.stderr).toMatch(/^train .*6\/6 .*loss=\d.*tok\/s=\d+/m);
    expect(ref.stderr).toMatch(/ETA/);

    const killed = join(tmp, 'killed');
    const child = spawn(process.execPath, ['--import', pauseHook, ...args(killed)], {
      env: { ...process.env, PAUSE_AFTER_WEIGHTS_OF: '6' }, stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    const paused = new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (err.includes('paused: checkpoint-6 half written')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`child exited (${code}) before pausing:\n${err}`)));
    });
    await paused;
    // mid-write: the weights file is in the temporary folder, checkpoint-6 is not published
    const temps = readdirSync(killed).filter((n) => n.startsWith('.checkpoint-6.tmp-'));
    expect(temps).toHaveLength(1);
    expect(readdirSync(join(killed, temps[0]!))).toContain('adapter_model.safetensors');
    expect(existsSync(join(killed, 'checkpoint-6'))).toBe(false);
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_c, sig) => resolve(sig)));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');

    const resumed = run([...args(killed), '--resume']);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/resumed from .*checkpoint-3/);
    // the resumed run's progress counts its remaining 3 steps and shows the global step
    expect(resumed.stderr).toMatch(/^train \(from step 3\) .*3\/3 .*step=6 .*loss=/m);
    expect(readdirSync(killed).filter((n) => n.startsWith('.'))).toEqual([]);
    for (const f of ['adapter_model.safetensors', 'optimizer.safetensors', 'adapter_config.json', 'scheduler.json', 'rng_state.json']) {
      expect(readFileSync(join(killed, 'checkpoint-6', f)).equals(readFileSync(join(whole, 'checkpoint-6', f))), f).toBe(true);
    }
    const hist = (d: string) => JSON.parse(readFileSync(join(d, 'checkpoint-6', 'trainer_state.json'), 'utf8')).log_history;
    expect(hist(killed)).toEqual(hist(whole));
    expect(hashes(baseDir)).toEqual(before);
  });
});

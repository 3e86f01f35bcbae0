import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { listRun } from '../../src/io/sources/trainer-run.js';
import { parseJsonLenient } from '../../src/io/sources/lenient-json.js';
import { hubCacheDir, parseHubId, resolveHubCache } from '../../src/io/sources/hf-cache.js';
import { classifyPath } from '../../src/io/sources/open-source.js';
import { isDorascopeError } from '../../src/errors.js';
import { rejection } from '../helpers/rejection.js';

const root = mkdtempSync(join(tmpdir(), 'dorascope-run-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('lenient JSON (Python json.dump output)', () => {
  it('reads bare NaN / Infinity / -Infinity, leaves strings that contain those words alone', () => {
    const v = parseJsonLenient('{"a": NaN, "b": [Infinity, -Infinity, 1.5], "s": "NaN and Infinity \\" NaN", "t": -1}') as Record<string, unknown>;
    expect(Number.isNaN(v['a'])).toBe(true);
    expect(v['b']).toEqual([Infinity, -Infinity, 1.5]);
    expect(v['s']).toBe('NaN and Infinity " NaN');
    expect(v['t']).toBe(-1);
  });
});

describe('Trainer run folders', () => {
  it('orders checkpoints numerically and takes the step from trainer_state.json (which may hold NaN)', async () => {
    const run = join(root, 'run1');
    for (const n of [100, 9, 10]) mkdirSync(join(run, `checkpoint-${n}`), { recursive: true });
    mkdirSync(join(run, 'runs')); // tensorboard folder: ignored
    // checkpoint-10 has a trainer_state with a diverged loss and a global_step
    writeFileSync(join(run, 'checkpoint-10', 'trainer_state.json'),
      '{"global_step": 10, "log_history": [{"loss": NaN, "grad_norm": Infinity, "step": 10}], "best_metric": -Infinity}');
    const cps = await listRun(run);
    expect(cps.map((c) => c.name)).toEqual(['checkpoint-9', 'checkpoint-10', 'checkpoint-100']);
    expect(cps.map((c) => c.step)).toEqual([9, 10, 100]);
    expect(cps.map((c) => c.stepFrom)).toEqual(['name', 'trainer_state', 'name']);
    expect(classifyPath(run).kind).toBe('run');
  });

  it('global_step wins over the folder name, and ordering follows it', async () => {
    const run = join(root, 'run2');
    mkdirSync(join(run, 'checkpoint-1'), { recursive: true });
    mkdirSync(join(run, 'checkpoint-2'), { recursive: true });
    writeFileSync(join(run, 'checkpoint-1', 'trainer_state.json'), '{"global_step": 500}');
    writeFileSync(join(run, 'checkpoint-2', 'trainer_state.json'), '{"global_step": 250}');
    expect((await listRun(run)).map((c) => [c.name, c.step])).toEqual([['checkpoint-2', 250], ['checkpoint-1', 500]]);
  });

  it('a corrupt trainer_state.json or a bad global_step is E_TRAINER_STATE naming the file', async () => {
    const run = join(root, 'run3');
    mkdirSync(join(run, 'checkpoint-5'), { recursive: true });
    writeFileSync(join(run, 'checkpoint-5', 'trainer_state.json'), '{"global_step": NaN}');
    const e = await rejection(listRun(run));
    expect(e.code).toBe('E_TRAINER_STATE');
    expect(e.message).toContain(join('checkpoint-5', 'trainer_state.json'));
    writeFileSync(join(run, 'checkpoint-5', 'trainer_state.json'), '{"global_step": 5,');
    expect((await rejection(listRun(run))).code).toBe('E_TRAINER_STATE');
  });

  it('a folder without checkpoints is E_NOT_FOUND', async () => {
    mkdirSync(join(root, 'empty'));
    expect((await rejection(listRun(join(root, 'empty')))).code).toBe('E_NOT_FOUND');
    expect((await rejection(listRun(join(root, 'nope')))).code).toBe('E_NOT_FOUND');
  });
});

describe('Hugging Face cache (offline)', () => {
  const cache = join(root, 'hfhome', 'hub');
  const repo = join(cache, 'models--meta-llama--Llama-3.2-1B');
  const main = 'a'.repeat(40);
  const other = 'b'.repeat(40);
  mkdirSync(join(repo, 'refs'), { recursive: true });
  mkdirSync(join(repo, 'snapshots', main), { recursive: true });
  mkdirSync(join(repo, 'snapshots', other), { recursive: true });
  writeFileSync(join(repo, 'refs', 'main'), `${main}\n`);
  writeFileSync(join(repo, 'refs', 'v1'), other);

  it('finds the cache from HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub', () => {
    expect(hubCacheDir({ HF_HUB_CACHE: '/x/hub', HF_HOME: '/y' })).toBe('/x/hub');
    expect(hubCacheDir({ HF_HOME: '/y' })).toBe(join('/y', 'hub'));
    expect(hubCacheDir({})).toMatch(/\.cache[\\/]huggingface[\\/]hub$/u);
  });

  it('resolves org/name to the snapshot of refs/main, or of a named ref or commit', () => {
    expect(resolveHubCache('meta-llama/Llama-3.2-1B', undefined, { HF_HOME: join(root, 'hfhome') })).toBe(join(repo, 'snapshots', main));
    expect(resolveHubCache('meta-llama/Llama-3.2-1B', 'v1', { HF_HUB_CACHE: cache })).toBe(join(repo, 'snapshots', other));
    expect(resolveHubCache('meta-llama/Llama-3.2-1B', other, { HF_HUB_CACHE: cache })).toBe(join(repo, 'snapshots', other));
    expect(parseHubId('meta-llama/Llama-3.2-1B@v1')).toEqual({ id: 'meta-llama/Llama-3.2-1B', revision: 'v1' });
    expect(parseHubId('./local/dir')).toBeUndefined();
  });

  it('a model or revision not in the cache is E_HF_CACHE, saying it never downloads', async () => {
    const e = await rejection(() => resolveHubCache('org/absent', undefined, { HF_HUB_CACHE: cache }));
    expect(e.code).toBe('E_HF_CACHE');
    expect(e.message).toContain('org/absent');
    expect(e.message).toContain('never downloads');
    expect((await rejection(() => resolveHubCache('meta-llama/Llama-3.2-1B', 'nobranch', { HF_HUB_CACHE: cache }))).code).toBe('E_HF_CACHE');
    // a hub id that does not resolve, through the generic path classifier
    expect((await rejection(() => classifyPath('org/absent', { HF_HUB_CACHE: cache }))).code).toBe('E_HF_CACHE');
  });

  it('a ref file that is not a commit hash (a path, a huge file) is E_HF_CACHE naming it, never followed', async () => {
    writeFileSync(join(repo, 'refs', 'evil'), '../../../../outside\n');
    writeFileSync(join(repo, 'refs', 'huge'), 'a'.repeat(1 << 20));
    for (const rev of ['evil', 'huge']) {
      const e = await rejection(() => resolveHubCache('meta-llama/Llama-3.2-1B', rev, { HF_HUB_CACHE: cache }));
      expect(e.code).toBe('E_HF_CACHE');
      expect(e.message).toContain(join(repo, 'refs', rev));
      expect(e.message).toContain('40-hex');
    }
  });
});

describe('paths that are not supported', () => {
  it('pickle checkpoints are E_PICKLE saying to convert to safetensors; missing paths E_NOT_FOUND', async () => {
    const p = join(root, 'pytorch_model.bin');
    writeFileSync(p, 'not really a pickle');
    const e = await rejection(() => classifyPath(p));
    expect(e.code).toBe('E_PICKLE');
    expect(e.message).toMatch(/not load.*safetensors/su);
    const d = join(root, 'pickled-model');
    mkdirSync(d);
    writeFileSync(join(d, 'pytorch_model.bin'), 'x');
    expect((await rejection(() => classifyPath(d))).code).toBe('E_PICKLE');
    expect((await rejection(() => classifyPath(join(root, 'model.pt')))).code).toBe('E_PICKLE');
    expect(isDorascopeError(await rejection(() => classifyPath(join(root, 'missing.safetensors'))), 'E_NOT_FOUND')).toBe(true);
  });
});

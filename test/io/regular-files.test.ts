/**
 * Inputs are opened only when they are regular files: a FIFO (which blocks a reader until a
 * writer comes), a folder, a device behind a symlink (which never ends) or a symlink loop is a
 * typed error, and every JSON input is read only up to its size cap. The FIFO cases run the
 * built CLI in a child process with a time limit, so a hang fails the test instead of stalling it.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openSource } from '../../src/io/sources/open-source.js';
import { listRun } from '../../src/io/sources/trainer-run.js';
import { readAdapterConfig } from '../../src/io/peft/adapter-config.js';
import { readIndex } from '../../src/io/sources/sharded.js';
import { JSON_CAPS } from '../../src/io/open-regular.js';
import { writeAdapter, writeModel, writeSharded } from '../helpers/models.js';
import { runCli } from '../helpers/cli-process.js';
import { rejection } from '../helpers/rejection.js';

const root = mkdtempSync(join(tmpdir(), 'dorascope-regular-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const mkfifo = (path: string) => execFileSync('mkfifo', [path]);
const w = { shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) };
const adapterTensors = {
  'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight': { shape: [1, 2], data: new Float32Array([1, 0]) },
  'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight': { shape: [2, 1], data: new Float32Array([0, 1]) },
};
const adapterConfig = { r: 1, lora_alpha: 1, target_modules: ['q_proj'] };

/** Expects the CLI to stop in time with exit 1 and `code` in its message. */
function expectRefused(args: string[], code: string, what: RegExp): void {
  const r = runCli(args, 20_000);
  expect(r.signal, `the CLI hung (killed after ${r.ms} ms)`).toBeNull();
  expect(r.err).toContain(`[${code}]`);
  expect(r.err).toMatch(what);
  expect(r.status).toBe(1);
}

describe('a FIFO where a file is expected is refused at once, never read', () => {
  it('model.safetensors inside a model folder (inspect and analyze)', () => {
    const dir = join(root, 'fifo-model');
    mkdirSync(dir);
    mkfifo(join(dir, 'model.safetensors'));
    expectRefused(['inspect', dir], 'E_NOT_REGULAR_FILE', /named pipe/u);
    expectRefused(['analyze', '--base', dir, dir, '--out', join(root, 'out-fifo')], 'E_NOT_REGULAR_FILE', /named pipe/u);
  });

  it('adapter_config.json and adapter_model.safetensors of an adapter', async () => {
    const a = join(root, 'fifo-config');
    await writeAdapter(a, adapterConfig, adapterTensors);
    rmSync(join(a, 'adapter_config.json'));
    mkfifo(join(a, 'adapter_config.json'));
    expectRefused(['inspect', a], 'E_NOT_REGULAR_FILE', /adapter_config\.json/u);
    const b = join(root, 'fifo-weights');
    await writeAdapter(b, adapterConfig, adapterTensors);
    rmSync(join(b, 'adapter_model.safetensors'));
    mkfifo(join(b, 'adapter_model.safetensors'));
    expectRefused(['inspect', b], 'E_NOT_REGULAR_FILE', /adapter_model\.safetensors/u);
  });

  it("a checkpoint's trainer_state.json in a Trainer run", async () => {
    const run = join(root, 'fifo-run');
    mkdirSync(join(run, 'checkpoint-5'), { recursive: true });
    await writeModel(join(run, 'checkpoint-5', 'model.safetensors'), { 'model.layers.0.mlp.up_proj.weight': w });
    mkfifo(join(run, 'checkpoint-5', 'trainer_state.json'));
    expectRefused(['inspect', run], 'E_NOT_REGULAR_FILE', /trainer_state\.json/u);
  });

  it('a shard file of a sharded folder', async () => {
    const dir = join(root, 'fifo-shard');
    const map = await writeSharded(dir, { a: w, b: w }, 2);
    const shard = Object.values(map)[0]!;
    rmSync(join(dir, shard));
    mkfifo(join(dir, shard));
    expectRefused(['inspect', dir], 'E_NOT_REGULAR_FILE', new RegExp(shard.replace(/\./gu, '\\.'), 'u'));
  });
});

describe('folders, devices and symlink loops', () => {
  it('a folder named model.safetensors is E_NOT_REGULAR_FILE, not EISDIR', async () => {
    const dir = join(root, 'dir-model');
    mkdirSync(join(dir, 'model.safetensors'), { recursive: true });
    const e = await rejection(openSource(dir));
    expect(e.code).toBe('E_NOT_REGULAR_FILE');
    expect(e.message).toMatch(/model\.safetensors.*is a folder/u);
  });

  it('a symlink to a character device is refused, not read until memory runs out', async () => {
    if (!existsSync('/dev/zero')) return;
    const dir = join(root, 'dev-model');
    mkdirSync(dir);
    symlinkSync('/dev/zero', join(dir, 'model.safetensors'));
    const e = await rejection(openSource(dir));
    expect(e.code).toBe('E_NOT_REGULAR_FILE');
    expect(e.message).toContain('character device');
    const cfgDir = join(root, 'dev-config');
    await writeAdapter(cfgDir, adapterConfig, adapterTensors);
    rmSync(join(cfgDir, 'adapter_config.json'));
    symlinkSync('/dev/zero', join(cfgDir, 'adapter_config.json'));
    expect((await rejection(readAdapterConfig(join(cfgDir, 'adapter_config.json')))).code).toBe('E_NOT_REGULAR_FILE');
  });

  it('a symlink loop is reported as a loop, not as a missing file', async () => {
    const loop = join(root, 'loop.safetensors');
    symlinkSync(loop, loop);
    const e = await rejection(openSource(loop));
    expect(e.code).toBe('E_SYMLINK_LOOP');
    expect(e.message).toContain('loop');
    const dir = join(root, 'loop-model');
    mkdirSync(dir);
    symlinkSync(join(dir, 'model.safetensors'), join(dir, 'model.safetensors'));
    expect((await rejection(openSource(dir))).code).toBe('E_SYMLINK_LOOP');
    const run = join(root, 'loop-run');
    mkdirSync(join(run, 'checkpoint-1'), { recursive: true });
    const ts = join(run, 'checkpoint-1', 'trainer_state.json');
    symlinkSync(ts, ts);
    expect((await rejection(listRun(run))).code).toBe('E_SYMLINK_LOOP');
  });
});

describe('JSON inputs have size caps', () => {
  it('an adapter_config.json over 1 MiB is E_JSON_TOO_LARGE, naming the file and the cap', async () => {
    const dir = join(root, 'big-config');
    await writeAdapter(dir, adapterConfig, adapterTensors);
    const path = join(dir, 'adapter_config.json');
    writeFileSync(path, `{"r": 1, "lora_alpha": 1, "pad": "${'x'.repeat(JSON_CAPS.config)}"}`);
    const e = await rejection(readAdapterConfig(path));
    expect(e.code).toBe('E_JSON_TOO_LARGE');
    expect(e.message).toContain('adapter_config.json');
    expect(e.message).toContain(String(JSON_CAPS.config));
  });

  it('a shard index and a trainer_state.json over their caps are E_JSON_TOO_LARGE', async () => {
    const dir = join(root, 'big-index');
    mkdirSync(dir);
    const index = join(dir, 'model.safetensors.index.json');
    writeFileSync(index, `{"weight_map": {"a": "m.safetensors"}, "pad": "${'x'.repeat(JSON_CAPS.index)}"}`);
    expect((await rejection(readIndex(index))).code).toBe('E_JSON_TOO_LARGE');
    const run = join(root, 'big-state');
    mkdirSync(join(run, 'checkpoint-1'), { recursive: true });
    writeFileSync(join(run, 'checkpoint-1', 'trainer_state.json'), `{"global_step": 1, "log_history": [], "pad": "${'x'.repeat(JSON_CAPS.trainerState)}"}`);
    expect((await rejection(listRun(run))).code).toBe('E_JSON_TOO_LARGE');
  });

  it('a config just under the cap still reads', async () => {
    const dir = join(root, 'ok-config');
    await writeAdapter(dir, adapterConfig, adapterTensors);
    const path = join(dir, 'adapter_config.json');
    const head = '{"r": 2, "lora_alpha": 4, "pad": "';
    writeFileSync(path, `${head}${'x'.repeat(JSON_CAPS.config - head.length - 2)}"}`);
    expect((await readAdapterConfig(path)).r).toBe(2);
  });
});

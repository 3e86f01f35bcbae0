/**
 * Steps and checkpoint folders of a Trainer run: a step past 2^31 survives into the Arrow tables
 * (int64), a folder whose step does not parse and two checkpoints at one step are reported, and
 * the messages show a bad value as the file holds it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { afterAll, describe, expect, it } from 'vitest';
import { listRun } from '../../src/io/sources/trainer-run.js';
import { readAdapterConfig } from '../../src/io/peft/adapter-config.js';
import { analyze } from '../../src/analysis/analyze.js';
import { readDecomposition } from '../../src/analysis/table.js';
import { writeModel } from '../helpers/models.js';
import { rejection } from '../helpers/rejection.js';

const root = mkdtempSync(join(tmpdir(), 'dorascope-steps-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function run(name: string, folders: Record<string, string | null>): string {
  const dir = join(root, name);
  for (const [f, state] of Object.entries(folders)) {
    mkdirSync(join(dir, f), { recursive: true });
    if (state !== null) writeFileSync(join(dir, f, 'trainer_state.json'), state);
  }
  return dir;
}

describe('steps in the Arrow tables', () => {
  it('a global_step of 4294967297 (2^32 + 1) is written as itself, as int64, in decomposition.arrow and rows.arrow', async () => {
    const W = 'model.layers.0.mlp.up_proj.weight';
    const base = join(root, 'base.safetensors');
    await writeModel(base, { [W]: { shape: [2, 2], data: new Float32Array([1, 0, 0, 1]) } });
    const dir = run('big-step', { 'checkpoint-1': '{"global_step": 4294967297}' });
    await writeModel(join(dir, 'checkpoint-1', 'model.safetensors'), { [W]: { shape: [2, 2], data: new Float32Array([2, 0, 0, 1]) } });
    const out = join(root, 'out-big');
    await analyze({ base, runs: [{ path: dir }], out, quiet: true, perRow: true, workers: 0, log: () => undefined });
    for (const file of ['decomposition.arrow', 'rows.arrow']) {
      const t = tableFromIPC(await readFile(join(out, file)));
      expect(String(t.schema.fields.find((f) => f.name === 'step')!.type)).toBe('Int64');
      expect(t.getChild('step')!.get(0)).toBe(4294967297n);
    }
    expect((await readDecomposition(out))[0]!.step).toBe(4294967297);
    expect(await readFile(join(out, 'decomposition.csv'), 'utf8')).toContain(',4294967297,');
  });

  it('a step above 2^53 is refused, from trainer_state.json or from the folder name', async () => {
    const a = run('huge-state', { 'checkpoint-1': '{"global_step": 9007199254740993}' });
    expect((await rejection(listRun(a))).code).toBe('E_TRAINER_STATE');
    const b = run('huge-name', { 'checkpoint-99999999999999999999': null });
    const e = await rejection(listRun(b));
    expect(e.code).toBe('E_CHECKPOINT');
    expect(e.message).toContain('checkpoint-99999999999999999999');
  });
});

describe('checkpoint folders', () => {
  it('a folder named checkpoint-<something not a step> is reported, not skipped', async () => {
    for (const bad of ['checkpoint-abc', 'checkpoint-1e3', 'checkpoint-', 'checkpoint-10.5', 'checkpoint--1']) {
      const dir = run(`bad-${bad}`, { 'checkpoint-5': null, [bad]: null });
      const e = await rejection(listRun(dir));
      expect(e.code).toBe('E_CHECKPOINT');
      expect(e.message).toContain(JSON.stringify(bad));
    }
  });

  it('two checkpoints at one step are reported: by folder name, and by global_step', async () => {
    const a = run('dup-names', { 'checkpoint-10': null, 'checkpoint-00010': null, 'checkpoint-20': null });
    const e = await rejection(listRun(a));
    expect(e.code).toBe('E_CHECKPOINT');
    expect(e.message).toContain('"checkpoint-10"');
    expect(e.message).toContain('"checkpoint-00010"');
    expect(e.message).toContain('step 10');
    const b = run('dup-state', { 'checkpoint-10': null, 'checkpoint-20': '{"global_step": 10}' });
    const f = await rejection(listRun(b));
    expect(f.code).toBe('E_CHECKPOINT');
    expect(f.message).toContain('global_step');
  });

  it('other folders and files beside the checkpoints are still ignored', async () => {
    const dir = run('others', { 'checkpoint-2': null, 'checkpoint-1': null, runs: null, '.checkpoint-3.tmp-1-ab': null });
    writeFileSync(join(dir, 'checkpoint-notes.txt'), 'a file, not a folder');
    expect((await listRun(dir)).map((c) => c.step)).toEqual([1, 2]);
  });
});

describe('messages show the value as the file holds it', () => {
  it('"global_step": "10" is reported as the string "10"', async () => {
    const dir = run('string-step', { 'checkpoint-10': '{"global_step": "10"}' });
    const e = await rejection(listRun(dir));
    expect(e.code).toBe('E_TRAINER_STATE');
    expect(e.message).toContain('global_step is the string "10"');
  });

  it('lora_alpha: NaN is reported as NaN, not null; a string r as a string', async () => {
    const dir = join(root, 'nan-alpha');
    mkdirSync(dir);
    const path = join(dir, 'adapter_config.json');
    writeFileSync(path, '{"peft_type": "LORA", "r": 8, "lora_alpha": NaN}');
    const e = await rejection(readAdapterConfig(path));
    expect(e.code).toBe('E_ADAPTER_CONFIG');
    expect(e.message).toContain('"lora_alpha"');
    expect(e.message).toContain('got NaN');
    expect(e.message).not.toContain('null');
    writeFileSync(path, '{"peft_type": "LORA", "r": "8", "lora_alpha": -Infinity}');
    expect((await rejection(readAdapterConfig(path))).message).toContain('got the string "8"');
    writeFileSync(path, '{"peft_type": "LORA", "r": 8, "lora_alpha": -Infinity}');
    expect((await rejection(readAdapterConfig(path))).message).toContain('got -Infinity');
  });
});

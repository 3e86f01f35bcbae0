/**
 * analyze() as a library: nothing written or printed unless asked, and options of the wrong type rejected with
 * E_USAGE naming the option (not a raw Node TypeError from deep inside).
 */
import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { analyze } from '../../src/analysis/analyze.js';
import { isDorascopeError } from '../../src/errors.js';

const DIFFAI = resolve(dirname(fileURLToPath(import.meta.url)), '../fixtures/diffai');
const base = join(DIFFAI, 'checkpoint_epoch_0.safetensors');
const run = { path: join(DIFFAI, 'checkpoint_epoch_10.safetensors') };

describe('analyze() options', () => {
  it('writes nothing and prints nothing by default', async () => {
    const cwd = await mkdtemp(join(tmpdir(), 'ds-lib-'));
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const before = process.cwd();
    process.chdir(cwd);
    try {
      const res = await analyze({ base, runs: [run], modulesRegex: '^fc\\d\\.weight$' });
      expect(res.out).toBeUndefined();
      expect(res.rows.length).toBeGreaterThan(0);
    } finally {
      process.chdir(before);
      err.mockRestore();
    }
    expect(err).not.toHaveBeenCalled();
    expect(await readdir(cwd)).toEqual([]);
  });

  it.each([
    ['runs', { base, runs: 'runs/ft' }, /option runs must be an array/u],
    ['runs[0]', { base, runs: ['runs/ft'] }, /option runs\[0\] must be an object \{ path/u],
    ['base', { runs: [run] }, /option base must be a non-empty path/u],
    ['modules', { base, runs: [run], modules: 'q_proj,v_proj' }, /option modules must be an array of module names.*"q_proj,v_proj"/u],
    ['layers', { base, runs: [run], layers: '0-5' }, /option layers must be an array of layer indices/u],
    ['modulesRegex', { base, runs: [run], modulesRegex: 3 }, /option modulesRegex must be a regular expression string, got number 3/u],
    ['modulesRegex (syntax)', { base, runs: [run], modulesRegex: '(' }, /--modules-regex: invalid regular expression "\("/u],
    ['quiet', { base, runs: [run], quiet: 'yes' }, /option quiet must be true or false/u],
    ['adapterPath', { base, runs: [run], adapterPath: 'slow' }, /option adapterPath must be 'fast' or 'merge'/u],
    ['groups', { base, runs: [run], groups: { ft: 'a,b' } }, /option groups must be an object/u],
  ])('%s of the wrong type is E_USAGE naming it', async (_name, options, message) => {
    await expect(analyze(options as never)).rejects.toSatisfy((e: unknown) => isDorascopeError(e, 'E_USAGE') && message.test((e as Error).message));
  });
});

import { describe, expect, it } from 'vitest';
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeAtomic, writeFileAtomic } from '../../src/io/atomic.js';
import { isDorascopeError } from '../../src/errors.js';

describe('atomic writes', () => {
  it('replaces the destination and leaves no temporary file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ds-atomic-'));
    const p = join(dir, 'out.json');
    await writeFile(p, 'old');
    await writeFileAtomic(p, 'new contents');
    expect(await readFile(p, 'utf8')).toBe('new contents');
    expect(await readdir(dir)).toEqual(['out.json']);
  });

  it('keeps the old file when the writer fails midway', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ds-atomic-'));
    const p = join(dir, 'out.bin');
    await writeFile(p, 'old');
    await expect(
      writeAtomic(p, async (fh) => {
        await fh.write(Buffer.from('half'));
        throw new Error('disk on fire');
      }),
    ).rejects.toSatisfy((e: unknown) => isDorascopeError(e, 'E_WRITE'));
    expect(await readFile(p, 'utf8')).toBe('old');
    expect(await readdir(dir)).toEqual(['out.bin']);
  });
});

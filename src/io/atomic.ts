/**
 * Atomic output: write to a temporary file in the destination's folder, fsync,
 * then rename over the destination. A run interrupted at any point leaves either
 * the old file or the new one, never a half-written file (rename(2) is atomic
 * within one file system, which is why the temporary lives beside the target).
 */
import { open, rename, rm, mkdir, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { DorascopeError, q } from '../errors.js';

function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Opens a temporary file next to `path`, lets `fill` write it through the handle, then fsyncs and renames.
 * On any error the temporary file is removed and the destination is untouched.
 */
export async function writeAtomic(path: string, fill: (fh: FileHandle) => Promise<void>): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = tempPathFor(path);
  let fh: FileHandle | undefined;
  try {
    fh = await open(tmp, 'wx');
    await fill(fh);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, path);
  } catch (e) {
    if (fh) await fh.close().catch(() => undefined);
    await rm(tmp, { force: true }).catch(() => undefined);
    if (e instanceof DorascopeError) throw e;
    const err = e as NodeJS.ErrnoException;
    throw new DorascopeError('E_WRITE', `cannot write ${q(path)}: ${err.code ?? ''} ${err.message}`.trim(), {}, { cause: e });
  }
}

/** Writes a whole string or byte buffer atomically. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await writeAtomic(path, async (fh) => {
    await fh.writeFile(data);
  });
}

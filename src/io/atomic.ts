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
import { writeError } from './write-error.js';

function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/** A temporary file beside its destination: write through `fh`, then `commit` (fsync + rename) or `abort`. */
export interface AtomicFile {
  readonly path: string;
  readonly fh: FileHandle;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/**
 * Opens a temporary file next to `path` for output that is produced over a long
 * time (e.g. `rows.arrow`, written tensor by tensor). Nothing appears at `path`
 * until `commit`; `abort` (or a crash) leaves the destination untouched.
 */
export async function openAtomic(path: string): Promise<AtomicFile> {
  const tmp = tempPathFor(path);
  let fh: FileHandle;
  try {
    await mkdir(dirname(path), { recursive: true });
    fh = await open(tmp, 'wx');
  } catch (e) {
    throw writeError(path, e);
  }
  let done = false;
  const abort = async () => {
    if (done) return;
    done = true;
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true }).catch(() => undefined);
  };
  return {
    path, fh, abort,
    commit: async () => {
      if (done) throw new DorascopeError('E_WRITE', `cannot write ${q(path)}: already committed or aborted`);
      try {
        await fh.sync();
        await fh.close();
        done = true;
        await rename(tmp, path);
      } catch (e) {
        done = false;
        await abort();
        throw writeError(path, e);
      }
    },
  };
}

/**
 * Opens a temporary file next to `path`, lets `fill` write it through the handle, then fsyncs and renames.
 * On any error the temporary file is removed and the destination is untouched.
 */
export async function writeAtomic(path: string, fill: (fh: FileHandle) => Promise<void>): Promise<void> {
  const file = await openAtomic(path);
  try {
    await fill(file.fh);
  } catch (e) {
    await file.abort();
    throw writeError(path, e);
  }
  await file.commit();
}

/** Writes a whole string or byte buffer atomically. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await writeAtomic(path, async (fh) => {
    await fh.writeFile(data);
  });
}

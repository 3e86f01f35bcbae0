/**
 * Opening input files safely. dorascope reads files that other programs wrote, found by
 * name inside folders, so a name may be a FIFO (opening it for reading blocks until a
 * writer appears: forever), a folder, a symlink to a device (`/dev/zero` never ends) or a
 * symlink loop. Every input is opened with O_NONBLOCK (so opening a FIFO returns at once),
 * then checked with fstat on the open descriptor (no race between check and use): only a
 * regular file is read. JSON inputs are small by nature and are read only up to a cap.
 */
import { constants, lstatSync, statSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { DorascopeError, q } from '../errors.js';

/** What a file is, in words, for messages. */
function kindOf(st: import('node:fs').Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a named pipe (FIFO)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** Turns an error of open/stat into a DorascopeError naming `what` and the path. */
export function openError(e: unknown, path: string, what: string): DorascopeError {
  const err = e as NodeJS.ErrnoException;
  if (err instanceof DorascopeError) return err;
  switch (err.code) {
    case 'ENOENT':
      return new DorascopeError('E_NOT_FOUND', `${what} ${q(path)} does not exist`, { path });
    case 'ELOOP':
      return new DorascopeError('E_SYMLINK_LOOP', `${what} ${q(path)} is a symbolic link loop (a link that leads back to itself)`, { path });
    case 'EISDIR':
      return new DorascopeError('E_NOT_REGULAR_FILE', `${what} ${q(path)} is a folder, not a file`, { path });
    case 'ENOTDIR':
      return new DorascopeError('E_NOT_FOUND', `${what} ${q(path)} does not exist (a part of the path is not a folder)`, { path });
    default:
      return new DorascopeError('E_NOT_FOUND', `cannot open ${what} ${q(path)}: ${err.code ?? ''} ${err.message}`.replace(/ {2,}/gu, ' '), { path });
  }
}

/**
 * Opens `path` for reading, following symlinks, and returns the handle only when it is a
 * regular file. `what` names the file's role in messages ("adapter config", "shard").
 */
export async function openRegular(path: string, what: string): Promise<{ fh: FileHandle; size: number }> {
  let fh: FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. It has no
    // effect on reads from a regular file, the only kind read past the fstat below.
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw openError(e, path, what);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      throw new DorascopeError('E_NOT_REGULAR_FILE', `${what} ${q(path)} is ${kindOf(st)}, not a regular file: dorascope reads only regular files`, { path });
    }
    return { fh, size: st.size };
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw e;
  }
}

/**
 * The largest JSON input read: configs, trainer states and manifests are kilobytes; a
 * shard index of a very large model is a few megabytes (one line per tensor).
 */
export const JSON_CAPS = {
  config: 1 << 20, // adapter_config.json, config.json: 1 MiB
  trainerState: 64 << 20, // trainer_state.json grows with log_history: 64 MiB
  index: 64 << 20, // model.safetensors.index.json: 64 MiB (≈ 500,000 tensors)
  manifest: 16 << 20,
} as const;

/** Reads a regular file of at most `cap` bytes as UTF-8 text; a larger one is E_JSON_TOO_LARGE. */
export async function readTextCapped(path: string, what: string, cap: number): Promise<string> {
  const { fh, size } = await openRegular(path, what);
  try {
    const tooLarge = () => new DorascopeError('E_JSON_TOO_LARGE',
      `${what} ${q(path)} is larger than ${cap} bytes, the most dorascope reads for this kind of file (is it the right file?)`, { path, cap });
    if (size > cap) throw tooLarge();
    // Read up to cap + 1 bytes whatever fstat said: the file may grow while it is read.
    const buf = new Uint8Array(Math.min(cap, size) + 1);
    let done = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, done, buf.byteLength - done, done);
      if (bytesRead === 0) break;
      done += bytesRead;
      if (done === buf.byteLength) {
        if (done > cap) throw tooLarge();
        break;
      }
    }
    return new TextDecoder('utf-8').decode(buf.subarray(0, done));
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/**
 * Whether a directory entry named `path` exists, a broken or looping symlink included
 * (`existsSync` says false for those, and the user would be told the file is missing when
 * it is there but cannot be followed; opening it then reports what is wrong).
 */
export function entryExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** `statSync` whose failures are DorascopeErrors (a symlink loop reported as a loop). */
export function statOrThrow(path: string, what: string): import('node:fs').Stats {
  try {
    return statSync(path);
  } catch (e) {
    throw openError(e, path, what);
  }
}

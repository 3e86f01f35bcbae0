/**
 * Failed writes as people read them: `E_WRITE` naming the path and the operating system's
 * reason in words ("no space left on the device"), with the errno code in brackets for
 * searching. Node's own messages repeat the code ("EEXIST: file already exists, mkdir …")
 * and name whichever temporary path failed, which says little to a user.
 */
import { DorascopeError, q } from '../errors.js';

const REASONS: Readonly<Record<string, string>> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'the disk quota is exceeded',
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EEXIST: 'something already exists there',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EISDIR: 'it is a folder, not a file',
  ENOENT: 'a folder on the path does not exist',
  EBUSY: 'the file or folder is busy',
  EXDEV: 'the temporary folder is on another file system',
  EIO: 'an input/output error from the device',
  EMFILE: 'too many open files',
  ENAMETOOLONG: 'the name is too long',
};

/** "no space left on the device (ENOSPC)" for an errno error; the message itself otherwise. */
export function osReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException | undefined;
  const code = typeof err?.code === 'string' ? err.code : undefined;
  if (code !== undefined && REASONS[code] !== undefined) return `${REASONS[code]} (${code})`;
  const msg = e instanceof Error ? e.message : String(e);
  // Node's messages start with the code ("EEXIST: file already exists, open '…'"): keep the words.
  return code !== undefined ? `${msg.replace(new RegExp(`^${code}:\\s*`, 'u'), '').replace(/,\s.*$/u, '')} (${code})` : msg;
}

/** `E_WRITE` for `path` (what the user named), keeping a DorascopeError as it is. */
export function writeError(path: string, e: unknown, what = 'write'): DorascopeError {
  if (e instanceof DorascopeError) return e;
  return new DorascopeError('E_WRITE', `cannot ${what} ${q(path)}: ${osReason(e)}`, { path, errno: (e as NodeJS.ErrnoException)?.code ?? null }, { cause: e });
}

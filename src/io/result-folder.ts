/**
 * A result folder written as one unit. The files are built in a temporary sibling
 * (`.NAME.tmp-<pid>-<hex>`), then swapped in: the old folder is renamed aside, the new one
 * renamed into place (rename(2) is atomic within a file system, which is why the temporary
 * is a sibling), and the old one deleted. A reader therefore sees the old result or the new
 * one, never files of both (a `rows.arrow` left from an earlier `--per-row` run, say).
 *
 * A lock file beside the destination (`.NAME.lock`, created with O_EXCL, holding pid and host)
 * keeps a second writer out; a lock whose process no longer runs on this host is stale and
 * taken over. Temporaries are deleted on every error and on SIGINT/SIGTERM/SIGHUP, after which
 * the signal is raised again so the exit status still says how the process ended.
 */
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { lstat, mkdir, open, rename, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { DorascopeError, q } from '../errors.js';
import { realPathOf } from './output-guard.js';
import { writeError } from './write-error.js';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** `.NAME.lock` beside `dest`. */
export function lockPathFor(dest: string): string {
  const abs = realPathOf(dest);
  return join(dirname(abs), `.${basename(abs)}.lock`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

interface LockInfo { pid: number; host: string; started: string }

function readLock(path: string): LockInfo | undefined {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockInfo>;
    return typeof v.pid === 'number' && typeof v.host === 'string' ? { pid: v.pid, host: v.host, started: String(v.started ?? '') } : undefined;
  } catch {
    return undefined;
  }
}

/** An unreadable lock (its writer died between creating and filling it) older than this is stale. */
const EMPTY_LOCK_GRACE_MS = 10_000;

/**
 * Takes the lock for `dest`; returns a synchronous release (safe to call twice, and from a
 * signal handler). E_OUTPUT_LOCKED when another live process holds it.
 */
export function acquireLock(dest: string): () => void {
  const path = lockPathFor(dest);
  const me: LockInfo = { pid: process.pid, host: hostname(), started: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw writeError(dest, e, 'lock');
      const held = readLock(path);
      const stale = held
        ? held.host === me.host && !alive(held.pid)
        : Date.now() - Number(statSafe(path)?.mtimeMs ?? 0) > EMPTY_LOCK_GRACE_MS;
      if (stale) {
        try { unlinkSync(path); } catch { /* another process took it over first */ }
        continue;
      }
      throw new DorascopeError('E_OUTPUT_LOCKED',
        `${q(dest)} is being written by another dorascope process${held ? ` (pid ${held.pid} on ${held.host}, since ${held.started})` : ''}; ` +
        `wait for it to finish, or delete ${q(path)} if no such process runs`, { out: dest, lock: path, holder: held ?? null });
    }
    try {
      writeSync(fd, `${JSON.stringify(me)}\n`);
    } catch (e) {
      closeSync(fd);
      try { unlinkSync(path); } catch { /* nothing to release */ }
      throw writeError(dest, e, 'lock');
    }
    closeSync(fd);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      // Only our own lock: a stale-lock takeover by someone else must not be undone.
      if (readLock(path)?.pid === me.pid) try { unlinkSync(path); } catch { /* already gone */ }
    };
  }
  throw new DorascopeError('E_OUTPUT_LOCKED', `${q(dest)}: could not take the lock ${q(path)} (other writers keep replacing it)`, { out: dest, lock: path });
}

/**
 * The lock alone, for outputs written piece by piece rather than swapped in whole (a training
 * run's checkpoint folders): creates the parent folder, then takes `.NAME.lock`.
 */
export function lockOutput(dest: string): () => void {
  try {
    mkdirSync(dirname(realPathOf(dest)), { recursive: true });
  } catch (e) {
    throw writeError(dest, e, 'create the folder for');
  }
  return acquireLock(dest);
}

function statSafe(p: string): ReturnType<typeof statSync> | undefined {
  try { return statSync(p); } catch { return undefined; }
}

const TEMP_RE = (name: string) => new RegExp(`^\\.${name.replace(/[.*+?^${}()|[\]\\]/gu, '\\$&')}\\.(tmp|old)-(\\d+)-[0-9a-f]+$`, 'u');

/** Removes temporaries a killed writer (SIGKILL, power loss) left beside `dest`; call with the lock held. */
function removeDeadTemps(dest: string): void {
  const abs = realPathOf(dest), parent = dirname(abs), re = TEMP_RE(basename(abs));
  let names: string[];
  try { names = readdirSync(parent); } catch { return; }
  for (const n of names) {
    const m = re.exec(n);
    if (m && (Number(m[2]) === process.pid || !alive(Number(m[2])))) rmSync(join(parent, n), { recursive: true, force: true });
  }
}

/** The same error with the temporary folder's name replaced by the destination's, which is what the user knows. */
function renamed(e: DorascopeError, tmp: string, abs: string): DorascopeError {
  if (!e.message.includes(tmp)) return e;
  const path = typeof e.details?.['path'] === 'string' ? (e.details['path'] as string).split(tmp).join(abs) : abs;
  return new DorascopeError(e.code, e.message.split(tmp).join(abs), { ...e.details, path }, { cause: e.cause ?? e });
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r').catch(() => undefined);
  if (fh === undefined) return;
  try { await fh.sync(); } catch { /* some file systems refuse fsync on a folder; the rename is still atomic */ } finally { await fh.close(); }
}

/**
 * Builds the folder `dest` with `fill(dir)` writing into a temporary sibling `dir`, then swaps it
 * in. Holds the lock throughout. On any error or signal nothing new is left behind and the old
 * `dest`, if any, is unchanged. Errors from the file system become E_WRITE naming `dest`.
 */
export async function writeResultFolder<T>(dest: string, fill: (dir: string) => Promise<T>): Promise<T> {
  // Through symlinks: `--out link` replaces the folder the link points to, not the link.
  const abs = realPathOf(dest), parent = dirname(abs), name = basename(abs);
  try {
    await mkdir(parent, { recursive: true });
  } catch (e) {
    throw writeError(dest, e, 'create the folder for');
  }
  const release = acquireLock(dest);
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = join(parent, `.${name}.tmp-${tag}`);
  const old = join(parent, `.${name}.old-${tag}`);
  // Where the swap stands, for the signal handler: after `movedAside` and before `swapped`, the
  // old folder must be put back.
  const state = { movedAside: false, swapped: false };
  const cleanupSync = () => {
    if (state.movedAside && !state.swapped) try { renameSync(old, abs); } catch { /* keep it aside rather than lose it */ }
    rmSync(tmp, { recursive: true, force: true });
    release();
  };
  const onSignal = (signal: NodeJS.Signals) => {
    cleanupSync();
    for (const s of SIGNALS) process.removeListener(s, onSignal);
    // With no other listener the default action runs: the process ends "killed by SIGTERM".
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  try {
    removeDeadTemps(dest);
    try {
      await mkdir(tmp);
    } catch (e) {
      throw writeError(dest, e, 'create');
    }
    const result = await fill(tmp);
    try {
      if (await lstat(abs).then(() => true, () => false)) {
        await rename(abs, old);
        state.movedAside = true;
      }
      await rename(tmp, abs);
      state.swapped = true;
    } catch (e) {
      throw writeError(dest, e, 'replace');
    }
    if (state.movedAside) await rm(old, { recursive: true, force: true }).catch(() => undefined);
    await fsyncDir(parent);
    return result;
  } catch (e) {
    cleanupSync();
    // File-system failures name the destination; anything else (a bad input) passes unchanged.
    if (e instanceof DorascopeError) throw e.code === 'E_WRITE' ? renamed(e, tmp, abs) : e;
    throw typeof (e as NodeJS.ErrnoException)?.code === 'string' ? writeError(dest, e) : e;
  } finally {
    for (const s of SIGNALS) process.removeListener(s, onSignal);
    release();
  }
}

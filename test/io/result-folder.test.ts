/**
 * A result folder is one consistent unit (src/io/result-folder.ts): built beside the destination
 * and swapped in, locked against a second writer, and cleaned up on errors, on a real SIGTERM
 * and on a real full or read-only disk (a small tmpfs when the tests run as root).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDorascopeError } from '../../src/errors.js';
import { lockPathFor, writeResultFolder } from '../../src/io/result-folder.js';
import { loadAnalysis } from '../../src/report/load.js';
import { writeModel } from '../helpers/models.js';
import { randn, rng } from '../helpers/random.js';
import { runQuiet as run } from '../helpers/cli-quiet.js';

const CLI = resolve('bin/dorascope.js');
let root: string;
/** 64 tensors of 1024×16: 65,536 per-feature records per checkpoint, several MB of rows.arrow. */
const BIG = Array.from({ length: 16 }, (_, l) => ['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((m) => `model.layers.${l}.self_attn.${m}.weight`)).flat();

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ds-folder-'));
  const next = rng(3);
  for (const [file, scale] of [['base', 1], ['ck1', 1.5], ['ck2', 2]] as const) {
    await writeModel(join(root, `${file}.safetensors`), Object.fromEntries(BIG.map((n) => [n, { shape: [1024, 16], data: randn(next, 1024 * 16, scale) }])));
  }
});
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

const analyzeArgs = (out: string, ck: string, ...more: string[]) =>
  ['analyze', '--base', join(root, 'base.safetensors'), join(root, `${ck}.safetensors`), '--out', out, '--quiet', '--workers', '0', ...more];

/** Names beside and inside `dir` that a writer leaves: the lock, `.NAME.tmp-…`, `.NAME.old-…`, `*.tmp`. */
function leftovers(dir: string): string[] {
  return readdirSync(dir, { recursive: true }).map(String).filter((n) => /(^|\/)\.[^/]*\.(lock|tmp-[^/]*|old-[^/]*)$|\.tmp$/u.test(n));
}

describe('a result folder is written as one unit', () => {
  it('analyze --per-row then analyze without it: no stale rows.arrow, and the report reads only what the manifest lists', async () => {
    const o = join(root, 'stale');
    expect((await run(analyzeArgs(o, 'ck1', '--per-row', '--layers', '0', '--label', `first=${join(root, 'ck1.safetensors')}`))).code).toBe(0);
    expect(readdirSync(o)).toContain('rows.arrow');
    expect((await run(analyzeArgs(o, 'ck2', '--layers', '0', '--label', `second=${join(root, 'ck2.safetensors')}`))).code).toBe(0);
    expect(readdirSync(o).sort()).toEqual(['decomposition.arrow', 'decomposition.csv', 'decomposition.parquet', 'manifest.json', 'summary.json']);
    const manifest = JSON.parse(readFileSync(join(o, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ kind: 'analysis', files: ['decomposition.arrow', 'decomposition.parquet', 'decomposition.csv', 'summary.json', 'manifest.json'] });
    const a = await loadAnalysis(o);
    expect(a.runs.map((r) => r.run)).toEqual(['second']);
    expect(a.features).toBeNull();
    expect(leftovers(root)).toEqual([]);
  });

  it('a rows.arrow the manifest does not list is not drawn', async () => {
    const src = join(root, 'listed');
    expect((await run(analyzeArgs(src, 'ck1', '--per-row', '--layers', '0'))).code).toBe(0);
    expect((await loadAnalysis(src)).features).not.toBeNull();
    const manifest = JSON.parse(readFileSync(join(src, 'manifest.json'), 'utf8'));
    writeFileSync(join(src, 'manifest.json'), JSON.stringify({ ...manifest, files: manifest.files.filter((f: string) => f !== 'rows.arrow') }));
    expect((await loadAnalysis(src)).features).toBeNull();
  });

  it('an error while filling leaves the old folder as it was and no temporaries or lock', async () => {
    const o = join(root, 'failing');
    mkdirSync(o);
    writeFileSync(join(o, 'old.txt'), 'old');
    await expect(writeResultFolder(o, async (dir) => {
      writeFileSync(join(dir, 'new.txt'), 'half');
      throw new Error('the analysis failed');
    })).rejects.toThrow('the analysis failed');
    expect(readdirSync(o)).toEqual(['old.txt']);
    expect(leftovers(root)).toEqual([]);
  });

  it('an analysis that fails midway (a tensor missing from a checkpoint) leaves no output, temporary or lock', async () => {
    const bad = join(root, 'bad.safetensors');
    await writeModel(bad, Object.fromEntries(BIG.slice(1).map((n) => [n, { shape: [1024, 16], data: new Float32Array(1024 * 16) }])));
    const o = join(root, 'midway');
    const r = await run(['analyze', '--base', join(root, 'base.safetensors'), bad, '--out', o, '--quiet', '--per-row']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('[E_MISSING_TENSOR]');
    expect(existsSync(o)).toBe(false);
    expect(leftovers(root)).toEqual([]);
  });

  it('--out through a symlink replaces the folder it points to and keeps the link', async () => {
    const real = join(root, 'real-out'), link = join(root, 'link-out');
    expect((await run(analyzeArgs(real, 'ck1', '--layers', '0'))).code).toBe(0);
    (await import('node:fs')).symlinkSync(real, link);
    expect((await run(analyzeArgs(link, 'ck2', '--layers', '0', '--label', `viaLink=${join(root, 'ck2.safetensors')}`))).code).toBe(0);
    expect((await import('node:fs')).lstatSync(link).isSymbolicLink()).toBe(true);
    expect((await loadAnalysis(real)).runs.map((x) => x.run)).toEqual(['viaLink']);
    expect(leftovers(root)).toEqual([]);
  });

  it('a second writer gets E_OUTPUT_LOCKED naming the holder; a lock whose process is gone is taken over', async () => {
    const o = join(root, 'locked');
    let open!: () => void;
    const gate = new Promise<void>((res) => { open = res; });
    const first = writeResultFolder(o, async (dir) => { writeFileSync(join(dir, 'a'), 'first'); await gate; });
    await new Promise((res) => setTimeout(res, 50));
    expect(existsSync(lockPathFor(o))).toBe(true);
    const r = await run(analyzeArgs(o, 'ck1', '--layers', '0'));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('[E_OUTPUT_LOCKED]');
    expect(r.stderr).toContain(`pid ${process.pid}`);
    open();
    await first;
    expect(readdirSync(o)).toEqual(['a']);
    expect(existsSync(lockPathFor(o))).toBe(false);

    // A lock left by a process that has exited (same host): stale, taken over.
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    writeFileSync(lockPathFor(o), JSON.stringify({ pid: dead, host: (await import('node:os')).hostname(), started: 'earlier' }));
    await expect(writeResultFolder(o, async (dir) => { writeFileSync(join(dir, 'b'), 'second'); })).resolves.toBeUndefined();
    expect(readdirSync(o)).toEqual(['b']);
    expect(existsSync(lockPathFor(o))).toBe(false);
  });

  it('train --out of a folder another process is writing: E_OUTPUT_LOCKED, and the lock is released after a run', async () => {
    const { train } = await import('../../src/train/train.js');
    const { lockOutput } = await import('../../src/io/result-folder.js');
    const o = join(root, 'train-run');
    const release = lockOutput(o);
    const opts = { method: 'lora' as const, steps: 1, config: { hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2 }, batchSize: 2, contextLength: 8, out: o };
    await expect(train(opts)).rejects.toSatisfy((e) => isDorascopeError(e, 'E_OUTPUT_LOCKED'));
    expect(existsSync(o)).toBe(false);
    release();
    await train(opts);
    expect(readdirSync(o)).toContain('checkpoint-1');
    expect(existsSync(lockPathFor(o))).toBe(false);
  }, 120_000);

  it('a real SIGTERM during analyze --per-row leaves no temporary file and no half folder', async () => {
    const parent = join(root, 'sigterm');
    mkdirSync(parent);
    const o = join(parent, 'out');
    const child = spawn(process.execPath, [CLI, ...analyzeArgs(o, 'ck1', '--per-row').slice(0), join(root, 'ck2.safetensors')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += String(d); });
    const exited = new Promise<NodeJS.Signals | number | null>((res) => child.on('exit', (code, signal) => res(signal ?? code)));
    // Kill it while rows.arrow is being streamed into the temporary folder.
    const t0 = Date.now();
    let seen = '';
    while (!seen && Date.now() - t0 < 60_000 && child.exitCode === null) {
      for (const n of readdirSync(parent, { recursive: true }).map(String)) {
        if (/^\.out\.tmp-[^/]+\/\.rows\.arrow\.[^/]+\.tmp$/u.test(n) && statSync(join(parent, n)).size > 0) seen = n;
      }
      if (!seen) await new Promise((res) => setTimeout(res, 5));
    }
    expect(seen, `no temporary rows.arrow appeared before the analysis ended; stderr: ${stderr}`).not.toBe('');
    child.kill('SIGTERM');
    expect(await exited).toBe('SIGTERM');
    expect(readdirSync(parent)).toEqual([]);
  }, 120_000);
});

/**
 * A real full disk and a real read-only file system: a 1 MB tmpfs (root only; without root,
 * mounting is not allowed and the full-disk case is skipped with a printed reason, while the
 * read-only case uses a chmod 555 folder, which permissions enforce for non-root users).
 */
describe('E_WRITE on a full or read-only disk', () => {
  const isRoot = process.getuid?.() === 0;
  let mnt: string | undefined;
  let mountError = '';
  beforeAll(async () => {
    if (!isRoot) return;
    const dir = await mkdtemp(join(tmpdir(), 'ds-tmpfs-'));
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { encoding: 'utf8' });
    if (r.status === 0) mnt = dir;
    else mountError = `${r.stderr ?? ''}${r.error?.message ?? ''}`.trim();
  });
  afterAll(async () => {
    if (mnt) {
      spawnSync('umount', [mnt]);
      await rm(mnt, { recursive: true, force: true });
    }
  });

  it('analyze --per-row into a full disk: E_WRITE naming the output and "no space", nothing left behind', async (ctx) => {
    if (!mnt) {
      console.log(`skipped: a real full disk needs a tmpfs mount (${isRoot ? `mount failed: ${mountError}` : 'not running as root'})`);
      ctx.skip();
      return;
    }
    const o = join(mnt, 'out');
    const r = await run(analyzeArgs(o, 'ck1', '--per-row'));
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('[E_WRITE]');
    // The output folder (or the file in it that hit the limit), never the temporary folder's name.
    expect(r.stderr).toMatch(new RegExp(`cannot write "${o}(/rows\\.arrow|/decomposition\\.\\w+)?"`, 'u'));
    expect(r.stderr).toContain('no space left on the device (ENOSPC)');
    expect(r.stderr).not.toContain('AsyncQueue');
    expect(readdirSync(mnt)).toEqual([]);
  }, 120_000);

  it('a read-only output folder: E_WRITE naming the path and the reason, not ENOENT', async () => {
    let parent: string;
    if (mnt) {
      parent = join(mnt, 'ro');
      mkdirSync(parent);
      expect(spawnSync('mount', ['-o', 'remount,ro', mnt]).status).toBe(0);
    } else if (!isRoot) {
      parent = join(root, 'ro');
      mkdirSync(parent);
      await chmod(parent, 0o555);
    } else {
      console.log(`skipped: as root, permissions are not enforced and no tmpfs could be mounted (${mountError})`);
      return;
    }
    try {
      const o = join(parent, 'out');
      const r = await run(analyzeArgs(o, 'ck1', '--layers', '0'));
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('[E_WRITE]');
      expect(r.stderr).toContain(JSON.stringify(o));
      expect(r.stderr).toMatch(mnt ? /the file system is read-only \(EROFS\)/u : /permission denied \(EACCES\)/u);
      expect(r.stderr).not.toContain('ENOENT');
      expect(readdirSync(parent)).toEqual([]);
    } finally {
      if (mnt) spawnSync('mount', ['-o', 'remount,rw', mnt]);
      else await chmod(parent, 0o755);
    }
  });

  it('E_WRITE carries the OS reason in words for the common codes', async () => {
    const { writeError } = await import('../../src/io/write-error.js');
    const e = writeError('/x/y', Object.assign(new Error("EEXIST: file already exists, mkdir '/x/y'"), { code: 'EEXIST' }));
    expect(isDorascopeError(e, 'E_WRITE')).toBe(true);
    expect(e.message).toBe('cannot write "/x/y": something already exists there (EEXIST)');
  });
});

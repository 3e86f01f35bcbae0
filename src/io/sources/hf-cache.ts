/**
 * Offline resolution of a Hugging Face model id in the local hub cache, laid out as
 * huggingface_hub writes it (docs: "Understand caching"):
 *   <cache>/models--<org>--<name>/refs/<branch>          (a commit hash)
 *   <cache>/models--<org>--<name>/snapshots/<commit>/    (the files)
 * with <cache> = $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub,
 * else ~/.cache/huggingface/hub. dorascope never downloads: a model that is not in the
 * cache is an E_HF_CACHE error that says how to fetch it.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { DorascopeError, q } from '../../errors.js';

export interface HubRef {
  readonly id: string;
  readonly revision: string | undefined;
}

/** Parses `org/name` or `org/name@revision`; undefined when the string is not a hub id. */
export function parseHubId(s: string): HubRef | undefined {
  const m = /^(?<id>[A-Za-z0-9][\w.-]*\/[\w.-]+)(?:@(?<rev>[\w./-]+))?$/u.exec(s);
  if (!m?.groups) return undefined;
  const id = m.groups['id']!;
  if (id.includes('..') || id.endsWith('.safetensors')) return undefined;
  return { id, revision: m.groups['rev'] };
}

/** The hub cache folder, from the environment as huggingface_hub reads it. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['HF_HUB_CACHE']) return env['HF_HUB_CACHE'];
  if (env['HF_HOME']) return join(env['HF_HOME'], 'hub');
  if (env['XDG_CACHE_HOME']) return join(env['XDG_CACHE_HOME'], 'huggingface', 'hub');
  return join(homedir(), '.cache', 'huggingface', 'hub');
}

/** A ref file holds one commit hash and a newline: more than this is not a ref. */
const REF_CAP = 256;

/**
 * The snapshot folder of `id` at `revision` (a branch or tag name under refs/, or a
 * commit hash; default `main`).
 */
export function resolveHubCache(id: string, revision?: string, env: NodeJS.ProcessEnv = process.env): string {
  const cache = hubCacheDir(env);
  const repo = join(cache, `models--${id.split('/').join('--')}`);
  const hint = `dorascope never downloads; fetch it first, e.g. \`huggingface-cli download ${id}\`, or pass a local path`;
  if (!existsSync(repo)) {
    throw new DorascopeError('E_HF_CACHE', `model ${q(id)} is not in the local Hugging Face cache (looked for ${q(repo)}; cache from ${cacheOrigin(env)}); ${hint}`);
  }
  const rev = revision ?? 'main';
  let commit: string;
  const refFile = join(repo, 'refs', rev);
  if (existsSync(refFile) && statSync(refFile).isFile()) {
    // huggingface_hub writes the 40-hex commit of the branch (file_download.py `_cache_commit_hash_for_specific_revision`);
    // anything else (a huge file, a path) is not followed: the snapshot folder is named by that hash.
    const size = statSync(refFile).size;
    const text = size <= REF_CAP ? readFileSync(refFile, 'utf8').trim() : '';
    if (!/^[0-9a-f]{40}$/u.test(text)) {
      throw new DorascopeError('E_HF_CACHE', `the cache's ref file ${q(refFile)} does not hold a 40-hex commit hash (${size > REF_CAP ? `${size} bytes` : q(text.slice(0, 80))}); the cache is damaged: download ${id} again, or pass a local path`, { path: refFile });
    }
    commit = text;
  } else if (/^[0-9a-f]{40}$/u.test(rev)) {
    commit = rev;
  } else {
    const snaps = existsSync(join(repo, 'snapshots')) ? readdirSync(join(repo, 'snapshots')) : [];
    throw new DorascopeError('E_HF_CACHE',
      `model ${q(id)} has no revision ${q(rev)} in the local cache (no ${q(refFile)}; snapshots present: ${snaps.length ? snaps.join(', ') : 'none'}); name one as ${id}@<commit>, or ${hint}`);
  }
  const snap = join(repo, 'snapshots', commit);
  if (!existsSync(snap)) {
    throw new DorascopeError('E_HF_CACHE', `model ${q(id)}@${rev} points to commit ${q(commit)}, but ${q(snap)} does not exist (incomplete download?); ${hint}`);
  }
  return snap;
}

function cacheOrigin(env: NodeJS.ProcessEnv): string {
  if (env['HF_HUB_CACHE']) return '$HF_HUB_CACHE';
  if (env['HF_HOME']) return '$HF_HOME/hub';
  if (env['XDG_CACHE_HOME']) return '$XDG_CACHE_HOME/huggingface/hub';
  return '~/.cache/huggingface/hub';
}

/**
 * A sharded checkpoint: `model.safetensors.index.json` with a `weight_map`
 * (tensor name → shard file), as transformers' `save_pretrained` writes it. Every
 * shard's header is opened and checked against the index at open time (headers only,
 * so this is fast even for a 100 GB model): every shard must exist, and every name
 * must be held by the shard the index names. Tensors a shard holds that the index does
 * not list are ignored, as transformers ignores them.
 */
import { shownValue } from '../json-value.js';
import { entryExists, JSON_CAPS, readTextCapped } from '../open-regular.js';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { DorascopeError, q } from '../../errors.js';
import { openSafetensors, type SafetensorsFile } from '../safetensors/reader.js';
import type { TensorInfo, TensorSource } from '../types.js';
import { parseJsonLenient } from './lenient-json.js';

export const INDEX_FILE = 'model.safetensors.index.json';

/** Reads and checks the index's shape; returns name → shard file name, in file order. */
export async function readIndex(indexPath: string): Promise<Map<string, string>> {
  const text = await readTextCapped(indexPath, 'shard index', JSON_CAPS.index);
  let json: unknown;
  try {
    json = parseJsonLenient(text);
  } catch (e) {
    throw new DorascopeError('E_INDEX', `cannot read shard index ${q(indexPath)}: ${(e as Error).message}`);
  }
  const wm = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) {
    throw new DorascopeError('E_INDEX', `shard index ${q(indexPath)} has no "weight_map" object`);
  }
  const map = new Map<string, string>();
  const dir = resolve(dirname(indexPath));
  for (const [name, shard] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof shard !== 'string' || shard === '') throw new DorascopeError('E_INDEX', `shard index ${q(indexPath)}: tensor ${q(name)} maps to ${shownValue(shard)}, not a file name`);
    // A shard must be a file inside the model folder (no "../" escapes).
    if (!resolve(dir, shard).startsWith(dir + sep)) throw new DorascopeError('E_INDEX', `shard index ${q(indexPath)}: tensor ${q(name)} maps to ${q(shard)}, outside the model folder`);
    map.set(name, shard);
  }
  if (map.size === 0) throw new DorascopeError('E_INDEX', `shard index ${q(indexPath)} lists no tensors`);
  return map;
}

export async function openSharded(dir: string, indexPath = join(dir, INDEX_FILE)): Promise<TensorSource> {
  const map = await readIndex(indexPath);
  const shardNames = [...new Set(map.values())];
  for (const s of shardNames) {
    if (!entryExists(join(dir, s))) {
      const users = [...map].filter(([, f]) => f === s).length;
      throw new DorascopeError('E_INDEX', `shard index ${q(indexPath)} names shard ${q(s)} (for ${users} tensors), but ${q(join(dir, s))} does not exist`);
    }
  }
  const shards = new Map<string, SafetensorsFile>();
  try {
    for (const s of shardNames) shards.set(s, await openSafetensors(join(dir, s)));
    const infos = new Map<string, { info: TensorInfo; file: SafetensorsFile }>();
    const metadata: Record<string, string> = {};
    for (const f of shards.values()) Object.assign(metadata, f.metadata);
    for (const [name, s] of map) {
      const file = shards.get(s)!;
      const info = file.info(name);
      if (!info) throw new DorascopeError('E_INDEX', `shard index ${q(indexPath)} says tensor ${q(name)} is in ${q(s)}, but that shard does not hold it`);
      infos.set(name, { info, file });
    }
    const list = [...infos.values()].map((x) => x.info).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    let closed = false;
    return {
      path: dir,
      kind: 'sharded',
      metadata,
      list: () => list,
      info: (name) => infos.get(name)?.info,
      async read(name) {
        const hit = infos.get(name);
        if (!hit) throw new DorascopeError('E_MISSING_TENSOR', `sharded model ${q(dir)} has no tensor ${q(name)} (index ${q(basename(indexPath))})`);
        return hit.file.readFloat32(name);
      },
      async readBytes(name) {
        const hit = infos.get(name);
        if (!hit) throw new DorascopeError('E_MISSING_TENSOR', `sharded model ${q(dir)} has no tensor ${q(name)} (index ${q(basename(indexPath))})`);
        return hit.file.readBytes(name);
      },
      async readBytesInto(name, into, tensorByteOffset, blocking) {
        const hit = infos.get(name);
        if (!hit) throw new DorascopeError('E_MISSING_TENSOR', `sharded model ${q(dir)} has no tensor ${q(name)} (index ${q(basename(indexPath))})`);
        return hit.file.readInto(name, into, tensorByteOffset, blocking);
      },
      async close() {
        if (closed) return;
        closed = true;
        for (const f of shards.values()) await f.close();
      },
    };
  } catch (e) {
    for (const f of shards.values()) await f.close().catch(() => undefined);
    throw e;
  }
}

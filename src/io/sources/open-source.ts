/**
 * `openSource(path)`: one entry point for every checkpoint dorascope reads. It looks
 * at what the path is and dispatches:
 *   file.safetensors                       → one file
 *   dir/model.safetensors.index.json       → sharded (weight_map checked against shards)
 *   dir/model.safetensors (or one *.safetensors) → folder
 *   dir/adapter_config.json                → PEFT adapter; merged onto `base` when given
 *   org/name[@rev] (not a local path)      → the local Hugging Face cache, then as above
 *   *.bin / *.pt / *.pth / *.ckpt / *.pkl  → E_PICKLE (not supported: convert to safetensors)
 * A Trainer run folder (checkpoint-<N>/) is several sources: use `listRun`.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { DorascopeError, q } from '../../errors.js';
import type { TensorSource } from '../types.js';
import { entryExists, statOrThrow } from '../open-regular.js';
import { isAdapterDir, openAdapter } from '../peft/adapter.js';
import { openMergedAdapter } from '../peft/merged-source.js';
import { openFileSource, sourceFromFile } from './file-source.js';
import { INDEX_FILE, openSharded } from './sharded.js';
import { parseHubId, resolveHubCache } from './hf-cache.js';
import { isTrainerRun } from './trainer-run.js';
import { withQuantization } from '../quant/quantized-source.js';

export interface OpenSourceOptions {
  /** For a PEFT adapter: the base it is merged onto (a path, hub id, or an open source). */
  readonly base?: string | TensorSource | undefined;
  /** Environment for the hub cache lookup (tests). */
  readonly env?: NodeJS.ProcessEnv | undefined;
}

const PICKLE_EXT = new Set(['.bin', '.pt', '.pth', '.ckpt', '.pkl']);
const PICKLE_NAMES = ['pytorch_model.bin', 'pytorch_model.bin.index.json', 'model.pt', 'model.pth', 'adapter_model.bin'];

function pickleError(path: string): DorascopeError {
  return new DorascopeError('E_PICKLE',
    `${q(path)} is a pickle checkpoint (.bin/.pt/.pth/.ckpt), which dorascope does not load: unpickling can run arbitrary code. Convert it to safetensors first (e.g. \`safetensors.torch.save_file(torch.load(path), "model.safetensors")\`, or save_pretrained(..., safe_serialization=True))`);
}

export type PathKind = 'file' | 'folder' | 'sharded' | 'adapter' | 'run' | 'hub';

/** What a path is, without opening anything (for `inspect` and `analyze`). Throws E_NOT_FOUND / E_PICKLE. */
export function classifyPath(path: string, env: NodeJS.ProcessEnv = process.env): { kind: PathKind; path: string } {
  if (entryExists(path) && !existsSync(path)) statOrThrow(path, 'input'); // a dangling link or a loop: say which
  if (!existsSync(path)) {
    const hub = parseHubId(path);
    if (hub && !path.startsWith('.') && !path.startsWith('/')) {
      return { kind: 'hub', path: resolveHubCache(hub.id, hub.revision, env) };
    }
    if (PICKLE_EXT.has(extname(path).toLowerCase())) throw pickleError(path);
    throw new DorascopeError('E_NOT_FOUND', `${q(path)} does not exist`);
  }
  const st = statSync(path);
  if (st.isFile()) {
    const ext = extname(path).toLowerCase();
    if (ext === '.safetensors') return { kind: 'file', path };
    if (PICKLE_EXT.has(ext)) throw pickleError(path);
    throw new DorascopeError('E_UNSUPPORTED_FORMAT', `${q(path)} is not a .safetensors file (dorascope reads safetensors checkpoints, sharded folders, PEFT adapters and Trainer runs)`);
  }
  if (!st.isDirectory()) throw new DorascopeError('E_UNSUPPORTED_FORMAT', `${q(path)} is neither a file nor a folder`);
  if (isAdapterDir(path)) return { kind: 'adapter', path };
  // entryExists: a FIFO, folder or looping link under these names is opened and reported, not skipped.
  if (entryExists(join(path, INDEX_FILE))) return { kind: 'sharded', path };
  if (entryExists(join(path, 'model.safetensors'))) return { kind: 'folder', path };
  const st1 = readdirSync(path).filter((f) => f.endsWith('.safetensors'));
  if (st1.length === 1) return { kind: 'folder', path };
  if (isTrainerRun(path)) return { kind: 'run', path };
  if (st1.length > 1) {
    throw new DorascopeError('E_INDEX', `${q(path)} holds ${st1.length} .safetensors files but no ${INDEX_FILE} saying which tensor is where`);
  }
  const pickle = PICKLE_NAMES.find((f) => existsSync(join(path, f)));
  if (pickle) throw pickleError(join(path, pickle));
  throw new DorascopeError('E_NOT_FOUND', `${q(path)} holds no checkpoint (no model.safetensors, ${INDEX_FILE}, adapter_config.json or checkpoint-<N>/ folders)`);
}

/**
 * Opens any supported checkpoint as a `TensorSource` (headers only; tensors are read on demand).
 * bitsandbytes-quantized weights are listed and read dequantized, under their own names (src/io/quant/).
 */
export async function openSource(path: string, opts: OpenSourceOptions = {}): Promise<TensorSource> {
  const src = await openPlain(path, opts);
  try {
    return await withQuantization(src);
  } catch (e) {
    await src.close().catch(() => undefined);
    throw e;
  }
}

async function openPlain(path: string, opts: OpenSourceOptions): Promise<TensorSource> {
  const { kind, path: real } = classifyPath(path, opts.env);
  const inner = kind === 'hub' ? classifyPath(real, opts.env) : { kind, path: real };
  switch (inner.kind) {
    case 'file':
      return openFileSource(inner.path, 'file', path);
    case 'sharded':
      return openSharded(inner.path);
    case 'folder': {
      const name = entryExists(join(inner.path, 'model.safetensors'))
        ? 'model.safetensors'
        : readdirSync(inner.path).find((f) => f.endsWith('.safetensors'))!;
      return openFileSource(join(inner.path, name), 'folder', inner.path);
    }
    case 'adapter': {
      if (opts.base === undefined) {
        const a = await openAdapter(inner.path);
        return { ...sourceFromFile(a.file, inner.path, 'adapter'), close: () => a.close() };
      }
      const owned = typeof opts.base === 'string';
      const base = typeof opts.base === 'string' ? await openSource(opts.base, { env: opts.env }) : opts.base;
      try {
        return await openMergedAdapter(inner.path, base, { closeBase: owned });
      } catch (e) {
        if (owned) await base.close();
        throw e;
      }
    }
    case 'run':
      throw new DorascopeError('E_USAGE', `${q(path)} is a Trainer run folder (checkpoint-<N>/ inside): name one checkpoint, or pass the run to \`analyze\`, which reads them all in step order`);
    default:
      throw new DorascopeError('E_INTERNAL', `unexpected source kind for ${q(path)}`);
  }
}

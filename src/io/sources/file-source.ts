/**
 * One `.safetensors` file as a `TensorSource` (kind `file`, or `folder` when it was
 * found as `<dir>/model.safetensors`). Headers are parsed at open; `read` decodes one
 * tensor with positional reads.
 */
import { DorascopeError, q } from '../../errors.js';
import { openSafetensors, type SafetensorsFile } from '../safetensors/reader.js';
import type { SourceKind, TensorSource } from '../types.js';

export function sourceFromFile(file: SafetensorsFile, path: string, kind: SourceKind): TensorSource {
  const list = [...file.tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return {
    path,
    kind,
    metadata: file.metadata,
    list: () => list,
    info: (name) => file.info(name),
    async read(name) {
      if (!file.info(name)) throw new DorascopeError('E_MISSING_TENSOR', `${q(file.path)} has no tensor ${q(name)}`);
      return file.readFloat32(name);
    },
    readBytes: (name) => file.readBytes(name),
    readBytesInto(name, into, tensorByteOffset, blocking) {
      if (!file.info(name)) throw new DorascopeError('E_MISSING_TENSOR', `${q(file.path)} has no tensor ${q(name)}`);
      return file.readInto(name, into, tensorByteOffset, blocking);
    },
    close: () => file.close(),
  };
}

export async function openFileSource(path: string, kind: SourceKind = 'file', shownPath = path): Promise<TensorSource> {
  return sourceFromFile(await openSafetensors(path), shownPath, kind);
}

/**
 * Spec-conformant safetensors writer. Layout as the reference library writes it: tensors sorted
 * by dtype alignment (size) descending, then by name, laid out contiguously from offset 0; the
 * header JSON (with `__metadata__` first when present) is padded with spaces to a multiple of 8
 * bytes so that every tensor's data starts aligned. Written atomically (temp, fsync, rename).
 */
import { DorascopeError, q } from '../../errors.js';
import { writeAtomic } from '../atomic.js';
import { DTYPES, float32ToBF16Bits, numberToF16 } from '../dtypes.js';
import type { DType } from '../types.js';

export interface TensorSpec {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

export interface WriteTensor extends TensorSpec {
  /** Little-endian bytes (or a typed array of the dtype's native type). */
  readonly data: ArrayBufferView;
}

function byteSize(t: TensorSpec): number {
  return t.shape.reduce((a, d) => a * d, DTYPES[t.dtype].size);
}

/** The reference's order: larger dtypes first (keeps every tensor aligned), then by name. */
function layout(specs: readonly TensorSpec[]): TensorSpec[] {
  return [...specs].sort((a, b) => DTYPES[b.dtype].size - DTYPES[a.dtype].size || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export function buildHeader(specs: readonly TensorSpec[], metadata?: Record<string, string>): { header: Uint8Array; order: TensorSpec[] } {
  const names = new Set<string>();
  for (const s of specs) {
    if (names.has(s.name)) throw new DorascopeError('E_DUPLICATE_TENSOR', `cannot write tensor ${q(s.name)} twice`);
    if (s.name === '__metadata__') throw new DorascopeError('E_HEADER_SCHEMA', 'a tensor cannot be named "__metadata__"');
    names.add(s.name);
  }
  const order = layout(specs);
  const obj: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) obj.__metadata__ = metadata;
  let offset = 0;
  for (const s of order) {
    const n = byteSize(s);
    obj[s.name] = { dtype: s.dtype, shape: [...s.shape], data_offsets: [offset, offset + n] };
    offset += n;
  }
  const json = new TextEncoder().encode(JSON.stringify(obj));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(json, 8);
  return { header, order };
}

function asBytes(v: ArrayBufferView): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/**
 * Streams a file: header from the specs, then each tensor's bytes from `produce(name)`, one at a
 * time (so merging a 70B model never holds more than one tensor).
 */
export async function writeSafetensorsStreaming(
  path: string,
  specs: readonly TensorSpec[],
  produce: (name: string) => Promise<ArrayBufferView> | ArrayBufferView,
  metadata?: Record<string, string>,
): Promise<void> {
  const { header, order } = buildHeader(specs, metadata);
  await writeAtomic(path, async (fh) => {
    await fh.write(header);
    for (const s of order) {
      const bytes = asBytes(await produce(s.name));
      if (bytes.byteLength !== byteSize(s)) {
        throw new DorascopeError('E_TENSOR_SIZE', `writing ${q(path)}: tensor ${q(s.name)} has ${bytes.byteLength} bytes, but ${s.dtype} ${JSON.stringify(s.shape)} needs ${byteSize(s)}`);
      }
      let done = 0;
      while (done < bytes.byteLength) {
        const { bytesWritten } = await fh.write(bytes, done, Math.min(1 << 30, bytes.byteLength - done));
        done += bytesWritten;
      }
    }
  });
}

export async function writeSafetensors(path: string, tensors: readonly WriteTensor[], metadata?: Record<string, string>): Promise<void> {
  const byName = new Map(tensors.map((t) => [t.name, t.data]));
  await writeSafetensorsStreaming(path, tensors, (name) => byName.get(name)!, metadata);
}

/** Encodes float32 values as the bytes of a floating dtype (F16/BF16 round to nearest even). */
export function encodeFloat32(dtype: DType, values: ArrayLike<number>): Uint8Array {
  const n = values.length;
  switch (dtype) {
    case 'F32': return asBytes(Float32Array.from(values));
    case 'F64': return asBytes(Float64Array.from(values));
    case 'F16': {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = numberToF16(values[i]!);
      return asBytes(out);
    }
    case 'BF16': {
      const f = Float32Array.from(values);
      const bits = new Uint32Array(f.buffer);
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = float32ToBF16Bits(bits[i]!);
      return asBytes(out);
    }
    default:
      throw new DorascopeError('E_DTYPE', `encodeFloat32 cannot encode ${dtype}; pass the raw typed array instead`);
  }
}

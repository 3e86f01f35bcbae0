/**
 * Streaming safetensors reader: the header is parsed and validated at open, then each tensor
 * is read on demand with positional reads. The file is never loaded whole, so files larger
 * than memory work; data may be unaligned in the file (old writers did not pad the header),
 * so bytes are always copied into a fresh, aligned buffer before being viewed as typed arrays.
 * `readInto` is the allocation-free variant for hot loops: a byte range of one tensor lands in a
 * buffer the caller owns and reuses (a fresh buffer per tensor costs more in page faults than
 * the copy itself when the file is in the page cache).
 */
import { readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { openRegular } from '../open-regular.js';
import { DorascopeError, q } from '../../errors.js';
import { DTYPES, decodeToFloat32, viewAs, type RawArray } from '../dtypes.js';
import type { DType, TensorInfo } from '../types.js';
import { headerLengthFrom, parseHeader, type HeaderEntry } from './header.js';

export interface RawTensor {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: RawArray;
}

export interface SafetensorsFile {
  readonly path: string;
  readonly fileSize: number;
  readonly headerLength: number;
  /** Absolute offset of the data block (8 + headerLength). */
  readonly dataOffset: number;
  readonly metadata: Readonly<Record<string, string>>;
  /** Tensors in name order. */
  readonly tensors: readonly TensorInfo[];
  info(name: string): TensorInfo | undefined;
  /** Raw little-endian bytes of one tensor. */
  readBytes(name: string): Promise<Uint8Array>;
  /**
   * Reads `into.byteLength` bytes of tensor `name`, starting `tensorByteOffset` bytes into the
   * tensor, into the caller's buffer (positional reads, nothing allocated). E_OFFSETS when the
   * range is outside the tensor. `blocking`: read with blocking calls on the calling thread (for a
   * worker thread with nothing else to do; the promise is settled when the call returns).
   */
  readInto(name: string, into: Uint8Array, tensorByteOffset?: number, blocking?: boolean): Promise<void>;
  /** The tensor in its own dtype (F16/BF16 as Uint16Array bits, F8 as Uint8Array). */
  readRaw(name: string): Promise<RawTensor>;
  /** A floating tensor decoded to float32 (E_DTYPE for integer and bool tensors). */
  readFloat32(name: string): Promise<Float32Array>;
  /** Alias of readFloat32, so a file can serve where a TensorSource's `read` is expected. */
  read(name: string): Promise<Float32Array>;
  close(): Promise<void>;
}

const CHUNK = 1 << 30; // fs reads are limited to 2 GiB each

async function readFully(fh: FileHandle, into: Uint8Array, position: number, path: string): Promise<void> {
  let done = 0;
  while (done < into.byteLength) {
    const len = Math.min(CHUNK, into.byteLength - done);
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(into, done, len, position + done));
    } catch (e) {
      throw readFailed(path, position + done, len, e);
    }
    if (bytesRead === 0) throw truncated(path, position, done, into.byteLength);
    done += bytesRead;
  }
}

/** `readFully` with blocking reads on the calling thread (no round trip through libuv's thread pool). */
function readFullySync(fh: FileHandle, into: Uint8Array, position: number, path: string): void {
  let done = 0;
  while (done < into.byteLength) {
    const len = Math.min(CHUNK, into.byteLength - done);
    let n: number;
    try {
      n = readSync(fh.fd, into, done, len, position + done);
    } catch (e) {
      throw readFailed(path, position + done, len, e);
    }
    if (n === 0) throw truncated(path, position, done, into.byteLength);
    done += n;
  }
}

function truncated(path: string, position: number, done: number, length: number): DorascopeError {
  return new DorascopeError('E_TRUNCATED', `${q(path)}: file ended after ${position + done} bytes while reading ${length} bytes at ${position} (was it truncated or modified?)`);
}

/** A read the system refused (EIO from a failing disk, a handle already closed): which file, where, and why. */
function readFailed(path: string, position: number, length: number, e: unknown): DorascopeError {
  const err = e as { code?: string; message?: string };
  return new DorascopeError('E_READ', `${q(path)}: cannot read ${length} bytes at ${position}: ${err.code ?? ''} ${err.message ?? String(e)}`.replace(/ {2,}/gu, ' '),
    { path }, { cause: e });
}

export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  // Only a regular file: a FIFO would block forever, a device would never end.
  const { fh, size: fileSize } = await openRegular(path, 'safetensors file');
  try {
    const prefix = new Uint8Array(8);
    if (fileSize >= 8) await readFully(fh, prefix, 0, path);
    const n = headerLengthFrom(prefix, fileSize, path);
    const headerBytes = new Uint8Array(n);
    await readFully(fh, headerBytes, 8, path);
    const { metadata, entries } = parseHeader(headerBytes, fileSize, path);
    return makeFile(fh, path, fileSize, n, metadata, entries);
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw e;
  }
}

function makeFile(fh: FileHandle, path: string, fileSize: number, headerLength: number,
  metadata: Record<string, string>, entries: HeaderEntry[]): SafetensorsFile {
  const byName = new Map(entries.map((e) => [e.name, e]));
  const dataOffset = 8 + headerLength;
  const tensors: TensorInfo[] = entries.map(({ name, dtype, shape, byteLength }) => ({ name, dtype, shape, byteLength }));
  let closed = false;

  const entry = (name: string): HeaderEntry => {
    const e = byName.get(name);
    if (!e) throw new DorascopeError('E_MISSING_TENSOR', `${q(path)} has no tensor ${q(name)}`);
    if (closed) throw new DorascopeError('E_INTERNAL', `${q(path)} was closed before reading ${q(name)}`);
    return e;
  };
  const readBytes = async (name: string): Promise<Uint8Array> => {
    const e = entry(name);
    const bytes = new Uint8Array(new ArrayBuffer(e.byteLength)); // fresh buffer: aligned for any typed view
    await readFully(fh, bytes, dataOffset + e.begin, path);
    return bytes;
  };
  const readInto = async (name: string, into: Uint8Array, tensorByteOffset = 0, blocking = false): Promise<void> => {
    const e = entry(name);
    if (!Number.isInteger(tensorByteOffset) || tensorByteOffset < 0 || tensorByteOffset + into.byteLength > e.byteLength) {
      throw new DorascopeError('E_OFFSETS', `${q(path)}: bytes ${tensorByteOffset}..${tensorByteOffset + into.byteLength} are outside tensor ${q(name)} (${e.byteLength} bytes)`);
    }
    if (blocking) readFullySync(fh, into, dataOffset + e.begin + tensorByteOffset, path);
    else await readFully(fh, into, dataOffset + e.begin + tensorByteOffset, path);
  };
  const readRaw = async (name: string): Promise<RawTensor> => {
    const e = entry(name);
    return { name, dtype: e.dtype, shape: e.shape, data: viewAs(e.dtype, await readBytes(name)) };
  };
  const readFloat32 = async (name: string): Promise<Float32Array> => {
    const e = entry(name);
    if (!DTYPES[e.dtype].floating) {
      throw new DorascopeError('E_DTYPE', `${q(path)}: tensor ${q(name)} has dtype ${e.dtype}, not a floating type`);
    }
    return decodeToFloat32(e.dtype, viewAs(e.dtype, await readBytes(name)));
  };
  return {
    path, fileSize, headerLength, dataOffset, metadata, tensors,
    info: (name) => byName.get(name),
    readBytes, readInto, readRaw, readFloat32, read: readFloat32,
    async close() {
      if (closed) return;
      closed = true;
      await fh.close();
    },
  };
}

/**
 * safetensors header parsing and validation, rule for rule as the reference Rust reader
 * (huggingface/safetensors `SafeTensors::read_metadata` and `Metadata::validate`):
 *   8-byte little-endian u64 header length N; N ≤ 100,000,000; 8 + N ≤ file size;
 *   UTF-8 JSON object (starting with '{'); each entry {dtype, shape, data_offsets: [begin, end]};
 *   entries sorted by begin must tile the data block from 0 without gaps or overlaps;
 *   end − begin = product(shape) × dtype size (overflow checked); the last end = file size − 8 − N.
 * Plus two checks JSON.parse would otherwise hide: duplicate tensor names and non-string metadata.
 */
import { jsonSnippet } from '../json-value.js';
import { DorascopeError, q, type ErrorCode } from '../../errors.js';
import { DTYPES, isDType } from '../dtypes.js';
import type { TensorInfo } from '../types.js';

export const MAX_HEADER_SIZE = 100_000_000;

export interface HeaderEntry extends TensorInfo {
  /** Offsets relative to the start of the data block. */
  readonly begin: number;
  readonly end: number;
}

export interface ParsedHeader {
  readonly metadata: Record<string, string>;
  readonly entries: HeaderEntry[]; // in name order
}

function fail(code: ErrorCode, path: string, msg: string): never {
  throw new DorascopeError(code, `${q(path)}: ${msg}`, { path });
}

/** Checks the 8-byte prefix; returns N as a number (safe: N ≤ 1e8 after the check). */
export function headerLengthFrom(prefix: Uint8Array, fileSize: number, path: string): number {
  if (fileSize < 8 || prefix.byteLength < 8) fail('E_HEADER_TOO_SMALL', path, `file is ${fileSize} bytes, smaller than the 8-byte header length`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_SIZE)) fail('E_HEADER_TOO_LARGE', path, `header length ${n} exceeds the limit of ${MAX_HEADER_SIZE} bytes`);
  if (8n + n > BigInt(fileSize)) fail('E_HEADER_OUT_OF_BOUNDS', path, `header length ${n} runs past the end of the ${fileSize}-byte file`);
  return Number(n);
}

/** Validates header bytes (without the 8-byte prefix). */
export function parseHeader(bytes: Uint8Array, fileSize: number, path: string): ParsedHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    fail('E_HEADER_UTF8', path, 'header is not valid UTF-8');
  }
  // The reference rejects a header that does not start with '{' (InvalidHeaderStart).
  if (!text.startsWith('{')) fail('E_HEADER_JSON', path, `header does not start with '{' (starts with ${q(text.slice(0, 8))})`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail('E_HEADER_JSON', path, `header is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('E_HEADER_SCHEMA', path, 'header is not a JSON object');
  const dup = firstDuplicateTopLevelKey(text);
  if (dup !== undefined) fail('E_DUPLICATE_TENSOR', path, `tensor ${q(dup)} appears twice in the header`);

  const metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('E_METADATA', path, '__metadata__ is not an object of strings');
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') fail('E_METADATA', path, `__metadata__ value for ${q(k)} is ${jsonSnippet(v, 40)}, not a string`);
        metadata[k] = v;
      }
      continue;
    }
    entries.push(parseEntry(name, value, path));
  }

  // Offsets must tile [0, dataLength) in order of begin (reference: InvalidOffset).
  const byBegin = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let start = 0;
  for (const e of byBegin) {
    if (e.end < e.begin) fail('E_END_BEFORE_BEGIN', path, `tensor ${q(e.name)} has data_offsets [${e.begin}, ${e.end}]: end before begin`);
    if (e.begin !== start) fail('E_OFFSETS', path, `tensor ${q(e.name)} begins at ${e.begin}, expected ${start} (offsets must be contiguous from 0)`);
    if (e.end - e.begin !== e.byteLength) {
      fail('E_TENSOR_SIZE', path, `tensor ${q(e.name)} spans ${e.end - e.begin} bytes, but ${e.dtype} ${JSON.stringify(e.shape)} needs ${e.byteLength}`);
    }
    start = e.end;
  }
  const dataLength = fileSize - 8 - bytes.byteLength;
  if (start !== dataLength) fail('E_DATA_LENGTH', path, `tensor data ends at byte ${start} of the data block, but the file holds ${dataLength} data bytes`);
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { metadata, entries };
}

function parseEntry(name: string, value: unknown, path: string): HeaderEntry {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('E_HEADER_SCHEMA', path, `tensor ${q(name)}: entry is not an object`);
  const v = value as Record<string, unknown>;
  if (typeof v.dtype !== 'string') fail('E_HEADER_SCHEMA', path, `tensor ${q(name)}: missing string "dtype"`);
  if (!isDType(v.dtype)) fail('E_UNKNOWN_DTYPE', path, `tensor ${q(name)}: unknown dtype ${q(v.dtype)}`);
  const shape = v.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    fail('E_HEADER_SCHEMA', path, `tensor ${q(name)}: "shape" must be an array of non-negative integers, got ${jsonSnippet(shape)}`);
  }
  const off = v.data_offsets;
  if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d) && d >= 0)) {
    fail('E_HEADER_SCHEMA', path, `tensor ${q(name)}: "data_offsets" must be two non-negative integers, got ${jsonSnippet(off)}`);
  }
  const [begin, end] = off as [number, number];
  if (!Number.isSafeInteger(begin) || !Number.isSafeInteger(end)) fail('E_OVERFLOW', path, `tensor ${q(name)}: data_offsets ${JSON.stringify(off)} overflow`);
  // Element count and byte size with overflow checks (reference: ValidationOverflow).
  let bytes = BigInt(DTYPES[v.dtype].size);
  for (const d of shape as number[]) {
    if (!Number.isSafeInteger(d)) fail('E_OVERFLOW', path, `tensor ${q(name)}: dimension ${d} overflows`);
    bytes *= BigInt(d);
    if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) fail('E_OVERFLOW', path, `tensor ${q(name)}: shape ${JSON.stringify(shape)} overflows the byte size`);
  }
  return { name, dtype: v.dtype, shape: shape as number[], byteLength: Number(bytes), begin, end };
}

/**
 * JSON.parse silently keeps the last of duplicate keys; the header is valid JSON here, so a
 * single pass that tracks nesting depth and reads the strings at depth 1 followed by ':' finds them.
 */
export function firstDuplicateTopLevelKey(text: string): string | undefined {
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i;
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
      if (depth === 1) {
        let j = i + 1;
        while (j < text.length && /\s/.test(text[j]!)) j++;
        if (text[j] === ':') {
          const key = JSON.parse(text.slice(start, i + 1)) as string;
          if (seen.has(key)) return key;
          seen.add(key);
        }
      }
    } else if (c === 0x7b || c === 0x5b) depth++;
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return undefined;
}

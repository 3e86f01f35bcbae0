import { describe, expect, it } from 'vitest';
import { mkdtemp, readFile, writeFile, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSafetensors } from '../../src/io/safetensors/reader.js';
import { writeSafetensors, encodeFloat32 } from '../../src/io/safetensors/writer.js';
import { isDorascopeError, type ErrorCode } from '../../src/errors.js';
import type { DType } from '../../src/io/types.js';

const SAMPLES = new URL('../fixtures/safetensors-samples/', import.meta.url).pathname;
const DIFFAI = new URL('../fixtures/diffai/', import.meta.url).pathname;

/** Builds a safetensors file by hand (independently of our writer): raw header text, then data bytes. */
function handmade(headerText: string, data: Uint8Array, lengthOverride?: bigint): Uint8Array {
  const h = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

async function tmp(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'ds-st-'));
}

describe('reads the reference library\'s files', () => {
  const signed: Record<string, DType> = { b: 'I8', h: 'I16', i: 'I32', e: 'F16', f: 'F32', d: 'F64' };
  const unsigned: Record<string, [DType, number]> = { B: ['U8', 2 ** 8], H: ['U16', 2 ** 16], I: ['U32', 2 ** 32] };
  const expected = [-3, -2, -1, 0, 1, 2];

  for (const [code, dtype] of Object.entries(signed)) {
    it(`${code}.safetensors holds ${dtype} -3..2 and metadata {test: a}`, async () => {
      const f = await openSafetensors(join(SAMPLES, `${code}.safetensors`));
      expect(f.metadata).toEqual({ test: 'a' });
      expect(f.info(code)).toMatchObject({ dtype, shape: [6] });
      const values = dtype.startsWith('F') ? await f.readFloat32(code) : (await f.readRaw(code)).data;
      expect(Array.from(values as ArrayLike<number>, Number)).toEqual(expected);
      await f.close();
    });
  }
  for (const [code, [dtype, mod]] of Object.entries(unsigned)) {
    it(`${code}.safetensors holds ${dtype} values that wrap`, async () => {
      const f = await openSafetensors(join(SAMPLES, `${code}.safetensors`));
      const raw = await f.readRaw(code);
      expect(raw.dtype).toBe(dtype);
      expect(Array.from(raw.data as ArrayLike<number>, Number)).toEqual(expected.map((v) => (v + mod) % mod));
      await f.close();
    });
  }
  it('overall.safetensors (unaligned data) decodes floats to float32', async () => {
    const f = await openSafetensors(join(SAMPLES, 'overall.safetensors'));
    expect(f.tensors.map((t) => t.name).sort()).toEqual(['B', 'H', 'I', 'b', 'd', 'e', 'f', 'h', 'i'].sort());
    for (const n of ['e', 'f', 'd']) expect(Array.from(await f.readFloat32(n))).toEqual(expected);
    await expect(f.readFloat32('i')).rejects.toSatisfy((e: unknown) => isDorascopeError(e, 'E_DTYPE'));
    await f.close();
  });
  it('diffai checkpoints have the documented shapes and match a hand decode of the bytes', async () => {
    const path = join(DIFFAI, 'checkpoint_epoch_10.safetensors');
    const f = await openSafetensors(path);
    expect(f.info('fc1.weight')?.shape).toEqual([64, 128]);
    expect(f.info('fc2.weight')?.shape).toEqual([32, 64]);
    expect(f.info('fc3.weight')?.shape).toEqual([10, 32]);
    const w = await f.readFloat32('fc3.weight');
    // Independent decode: parse the header ourselves and read little-endian floats with a DataView.
    const bytes = await readFile(path);
    const n = Number(bytes.readBigUInt64LE(0));
    const hdr = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
    const [b] = hdr['fc3.weight'].data_offsets;
    const dv = new DataView(bytes.buffer, bytes.byteOffset + 8 + n + b);
    for (let i = 0; i < 320; i += 37) expect(w[i]).toBe(dv.getFloat32(i * 4, true));
    await f.close();
  });
});

describe('decodes half, bfloat16 and float8 bit patterns worked out by hand', () => {
  const cases: [DType, number[], number[]][] = [
    ['F16', [0x3c00, 0xc000, 0x0001, 0x03ff, 0x7bff, 0x7c00, 0xfc00, 0x8000], [1, -2, 2 ** -24, 1023 * 2 ** -24, 65504, Infinity, -Infinity, -0]],
    ['BF16', [0x3f80, 0xc040, 0x7f80, 0x0001], [1, -3, Infinity, 2 ** -133]],
    ['F8_E4M3', [0x38, 0x7e, 0x01, 0xb8, 0x08], [1, 448, 2 ** -9, -1, 2 ** -6]],
    ['F8_E5M2', [0x3c, 0x7b, 0x7c, 0x01, 0xfc], [1, 57344, Infinity, 2 ** -16, -Infinity]],
  ];
  for (const [dtype, bits, values] of cases) {
    it(dtype, async () => {
      const size = dtype.startsWith('F8') ? 1 : 2;
      const data = new Uint8Array(bits.length * size);
      bits.forEach((b, i) => (size === 1 ? (data[i] = b) : new DataView(data.buffer).setUint16(i * 2, b, true)));
      const dir = await tmp();
      const p = join(dir, 'x.safetensors');
      const hdr = JSON.stringify({ x: { dtype, shape: [bits.length], data_offsets: [0, data.length] } });
      await writeFile(p, handmade(hdr, data));
      const f = await openSafetensors(p);
      expect(Array.from(await f.readFloat32('x'))).toEqual(values);
      await f.close();
    });
  }
  it('NaN patterns decode to NaN', async () => {
    const dir = await tmp();
    const p = join(dir, 'n.safetensors');
    const hdr = JSON.stringify({ a: { dtype: 'F16', shape: [1], data_offsets: [0, 2] }, b: { dtype: 'F8_E4M3', shape: [1], data_offsets: [2, 3] }, c: { dtype: 'F8_E5M2', shape: [1], data_offsets: [3, 4] } });
    await writeFile(p, handmade(hdr, new Uint8Array([0x01, 0x7e, 0x7f, 0x7d])));
    const f = await openSafetensors(p);
    for (const n of ['a', 'b', 'c']) expect(Number.isNaN((await f.readFloat32(n))[0])).toBe(true);
    await f.close();
  });
});

describe('rejects every violation with its own code', () => {
  const ok = (extra = {}) => JSON.stringify({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, ...extra });
  const eight = new Uint8Array(8);
  const cases: [string, Uint8Array, ErrorCode][] = [
    ['too small', new Uint8Array(5), 'E_HEADER_TOO_SMALL'],
    ['too large', handmade(ok(), eight, 100_000_001n), 'E_HEADER_TOO_LARGE'],
    ['out of bounds', handmade(ok(), eight, 5000n), 'E_HEADER_OUT_OF_BOUNDS'],
    ['invalid utf-8', handmade('{"\xff": 1}'.replace('\xff', '\u0000'), eight).map((b, i) => (i === 10 ? 0xff : b)), 'E_HEADER_UTF8'],
    ['invalid json', handmade('{"a": ', eight), 'E_HEADER_JSON'],
    ['not starting with {', handmade('[1,2]', eight), 'E_HEADER_JSON'],
    ['schema: shape not array', handmade(JSON.stringify({ a: { dtype: 'F32', shape: 2, data_offsets: [0, 8] } }), eight), 'E_HEADER_SCHEMA'],
    ['unknown dtype', handmade(JSON.stringify({ a: { dtype: 'F7', shape: [2], data_offsets: [0, 8] } }), eight), 'E_UNKNOWN_DTYPE'],
    ['gap in offsets', handmade(JSON.stringify({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }), eight), 'E_OFFSETS'],
    ['end before begin', handmade(JSON.stringify({ a: { dtype: 'F32', shape: [0], data_offsets: [0, 0] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 4] } }), eight), 'E_END_BEFORE_BEGIN'],
    ['size mismatch', handmade(JSON.stringify({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }), eight), 'E_TENSOR_SIZE'],
    ['overflow', handmade(JSON.stringify({ a: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] } }), eight), 'E_OVERFLOW'],
    ['trailing data', handmade(ok(), new Uint8Array(12)), 'E_DATA_LENGTH'],
    ['truncated data', handmade(ok(), new Uint8Array(4)), 'E_DATA_LENGTH'],
    ['metadata not strings', handmade(ok({ __metadata__: { k: 1 } }), eight), 'E_METADATA'],
    ['duplicate tensor', handmade('{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', eight), 'E_DUPLICATE_TENSOR'],
  ];
  for (const [label, bytes, code] of cases) {
    it(`${label} → ${code}, naming the file`, async () => {
      const dir = await tmp();
      const p = join(dir, `bad-${code}.safetensors`);
      await writeFile(p, bytes);
      await expect(openSafetensors(p)).rejects.toSatisfy((e: unknown) => isDorascopeError(e, code) && e.message.includes(p));
    });
  }
  it('random bytes and every truncation of a valid file give typed errors, never a crash', async () => {
    const dir = await tmp();
    const good = handmade(ok({ __metadata__: { k: 'v' } }), eight);
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) & 0xff);
    const inputs: Uint8Array[] = [];
    for (let cut = 0; cut < good.length; cut += 3) inputs.push(good.subarray(0, cut));
    for (let k = 0; k < 100; k++) {
      const m = good.slice();
      for (let j = 0; j < 3; j++) m[rnd() % m.length] = rnd();
      inputs.push(m);
      inputs.push(Uint8Array.from({ length: 8 + (rnd() % 64) }, rnd));
    }
    const p = join(dir, 'fuzz.safetensors');
    for (const input of inputs) {
      await writeFile(p, input);
      try {
        const f = await openSafetensors(p);
        for (const t of f.tensors) await f.readRaw(t.name);
        await f.close();
      } catch (e) {
        expect(isDorascopeError(e), String(e)).toBe(true);
      }
    }
  });
  it('names the tensor in a missing-tensor error', async () => {
    const f = await openSafetensors(join(SAMPLES, 'f.safetensors'));
    await expect(f.readFloat32('nope')).rejects.toSatisfy((e: unknown) => isDorascopeError(e, 'E_MISSING_TENSOR') && e.message.includes('nope'));
    await f.close();
  });
  it.skipIf(process.platform !== 'linux')('a read the system refuses is E_READ naming the file and its code, on the thread pool and blocking alike', async () => {
    const { closeSync, openSync, readdirSync, readlinkSync } = await import('node:fs');
    const dir = await mkdtemp(join(tmpdir(), 'dorascope-st-'));
    const p = join(dir, 'm.safetensors');
    await writeSafetensors(p, [{ name: 'w', dtype: 'F32', shape: [8], data: encodeFloat32('F32', new Float32Array(8).fill(1.5)) }]);
    for (const blocking of [false, true]) {
      const f = await openSafetensors(p);
      // The reader's descriptor closed under it: the system refuses the read (EBADF), as a failing disk would (EIO).
      const fd = readdirSync('/proc/self/fd').map(Number).find((n) => { try { return readlinkSync(`/proc/self/fd/${n}`) === p; } catch { return false; } })!;
      closeSync(fd);
      await expect(f.readInto('w', new Uint8Array(16), 0, blocking))
        .rejects.toSatisfy((e: unknown) => isDorascopeError(e, 'E_READ') && e.message.includes(p) && e.message.includes('EBADF'));
      // Give the number back something harmless to close, so that the handle's own close cannot hit another file.
      const again = openSync('/dev/null', 'r');
      if (again === fd) await f.close();
      else closeSync(again);
    }
    await rm(dir, { recursive: true, force: true });
  });
});

describe('writer', () => {
  it('round-trips every dtype, 0-rank and zero-size tensors, with a padded header and the reference layout', async () => {
    const dir = await tmp();
    const p = join(dir, 'all.safetensors');
    const tensors = [
      { name: 'f64', dtype: 'F64' as const, shape: [2], data: new Float64Array([1.5, -2.25]) },
      { name: 'f32', dtype: 'F32' as const, shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
      { name: 'scalar', dtype: 'F32' as const, shape: [], data: new Float32Array([7]) },
      { name: 'empty', dtype: 'F32' as const, shape: [0, 3], data: new Float32Array(0) },
      { name: 'f16', dtype: 'F16' as const, shape: [3], data: encodeFloat32('F16', [1, -0.5, 65504]) },
      { name: 'bf16', dtype: 'BF16' as const, shape: [2], data: encodeFloat32('BF16', [1, -3]) },
      { name: 'e4m3', dtype: 'F8_E4M3' as const, shape: [1], data: new Uint8Array([0x38]) },
      { name: 'e5m2', dtype: 'F8_E5M2' as const, shape: [1], data: new Uint8Array([0x3c]) },
      { name: 'i64', dtype: 'I64' as const, shape: [2], data: new BigInt64Array([-5n, 2n ** 40n]) },
      { name: 'u64', dtype: 'U64' as const, shape: [1], data: new BigUint64Array([2n ** 63n]) },
      { name: 'i32', dtype: 'I32' as const, shape: [1], data: new Int32Array([-7]) },
      { name: 'u32', dtype: 'U32' as const, shape: [1], data: new Uint32Array([4e9]) },
      { name: 'i16', dtype: 'I16' as const, shape: [1], data: new Int16Array([-300]) },
      { name: 'u16', dtype: 'U16' as const, shape: [1], data: new Uint16Array([60000]) },
      { name: 'i8', dtype: 'I8' as const, shape: [1], data: new Int8Array([-100]) },
      { name: 'u8', dtype: 'U8' as const, shape: [1], data: new Uint8Array([200]) },
      { name: 'bool', dtype: 'BOOL' as const, shape: [2], data: new Uint8Array([1, 0]) },
    ];
    await writeSafetensors(p, tensors, { format: 'pt' });
    const bytes = await readFile(p);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const hdr = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
    expect(Object.keys(hdr)[0]).toBe('__metadata__');
    // Reference layout: alignment descending, then name.
    const size = (d: string) => (/64/.test(d) ? 8 : /32/.test(d) ? 4 : /16/.test(d) ? 2 : 1);
    const want = tensors.map((t) => t.name).sort((a, b) => {
      const ta = tensors.find((t) => t.name === a)!, tb = tensors.find((t) => t.name === b)!;
      return size(tb.dtype) - size(ta.dtype) || (a < b ? -1 : 1);
    });
    expect(Object.keys(hdr).filter((k) => k !== '__metadata__')).toEqual(want);
    let end = 0;
    for (const k of want) { expect(hdr[k].data_offsets[0]).toBe(end); end = hdr[k].data_offsets[1]; }
    const f = await openSafetensors(p);
    expect(f.metadata).toEqual({ format: 'pt' });
    for (const t of tensors) {
      const raw = await f.readRaw(t.name);
      expect(raw.dtype).toBe(t.dtype);
      expect(raw.shape).toEqual(t.shape);
      const bytes = (v: ArrayBufferView) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      expect(bytes(raw.data).equals(bytes(t.data))).toBe(true);
    }
    expect(Array.from(await f.readFloat32('f16'))).toEqual([1, -0.5, 65504]);
    expect(Array.from(await f.readFloat32('bf16'))).toEqual([1, -3]);
    expect(Array.from(await f.readFloat32('scalar'))).toEqual([7]);
    await f.close();
  });
  it('rounds to nearest even when encoding F16 and BF16', () => {
    // 1 + 2^-11 is halfway between 1 and 1 + 2^-10 in F16: ties go to the even mantissa (1).
    expect(Array.from(new Uint16Array(encodeFloat32('F16', [1 + 2 ** -11, 1 + 3 * 2 ** -11]).buffer))).toEqual([0x3c00, 0x3c02]);
    // BF16: 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (0x3f80).
    expect(Array.from(new Uint16Array(encodeFloat32('BF16', [1 + 2 ** -8, 1 + 3 * 2 ** -8]).buffer))).toEqual([0x3f80, 0x3f82]);
  });
});

describe('streams', () => {
  it('reads the last tensor of a multi-GB sparse file with bounded memory', async () => {
    const dir = await tmp();
    const p = join(dir, 'big.safetensors');
    const bigBytes = 5 * 2 ** 30; // 5 GiB of F32, never written: a hole
    const hdr = JSON.stringify({ big: { dtype: 'F32', shape: [bigBytes / 4], data_offsets: [0, bigBytes] }, tail: { dtype: 'F32', shape: [4], data_offsets: [bigBytes, bigBytes + 16] } });
    const head = handmade(hdr, new Uint8Array(0));
    const fh = await open(p, 'w');
    try {
      await fh.write(head, 0, head.length, 0);
      await fh.write(new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer), 0, 16, head.length + bigBytes);
    } finally {
      await fh.close();
    }
    const before = process.memoryUsage().rss;
    const f = await openSafetensors(p);
    expect(Array.from(await f.readFloat32('tail'))).toEqual([1, 2, 3, 4]);
    await f.close();
    expect(process.memoryUsage().rss - before).toBeLessThan(100 * 2 ** 20);
    await rm(dir, { recursive: true, force: true });
  });
});

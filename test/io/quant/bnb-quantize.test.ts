/**
 * The bitsandbytes 4-bit quantizer (src/io/quant/bnb-4bit-quantize.ts): hand-worked blocks (absmax,
 * the code at a tie, nibble order), agreement with the test's reference quantizer (exhaustive nearest
 * code, bnb-reference.ts), and write → read through the reader against a dequantization written here.
 * Also config.json's quantization_config, cross-checked against the keys.
 */
import { describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bnb4bitTensors, dynamicMap, quantize4bit } from '../../../src/io/quant/bnb-4bit-quantize.js';
import { bnb4bitQuantizationConfig } from '../../../src/io/quant/quant-config.js';
import { openSource } from '../../../src/io/sources/open-source.js';
import { isDorascopeError } from '../../../src/errors.js';
import { encodeFloat32 } from '../../../src/io/safetensors/writer.js';
import { rng, randn } from '../../helpers/random.js';
import { pyJson, refQuantize4bit, writeRaw, REF_FP4, REF_NF4 } from './bnb-reference.js';
import type { DType } from '../../../src/io/types.js';

const f32 = Math.fround;
const tmp = () => mkdtemp(join(tmpdir(), 'ds-bnbq-'));

/** The next float32 above a positive float32. */
function nextUp(x: number): number {
  const b = new DataView(new ArrayBuffer(4));
  b.setFloat32(0, x, true);
  b.setUint32(0, b.getUint32(0, true) + 1, true);
  return b.getFloat32(0, true);
}

describe('4-bit quantizer: hand-worked blocks', () => {
  it('NF4: absmax per block, ties to the lower code, the first value in the high nibble', () => {
    // Midpoints of the published NF4 table (0 | 0.0796) and (0.7230 | 1), summed in float32.
    const m7 = f32(0 + REF_NF4[8]!) / 2, m14 = f32(f32(REF_NF4[14]!) + 1) / 2;
    const x = new Float32Array(64);
    // absmax 2, so scaled = x · 0.5 exactly
    x.set([2, -2, 2 * m7, nextUp(2 * m7), 2 * m14, 0.5]);
    const qw = quantize4bit(x, [1, 64], { quantType: 'nf4', blockSize: 64, doubleQuant: false });
    expect(Array.from(qw.absmax)).toEqual([2]);
    // codes: 15, 0 | 7 (on the 0|0.08 midpoint: lower), 8 | 14 (on the 0.72|1 midpoint), 10 (0.25 → 0.2461) | then 0 → 7
    expect(Array.from(qw.packed.subarray(0, 4))).toEqual([0xf0, 0x78, 0xea, 0x77]);
    expect(qw.packed.length).toBe(32);
    expect(Array.from(qw.packed.subarray(4)).every((b) => b === 0x77)).toBe(true);
  });

  it('NF4 on two blocks and an odd count: each block its own absmax; the pad nibble is the code of 0 (7)', () => {
    const x = new Float32Array(65);
    x[0] = -4; x[63] = 1; // block 0: absmax 4, x[63] scaled 0.25 → code 10
    x[64] = -0.5; // block 1 (one value, divided by its absmax): −1 → code 0
    const qw = quantize4bit(x, [5, 13], { quantType: 'nf4', blockSize: 64, doubleQuant: false });
    expect(Array.from(qw.absmax)).toEqual([4, 0.5]);
    expect(qw.packed.length).toBe(33);
    expect(qw.packed[0]).toBe(0x07);
    expect(qw.packed[31]).toBe(0x7a);
    expect(qw.packed[32]).toBe(0x07); // value 64 → 0 in the high nibble, the pad → 7 in the low
  });

  it('FP4: codes are bit patterns (sign bit 0b1000)', () => {
    const x = Float32Array.from([3, -3, 1.5, -0.75]);
    const qw = quantize4bit(x, [4], { quantType: 'fp4', blockSize: 64, doubleQuant: false });
    // 1 → 12/12 = 0b0011; −1 → 0b1011; 0.5 → 6/12 = 0b0101; −0.25 → −3/12 = 0b1111
    expect(Array.from(qw.packed)).toEqual([0x3b, 0x5f]);
  });

  it('the dynamic map of the nested absmax: 256 sorted float32 values from −0.99296875 to 1, one 0', () => {
    const m = dynamicMap();
    expect(m.length).toBe(256);
    for (let k = 1; k < 256; k++) expect(m[k]!).toBeGreaterThan(m[k - 1]!);
    expect(m[255]).toBe(1);
    expect(m[0]).toBeCloseTo(-(1 + (0.1 + (0.9 * 63) / 64)) / 2, 6);
    expect(m.filter((v) => v === 0).length).toBe(1);
    expect(m.filter((v) => v < 0).length).toBe(127);
  });
});

describe('4-bit quantizer against the reference quantizer and the reader', () => {
  const next = rng(77);
  const cases = [
    { type: 'nf4' as const, shape: [130, 128], nested: true },
    { type: 'nf4' as const, shape: [5, 13], nested: false },
    { type: 'fp4' as const, shape: [64, 96], nested: true },
    { type: 'fp4' as const, shape: [7, 9], nested: false },
  ];
  for (const c of cases) {
    const n = c.shape[0]! * c.shape[1]!;
    const x = randn(next, n, 0.05);
    const label = `${c.type}${c.nested ? '+dq' : ''} [${c.shape.join(', ')}]`;

    it(`${label}: the same codes as the exhaustive nearest-code search`, () => {
      const qw = quantize4bit(x, c.shape, { quantType: c.type, blockSize: 64, doubleQuant: c.nested });
      const ref = refQuantize4bit('w', x, c.shape, { type: c.type, blockSize: 64, nested: false, dtype: 'float32' });
      const table = c.type === 'nf4' ? REF_NF4 : REF_FP4;
      let differ = 0;
      for (let i = 0; i < n; i++) {
        const nib = (qw.packed[i >> 1]! >> ((i & 1) === 0 ? 4 : 0)) & 0xf;
        // FP4 has +0 and −0: either code is the nearest for a value that rounds to zero
        if (table[nib]! !== table[ref.nibbles[i]!]!) differ++;
      }
      expect(differ).toBe(0);
      if (!c.nested) expect(Array.from(qw.absmax)).toEqual(ref.absmax);
    });

    it(`${label}: written as bitsandbytes' keys, read back equal to a float32 dequantization written here`, async () => {
      const qw = quantize4bit(x, c.shape, { quantType: c.type, blockSize: 64, doubleQuant: c.nested });
      const W = 'model.layers.0.self_attn.q_proj.weight';
      const dir = join(await tmp(), 'm');
      mkdirSync(dir, { recursive: true });
      const raw: Record<string, { dtype: DType; shape: number[]; data: Uint8Array }> = {};
      for (const t of bnb4bitTensors(W, qw, 'float32')) raw[t.name] = { dtype: t.dtype, shape: [...t.shape], data: t.data };
      raw['model.norm.weight'] = { dtype: 'F32', shape: [2], data: encodeFloat32('F32', [1, 1]) };
      await writeRaw(join(dir, 'model.safetensors'), raw);
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'llama', quantization_config: bnb4bitQuantizationConfig(c.type, c.nested) }));
      // The quant state is Python's json.dumps of QuantState.as_dict(packed=True)'s fields.
      const state: Record<string, unknown> = { quant_type: c.type, blocksize: 64, dtype: 'float32', shape: c.shape };
      if (qw.nested) Object.assign(state, { nested_blocksize: 256, nested_dtype: 'float32', nested_offset: qw.nested.offset });
      expect(Array.from(raw[`${W}.quant_state.bitsandbytes__${c.type}`]!.data)).toEqual(Array.from(pyJson(state)));
      expect(raw[W]!.shape).toEqual([Math.ceil(n / 2), 1]);
      expect(raw[`${W}.absmax`]!.dtype).toBe(c.nested ? 'U8' : 'F32');
      // The dequantization, written apart: absmax (nested: code2[q]·absmax2[⌊j/256⌋] + offset), then table[nibble]·absmax.
      const table = c.type === 'nf4' ? REF_NF4 : REF_FP4;
      const blocks = Math.ceil(n / 64);
      const am: number[] = [];
      for (let j = 0; j < blocks; j++) {
        am.push(qw.nested ? f32(f32(qw.nested.code[qw.absmax[j]!]! * qw.nested.absmax[Math.floor(j / 256)]!) + f32(qw.nested.offset)) : qw.absmax[j]!);
      }
      const want = Array.from({ length: n }, (_, i) => f32(table[(qw.packed[i >> 1]! >> ((i & 1) === 0 ? 4 : 0)) & 0xf]! * am[Math.floor(i / 64)]!));
      const src = await openSource(dir);
      try {
        expect(src.info(W)).toMatchObject({ dtype: 'F32', shape: c.shape, quant: { type: c.type, blockSize: 64, doubleQuant: c.nested } });
        const got = await src.read(W);
        expect(Array.from(got)).toEqual(want);
        // and it is a quantization of x: within half the widest code gap of each block's absmax (plus the nested error)
        for (let i = 0; i < n; i++) expect(Math.abs(got[i]! - x[i]!)).toBeLessThan(0.35 * am[Math.floor(i / 64)]! + (c.nested ? 2e-3 : 0));
      } finally {
        await src.close();
      }
    });
  }
});

describe('config.json quantization_config against the keys', () => {
  const x = randn(rng(5), 64 * 4, 0.1);
  async function folder(type: 'nf4' | 'fp4', nested: boolean, config: unknown): Promise<string> {
    const dir = join(await tmp(), 'm');
    mkdirSync(dir, { recursive: true });
    const W = 'model.layers.0.mlp.up_proj.weight';
    const qw = quantize4bit(x, [4, 64], { quantType: type, blockSize: 64, doubleQuant: nested });
    const raw: Record<string, { dtype: DType; shape: number[]; data: Uint8Array }> = {};
    for (const t of bnb4bitTensors(W, qw, 'float32')) raw[t.name] = { dtype: t.dtype, shape: [...t.shape], data: t.data };
    await writeRaw(join(dir, 'model.safetensors'), raw);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    return dir;
  }
  const errorOf = (p: Promise<unknown>) => p.then(async (s) => { await (s as { close(): Promise<void> }).close(); return undefined; }, (e: unknown) => e);

  it('agreeing config and keys open; Transformers\' field names are read', async () => {
    const src = await openSource(await folder('nf4', true, { quantization_config: bnb4bitQuantizationConfig('nf4', true) }));
    expect(src.list()[0]!.quant).toMatchObject({ type: 'nf4', doubleQuant: true });
    await src.close();
  });

  it('a config that disagrees with the keys is E_QUANT_CONFIG naming the tensor', async () => {
    const e1 = await errorOf(openSource(await folder('fp4', false, { quantization_config: bnb4bitQuantizationConfig('nf4', false) })));
    expect(isDorascopeError(e1, 'E_QUANT_CONFIG')).toBe(true);
    expect((e1 as Error).message).toMatch(/config\.json.*nf4.*up_proj\.weight.*fp4/u);
    const e2 = await errorOf(openSource(await folder('nf4', false, { quantization_config: bnb4bitQuantizationConfig('nf4', true) })));
    expect(isDorascopeError(e2, 'E_QUANT_CONFIG')).toBe(true);
    const e3 = await errorOf(openSource(await folder('nf4', true, { quantization_config: { quant_method: 'bitsandbytes', load_in_8bit: true } })));
    expect(isDorascopeError(e3, 'E_QUANT_CONFIG')).toBe(true);
  });

  it('a config that says 4-bit over plain weights, or another quant_method, is refused', async () => {
    const dir = join(await tmp(), 'plain');
    mkdirSync(dir, { recursive: true });
    await writeRaw(join(dir, 'model.safetensors'), { 'model.norm.weight': { dtype: 'F32', shape: [2], data: encodeFloat32('F32', [1, 1]) } });
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ quantization_config: bnb4bitQuantizationConfig('nf4', true) }));
    const e1 = await errorOf(openSource(dir));
    expect(isDorascopeError(e1, 'E_QUANT_CONFIG')).toBe(true);
    expect((e1 as Error).message).toContain('no tensor is stored quantized');
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ quantization_config: { quant_method: 'gptq', bits: 4 } }));
    expect(isDorascopeError(await errorOf(openSource(dir)), 'E_UNSUPPORTED_FORMAT')).toBe(true);
  });
});

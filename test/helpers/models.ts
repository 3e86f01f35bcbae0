/**
 * Small generators of test checkpoints in the formats dorascope reads (others may reuse
 * them): a safetensors model file, a sharded folder with its index, a PEFT adapter
 * folder, a Trainer run. They write through the project's safetensors writer, whose
 * own tests check it against files written by the reference library.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { f8e4m3ToNumber, f8e5m2ToNumber } from '../../src/io/dtypes.js';
import { encodeFloat32, writeSafetensors } from '../../src/io/safetensors/writer.js';

export type FloatDType = 'F32' | 'F16' | 'BF16' | 'F8_E4M3' | 'F8_E5M2';

/**
 * Values as stored in `dtype`: the writer's encoder, or for float8 (which the writer does not
 * encode) the nearest code by search over all 256, the sign kept for zeros, ±∞ as E5M2's
 * infinities and E4M3's NaN (it has no infinities).
 */
export function encodeValues(dtype: FloatDType, w: ArrayLike<number>): Uint8Array {
  if (dtype !== 'F8_E4M3' && dtype !== 'F8_E5M2') return encodeFloat32(dtype, w);
  const dec = dtype === 'F8_E4M3' ? f8e4m3ToNumber : f8e5m2ToNumber;
  const finite = Array.from({ length: 256 }, (_, c) => c).filter((c) => !Number.isNaN(dec(c)) && Number.isFinite(dec(c)));
  return Uint8Array.from(w, (v) => {
    if (Number.isNaN(v) || (!Number.isFinite(v) && dtype === 'F8_E4M3')) return 0x7f;
    if (!Number.isFinite(v)) return v > 0 ? 0x7c : 0xfc;
    let best = -1;
    for (const c of finite) {
      if (((c & 0x80) !== 0) !== (v < 0 || Object.is(v, -0))) continue;
      if (best < 0 || Math.abs(dec(c) - v) < Math.abs(dec(best) - v)) best = c;
    }
    return best;
  });
}

export interface TestTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
  readonly dtype?: FloatDType;
}

export type TestTensors = Record<string, TestTensor>;

/**
 * Values exactly representable in F32, F16 and BF16 (multiples of 1/64 in [-2, 2]),
 * so a reference computed from them needs no knowledge of the encoders' rounding.
 */
export function exactValues(next: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (Math.round((next() * 2 - 1) * 64) / 64) * scale;
  return out;
}

export async function writeModel(path: string, tensors: TestTensors, metadata?: Record<string, string>): Promise<void> {
  await writeSafetensors(
    path,
    Object.entries(tensors).map(([name, t]) => ({ name, dtype: t.dtype ?? 'F32', shape: [...t.shape], data: encodeValues(t.dtype ?? 'F32', t.data) })),
    metadata,
  );
}

/** A transformers-style sharded folder: model-0000i-of-0000N.safetensors + model.safetensors.index.json. */
export async function writeSharded(dir: string, tensors: TestTensors, shards: number): Promise<Record<string, string>> {
  mkdirSync(dir, { recursive: true });
  const names = Object.keys(tensors);
  const weightMap: Record<string, string> = {};
  const pad = (i: number) => String(i).padStart(5, '0');
  for (let s = 0; s < shards; s++) {
    const file = `model-${pad(s + 1)}-of-${pad(shards)}.safetensors`;
    const part: TestTensors = {};
    names.forEach((n, i) => {
      if (i % shards === s) {
        part[n] = tensors[n]!;
        weightMap[n] = file;
      }
    });
    await writeModel(join(dir, file), part, { format: 'pt' });
  }
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }, null, 2));
  return weightMap;
}

/** A PEFT adapter folder: adapter_config.json + adapter_model.safetensors. */
export async function writeAdapter(dir: string, config: Record<string, unknown>, tensors: TestTensors): Promise<void> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', ...config }, null, 2));
  await writeModel(join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
}

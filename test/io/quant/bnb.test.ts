import { describe, expect, it } from 'vitest';
import { mkdtemp, readdir, readFile, stat } from 'node:fs/promises';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSource } from '../../../src/io/sources/open-source.js';
import { inspect, formatInspect } from '../../../src/io/inspect.js';
import { mergeAdapter } from '../../../src/io/peft/merge-adapter.js';
import { encodeFloat32 } from '../../../src/io/safetensors/writer.js';
import { isDorascopeError } from '../../../src/errors.js';
import type { DType } from '../../../src/io/types.js';
import { rng, randn } from '../../helpers/random.js';
import { writeAdapter, writeModel } from '../../helpers/models.js';
import { maxRelErr, referenceMerge } from '../../helpers/reference-merge.js';
import { bf16, pyJson, refQuantize4bit, refQuantizeInt8, writeRaw, REF_NF4 } from './bnb-reference.js';

const tmp = () => mkdtemp(join(tmpdir(), 'ds-bnb-'));
const f32s = (xs: number[]) => encodeFloat32('F32', xs);

async function readAll(path: string, name: string): Promise<number[]> {
  const src = await openSource(path);
  try {
    return Array.from(await src.read(name));
  } finally {
    await src.close();
  }
}

describe('bitsandbytes 4-bit: hand-worked bytes', () => {
  it('NF4: high nibble first; byte 0x1E, 0x7F with absmax 2', async () => {
    const dir = await tmp();
    const p = join(dir, 'm.safetensors');
    const W = 'layers.0.q.weight';
    await writeRaw(p, withState(W, 'nf4', { quant_type: 'nf4', blocksize: 64, dtype: 'float32', shape: [1, 4] }, {
      [W]: { dtype: 'U8', shape: [2, 1], data: Uint8Array.of(0x1e, 0x7f) },
      [`${W}.absmax`]: { dtype: 'F32', shape: [1], data: f32s([2]) },
      [`${W}.quant_map`]: { dtype: 'F32', shape: [16], data: f32s(REF_NF4) },
    }));
    // 0x1E → codes 1 and 14; 0x7F → codes 7 (0) and 15 (1); each times absmax 2.
    expect(await readAll(p, W)).toEqual([-1.3923856019973755, 1.4459136724472046, 0, 2]);
  });

  it('FP4: byte 0x3A with absmax 3 → 12/12·3 and −8/12·3 (sign bit 0b1000)', async () => {
    const dir = await tmp();
    const p = join(dir, 'm.safetensors');
    const W = 'layers.0.q.weight';
    await writeRaw(p, withState(W, 'fp4', { quant_type: 'fp4', blocksize: 64, dtype: 'float32', shape: [2] }, {
      [W]: { dtype: 'U8', shape: [1, 1], data: Uint8Array.of(0x3a) },
      [`${W}.absmax`]: { dtype: 'F32', shape: [1], data: f32s([3]) },
    }));
    expect(await readAll(p, W)).toEqual([3, -2]);
  });

  it('dtype float16: the float32 product rounded to binary16, as .to(float16)', async () => {
    const dir = await tmp();
    const p = join(dir, 'm.safetensors');
    const W = 'layers.0.q.weight';
    await writeRaw(p, withState(W, 'fp4', { quant_type: 'fp4', blocksize: 64, dtype: 'float16', shape: [2] }, {
      [W]: { dtype: 'U8', shape: [1, 1], data: Uint8Array.of(0x12) },
      [`${W}.absmax`]: { dtype: 'F32', shape: [1], data: f32s([1]) },
    }));
    // 0.0625/12 = 1.3333…·2⁻⁸ → mantissa 341/1024 → 1.3330078125·2⁻⁸; 8/12 = 1.3333…·2⁻¹ → 1.3330078125·2⁻¹.
    expect(await readAll(p, W)).toEqual([0.005207061767578125, 0.66650390625]);
    const src = await openSource(p);
    expect(src.info(W)).toMatchObject({ dtype: 'F16', shape: [2] });
    await src.close();
  });

  it('double quantization: absmax = nested_code[q] · nested_absmax + offset', async () => {
    const dir = await tmp();
    const p = join(dir, 'm.safetensors');
    const W = 'layers.0.q.weight';
    const code = Array.from({ length: 256 }, (_, k) => (k === 0 ? -1 : k === 255 ? 1 : 0));
    await writeRaw(p, withState(W, 'nf4', { quant_type: 'nf4', blocksize: 32, dtype: 'float32', shape: [2, 32], nested_blocksize: 256, nested_dtype: 'float32', nested_offset: 1.25 }, {
      [W]: { dtype: 'U8', shape: [32, 1], data: new Uint8Array(32).fill(0xf0) },
      [`${W}.absmax`]: { dtype: 'U8', shape: [2], data: Uint8Array.of(0x00, 0xff) },
      [`${W}.nested_absmax`]: { dtype: 'F32', shape: [1], data: f32s([0.5]) },
      [`${W}.nested_quant_map`]: { dtype: 'F32', shape: [256], data: f32s(code) },
    }));
    // block 0: absmax −1·0.5 + 1.25 = 0.75; block 1: 1·0.5 + 1.25 = 1.75; nibbles F, 0 → NF4 +1, −1.
    const expected = [...Array.from({ length: 32 }, (_, i) => (i % 2 === 0 ? 0.75 : -0.75)), ...Array.from({ length: 32 }, (_, i) => (i % 2 === 0 ? 1.75 : -1.75))];
    expect(await readAll(p, W)).toEqual(expected);
  });

  it('a malformed state is a typed error naming the tensor', async () => {
    const dir = await tmp();
    const p = join(dir, 'm.safetensors');
    const W = 'layers.0.q.weight';
    await writeRaw(p, withState(W, 'nf4', { quant_type: 'nf4', blocksize: 64, dtype: 'float32', shape: [4, 64] }, {
      [W]: { dtype: 'U8', shape: [128, 1], data: new Uint8Array(128) },
      [`${W}.absmax`]: { dtype: 'F32', shape: [3], data: f32s([1, 1, 1]) },
    }));
    const err = await readAll(p, W).catch((e: unknown) => e);
    expect(isDorascopeError(err, 'E_QUANT_STATE')).toBe(true);
    expect(String((err as Error).message)).toContain(`${W}.absmax`);
    const p2 = join(dir, 'm2.safetensors');
    await writeRaw(p2, withState(W, 'nf4', { quant_type: 'fp4', blocksize: 64, dtype: 'float32', shape: [2] }, {
      [W]: { dtype: 'U8', shape: [1, 1], data: new Uint8Array(1) },
      [`${W}.absmax`]: { dtype: 'F32', shape: [1], data: f32s([1]) },
    }));
    expect(isDorascopeError(await openSource(p2).catch((e: unknown) => e), 'E_QUANT_STATE')).toBe(true);
  });
});

type Raw = Record<string, { dtype: DType; shape: number[]; data: Uint8Array }>;
function withState(param: string, type: string, state: Record<string, unknown>, t: Raw): Raw {
  const json = pyJson(state);
  return { ...t, [`${param}.quant_state.bitsandbytes__${type}`]: { dtype: 'U8', shape: [json.length], data: json } };
}

describe('bitsandbytes checkpoints against a reference quantizer', () => {
  const next = rng(2024);
  // q_proj: NF4, double quant, 260 absmax blocks → two nested blocks (the second partial).
  const Q = 'model.layers.0.self_attn.q_proj.weight';
  const qW = randn(next, 130 * 128, 0.05);
  const q = refQuantize4bit(Q, qW, [130, 128], { type: 'nf4', blockSize: 64, nested: true, dtype: 'bfloat16' });
  // down_proj: FP4, no double quant, 65 values → a partial last block and an odd value count.
  const D = 'model.layers.0.mlp.down_proj.weight';
  const dW = randn(next, 5 * 13, 0.2);
  const d = refQuantize4bit(D, dW, [5, 13], { type: 'fp4', blockSize: 64, nested: false, dtype: 'float32' });
  // v_proj: LLM.int8.
  const V = 'model.layers.0.self_attn.v_proj';
  const vW = randn(next, 6 * 128, 0.05);
  const v = refQuantizeInt8(V, vW, 6, 128);
  const embed = randn(next, 10 * 4, 1);

  async function writeQuantized(dir: string): Promise<string> {
    mkdirSync(dir, { recursive: true });
    await writeRaw(join(dir, 'model.safetensors'), {
      ...q.tensors, ...d.tensors, ...v.tensors,
      'model.embed_tokens.weight': { dtype: 'BF16', shape: [10, 4], data: encodeFloat32('BF16', embed) },
    } as Raw);
    // This folder mixes NF4, FP4 and LLM.int8, which no Transformers save does, so its config.json carries
    // no quantization_config (a config is cross-checked against the keys: test/io/quant/bnb-quantize.test.ts).
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'llama' }));
    return dir;
  }
  async function writeFull(dir: string): Promise<string> {
    mkdirSync(dir, { recursive: true });
    await writeModel(join(dir, 'model.safetensors'), {
      [Q]: { shape: [130, 128], data: qW }, [D]: { shape: [5, 13], data: dW }, [`${V}.weight`]: { shape: [6, 128], data: vW },
      'model.embed_tokens.weight': { shape: [10, 4], data: embed, dtype: 'BF16' },
    });
    return dir;
  }

  it('the reference is a faithful quantizer: every value within half a code gap of the original', () => {
    for (let i = 0; i < qW.length; i++) expect(Math.abs(q.dequantized[i]! - qW[i]!)).toBeLessThan(0.35 * q.absmax[Math.floor(i / 64)]! + 1e-3);
    for (let i = 0; i < vW.length; i++) expect(Math.abs(v.dequantized[i]! - vW[i]!)).toBeLessThan(0.05 / 127 + 1e-7);
    expect(q.dequantized.every((x) => bf16(x) === x)).toBe(true);
  });

  it('openSource lists logical weights only and reads them dequantized exactly', async () => {
    const dir = await writeQuantized(join(await tmp(), 'nf4'));
    const src = await openSource(dir);
    try {
      expect(src.list().map((t) => t.name)).toEqual(['model.embed_tokens.weight', D, Q, `${V}.weight`]);
      expect(src.info(Q)).toMatchObject({ dtype: 'BF16', shape: [130, 128], quant: { method: 'bitsandbytes', type: 'nf4', blockSize: 64, doubleQuant: true } });
      expect(src.info(D)).toMatchObject({ dtype: 'F32', shape: [5, 13], quant: { type: 'fp4', blockSize: 64, doubleQuant: false } });
      expect(src.info(`${V}.weight`)).toMatchObject({ dtype: 'F32', shape: [6, 128], quant: { type: 'int8', blockSize: null } });
      expect(Array.from(await src.read(Q))).toEqual(q.dequantized);
      expect(Array.from(await src.read(D))).toEqual(d.dequantized);
      expect(Array.from(await src.read(`${V}.weight`))).toEqual(v.dequantized);
      expect(Array.from(await src.read('model.embed_tokens.weight'))).toEqual(Array.from(embed, bf16));
      expect(isDorascopeError(await src.read(`${Q}.absmax`).catch((e: unknown) => e), 'E_MISSING_TENSOR')).toBe(true);
    } finally {
      await src.close();
    }
  });

  it('inspect shows quant type, block size and logical shape; stored bytes are counted', async () => {
    const dir = await writeQuantized(join(await tmp(), 'nf4'));
    const r = await inspect(dir);
    const t = r.tensors.find((x) => x.name === Q)!;
    expect(t).toMatchObject({ dtype: 'BF16', shape: [130, 128], params: 130 * 128 });
    // packed nibbles + 260 uint8 absmax + 2 nested absmax + 256 nested code + 16 code + the JSON
    const json = q.tensors[`${Q}.quant_state.bitsandbytes__nf4`]!.data.length;
    expect(t.bytes).toBe(130 * 64 + 260 + 2 * 4 + 256 * 4 + 16 * 4 + json);
    expect(Object.keys(r.totals.by_dtype).sort()).toEqual(['BF16', 'FP4', 'INT8', 'NF4']);
    const text = formatInspect(r);
    expect(text).toMatch(/q_proj\.weight\s+BF16\s+\[130, 128\].*quantized nf4, block 64, double quant/u);
    expect(text).toMatch(/v_proj\.weight\s+F32\s+\[6, 128\].*quantized int8/u);
  });

  const r = 2, alpha = 4;
  const A = randn(next, r * 128, 0.1), B = randn(next, 130 * r, 0.1), m = randn(next, 130, 0.1).map((x) => 0.5 + Math.abs(x));
  const vA = randn(next, r * 128, 0.1), vB = randn(next, 6 * r, 0.1), vm = randn(next, 6, 0.1).map((x) => 0.5 + Math.abs(x));
  async function writeQDora(dir: string): Promise<string> {
    await writeAdapter(dir, { r, lora_alpha: alpha, use_dora: true, target_modules: ['q_proj', 'v_proj'] }, {
      'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight': { shape: [r, 128], data: A },
      'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight': { shape: [130, r], data: B },
      'base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector': { shape: [130], data: m },
      'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight': { shape: [r, 128], data: vA },
      'base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight': { shape: [6, r], data: vB },
      'base_model.model.model.layers.0.self_attn.v_proj.lora_magnitude_vector': { shape: [6], data: vm },
    });
    return dir;
  }
  const qMerged = referenceMerge({ W: q.dequantized, A, B, r, out: 130, in: 128, scaling: alpha / r, outputsAreRows: true, magnitude: m });
  const vMerged = referenceMerge({ W: v.dequantized, A: vA, B: vB, r, out: 6, in: 128, scaling: alpha / r, outputsAreRows: true, magnitude: vm });

  it('merge of a QDoRA adapter writes the dequantized-and-merged weights (norm on the dequantized W)', async () => {
    const root = await tmp();
    const base = await writeQuantized(join(root, 'nf4'));
    const adapter = await writeQDora(join(root, 'qdora'));
    const out = join(root, 'merged');
    await mergeAdapter(base, adapter, out);
    const merged = await openSource(out);
    try {
      expect(merged.list().map((t) => [t.name, t.dtype, t.quant])).toEqual([
        ['model.embed_tokens.weight', 'BF16', undefined], [D, 'F32', undefined], [Q, 'BF16', undefined], [`${V}.weight`, 'F32', undefined],
      ]);
      // The q_proj output is BF16 (the dtype bitsandbytes recorded): the reference rounded the same way.
      expect(Array.from(await merged.read(Q))).toEqual(qMerged.map(bf16));
      expect(maxRelErr(await merged.read(`${V}.weight`), vMerged)).toBeLessThan(1e-6);
      expect(Array.from(await merged.read(D))).toEqual(d.dequantized);
    } finally {
      await merged.close();
    }
    const cfg = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    expect(cfg).toEqual({ model_type: 'llama' });
  });

  it('analyze --quantized-base: runs against the dequantized base, plus a run "quantization" (full → dequantized)', async () => {
    const { analyze } = await import('../../../src/analysis/analyze.js');
    const root = await tmp();
    const nf4 = await writeQuantized(join(root, 'nf4'));
    const fp = await writeFull(join(root, 'fp'));
    const adapter = await writeQDora(join(root, 'qdora'));
    const rows2 = (w: ArrayLike<number>, rr: number, cc: number) => Array.from({ length: rr }, (_, i) => Array.from({ length: cc }, (_, j) => w[i * cc + j]!));
    const ref = (w0: number[][], wt: number[][]) => {
      let dm = 0, dd = 0;
      w0.forEach((a, n) => {
        const b = wt[n]!;
        const na = Math.hypot(...a), nb = Math.hypot(...b);
        dm += Math.abs(nb - na);
        dd += 1 - a.reduce((s, x, i) => s + x * b[i]!, 0) / (na * nb);
      });
      return { dm: dm / w0.length, dd: dd / w0.length };
    };
    for (const adapterPath of ['fast', 'merge'] as const) {
      const res = await analyze({ base: fp, quantizedBase: nf4, runs: [{ path: adapter, label: 'qdora' }], modules: ['q_proj', 'v_proj', 'down_proj'], write: false, quiet: true, adapterPath, workers: 0 });
      expect(res.summary.runs.map((x) => [x.run, x.method])).toEqual([['quantization', 'quantization'], ['qdora', 'dora']]);
      const row = (run: string, t: string) => res.rows.find((x) => x.run === run && x.tensor === t)!;
      const cases: [string, string, number[][], number[][]][] = [
        ['quantization', Q, rows2(qW, 130, 128), rows2(q.dequantized, 130, 128)],
        ['quantization', `${V}.weight`, rows2(vW, 6, 128), rows2(v.dequantized, 6, 128)],
        ['quantization', D, rows2(dW, 5, 13), rows2(d.dequantized, 5, 13)],
        ['qdora', Q, rows2(q.dequantized, 130, 128), rows2(qMerged, 130, 128)],
        ['qdora', `${V}.weight`, rows2(v.dequantized, 6, 128), rows2(vMerged, 6, 128)],
      ];
      for (const [run, t, w0, wt] of cases) {
        const e = ref(w0, wt);
        const got = row(run, t);
        expect(Math.abs(got.delta_m - e.dm) / e.dm, `${adapterPath} ${run} ${t} ΔM`).toBeLessThan(1e-6);
        expect(Math.abs(got.delta_d - e.dd) / e.dd, `${adapterPath} ${run} ${t} ΔD`).toBeLessThan(1e-5);
      }
      expect(row('qdora', D).flag).toBe('unchanged');
    }
  });

  it('through the CLI, with a worker thread: manifest names both bases, the worker reads the dequantized base', async () => {
    const { main } = await import('../../../src/cli/main.js');
    const root = await tmp();
    const nf4 = await writeQuantized(join(root, 'nf4'));
    const fp = await writeFull(join(root, 'fp'));
    const adapter = await writeQDora(join(root, 'qdora'));
    const out = join(root, 'o');
    const orig = process.stdout.write.bind(process.stdout);
    process.stdout.write = (() => true) as typeof process.stdout.write;
    let code: number;
    try {
      code = await main(['analyze', '--base', fp, '--quantized-base', nf4, '--label', `qdora=${adapter}`, adapter, '--modules', 'q_proj', '--workers', '1', '--adapter-path', 'merge', '--out', out, '--quiet']);
    } finally {
      process.stdout.write = orig;
    }
    expect(code).toBe(0);
    const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8'));
    // bytes: the folder's files added up (a flat folder here), not its directory entry.
    const folderBytes = async (d: string) => (await Promise.all((await readdir(d)).map(async (f) => (await stat(join(d, f))).size))).reduce((a, b) => a + b, 0);
    expect(manifest.base).toEqual({ path: fp, kind: 'folder', bytes: await folderBytes(fp) });
    expect(manifest.quantized_base).toEqual({ path: nf4, kind: 'folder', bytes: await folderBytes(nf4) });
    expect(manifest.command).toContain('--quantized-base');
    const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'));
    expect(summary.runs.map((x: { run: string }) => x.run)).toEqual(['quantization', 'qdora']);
    const rows = (await readFile(join(out, 'decomposition.csv'), 'utf8')).trim().split('\n');
    expect(rows).toHaveLength(3); // header + one row per run
    // The worker's numbers are the main thread's (which the test above checks against the float64 reference).
    const { analyze } = await import('../../../src/analysis/analyze.js');
    const inProcess = await analyze({ base: fp, quantizedBase: nf4, runs: [{ path: adapter, label: 'qdora' }], modules: ['q_proj'], write: false, quiet: true, adapterPath: 'merge', workers: 0 });
    const head = rows[0]!.split(',');
    for (const line of rows.slice(1)) {
      const cells = line.split(',');
      const want = inProcess.rows.find((x) => x.run === cells[head.indexOf('run')])!;
      expect(Number(cells[head.indexOf('delta_m')])).toBeCloseTo(want.delta_m, 12);
      expect(Number(cells[head.indexOf('delta_d')])).toBeCloseTo(want.delta_d, 12);
    }
  });

  it('analyze --quantized-base --shard K/N: the parts, the quantization run included, concatenate to the whole', async () => {
    const { analyze, analyzeShard } = await import('../../../src/analysis/analyze.js');
    const root = await tmp();
    const nf4 = await writeQuantized(join(root, 'nf4'));
    const fp = await writeFull(join(root, 'fp'));
    const adapter = await writeQDora(join(root, 'qdora'));
    // The full-precision weights as a full checkpoint too: rows quantization, qdora, fp for each tensor. q_proj is left
    // out: 30 times the others' bytes, it would take most parts and leave down_proj (first) whole in part 1.
    const o = { base: fp, quantizedBase: nf4, runs: [{ path: adapter, label: 'qdora' }, { path: fp, label: 'fp' }], modules: ['v_proj', 'down_proj'], write: false, quiet: true, workers: 0 };
    const whole = await analyze(o);
    expect(whole.rows.map((r) => `${r.module} ${r.run}`)).toEqual(['down_proj quantization', 'down_proj qdora', 'down_proj fp', 'v_proj quantization', 'v_proj qdora', 'v_proj fp']);
    let cutInsideDownProj = false;
    for (const n of [2, 3, 20]) {
      const parts = [];
      for (let k = 1; k <= n; k++) parts.push(await analyzeShard(o, { k, n }));
      expect(parts.flatMap((p) => p.rows), `N = ${n}`).toEqual(whole.rows);
      for (const p of parts) if (p.summary.shard.items.first % 3 !== 0 && whole.rows[p.summary.shard.items.first]?.module === 'down_proj') cutInsideDownProj = true;
    }
    // down_proj (no adapter on it) was cut between its rows at least once (with 20 parts, many of them empty).
    expect(cutInsideDownProj).toBe(true);
  });

  it('a sharded quantized base: side tensors in other shards than their weight', async () => {
    const dir = join(await tmp(), 'sharded');
    mkdirSync(dir, { recursive: true });
    const all = { ...q.tensors, ...v.tensors } as Raw;
    const names = Object.keys(all).sort();
    const weightMap: Record<string, string> = {};
    const shards: Raw[] = [{}, {}];
    names.forEach((n, i) => { shards[i % 2]![n] = all[n]!; weightMap[n] = `model-0000${(i % 2) + 1}-of-00002.safetensors`; });
    for (let s = 0; s < 2; s++) await writeRaw(join(dir, `model-0000${s + 1}-of-00002.safetensors`), shards[s]!);
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    expect(new Set(Object.entries(weightMap).filter(([n]) => n.startsWith(Q)).map(([, f]) => f)).size).toBe(2);
    expect(await readAll(dir, Q)).toEqual(q.dequantized);
    expect(await readAll(dir, `${V}.weight`)).toEqual(v.dequantized);
  });
});

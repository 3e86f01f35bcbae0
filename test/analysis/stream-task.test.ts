/**
 * The streaming tensor task (row blocks into reused buffers) against the whole-tensor kernel and
 * a float64 loop written here: BF16, F16, F32 and float8 files (alike and mixed), blocks that split
 * the tensor unevenly, both feature axes, per-feature records, the unchanged / non-finite flags,
 * and zeros of both signs and subnormals; the fused WebAssembly kernels ('auto') and the
 * JavaScript loop ('js') alike.
 */
import { describe, expect, it } from 'vitest';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decompose, type Decomposition, type FeatureAxis } from '../../src/analysis/decompose.js';
import { BufferPool, streamDecompose } from '../../src/analysis/stream-task.js';
import { featureSumsKernel } from '../../src/compute/feature-sums.js';
import { decodeInto, decodeToFloat32, viewAs } from '../../src/io/dtypes.js';
import { openSafetensors } from '../../src/io/safetensors/reader.js';
import { encodeFloat32, writeSafetensors } from '../../src/io/safetensors/writer.js';
import { openFileSource } from '../../src/io/sources/file-source.js';
import type { DType } from '../../src/io/types.js';
import { DorascopeError } from '../../src/errors.js';
import { encodeValues, type FloatDType } from '../helpers/models.js';
import { rng, randn } from '../helpers/random.js';

const ROWS = 37, COLS = 29; // prime sizes: no block size divides them

/** ΔM and ΔD by the paper's definitions, one float64 loop per feature, apart from src/analysis. */
function reference(w0: Float32Array, wt: Float32Array, rows: number, cols: number, axis: FeatureAxis): { dm: number; dd: number } {
  const k = axis === 'rows' ? rows : cols, len = axis === 'rows' ? cols : rows;
  const at = (w: Float32Array, n: number, j: number) => (axis === 'rows' ? w[n * cols + j]! : w[j * cols + n]!);
  let dm = 0, dd = 0;
  for (let n = 0; n < k; n++) {
    let a = 0, b = 0, d = 0;
    for (let j = 0; j < len; j++) { const x = at(w0, n, j), y = at(wt, n, j); a += x * x; b += y * y; d += x * y; }
    dm += Math.abs(Math.sqrt(b) - Math.sqrt(a));
    dd += 1 - d / Math.sqrt(a * b);
  }
  return { dm: dm / k, dd: dd / k };
}

/** Values as stored in `dtype` (float8 by nearest code; F64 by the writer). */
const encode = (dtype: DType, w: Float32Array): Uint8Array => (dtype === 'F64' ? encodeFloat32(dtype, w) : encodeValues(dtype as FloatDType, w));

async function pair(dir: string, dtype0: DType, dtypeT: DType, w0: Float32Array, wt: Float32Array, tag: string) {
  const name = 'model.layers.0.self_attn.q_proj.weight';
  const p0 = join(dir, `${tag}-base.safetensors`), pt = join(dir, `${tag}-ck.safetensors`);
  await writeSafetensors(p0, [{ name, dtype: dtype0, shape: [ROWS, COLS], data: encode(dtype0, w0) }]);
  await writeSafetensors(pt, [{ name, dtype: dtypeT, shape: [ROWS, COLS], data: encode(dtypeT, wt) }]);
  const base = await openFileSource(p0), ck = await openFileSource(pt);
  // What the whole-tensor path sees: the values after the files' rounding.
  const [d0, dt] = [await base.read(name), await ck.read(name)];
  return { name, base, ck, d0, dt };
}

function expectClose(a: Decomposition, b: Decomposition, tol: number): void {
  for (const f of ['deltaM', 'deltaD', 'relDeltaFro', 'meanM0', 'meanMt'] as const) {
    expect(Math.abs(a[f] - b[f])).toBeLessThanOrEqual(tol * Math.abs(b[f]));
  }
  expect([a.flag, a.zeroRows, a.shrunkRows, a.k]).toEqual([b.flag, b.zeroRows, b.shrunkRows, b.k]);
}

describe('streamDecompose', () => {
  const rand = rng(12);
  const w0 = new Float32Array(randn(rand, ROWS * COLS).map((v) => 0.05 * v));
  const wt = w0.map((v, i) => v * (1 + 0.02 * Math.sin(i)) + 0.003 * Math.cos(3 * i));

  const pairs: [DType, DType][] = [
    ['BF16', 'BF16'], ['F16', 'F16'], ['F32', 'F32'], ['F8_E4M3', 'F8_E4M3'], ['F8_E5M2', 'F8_E5M2'], ['F64', 'F64'],
    ['BF16', 'F32'], ['F32', 'F16'], ['F16', 'F8_E5M2'], ['F8_E4M3', 'BF16'], ['F64', 'BF16'],
  ];
  for (const [dtype0, dtypeT] of pairs) {
    for (const axis of ['rows', 'cols'] as const) {
      it(`${dtype0} base, ${dtypeT} checkpoint, features along ${axis}: the whole-tensor kernel's numbers for every block size`, async () => {
        const dir = await mkdtemp(join(tmpdir(), 'dorascope-stream-'));
        const { name, base, ck, d0, dt } = await pair(dir, dtype0, dtypeT, w0, wt, `${dtype0}-${dtypeT}-${axis}`);
        const whole = decompose(d0, dt, ROWS, COLS, axis, true);
        const ref = reference(d0, dt, ROWS, COLS, axis);
        expect(Math.abs(whole.deltaM - ref.dm)).toBeLessThan(1e-12 * ref.dm);
        expect(Math.abs(whole.deltaD - ref.dd)).toBeLessThan(1e-9 * ref.dd); // 1 − cos: cancellation amplifies rounding
        // 1 row, 5 rows (37 = 7·5 + 2: the last block is short), 16 rows, and the whole tensor in one block.
        // 'auto' runs on the fused WebAssembly kernels (F64 excepted: sums in another order), 'js' the block loop of decompose (same bits).
        // Reads on the thread pool, or blocking (as on a worker thread): the same bytes, the same numbers.
        for (const kernel of ['auto', 'js'] as const) for (const block of [1, 5 * COLS, 16 * COLS + 3, 1 << 20]) for (const blocking of [false, true]) {
          const [d] = await streamDecompose(base, [ck], name, ROWS, COLS, axis, true, block, new BufferPool(), kernel, blocking);
          expectClose(d!, whole, kernel === 'js' ? 0 : 1e-12);
          for (const f of ['m0', 'mt', 'cos'] as const) {
            d![f]!.forEach((v, n) => expect(Math.abs(v - whole[f]![n]!)).toBeLessThanOrEqual((kernel === 'js' ? 0 : 1e-12) * Math.abs(whole[f]![n]!)));
          }
        }
        await base.close(); await ck.close();
      });
    }
  }

  /** The smallest positive subnormal of each dtype (three of them are still subnormal). */
  const TINY: Partial<Record<DType, number>> = { F32: 2 ** -149, BF16: 2 ** -133, F16: 2 ** -24, F8_E4M3: 2 ** -9, F8_E5M2: 2 ** -16 };
  for (const dtype of ['BF16', 'F16', 'F32', 'F8_E4M3', 'F8_E5M2'] as DType[]) {
    for (const axis of ['rows', 'cols'] as const) {
      it(`${dtype}, features along ${axis}: zeros of both signs, subnormals and ±∞/NaN give the loop's flags and numbers`, async () => {
        const dir = await mkdtemp(join(tmpdir(), 'dorascope-stream-'));
        const name = 'model.layers.0.self_attn.q_proj.weight';
        const write = async (tag: string, w: Float32Array) => {
          const p = join(dir, `${tag}.safetensors`);
          await writeSafetensors(p, [{ name, dtype, shape: [ROWS, COLS], data: encode(dtype, w) }]);
          return openFileSource(p);
        };
        const t = TINY[dtype]!;
        // Feature 2 all +0 in W0 (a zero feature), feature 4 subnormal; the checkpoint moves feature 4 within the subnormals.
        const at = (n: number, j: number) => (axis === 'rows' ? n * COLS + j : j * COLS + n);
        const len = axis === 'rows' ? COLS : ROWS;
        const b0 = w0.slice(), bt = wt.slice();
        for (let j = 0; j < len; j++) {
          b0[at(2, j)] = 0; bt[at(2, j)] = j % 3 === 0 ? 0.01 : 0;
          b0[at(4, j)] = t * (1 + (j % 3)); bt[at(4, j)] = -t * (1 + (j % 2));
        }
        const negZero = b0.map((v) => (v === 0 ? -0 : v)); // W0 but −0 for +0: other bits, same values
        const inf = bt.slice(); inf[at(5, len - 1)] = -Infinity; // E4M3 stores it as NaN
        const nan = bt.slice(); nan[at(1, 0)] = NaN;
        const base = await write('base', b0);
        const cks = [await write('same', b0), await write('negzero', negZero), await write('moved', bt), await write('inf', inf), await write('nan', nan)];
        const d0 = await base.read(name);
        const whole = await Promise.all(cks.map(async (c) => decompose(d0, await c.read(name), ROWS, COLS, axis, true)));
        expect(whole.map((d) => d.flag)).toEqual(['unchanged', '', '', 'non_finite', 'non_finite']);
        // −0 for +0: the values did not move, but the tensor is not the base bit for bit (ΔM is then rounding, not 0).
        expect(whole[1]!.deltaM).toBeLessThan(1e-12 * whole[1]!.meanM0);
        expect(whole[2]!.zeroRows).toBeGreaterThanOrEqual(1);
        for (const kernel of ['auto', 'js'] as const) for (const block of [3 * COLS, 1 << 20]) {
          const ds = await streamDecompose(base, cks, name, ROWS, COLS, axis, true, block, new BufferPool(), kernel);
          ds.forEach((d, c) => {
            const w = whole[c]!;
            expect([d.flag, d.zeroRows, d.nonFinite]).toEqual([w.flag, w.zeroRows, w.nonFinite]);
            // Equal values (the −0 checkpoint): m_t and m_0 differ only by the order of their sums. The loop sums
            // ‖W0[n]‖² four ways and ‖W_t[n]‖² one way, so rounding can read as shrinkage; the kernels add both in
            // the same order, so nothing shrinks.
            expect(d.shrunkRows).toBe(c === 1 && kernel === 'auto' && axis === 'rows' ? 0 : w.shrunkRows);
            for (const f of ['deltaM', 'deltaD', 'relDeltaFro', 'meanM0', 'meanMt'] as const) {
              if (Number.isNaN(w[f])) expect(d[f]).toBeNaN();
              // Relative to the value, and for the −0 checkpoint (ΔM, ΔD rounding noise about 0) to the magnitudes.
              else expect(Math.abs(d[f] - w[f])).toBeLessThanOrEqual(kernel === 'js' ? 0 : 1e-12 * Math.max(Math.abs(w[f]), c === 1 ? w.meanM0 : 0));
            }
          });
        }
        await base.close();
        for (const c of cks) await c.close();
      });
    }
  }

  it('runs on the WebAssembly kernels here, and tasks interleaved on one thread (each reading into an arena of its own, either axis) give each its own numbers', async () => {
    expect(featureSumsKernel('BF16', 'BF16')).toBeDefined(); // Node ≥ 16.4 has WebAssembly SIMD: the 'auto' cases above ran the kernels
    const dir = await mkdtemp(join(tmpdir(), 'dorascope-stream-'));
    // a and b run the same BF16 kernels; c's base is F16 with an F32 checkpoint (two kernels over one arena).
    const tasks = [
      { ...(await pair(dir, 'BF16', 'BF16', w0, wt, 'a')), axis: 'rows' as const },
      { ...(await pair(dir, 'BF16', 'BF16', wt, w0.map((v) => -2 * v), 'b')), axis: 'cols' as const },
      { ...(await pair(dir, 'F16', 'F32', w0.map((v) => v + 0.01), wt, 'c')), axis: 'cols' as const },
    ];
    const alone: Decomposition[] = [];
    for (const x of tasks) alone.push((await streamDecompose(x.base, [x.ck], x.name, ROWS, COLS, x.axis, true, 3 * COLS))[0]!);
    const together = await Promise.all(tasks.map(async (x) => (await streamDecompose(x.base, [x.ck, x.ck], x.name, ROWS, COLS, x.axis, true, 3 * COLS))));
    together.forEach((ds, i) => ds.forEach((d) => expect(d).toEqual(alone[i])));
    for (const x of tasks) { await x.base.close(); await x.ck.close(); }
  });

  it('several checkpoints share one pass over the base; an identical one is unchanged, a NaN one non_finite', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dorascope-stream-'));
    const name = 'model.layers.0.self_attn.q_proj.weight';
    const write = async (tag: string, w: Float32Array) => {
      const p = join(dir, `${tag}.safetensors`);
      await writeSafetensors(p, [{ name, dtype: 'BF16', shape: [ROWS, COLS], data: encodeFloat32('BF16', w) }]);
      return openFileSource(p);
    };
    const nan = wt.slice(); nan[ROWS * COLS - 3] = NaN; // in the last, short block
    const base = await write('base', w0), same = await write('same', w0), moved = await write('moved', wt), bad = await write('bad', nan);
    for (const kernel of ['auto', 'js'] as const) {
      const ds = await streamDecompose(base, [same, moved, bad], name, ROWS, COLS, 'rows', false, 6 * COLS, new BufferPool(2), kernel);
      expect(ds.map((d) => d.flag)).toEqual(['unchanged', '', 'non_finite']);
      expect([ds[0]!.deltaM, ds[0]!.deltaD]).toEqual([0, 0]);
      expect(Number.isNaN(ds[2]!.deltaM)).toBe(true);
      expectClose(ds[1]!, decompose(await base.read(name), await moved.read(name), ROWS, COLS, 'rows'), 1e-12);
    }
    for (const s of [base, same, moved, bad]) await s.close();
  });

  it('without WebAssembly at all (node --jitless) takes the JavaScript loop: its numbers, bit for bit', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dorascope-stream-'));
    const name = 'model.layers.0.self_attn.q_proj.weight';
    const paths = [join(dir, 'base.safetensors'), join(dir, 'ck.safetensors')];
    for (const [i, w] of [w0, wt].entries()) await writeSafetensors(paths[i]!, [{ name, dtype: 'BF16', shape: [ROWS, COLS], data: encodeFloat32('BF16', w) }]);
    const dist = new URL('../../dist/', import.meta.url).href;
    const script = `const { streamDecompose } = await import('${dist}analysis/stream-task.js');
      const { openFileSource } = await import('${dist}io/sources/file-source.js');
      const [b, c] = await Promise.all(${JSON.stringify(paths)}.map((p) => openFileSource(p)));
      const [d] = await streamDecompose(b, [c], '${name}', ${ROWS}, ${COLS}, 'rows', false, ${5 * COLS});
      process.stdout.write(JSON.stringify([typeof WebAssembly, d.deltaM, d.deltaD]));`;
    const { execFileSync } = await import('node:child_process');
    const [wasm, dm, dd] = JSON.parse(execFileSync(process.execPath, ['--jitless', '--input-type=module', '-e', script], { encoding: 'utf8' })) as [string, number, number];
    expect(wasm).toBe('undefined');
    const b = await openFileSource(paths[0]!), c = await openFileSource(paths[1]!);
    const [ref] = await streamDecompose(b, [c], name, ROWS, COLS, 'rows', false, 5 * COLS, new BufferPool(), 'js');
    expect([dm, dd]).toEqual([ref!.deltaM, ref!.deltaD]);
    await b.close(); await c.close();
  });
});

describe('readInto and decodeInto', () => {
  it('read a byte range of a tensor into the caller’s buffer and decode it as decodeToFloat32 does', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dorascope-stream-'));
    const p = join(dir, 'm.safetensors');
    const vals = Float32Array.from({ length: 40 }, (_, i) => (i - 20) * 0.37);
    const dtypes: DType[] = ['F32', 'F16', 'BF16', 'F64', 'F8_E4M3', 'F8_E5M2'];
    // F8 as raw codes (the encoder writes no F8): a spread of codes over the range.
    const bytes8 = Uint8Array.from({ length: 40 }, (_, i) => i * 5 + 1);
    await writeSafetensors(p, dtypes.map((d) => ({ name: d, dtype: d, shape: [40], data: d.startsWith('F8') ? bytes8 : encodeFloat32(d, vals) })));
    const f = await openSafetensors(p);
    for (const d of dtypes) {
      const whole = await f.readBytes(d);
      const size = whole.byteLength / 40;
      const part = new Uint8Array(new ArrayBuffer(128), 0, 13 * size);
      await f.readInto(d, part, 7 * size);
      expect([...part]).toEqual([...whole.subarray(7 * size, 20 * size)]);
      const out = new Float32Array(16).fill(99);
      decodeInto(d, part, out);
      expect([...out.subarray(0, 13)]).toEqual([...decodeToFloat32(d, viewAs(d, whole)).subarray(7, 20)]);
      expect(out[13]).toBe(99); // nothing past the block is written
      if (size === 2) { // 16-bit codes at an offset that is not a multiple of 4 (the one-at-a-time loop)
        const odd = new Uint8Array(new ArrayBuffer(128), 2, 13 * size);
        odd.set(part);
        const out2 = new Float32Array(13);
        decodeInto(d, odd, out2);
        expect([...out2]).toEqual([...out.subarray(0, 13)]);
      }
    }
    await expect(f.readInto('F32', new Uint8Array(8), 40 * 4 - 4)).rejects.toSatisfy((e: unknown) => e instanceof DorascopeError && e.code === 'E_OFFSETS');
    await f.close();
  });
});

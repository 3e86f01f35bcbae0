import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { featureNorms } from '../../src/analysis/decompose.js';
import { TaskScratch } from '../../src/analysis/tensor-task.js';
import { encodeFloat32, writeSafetensors } from '../../src/io/safetensors/writer.js';
import { openSource } from '../../src/io/sources/open-source.js';
import { randn, rng } from '../helpers/random.js';

const dir = mkdtempSync(join(tmpdir(), 'dorascope-scratch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('TaskScratch: W0 read into reused buffers', () => {
  it('gives the values `read` gives and featureNorms of them, for every floating dtype, when a smaller tensor follows a larger one', async () => {
    const next = rng(21);
    // Largest first, so later reads land in the front of grown buffers holding older values; `big` (odd width)
    // spans several decode blocks of 2^15 elements (its odd width puts odd rows at 2-aligned, not 4-aligned, bytes).
    const shapes: Record<string, number[]> = { big: [301, 151], F32: [5, 3], F16: [4, 6], BF16: [3, 5], F64: [2, 2], F8_E4M3: [3, 3] };
    const tensors = Object.entries(shapes).map(([name, shape]) => {
      const dtype = name === 'big' ? 'BF16' as const : name as 'F32' | 'F16' | 'BF16' | 'F64' | 'F8_E4M3';
      const n = shape[0]! * shape[1]!;
      // F8 has no encoder: random codes (0x7f, E4M3's NaN, masked off).
      const data = dtype === 'F8_E4M3' ? Uint8Array.from({ length: n }, () => Math.floor(next() * 256) & 0xfe) : encodeFloat32(dtype, randn(next, n, 2));
      return { name, dtype, shape, data };
    });
    const path = join(dir, 'w.safetensors');
    await writeSafetensors(path, tensors);
    const src = await openSource(path);
    const scratch = new TaskScratch();
    for (const name of ['big', 'F32', 'F16', 'BF16', 'F64', 'F8_E4M3', 'big']) {
      const [rows, cols] = shapes[name] as [number, number];
      for (const axis of ['rows', 'cols'] as const) {
        const got = await scratch.readBase(src, name, rows, cols, axis);
        expect(got).toBeDefined();
        const want = await src.read(name);
        expect(got!.w0.length).toBe(rows * cols);
        expect(Array.from(got!.w0)).toEqual(Array.from(want));
        expect(Array.from(got!.norms)).toEqual(Array.from(featureNorms(want, rows, cols, axis)));
      }
    }
    await src.close();
  });

  it('declines what it cannot read into its buffers (then the task reads the tensor itself)', async () => {
    const path = join(dir, 'i.safetensors');
    await writeSafetensors(path, [{ name: 'ints', dtype: 'I32', shape: [2], data: new Uint8Array(8) }]);
    const src = await openSource(path);
    expect(await new TaskScratch().readBase(src, 'ints', 1, 2, 'rows')).toBeUndefined();
    expect(await new TaskScratch().readBase(src, 'absent', 1, 2, 'rows')).toBeUndefined();
    await src.close();
  });
});

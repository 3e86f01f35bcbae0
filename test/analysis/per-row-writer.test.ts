import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { afterEach, describe, expect, it } from 'vitest';
import { PER_ROW_BATCH, PerRowWriter, type PerRowRecord } from '../../src/analysis/table.js';

let dir: string | undefined;
afterEach(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

const vocabulary = { run: ['run0', 'run1', 'run2'], checkpoint: ['checkpoint-0', 'checkpoint-1', 'checkpoint-2', 'checkpoint-3'], tensor: ['t0', 't1', 't2', 't3', 't4'], module: ['q_proj'] };

function record(i: number): PerRowRecord {
  return { run: `run${i % 3}`, checkpoint: `checkpoint-${i % 4}`, step: 10 * (i % 4), tensor: `t${i % 5}`, layer: i % 5, module: 'q_proj', row: i, m0: i / 3, mt: i / 7, cos: Math.cos(i) };
}

describe('rows.arrow streamed by PerRowWriter', () => {
  it('writes batches of at most PER_ROW_BATCH rows across add() calls, and reads back every value', async () => {
    dir = await mkdtemp(join(tmpdir(), 'dorascope-perrow-'));
    const w = await PerRowWriter.open(dir, vocabulary, ['arrow']);
    const n = 2 * PER_ROW_BATCH + 1234;
    // Three tensors' worth of records, as analyze adds them.
    const cut = [0, 1000, PER_ROW_BATCH + 5000, n];
    for (let c = 0; c + 1 < cut.length; c++) w.add(Array.from({ length: cut[c + 1]! - cut[c]! }, (_, j) => record(cut[c]! + j)));
    // Nothing at the destination before commit.
    expect(await readdir(dir)).not.toContain('rows.arrow');
    await w.commit();
    expect(await readdir(dir)).toEqual(['rows.arrow']);
    const t = tableFromIPC(await readFile(join(dir, 'rows.arrow')));
    expect(t.numRows).toBe(n);
    for (const b of t.batches) expect(b.numRows).toBeLessThanOrEqual(PER_ROW_BATCH);
    expect(t.batches.length).toBeGreaterThanOrEqual(4);
    // The repeating strings are dictionary columns sharing one dictionary across batches.
    expect(String(t.schema.fields.find((f) => f.name === 'tensor')!.type)).toBe('Dictionary<Int32, Utf8>');
    for (const i of [0, 999, 1000, PER_ROW_BATCH, PER_ROW_BATCH + 4999, PER_ROW_BATCH + 5000, n - 1]) {
      // step is int64: Arrow gives it back as a bigint.
      expect(t.get(i)!.toJSON()).toEqual({ ...record(i), step: BigInt(record(i).step) });
    }
  });

  it('abort leaves neither rows.arrow nor a temporary file', async () => {
    dir = await mkdtemp(join(tmpdir(), 'dorascope-perrow-'));
    const w = await PerRowWriter.open(dir, vocabulary, ['arrow']);
    w.add([record(1), record(2)]);
    await w.abort();
    expect(await readdir(dir)).toEqual([]);
  });

  it('an analysis without per-feature records still gets a readable file with the schema', async () => {
    dir = await mkdtemp(join(tmpdir(), 'dorascope-perrow-'));
    const w = await PerRowWriter.open(dir, vocabulary, ['arrow']);
    await w.commit();
    const t = tableFromIPC(await readFile(join(dir, 'rows.arrow')));
    expect(t.numRows).toBe(0);
    expect(t.schema.fields.map((f) => f.name)).toEqual(['run', 'checkpoint', 'step', 'tensor', 'layer', 'module', 'row', 'm0', 'mt', 'cos']);
  });
});

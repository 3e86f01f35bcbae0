/**
 * The seeded fuzzer (bench/fuzz-safetensors.ts) for a bounded time in CI: mutated safetensors
 * files, adapter_config.json, trainer_state.json and model.safetensors.index.json must each give
 * a result or a DorascopeError, within the per-input time limit and without the resident set
 * running away. The seed is fixed, so a failure here replays with `npm run fuzz:safetensors`.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FUZZ_TARGETS, fuzz } from '../../bench/fuzz-safetensors.js';
import { openSafetensors } from '../../src/io/safetensors/reader.js';
import { readIndex } from '../../src/io/sources/sharded.js';
import { rejection } from '../helpers/rejection.js';

const root = mkdtempSync(join(tmpdir(), 'dorascope-fuzz-found-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;

describe('inputs the fuzzer found', () => {
  it('a value nested 20,000 deep in a shard index or a safetensors header is a typed error, not a stack overflow in the message', async () => {
    const dir = join(root, 'deep');
    mkdirSync(dir);
    const index = join(dir, 'model.safetensors.index.json');
    writeFileSync(index, `{"weight_map": {"a": ${deep(20_000)}}}`);
    const e = await rejection(readIndex(index));
    expect(e.code).toBe('E_INDEX');
    expect(e.message).toContain('nested too deep to show');
    const header = `{"a": {"dtype": "F32", "shape": ${deep(20_000)}, "data_offsets": [0, 0]}}`;
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    const st = join(dir, 'deep.safetensors');
    writeFileSync(st, Buffer.concat([len, Buffer.from(header)]));
    expect((await rejection(openSafetensors(st))).code).toBe('E_HEADER_SCHEMA');
  });
});

describe('fuzzer over every JSON and safetensors input', () => {
  it('runs 12 s over the four targets with no crash, hang or unbounded allocation', async () => {
    const r = await fuzz({ seconds: 12, seed: 20240219, maxInputMs: 3000, maxRssBytes: 3 * 1024 ** 3 });
    expect(r.failures.map((f) => `${f.target} #${f.input}: ${f.why.split('\n')[0]} (${f.kept})`)).toEqual([]);
    for (const t of FUZZ_TARGETS) {
      // Each target got inputs, and not all of them were refused for one reason or all accepted.
      expect(r.inputs[t], t).toBeGreaterThan(10);
      expect(r.typed[t], t).toBeGreaterThan(0);
      expect(r.typed[t], t).toBeLessThan(r.inputs[t]);
    }
  }, 60_000);
});

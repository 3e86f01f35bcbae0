/**
 * `npm run fuzz:safetensors -- --seconds 60 [--seed 1]`: a seeded mutation fuzzer for the
 * safetensors reader (a coverage-guided engine such as Jazzer.js downloads a native binary at
 * install, which this project may not do). It mutates valid files (bit flips, byte splices,
 * header-length edits, JSON edits, truncations) and reads every tensor of each input. Any
 * exception that is not a DorascopeError, or an input that takes over a second, is a failure:
 * the input is saved under the temp folder and the run exits non-zero.
 */
import { mkdtempSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSafetensors } from '../src/io/safetensors/reader.js';
import { writeSafetensors, encodeFloat32 } from '../src/io/safetensors/writer.js';
import { isDorascopeError } from '../src/errors.js';
import { mulberry32 } from '../src/random.js';

const arg = (k: string, d: number) => { const i = process.argv.indexOf(k); return i > 0 ? Number(process.argv[i + 1]) : d; };
const seconds = arg('--seconds', 30), seed = arg('--seed', 1);
const rand = mulberry32(seed);
const int = (n: number) => Math.floor(rand() * n);
const dir = mkdtempSync(join(tmpdir(), 'dorascope-fuzz-'));

const seeds: Uint8Array[] = [];
{
  const p = join(dir, 'seed.safetensors');
  await writeSafetensors(p, [
    { name: 'a', dtype: 'F32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
    { name: 'b', dtype: 'BF16', shape: [4], data: encodeFloat32('BF16', [1, -2, 3, -4]) },
    { name: 'c', dtype: 'F8_E4M3', shape: [], data: new Uint8Array([0x38]) },
    { name: 'z', dtype: 'I64', shape: [0], data: new BigInt64Array(0) },
  ], { k: 'v' });
  const { readFileSync } = await import('node:fs');
  seeds.push(readFileSync(p));
  const samples = new URL('../../../test/fixtures/safetensors-samples/overall.safetensors', import.meta.url);
  seeds.push(readFileSync(samples));
}

function mutate(src: Uint8Array): Uint8Array {
  let b = new Uint8Array(src); // a copy (Buffer.slice would be a view and corrupt the seed)
  const text = () => new TextDecoder().decode(b.subarray(8));
  for (let k = 1 + int(3); k > 0; k--) {
    switch (int(6)) {
      case 0: { const i = int(b.length); b[i]! ^= 1 << int(8); break; }
      case 1: { const i = int(b.length); b[i] = int(256); break; }
      case 2: b = b.subarray(0, int(b.length + 1)); break;
      case 3: { const v = new DataView(b.buffer, b.byteOffset); if (b.length >= 8) v.setBigUint64(0, BigInt(int(2 ** 31)) * BigInt(int(4) === 0 ? 2 ** 20 : 1), true); break; }
      case 4: { // JSON edit: replace a digit or a quote somewhere in the header
        const t = text(); const i = t.search(/[0-9"\]]/u);
        if (i >= 0) b[8 + i + int(Math.max(1, Math.min(32, t.length - i)))] = '0123456789",[]{}:-'.charCodeAt(int(18));
        break;
      }
      default: { const extra = new Uint8Array(int(16)).map(() => int(256)); const c = new Uint8Array(b.length + extra.length); c.set(b); c.set(extra, b.length); b = c; }
    }
  }
  return b;
}

// The seeds themselves must read: otherwise every mutant is rejected for the same reason and the run proves nothing.
for (const [i, s] of seeds.entries()) {
  const sp = join(dir, `seed-${i}.safetensors`);
  writeFileSync(sp, s);
  const f = await openSafetensors(sp);
  for (const t of f.tensors) await f.readRaw(t.name);
  await f.close();
}

const end = Date.now() + seconds * 1000;
const p = join(dir, 'input.safetensors');
let n = 0, typed = 0;
while (Date.now() < end) {
  const input = mutate(seeds[int(seeds.length)]!);
  writeFileSync(p, input);
  const t0 = Date.now();
  try {
    const f = await openSafetensors(p);
    for (const t of f.tensors) await f.readRaw(t.name);
    await f.close();
  } catch (e) {
    if (!isDorascopeError(e)) {
      const keep = join(dir, `crash-${n}.safetensors`);
      copyFileSync(p, keep);
      console.error(`FAIL: input ${n} threw ${(e as Error)?.stack ?? e}\nsaved as ${keep}`);
      process.exit(1);
    }
    typed++;
  }
  if (Date.now() - t0 > 1000) {
    const keep = join(dir, `slow-${n}.safetensors`);
    copyFileSync(p, keep);
    console.error(`FAIL: input ${n} took ${Date.now() - t0} ms; saved as ${keep}`);
    process.exit(1);
  }
  n++;
}
console.log(`fuzz:safetensors: ${n} inputs in ${seconds} s (seed ${seed}), ${typed} rejected with typed errors, ${n - typed} read fine, 0 crashes or hangs`);

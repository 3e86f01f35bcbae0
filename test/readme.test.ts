import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

describe('README.md', () => {
  it('carries the current text of docs/*.md (scripts/build-readme.mjs --check)', () => {
    // Throws (exit 1) when a doc changed and README.md was not rebuilt.
    execFileSync(process.execPath, ['scripts/build-readme.mjs', '--check'], { stdio: 'pipe' });
  });

  it('has a quick start of exactly two set-up lines: install-and-demo, and the tests', () => {
    const readme = readFileSync('README.md', 'utf8');
    const quick = readme.slice(readme.indexOf('## Quick start'));
    const block = quick.slice(quick.indexOf('```sh\n') + 6, quick.indexOf('\n```', quick.indexOf('```sh\n') + 6));
    const lines = block.split('\n').map((l) => l.replace(/#.*$/, '').trim()).filter((l) => l !== '');
    expect(lines).toEqual(['npm install && npx dorascope demo', 'npm test']);
  });
});

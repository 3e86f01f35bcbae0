import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * A clone with nothing beside it must pass `npm test`: no source, test, benchmark, script or
 * notebook may name a path outside the repository (such as a `shared/` folder next to a CI checkout).
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FOLDERS = ['src', 'test', 'bench', 'scripts', 'notebooks'];
const TEXT = /\.(ts|mts|js|mjs|cjs|json|sh|ipynb|py)$/;

function* files(dir: string): Generator<string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name === 'fixtures') continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* files(p);
    else if (e.isFile() && TEXT.test(e.name)) yield p;
  }
}

describe('the repository is self-contained', () => {
  it('nothing in src, test, bench, scripts or notebooks reads a path beside the checkout', () => {
    // Built from pieces so that this file does not match itself.
    const outside = new RegExp(['\\.\\./', 'shared\\b'].join(''));
    const offenders: string[] = [];
    for (const folder of FOLDERS) {
      const dir = join(ROOT, folder);
      try { statSync(dir); } catch { continue; }
      for (const f of files(dir)) {
        if (f === fileURLToPath(import.meta.url)) continue;
        readFileSync(f, 'utf8').split('\n').forEach((line, i) => {
          if (outside.test(line)) offenders.push(`${relative(ROOT, f)}:${i + 1}: ${line.trim()}`);
        });
      }
    }
    expect(offenders).toEqual([]);
  });

  it('the fixture files the tests use are in test/fixtures, with their provenance', () => {
    const readme = readFileSync(join(ROOT, 'test/fixtures/README.md'), 'utf8');
    for (const d of ['safetensors-samples', 'diffai']) {
      expect(readme).toContain(`## ${d}/`);
      expect(readdirSync(join(ROOT, 'test/fixtures', d)).filter((f) => f.endsWith('.safetensors')).length).toBeGreaterThan(0);
    }
    expect(readme).toMatch(/Unlicense/);
    expect(readFileSync(join(ROOT, 'test/fixtures/diffai/LICENSE'), 'utf8')).toMatch(/MIT/);
  });
});

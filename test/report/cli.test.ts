import { describe, expect, it, vi } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { main } from '../../src/cli/main.js';
import { grid, writeAnalysis } from './helpers.js';

describe('report / compare CLI', () => {
  it('report writes the page and prints its path; a bad folder exits 1 with E_ANALYSIS_DIR', async () => {
    const dir = await writeAnalysis(grid('lora', 'lora', 2, ['q_proj'], [1, 2]));
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await main(['report', dir, '--title', 'T<1>', '--plotly-src', 'p.js'])).toBe(0);
      expect(out.mock.calls.map((c) => String(c[0])).join('')).toContain(join(dir, 'report.html'));
      expect(await readFile(join(dir, 'report.html'), 'utf8')).toContain('<title>T&lt;1&gt;</title>');
      expect(await main(['compare', dir, dir, '--labels', 'A,B', '--out', join(dir, 'c.html'), '--plotly-src', 'p.js'])).toBe(0);
      expect(await readFile(join(dir, 'c.html'), 'utf8')).toContain('dorascope compare: A vs B');
      expect(await main(['report', join(dir, 'missing')])).toBe(1);
      expect(err.mock.calls.map((c) => String(c[0])).join('')).toContain('E_ANALYSIS_DIR');
    } finally { out.mockRestore(); err.mockRestore(); }
  });
});

import { describe, expect, it } from 'vitest';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { findChromium, requireChromium } from '../../src/report/chromium.js';
import { exportFigures } from '../../src/report/export.js';
import { renderReport } from '../../src/report/render.js';
import { isDorascopeError } from '../../src/errors.js';
import { grid, writeAnalysis } from './helpers.js';

describe('image export', () => {
  it('E_CHROMIUM names the bad CHROMIUM_PATH', () => {
    expect(() => requireChromium({ CHROMIUM_PATH: '/no/such/chromium' })).toThrow(/no\/such\/chromium/);
    try { requireChromium({ CHROMIUM_PATH: '/no/such/chromium' }); } catch (e) { expect(isDorascopeError(e, 'E_CHROMIUM')).toBe(true); }
  });

  it.skipIf(!findChromium())('writes one PNG and one SVG per figure (Figure 2: per module)', async () => {
    const dir = await writeAnalysis(grid('lora', 'lora', 2, ['q_proj', 'v_proj'], [1, 2]));
    const html = await renderReport({ dir });
    const png = await exportFigures(html, join(dir, 'png'), 'png');
    const svg = await exportFigures(html, join(dir, 'svg'), 'svg');
    expect((await readdir(join(dir, 'png'))).sort()).toEqual(['fig2-0.png', 'fig2-1.png', 'fig3.png', 'traj.png']);
    expect(svg.length).toBe(4);
    // One image per module: the two Figure 2 images differ (q_proj's points, then v_proj's).
    expect((await readFile(svg[0]!, 'utf8')) === (await readFile(svg[1]!, 'utf8'))).toBe(false);
    const b = await readFile(png[0]!);
    expect([...b.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]); // PNG signature
    expect((await readFile(svg[0]!, 'utf8')).startsWith('<svg')).toBe(true);
  }, 60_000);
});

import { describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';

// `dorascope train` on a terminal redraws one progress line (\r … ESC[K) with step, loss,
// tokens/s and ETA, and ends it with a newline; --quiet writes no progress at all.
async function runTrain(tty: boolean, extra: string[] = []): Promise<{ code: number; err: string }> {
  const err: string[] = [];
  const desc = Object.getOwnPropertyDescriptor(process.stderr, 'isTTY');
  const cols = Object.getOwnPropertyDescriptor(process.stderr, 'columns');
  Object.defineProperty(process.stderr, 'isTTY', { value: tty, configurable: true });
  Object.defineProperty(process.stderr, 'columns', { value: 120, configurable: true });
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => (err.push(String(s)), true));
  const o = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    const code = await main(['train', '--method', 'full', '--steps', '3', '--layers', '1', '--d-model', '16', '--heads', '2',
      '--batch-size', '2', '--context-length', '8', '--backend', 'wasm', ...extra]);
    return { code, err: err.join('') };
  } finally {
    e.mockRestore();
    o.mockRestore();
    if (desc) Object.defineProperty(process.stderr, 'isTTY', desc);
    else delete (process.stderr as { isTTY?: boolean }).isTTY;
    if (cols) Object.defineProperty(process.stderr, 'columns', cols);
    else delete (process.stderr as { columns?: number }).columns;
  }
}

describe('train progress', () => {
  it('on a TTY: a redrawn bar with step, loss, tok/s and ETA, ended by a newline', async () => {
    const { code, err } = await runTrain(true);
    expect(code).toBe(0);
    const draws = err.split('\r').filter((s) => s.startsWith('train '));
    expect(draws.length).toBeGreaterThanOrEqual(2);
    // fitted to the terminal's 120 columns, so the bar fits
    expect(draws[0]).toMatch(/^train \[#*-+\] 1\/3 .*ETA .*loss=\d\.\d+ .*tok\/s=\d+/);
    expect(draws[draws.length - 1]).toMatch(/^train \[#+\] 3\/3 .*in \d+s .*loss=.*\x1b\[K\n$/);
  });

  it('--quiet writes no progress', async () => {
    const { code, err } = await runTrain(false, ['--quiet']);
    expect(code).toBe(0);
    expect(err).not.toMatch(/loss=|ETA/);
  });
});

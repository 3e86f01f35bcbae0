import { describe, expect, it } from 'vitest';
import { Progress, estimateRemaining, fitLine, formatByteRate, formatDuration, formatUnitRate, plainLine, renderBar, type ProgressState } from '../src/progress.js';

describe('progress formatting', () => {
  it('formats durations', () => {
    expect(formatDuration(0)).toBe('0s');
    expect(formatDuration(59.4)).toBe('59s');
    expect(formatDuration(65)).toBe('1:05');
    expect(formatDuration(3723)).toBe('1:02:03');
    expect(formatDuration(36000)).toBe('10:00:00');
    expect(formatDuration(NaN)).toBe('--');
    expect(formatDuration(Infinity)).toBe('--');
    expect(formatDuration(-1)).toBe('--');
  });

  it('formats rates', () => {
    expect(formatByteRate(0)).toBe('0.00 B/s');
    expect(formatByteRate(999)).toBe('999 B/s');
    expect(formatByteRate(1500)).toBe('1.50 kB/s');
    expect(formatByteRate(123_456_789)).toBe('123 MB/s');
    expect(formatByteRate(2.5e9)).toBe('2.50 GB/s');
    expect(formatByteRate(NaN)).toBe('-- B/s');
    expect(formatUnitRate(3.214, 'tensors')).toBe('3.21 tensors/s');
    expect(formatUnitRate(0.25, 'step')).toBe('4.00 s/step');
    expect(formatUnitRate(0, 'step')).toBe('-- step/s');
  });

  it('draws bars of the exact width', () => {
    expect(renderBar(0, 10, 12)).toBe('[----------]');
    expect(renderBar(5, 10, 12)).toBe('[#####-----]');
    expect(renderBar(10, 10, 12)).toBe('[##########]');
    expect(renderBar(20, 10, 12)).toBe('[##########]');
    expect(renderBar(1, 0, 4)).toBe('[--]');
    for (let w = 2; w < 50; w++) expect(renderBar(3, 7, w)).toHaveLength(w);
  });

  it('estimates the time left from the fraction done', () => {
    expect(estimateRemaining(10, 1, 4)).toBe(30);
    expect(estimateRemaining(10, 4, 4)).toBe(0);
    expect(estimateRemaining(10, 0, 4)).toBeNaN();
  });

  const state: ProgressState = { done: 3, total: 12, elapsedSeconds: 6, bytes: 3e6, unit: 'tensors', label: 'analyze', fields: { loss: 1.23456 }, note: 'model.layers.0.self_attn.q_proj.weight' };

  it('plain lines carry count, percentage, rate, ETA, fields and note', () => {
    // 3 of 12 in 6 s: 0.5 MB/s, 9 left at 2 s each = 18 s.
    expect(plainLine(state)).toBe('analyze  3/12  25%  500 kB/s  ETA 18s  loss=1.235  model.layers.0.self_attn.q_proj.weight');
    expect(plainLine({ ...state, bytes: 0, fields: undefined, note: undefined, label: undefined })).toBe('3/12  25%  0.500 s/tensors  ETA 18s'.replace('0.500', '2.00'));
    expect(plainLine({ ...state, done: 12, fields: undefined, note: undefined })).toBe('analyze  12/12  100%  500 kB/s  in 6s');
  });

  it('fits the terminal line to the width, never wrapping', () => {
    for (let cols = 1; cols <= 200; cols++) {
      const line = fitLine(state, cols);
      expect(line.length).toBeLessThanOrEqual(Math.max(1, cols - 1));
      expect(line).not.toContain('\n');
    }
    // Wide terminal: a 40-character bar, then the note.
    const wide = fitLine(state, 200);
    expect(wide).toBe(`analyze ${renderBar(3, 12, 40)} 3/12  25%  500 kB/s  ETA 18s  loss=1.235  ${state.note}`);
    // Narrower: the note is cut first, then the bar shrinks (minimum 10), then disappears.
    const status = '3/12  25%  500 kB/s  ETA 18s  loss=1.235';
    expect(fitLine(state, 8 + 15 + 1 + status.length + 1)).toBe(`analyze ${renderBar(3, 12, 15)} ${status}`);
    const narrow = fitLine(state, 8 + 9 + 1 + status.length + 1);
    expect(narrow.startsWith(`analyze ${status}`)).toBe(true); // no bar; what room is left shows the start of the note
    expect(narrow).toHaveLength(8 + 9 + 1 + status.length);
  });
});

describe('Progress', () => {
  function rig(tty: boolean, total: number, extra: Partial<{ quiet: boolean; intervalMs: number; columns: number }> = {}) {
    let t = 0;
    const out: string[] = [];
    const p = new Progress({ total, tty, unit: 'tensors', write: (s) => out.push(s), now: () => t, ...extra });
    return { p, out, advance: (ms: number) => { t += ms; } };
  }

  it('redraws a terminal line at most ten times a second and ends it with a newline', () => {
    const { p, out, advance } = rig(true, 1000, { columns: 60 });
    for (let i = 0; i < 999; i++) { advance(10); p.tick(1, { bytes: 1000 }); }
    // 9.99 s at 10 ms per tick: a redraw every 100 ms → about 100 draws, not 999.
    expect(out.length).toBeGreaterThanOrEqual(95);
    expect(out.length).toBeLessThanOrEqual(101);
    for (const s of out) {
      expect(s.startsWith('\r')).toBe(true);
      expect(s).not.toContain('\n');
      expect(s.replace('\r', '').replace('\x1b[K', '').length).toBeLessThanOrEqual(59);
    }
    advance(1); p.tick();
    expect(out.at(-1)!.endsWith('\n')).toBe(true);
    expect(out.at(-1)).toContain('1000/1000');
    const n = out.length;
    p.finish(); p.tick();
    expect(out.length).toBe(n);
  });

  it('writes plain lines every 10% or every interval, and a final line', () => {
    const { p, out, advance } = rig(false, 100, { intervalMs: 5000 });
    for (let i = 0; i < 100; i++) { advance(10); p.tick(); }
    expect(out).toHaveLength(10); // at 10%, 20%, …, 90%, and 100%
    expect(out.every((s) => s.endsWith('\n') && !s.includes('\r'))).toBe(true);
    expect(out[0]).toMatch(/^10\/100 {2}10% /u);
    expect(out.at(-1)).toMatch(/^100\/100 {2}100% .* in 1s\n$/u);

    const slow = rig(false, 1000, { intervalMs: 5000 });
    for (let i = 0; i < 50; i++) { slow.advance(1000); slow.p.tick(); }
    // 50 s, 5% done: no decile crossed, one line per 5 s interval.
    expect(slow.out).toHaveLength(10);
  });

  it('is silent when quiet', () => {
    const { p, out } = rig(true, 3, { quiet: true });
    p.tick(); p.tick(); p.tick(); p.finish();
    expect(out).toHaveLength(0);
  });

  it('shows extra fields such as the loss', () => {
    const { p, out, advance } = rig(false, 2);
    advance(1000); p.tick(1, { fields: { loss: 0.5, step: 10 } });
    advance(1000); p.tick(1);
    expect(out[0]).toContain('loss=0.5000  step=10');
    expect(out[1]).toContain('loss=0.5000');
  });
});

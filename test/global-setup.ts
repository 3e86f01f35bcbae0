/**
 * Every test's temporary folders go under one folder made for the run and removed after it, so a
 * run leaves nothing in the system's temp folder (tests make folders with `mkdtemp(tmpdir())`,
 * and child processes they spawn inherit TMPDIR too).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'dorascope-test-'));
  const before = process.env['TMPDIR'];
  process.env['TMPDIR'] = dir;
  return () => {
    if (before === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = before;
    rmSync(dir, { recursive: true, force: true });
  };
}

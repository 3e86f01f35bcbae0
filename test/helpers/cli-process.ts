/**
 * Runs the built CLI (`bin/dorascope.js`, over dist/) in a child process with a wall-clock
 * limit, for inputs that could hang or exhaust the process on a regression: a hang shows up
 * as a killed child and a failed test, not as a stuck test runner.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = join(resolve(dirname(fileURLToPath(import.meta.url)), '../..'), 'bin/dorascope.js');

export interface CliRun { status: number | null; signal: string | null; out: string; err: string; ms: number }

export function runCli(args: string[], timeoutMs = 20_000, cwd?: string): CliRun {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: timeoutMs, cwd, killSignal: 'SIGKILL' });
  return { status: r.status, signal: r.signal, out: r.stdout ?? '', err: r.stderr ?? '', ms: Date.now() - t0 };
}

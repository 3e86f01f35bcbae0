import { describe, expect, it, vi } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { main } from '../../src/cli/main.js';

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => (err.push(String(s)), true));
  const log = vi.spyOn(console, 'log').mockImplementation((...a) => void out.push(`${a.join(' ')}\n`));
  return { out, err, restore: () => (o.mockRestore(), e.mockRestore(), log.mockRestore()) };
}

describe('cli main', () => {
  it('prints the package version', async () => {
    const c = capture();
    const code = await main(['--version']);
    c.restore();
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    expect(code).toBe(0);
    expect(c.out.join('')).toContain(pkg.version);
  });

  it('rejects an unknown command with a one-line usage error and exit code 2', async () => {
    const c = capture();
    const code = await main(['no-such-command']);
    c.restore();
    expect(code).toBe(2);
    expect(c.err.join('')).toMatch(/^dorascope: error \[E_USAGE\]: Unknown argument: no-such-command/);
  });

  it('the built CLI (bin/dorascope.js, its bundle) speaks English whatever LANG says, and wraps only help text', () => {
    const bin = new URL('../../bin/dorascope.js', import.meta.url).pathname;
    const run = (args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, LANG: 'de_DE.UTF-8', LC_ALL: 'de_DE.UTF-8' } });
    const help = run(['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('Commands:');
    expect(help.stdout).not.toContain('Kommandos:');
    const bad = run(['analyze']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^dorascope: error \[E_USAGE\]: (Not enough non-option arguments|Missing required argument)/u);
  });
});

/**
 * The CLI for machines (--json on analyze, report and compare: one JSON object on stdout, whose numbers are
 * summary.json's) and for people (every command's --help has examples and describes every option).
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';

const DIFFAI = resolve(dirname(fileURLToPath(import.meta.url)), '../fixtures/diffai');

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [], err: string[] = [];
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => (err.push(String(s)), true));
  const l = vi.spyOn(console, 'log').mockImplementation((...a) => void out.push(`${a.join(' ')}\n`));
  try {
    return { code: await main(args), out: out.join(''), err: err.join('') };
  } finally {
    o.mockRestore(); e.mockRestore(); l.mockRestore();
  }
}

describe('--json', () => {
  it('analyze, report and compare print one JSON object: the files written and summary.json\'s statistics', async () => {
    const dir = join(await mkdtemp(join(tmpdir(), 'ds-json-')), 'a');
    const a = await run(['analyze', '--base', join(DIFFAI, 'checkpoint_epoch_0.safetensors'), '--modules-regex', '^fc\\d\\.weight$',
      '--label', `e10=${join(DIFFAI, 'checkpoint_epoch_10.safetensors')}`, join(DIFFAI, 'checkpoint_epoch_10.safetensors'),
      join(DIFFAI, 'checkpoint_epoch_50.safetensors'), '--out', dir, '--quiet', '--json']);
    expect(a.code, a.err).toBe(0);
    const j = JSON.parse(a.out);
    const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
    expect(j.command).toBe('analyze');
    expect(j.out).toBe(dir);
    for (const f of ['decomposition.arrow', 'decomposition.csv', 'summary.json', 'manifest.json']) expect(j.files).toContain(join(dir, f));
    for (const f of j.files as string[]) expect(existsSync(f), f).toBe(true);
    expect(j.runs.map((r: { run: string }) => r.run)).toEqual(['e10', 'checkpoint_epoch_50']);
    expect(j.runs[0].overall).toEqual({ n: summary.runs[0].overall.n, pearson_r: summary.runs[0].overall.pearson_r, r_ci95: summary.runs[0].overall.r_ci95,
      spearman_rho: summary.runs[0].overall.spearman_rho, slope: summary.runs[0].overall.slope, slope_ci95: summary.runs[0].overall.slope_ci95 });
    expect(Object.keys(j.runs[0].modules).sort()).toEqual(Object.keys(summary.runs[0].modules).sort());
    expect(j.runs[1].checkpoints).toBe(1);

    const r = await run(['report', dir, '--json']);
    expect(r.code, r.err).toBe(0);
    const rj = JSON.parse(r.out);
    expect(rj.report).toBe(join(dir, 'report.html'));
    expect(existsSync(rj.report)).toBe(true);
    expect(rj.runs[1].overall.slope).toBe(summary.runs[1].overall.slope);

    const out = join(dir, 'c.html');
    const c = await run(['compare', dir, dir, '--labels', 'x,y', '--out', out, '--json']);
    expect(c.code, c.err).toBe(0);
    const cj = JSON.parse(c.out);
    expect(cj.files).toEqual([out]);
    expect(cj.runs.map((x: { run: string }) => x.run)).toEqual(['x/e10', 'x/checkpoint_epoch_50', 'y/e10', 'y/checkpoint_epoch_50']);
  }, 60_000);
});

describe('--help', () => {
  it('every command has examples and describes every option; variadic runs are not shown with a default', async () => {
    const top = await run(['--help']);
    const commands = [...top.out.matchAll(/^ {2}dorascope ([a-z]+)/gm)].map((m) => m[1]!);
    expect(commands.length).toBeGreaterThan(6);
    for (const command of commands) {
      const h = (await run([command, '--help'])).out;
      expect(h, `${command} --help has no examples`).toMatch(/\nExamples:\n {2}dorascope /u);
      // An option line: flag(s), then either a description or straight to its [type] — the latter has none.
      for (const line of h.split('\n').filter((x) => /^\s+(-\w, )?--[a-z-]+\s/u.test(x))) {
        expect(line, `${command}: an option without a description`).not.toMatch(/^\s+(-\w, )?--[a-z-]+\s+\[/u);
      }
    }
    for (const [command, positional] of [['analyze', 'runs'], ['compare', 'dirs']] as const) {
      const line = (await run([command, '--help'])).out.split('\n').find((x) => x.trimStart().startsWith(`${positional} `));
      const block = (await run([command, '--help'])).out.split('Options:')[0]!;
      expect(line, `${command} --help shows ${positional}`).toBeDefined();
      expect(block).toContain('[required]');
      expect(block).not.toContain('[default: []]');
    }
  }, 60_000);
});

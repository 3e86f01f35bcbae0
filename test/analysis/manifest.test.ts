import { describe, expect, it } from 'vitest';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { analyze } from '../../src/analysis/analyze.js';
import { main } from '../../src/cli/main.js';
import { writeModel } from '../helpers/models.js';
import { rng, randn } from '../helpers/random.js';

async function pair(): Promise<{ dir: string; base: string; ck: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'ds-an-man-'));
  const next = rng(5);
  const t = (s: number) => ({ shape: [4, 3], data: randn(next, 12).map((v) => v * s) });
  const names = ['model.layers.0.self_attn.q_proj.weight', 'model.layers.0.self_attn.v_proj.weight', 'model.layers.1.self_attn.q_proj.weight'];
  await writeModel(join(dir, 'base.safetensors'), Object.fromEntries(names.map((n) => [n, t(1)])));
  await writeModel(join(dir, 'ck.safetensors'), Object.fromEntries(names.map((n) => [n, t(2)])));
  return { dir, base: join(dir, 'base.safetensors'), ck: join(dir, 'ck.safetensors') };
}

describe('analyze manifest and progress', () => {
  it('the CLI records its own command line, not the process argv, when run in-process', async () => {
    const { dir, base, ck } = await pair();
    const out = join(dir, 'o');
    const orig = process.stdout.write.bind(process.stdout);
    process.stdout.write = (() => true) as typeof process.stdout.write;
    let code: number;
    try {
      code = await main(['analyze', '--base', base, ck, '--label', `late=${ck}`, '--modules', 'q_proj', '--layers', '0-1', '--out', out, '--quiet']);
    } finally {
      process.stdout.write = orig;
    }
    expect(code).toBe(0);
    const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8'));
    expect(manifest.command).toEqual(['dorascope', 'analyze', '--base', base, '--label', `late=${ck}`, '--modules', 'q_proj', '--layers', '0-1', '--out', out, '--quiet', ck]);
    // Re-running the recorded command (without the program name) gives the same rows.
    const out2 = join(dir, 'o2');
    process.stdout.write = (() => true) as typeof process.stdout.write;
    try {
      code = await main([...manifest.command.slice(1, -4), '--out', out2, '--quiet', ck]);
    } finally {
      process.stdout.write = orig;
    }
    expect(code).toBe(0);
    expect(await readFile(join(out2, 'decomposition.csv'), 'utf8')).toBe(await readFile(join(out, 'decomposition.csv'), 'utf8'));
  });

  it('the library records the command it is given, and null without one', async () => {
    const { dir, base, ck } = await pair();
    await analyze({ base, runs: [{ path: ck }], out: join(dir, 'a'), quiet: true });
    expect(JSON.parse(await readFile(join(dir, 'a', 'manifest.json'), 'utf8')).command).toBeNull();
    await analyze({ base, runs: [{ path: ck }], out: join(dir, 'b'), quiet: true, command: ['my', 'notebook'] });
    expect(JSON.parse(await readFile(join(dir, 'b', 'manifest.json'), 'utf8')).command).toEqual(['my', 'notebook']);
  });

  it('progress goes to the given log as plain lines ending with the whole count; quiet writes nothing', async () => {
    const { base, ck } = await pair();
    const lines: string[] = [];
    await analyze({ base, runs: [{ path: ck }], write: false, log: (l) => lines.push(l) });
    const prog = lines.filter((l) => l.startsWith('analyze '));
    expect(prog.length).toBeGreaterThanOrEqual(1);
    expect(prog.at(-1)).toMatch(/^analyze {2}3\/3 {2}100% {2}.*B\/s {2}in \d+s/u);
    expect(lines.every((l) => !l.includes('\n') && !l.includes('\r'))).toBe(true);
    const quiet: string[] = [];
    await analyze({ base, runs: [{ path: ck }], write: false, quiet: true, log: (l) => quiet.push(l) });
    expect(quiet).toEqual([]);
  });
});

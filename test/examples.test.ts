/**
 * The cluster examples run as written: examples/slurm/analyze-array.sbatch as each array task and then as the
 * combine job (bash, the SLURM_ variables set as Slurm sets them), and the shell steps of
 * examples/kubernetes/analyze-indexed-job.yaml as each pod of the Indexed Job (JOB_COMPLETION_INDEX from 0) and
 * then the combine Job, on a small generated series, with `dorascope` on PATH running this checkout's CLI.
 * The YAML is read with a few regular expressions (the block scalars under `args:` and the `env` entries):
 * enough for this file, and no YAML library to depend on. The CLI is spawned from dist/ (`npm test` builds first).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exactValues, writeModel, type TestTensors } from './helpers/models.js';
import { rng } from './helpers/random.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
let dir: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dorascope-examples-'));
  const next = rng(5);
  const w0: TestTensors = {};
  for (let l = 0; l < 2; l++) for (const m of ['q_proj', 'v_proj']) w0[`model.layers.${l}.self_attn.${m}.weight`] = { shape: [6, 4], data: exactValues(next, 24) };
  await writeModel(join(dir, 'base.safetensors'), w0);
  for (const c of [1, 2]) {
    await writeModel(join(dir, `ck${c}.safetensors`), Object.fromEntries(Object.entries(w0).map(([n, t]) => [n, { ...t, data: t.data.map((v) => v + (next() - 0.5) / 16) }])));
  }
  // `dorascope` as the examples call it: this checkout's CLI.
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'dorascope'), `#!/bin/sh\nexec "${process.execPath}" "${join(root, 'bin/dorascope.js')}" "$@"\n`);
  chmodSync(join(bin, 'dorascope'), 0o755);
  env = { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? '/usr/bin:/bin'}`, BASE: join(dir, 'base.safetensors'), RUNS: `${join(dir, 'ck1.safetensors')} ${join(dir, 'ck2.safetensors')}`, ANALYZE_OPTS: '--modules q_proj,v_proj' };
});

afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

function sh(shell: string, args: string[], extra: Record<string, string>): void {
  const r = spawnSync(shell, args, { env: { ...env, ...extra }, encoding: 'utf8', timeout: 60_000 });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
}

function combinedRows(out: string): number {
  const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { kind: string; shards: { n: number } };
  expect(manifest.kind).toBe('analysis');
  return readFileSync(join(out, 'decomposition.csv'), 'utf8').trim().split('\n').length - 1;
}

describe('examples/slurm/analyze-array.sbatch', () => {
  const script = join(root, 'examples/slurm/analyze-array.sbatch');

  it('asks Slurm for an array (sbatch --array=1-N) and a combine job after it (--dependency=afterok)', () => {
    const text = readFileSync(script, 'utf8');
    expect(text).toMatch(/sbatch --parsable --array=1-\$N /u);
    expect(text).toMatch(/sbatch --dependency=afterok:\$jobid .*analyze-array\.sbatch combine/u);
    expect(text).toContain('--shard "$K/$N"');
  });

  it('runs as array tasks 1..3 and then as the combine job', () => {
    const out = join(dir, 'slurm');
    for (const k of [1, 2, 3]) sh('bash', [script], { OUT: out, N: '3', SLURM_ARRAY_TASK_ID: String(k), SLURM_ARRAY_JOB_ID: '77' });
    sh('bash', [script, 'combine'], { OUT: out, N: '3' });
    expect(combinedRows(out)).toBe(4 * 2);
  });
});

describe('examples/kubernetes/analyze-indexed-job.yaml', () => {
  const yaml = readFileSync(join(root, 'examples/kubernetes/analyze-indexed-job.yaml'), 'utf8');
  const docs = yaml.split(/^---$/mu);
  /** The block scalars (`- |`) of a YAML document, dedented: the shell steps. */
  const scripts = (doc: string): string[] => [...doc.matchAll(/^( *)- \|\n((?:\1 +.*\n|\n)+)/gmu)].map((m) => {
    const lines = m[2]!.split('\n');
    const indent = Math.min(...lines.filter((l) => l.trim()).map((l) => /^ */u.exec(l)![0].length));
    return lines.map((l) => l.slice(indent)).join('\n');
  });
  const envOf = (doc: string, name: string): string[] => [...doc.matchAll(new RegExp(`- \\{ name: ${name}, value: "?([^"}]*?)"? \\}`, 'gu'))].map((m) => m[1]!);
  const job = docs.find((d) => /name: dorascope-analyze/u.test(d))!;
  const combineJob = docs.find((d) => /name: dorascope-combine/u.test(d))!;

  it('is an Indexed Job whose completions and parallelism are the SHARDS every step uses', () => {
    expect(job).toMatch(/^ {2}completionMode: Indexed$/mu);
    const n = envOf(job, 'SHARDS');
    expect(n).toEqual(['4']);
    expect(/^ {2}completions: (\d+)$/mu.exec(job)?.[1]).toBe(n[0]);
    expect(/^ {2}parallelism: (\d+)$/mu.exec(job)?.[1]).toBe(n[0]);
    expect(envOf(combineJob, 'SHARDS')).toEqual([n[0], n[0]]);
    // JOB_COMPLETION_INDEX counts from 0; shards from 1.
    expect(scripts(job)[0]).toContain('K=$((JOB_COMPLETION_INDEX + 1))');
  });

  it('runs as pods 0..3 of the Indexed Job, then the combine Job (its wait, then combine)', () => {
    const out = join(dir, 'k8s');
    const [analyze] = scripts(job);
    const [wait, combine] = scripts(combineJob);
    for (let i = 0; i < 4; i++) sh('/bin/sh', ['-c', analyze!], { OUT: out, SHARDS: '4', JOB_COMPLETION_INDEX: String(i) });
    sh('/bin/sh', ['-c', wait!], { OUT: out, SHARDS: '4' });
    sh('/bin/sh', ['-c', combine!], { OUT: out, SHARDS: '4' });
    expect(combinedRows(out)).toBe(4 * 2);
  });
});

/**
 * `analyze --shard K/N` and `combine`: four shards run as four separate CLI processes at once over a
 * small generated series, then combined, give tables and summary.json byte-identical to one unsharded
 * `analyze`; the split itself is checked on hand-worked byte counts; and `combine` refuses folders that
 * are not the N parts of one analysis, naming the folder and the field.
 * The CLI is spawned from dist/ (`npm test` builds first).
 */
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyze, analyzeShard } from '../../src/analysis/analyze.js';
import { combine } from '../../src/analysis/combine.js';
import { fingerprint, parseShard, shardRange, type ShardInfo } from '../../src/analysis/shard.js';
import { isDorascopeError } from '../../src/errors.js';
import { loadAnalysis } from '../../src/report/load.js';
import { runCli } from '../helpers/cli-process.js';
import { exactValues, writeAdapter, writeModel, type TestTensors } from '../helpers/models.js';
import { randn, rng } from '../helpers/random.js';

const BIN = join(resolve(dirname(fileURLToPath(import.meta.url)), '../..'), 'bin/dorascope.js');

/** Runs the CLI in a child process without blocking, so several run at once. */
function cliAsync(args: string[]): Promise<{ status: number | null; out: string; err: string }> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('error', rej);
    p.on('close', (status) => { clearTimeout(timer); res({ status, out, err }); });
  });
}

/** The rejection's DorascopeError code and details (field, folder). */
async function refusal(p: Promise<unknown>): Promise<{ code: string; field: unknown; folder: unknown; message: string }> {
  try {
    await p;
  } catch (e) {
    if (!isDorascopeError(e)) throw e;
    return { code: e.code, field: e.details?.['field'], folder: e.details?.['folder'], message: e.message };
  }
  throw new Error('expected a rejection');
}

let dir: string;
let base: string, run: string, single: string;
/** stdout of part 4 and of combine, both run with --json. */
let json: { part: string; combine: string };
const analyzeArgs = (): string[] => ['analyze', '--base', base, run, single, '--layers', '0-2', '--per-row', '--quiet'];
const N = 4;
const part = (k: number) => join(dir, 'parts', String(k));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dorascope-shard-'));
  const next = rng(12);
  // Three layers of q_proj (8×6, F32) and v_proj (4×6, BF16) plus an embedding the default selection skips.
  const model = (scale: number, from?: TestTensors): TestTensors => {
    const t: TestTensors = { 'model.embed_tokens.weight': { shape: [10, 6], data: exactValues(next, 60) } };
    for (let l = 0; l < 3; l++) {
      for (const [m, rows, dtype] of [['q_proj', 8, 'F32'], ['v_proj', 4, 'BF16']] as const) {
        const name = `model.layers.${l}.self_attn.${m}.weight`;
        const delta = exactValues(next, rows * 6, scale);
        const data = from ? from[name]!.data.map((v, i) => v + delta[i]!) : exactValues(next, rows * 6);
        t[name] = { shape: [rows, 6], data, dtype };
      }
    }
    return t;
  };
  const w0 = model(0);
  base = join(dir, 'base.safetensors');
  await writeModel(base, w0);
  // A Trainer run with three checkpoints, and one more checkpoint as a bare file: 4 checkpoints × 6 tensors = 24 rows.
  run = join(dir, 'runs', 'ft');
  for (const step of [10, 20, 30]) {
    const ck = join(run, `checkpoint-${step}`);
    mkdirSync(ck, { recursive: true });
    await writeModel(join(ck, 'model.safetensors'), model(step / 640, w0));
    writeFileSync(join(ck, 'trainer_state.json'), JSON.stringify({ global_step: step }));
  }
  single = join(dir, 'runs', 'other.safetensors');
  await writeModel(single, model(1 / 32, w0));

  const whole = await cliAsync([...analyzeArgs(), '--out', join(dir, 'whole')]);
  expect(whole.err).toBe('');
  expect(whole.status).toBe(0);
  // The four parts as four processes at once, as four machines would run them.
  const parts = await Promise.all([1, 2, 3, 4].map((k) => cliAsync([...analyzeArgs(), '--shard', `${k}/${N}`, '--out', part(k), ...(k === 4 ? ['--json'] : [])])));
  for (const p of parts) expect([p.status, p.err]).toEqual([0, '']);
  const combined = runCli(['combine', join(dir, 'combined'), part(3), part(1), part(4), part(2), '--quiet', '--json'], 60_000);
  expect([combined.status, combined.err]).toEqual([0, '']);
  json = { part: parts[3]!.out, combine: combined.out };
}, 180_000);

afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

const shardInfo = (k: number): ShardInfo => (JSON.parse(readFileSync(join(part(k), 'summary.json'), 'utf8')) as { shard: ShardInfo }).shard;

describe('analyze --shard K/N, then combine', () => {
  it('gives tables and summary.json byte-identical to one unsharded analyze', () => {
    for (const f of ['decomposition.arrow', 'decomposition.parquet', 'decomposition.csv', 'rows.arrow', 'rows.parquet', 'summary.json']) {
      const a = readFileSync(join(dir, 'whole', f)), b = readFileSync(join(dir, 'combined', f));
      expect(b.equals(a), f).toBe(true);
    }
    // Not a vacuous comparison: the analysis has every row and real statistics.
    expect(readFileSync(join(dir, 'whole', 'decomposition.csv'), 'utf8').trim().split('\n')).toHaveLength(1 + 24);
    const summary = JSON.parse(readFileSync(join(dir, 'combined', 'summary.json'), 'utf8')) as { runs: { run: string; overall: { n: number } }[] };
    expect(summary.runs.map((r) => [r.run, r.overall.n])).toEqual([['ft', 18], ['other', 6]]);
  });

  it('--json: a part says which it is; combine prints the statistics of all rows', () => {
    const p = JSON.parse(json.part) as { command: string; shard: { k: number; n: number; rows: { first: number; count: number }; fingerprint: string } };
    expect(p.command).toBe('analyze');
    expect(p.shard).toEqual({ k: 4, n: 4, rows: shardInfo(4).items, fingerprint: shardInfo(1).fingerprint });
    const c = JSON.parse(json.combine) as { command: string; files: string[]; runs: { run: string; overall: { n: number } }[] };
    expect(c.command).toBe('combine');
    expect(c.files.map((f) => f.slice(join(dir, 'combined').length + 1))).toEqual(expect.arrayContaining(['decomposition.arrow', 'rows.arrow', 'summary.json', 'manifest.json']));
    expect(c.runs.map((r) => [r.run, r.overall.n])).toEqual([['ft', 18], ['other', 6]]);
  });

  it('splits the rows into contiguous parts, cutting inside a tensor, so every part does work', () => {
    const infos = [1, 2, 3, 4].map(shardInfo);
    expect(infos.map((i) => [i.k, i.n])).toEqual([[1, 4], [2, 4], [3, 4], [4, 4]]);
    expect(new Set(infos.map((i) => i.fingerprint)).size).toBe(1);
    let next = 0;
    for (const i of infos) {
      expect(i.items.first).toBe(next);
      expect(i.items.count).toBeGreaterThan(0);
      next += i.items.count;
    }
    expect(next).toBe(24);
    // A cut between the checkpoints of one tensor (4 rows a tensor) exercises the partial-tensor path.
    expect(infos.some((i) => i.items.first % 4 !== 0)).toBe(true);
    // Each part's own table holds exactly its rows.
    for (const [k, i] of infos.entries()) {
      expect(readFileSync(join(part(k + 1), 'decomposition.csv'), 'utf8').trim().split('\n')).toHaveLength(1 + i.items.count);
    }
  });

  it('marks a shard folder as one, with no statistic, and the report refuses it', async () => {
    const manifest = JSON.parse(readFileSync(join(part(2), 'manifest.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest['kind']).toBe('analysis-shard');
    expect((manifest['shard'] as ShardInfo).k).toBe(2);
    const summary = JSON.parse(readFileSync(join(part(2), 'summary.json'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(summary).sort()).toEqual(['kind', 'runs', 'shard', 'tool', 'version']);
    expect(Object.keys((summary['runs'] as object[])[0]!).sort()).toEqual(['adapter', 'checkpoints', 'method', 'run']);
    expect(manifest['command']).toEqual(expect.arrayContaining(['--shard', '2/4']));
    await expect(loadAnalysis(part(2))).rejects.toMatchObject({ code: 'E_ANALYSIS_DIR' });
  });

  it("records the unsharded analysis's provenance in the combined manifest.json", () => {
    const whole = JSON.parse(readFileSync(join(dir, 'whole', 'manifest.json'), 'utf8')) as Record<string, unknown>;
    const combined = JSON.parse(readFileSync(join(dir, 'combined', 'manifest.json'), 'utf8')) as Record<string, unknown>;
    // created, command and timings describe the process that wrote the folder; `shards` only a combined one has.
    for (const key of ['created', 'command', 'timings']) { delete whole[key]; delete combined[key]; }
    const shards = combined['shards'] as { n: number; parts: { k: number }[] };
    delete combined['shards'];
    expect(combined).toEqual(whole);
    expect(shards.n).toBe(4);
    expect(shards.parts.map((p) => p.k)).toEqual([1, 2, 3, 4]);
  });
});

describe('more parts than rows', () => {
  it('empty parts are valid folders, and combining all 30 parts still gives the unsharded tables', async () => {
    const o = { base, runs: [{ path: run }, { path: single }], layers: [0, 1, 2], perRow: true, workers: 0 };
    const parts = Array.from({ length: 30 }, (_, i) => join(dir, 'thirty', String(i + 1)));
    const counts: number[] = [];
    for (const [i, out] of parts.entries()) counts.push((await analyzeShard({ ...o, out }, { k: i + 1, n: 30 })).rows.length);
    expect(counts.filter((c) => c === 0).length).toBeGreaterThanOrEqual(6);
    await combine({ out: join(dir, 'thirty-combined'), shards: parts });
    for (const f of ['decomposition.arrow', 'decomposition.parquet', 'decomposition.csv', 'rows.arrow', 'rows.parquet', 'summary.json']) {
      expect(readFileSync(join(dir, 'thirty-combined', f)).equals(readFileSync(join(dir, 'whole', f))), f).toBe(true);
    }
  }, 120_000);
});

describe('combine refuses folders that are not the N parts of one analysis', () => {
  const out = () => join(dir, 'refused');

  it('shards of a different analysis: names the folder and the field that differs', async () => {
    const other = join(dir, 'other-2');
    await analyzeShard({ base, runs: [{ path: run }, { path: single }], layers: [0, 1], out: other }, { k: 2, n: 4 });
    const r = await refusal(combine({ out: out(), shards: [part(1), other, part(3), part(4)] }));
    expect(r).toMatchObject({ code: 'E_SHARD', field: 'shard.analysis.options.layers', folder: other });
  });

  it('a K given twice, and a K missing', async () => {
    const dup = await refusal(combine({ out: out(), shards: [part(1), part(2), part(2), part(4)] }));
    expect(dup).toMatchObject({ code: 'E_SHARD', field: 'shard.k' });
    expect(dup.message).toContain('both shard 2 of 4');
    const missing = await refusal(combine({ out: out(), shards: [part(1), part(2), part(4)] }));
    expect(missing).toMatchObject({ code: 'E_SHARD', field: 'shard.k' });
    expect(missing.message).toContain('shard 3 of 4 is missing');
  });

  it('a folder that is not a shard (a whole analysis, an empty folder, no folder)', async () => {
    const whole = await refusal(combine({ out: out(), shards: [part(1), part(2), join(dir, 'whole'), part(4)] }));
    expect(whole).toMatchObject({ code: 'E_SHARD', field: 'kind', folder: join(dir, 'whole') });
    const empty = join(dir, 'empty');
    mkdirSync(empty, { recursive: true });
    expect(await refusal(combine({ out: out(), shards: [empty] }))).toMatchObject({ code: 'E_SHARD', field: 'manifest.json', folder: empty });
    expect(await refusal(combine({ out: out(), shards: [join(dir, 'no-such-part')] }))).toMatchObject({ code: 'E_SHARD', field: '(folder)' });
  });

  it('a shard whose summary.json was edited, parts of another dorascope version, a table from another shard', async () => {
    const edited = join(dir, 'edited-4');
    cpSync(part(4), edited, { recursive: true });
    const s = JSON.parse(readFileSync(join(edited, 'summary.json'), 'utf8')) as { shard: ShardInfo & { analysis: { base: string } } };
    s.shard.analysis.base = 'elsewhere.safetensors';
    writeFileSync(join(edited, 'summary.json'), JSON.stringify(s));
    expect(await refusal(combine({ out: out(), shards: [part(1), part(2), part(3), edited] }))).toMatchObject({ code: 'E_SHARD', field: 'shard.fingerprint' });
    // The same damage to every part's runs (outside the fingerprint) is a typed refusal naming the field, not a crash
    // (the parts are read concurrently: any of them may be the one named).
    const damaged = [1, 2, 3, 4].map((k) => {
      const d = join(dir, `damaged-${k}`);
      cpSync(part(k), d, { recursive: true });
      const sum = JSON.parse(readFileSync(join(d, 'summary.json'), 'utf8')) as { runs: { checkpoints: unknown[] }[] };
      sum.runs[0]!.checkpoints[0] = { name: 7 };
      writeFileSync(join(d, 'summary.json'), JSON.stringify(sum));
      return d;
    });
    expect(await refusal(combine({ out: out(), shards: damaged }))).toMatchObject({ code: 'E_SHARD', field: 'runs[0].checkpoints[0]', folder: expect.stringMatching(/damaged-[1-4]$/u) });
    // Parts another dorascope version wrote (fingerprints consistent, as that version would write them).
    const older = [1, 2, 3, 4].map((k) => {
      const d = join(dir, `older-${k}`);
      cpSync(part(k), d, { recursive: true });
      const sum = JSON.parse(readFileSync(join(d, 'summary.json'), 'utf8')) as { shard: ShardInfo & { analysis: { version: string }; fingerprint: string } };
      sum.shard.analysis.version = '0.0.1';
      sum.shard.fingerprint = fingerprint(sum.shard.analysis);
      writeFileSync(join(d, 'summary.json'), JSON.stringify(sum));
      return d;
    });
    expect(await refusal(combine({ out: out(), shards: older }))).toMatchObject({ code: 'E_SHARD', field: 'shard.analysis.version' });
    const swapped = join(dir, 'swapped-4');
    cpSync(part(4), swapped, { recursive: true });
    cpSync(join(part(3), 'decomposition.arrow'), join(swapped, 'decomposition.arrow'));
    const r = await refusal(combine({ out: out(), shards: [part(1), part(2), part(3), swapped] }));
    expect(r).toMatchObject({ code: 'E_SHARD', field: 'decomposition.arrow' });
  });

  it('never writes into a shard, and --shard K/N outside 1 ≤ K ≤ N ≤ 10000 is a usage error', async () => {
    expect(await refusal(combine({ out: join(part(1), 'sub'), shards: [part(1), part(2), part(3), part(4)] }))).toMatchObject({ code: 'E_OUTPUT_OVERLAP' });
    for (const bad of ['0/4', '5/4', '1/0', '1/10001', 'x', '2', '1/2/3', '-1/4', '1.5/4']) {
      expect(() => parseShard(bad), bad).toThrow(expect.objectContaining({ code: 'E_USAGE' }));
    }
    expect(parseShard('10000/10000')).toEqual({ k: 10000, n: 10000 });
    const cli = runCli([...analyzeArgs(), '--shard', '0/4', '--out', join(dir, 'never')]);
    expect(cli.status).toBe(2);
    expect(cli.err).toContain('[E_USAGE]');
    expect(cli.err).toContain('--shard "0/4"');
  });
});

describe('shardRange', () => {
  const ranges = (bytes: number[], n: number, items = bytes.map(() => 1)) =>
    Array.from({ length: n }, (_, i) => shardRange(bytes.map((b, j) => ({ bytes: b, items: items[j]! })), { k: i + 1, n }));

  it('cuts where the bytes are split evenly, not where the item count is', () => {
    // Weights are bytes + 1: 301, 101, 101, 101 (total 604); midpoints 150.5, 351.5, 452.5, 553.5 → shards 1, 2, 2, 2 of 2.
    expect(ranges([300, 100, 100, 100], 2)).toEqual([{ first: 0, end: 1 }, { first: 1, end: 4 }]);
    // Units of several items stay whole: items 0-2 are one unit.
    expect(ranges([300, 100, 100], 2, [3, 1, 1])).toEqual([{ first: 0, end: 3 }, { first: 3, end: 5 }]);
  });

  it('covers every item once with more shards than units (some parts empty)', () => {
    const r = ranges([10, 10], 5);
    expect(r.reduce((a, x) => a + x.end - x.first, 0)).toBe(2);
    for (let i = 1; i < r.length; i++) expect(r[i]!.first).toBe(r[i - 1]!.end);
    expect(r[0]!.first).toBe(0);
    expect(r.at(-1)!.end).toBe(2);
  });
});

describe('shards of an adapter series, with workers', () => {
  /** Full checkpoints (one with a NaN) and a DoRA run whose adapters change q_proj and v_proj but not up_proj. */
  async function fixture(): Promise<{ base: string; runs: { path: string; label?: string }[] }> {
    const d = join(dir, 'adapters');
    const next = rng(31);
    const names: [string, number[]][] = [];
    for (let l = 0; l < 3; l++) {
      names.push([`model.layers.${l}.self_attn.q_proj.weight`, [24, 16]], [`model.layers.${l}.self_attn.v_proj.weight`, [24, 16]], [`model.layers.${l}.mlp.up_proj.weight`, [40, 16]]);
    }
    const w0 = Object.fromEntries(names.map(([n, s]) => [n, { shape: s, data: randn(next, s[0]! * s[1]!, 0.05), dtype: 'BF16' as const }]));
    await writeModel(join(d, 'base.safetensors'), w0);
    for (const c of [1, 2]) {
      const ck = Object.fromEntries(names.map(([n, s]) => [n, { shape: s, data: w0[n]!.data.map((v) => v + (next() - 0.5) * 0.01 * c) }]));
      if (c === 2) ck[names[4]![0]]!.data[3] = NaN;
      await writeModel(join(d, `ck${c}.safetensors`), ck);
    }
    for (const step of [5, 10]) {
      const t: TestTensors = {};
      for (const [n] of names.filter(([x]) => /q_proj|v_proj/u.test(x))) {
        const m = `base_model.model.${n.replace(/\.weight$/u, '')}`;
        t[`${m}.lora_A.weight`] = { shape: [4, 16], data: randn(next, 64, 0.25) };
        t[`${m}.lora_B.weight`] = { shape: [24, 4], data: randn(next, 96, 0.01 * step) };
        t[`${m}.lora_magnitude_vector`] = { shape: [24], data: randn(next, 24, 0.05).map((v) => 0.2 + v) };
      }
      await writeAdapter(join(d, 'dora', `checkpoint-${step}`), { r: 4, lora_alpha: 8, use_dora: true, target_modules: ['q_proj', 'v_proj'] }, t);
    }
    // The DoRA run between the two full checkpoints, so a cut inside an adapted tensor would fall among full checkpoints too.
    return { base: join(d, 'base.safetensors'), runs: [{ path: join(d, 'ck1.safetensors') }, { path: join(d, 'dora'), label: 'dora' }, { path: join(d, 'ck2.safetensors') }] };
  }

  it('concatenated parts equal the whole for every N; a tensor an adapter changes is never cut', async () => {
    const f = await fixture();
    const whole = await analyze({ ...f, write: false, workers: 0 });
    expect(whole.rows).toHaveLength(9 * 4);
    expect(whole.rows.some((r) => r.flag === 'non_finite')).toBe(true);
    const cuts = new Set<number>();
    for (const n of [3, 5, 7]) {
      const parts = [];
      for (let k = 1; k <= n; k++) parts.push(await analyzeShard({ ...f, write: false, workers: k % 2 === 0 ? 2 : 0 }, { k, n }));
      expect(parts.flatMap((p) => p.rows), `N = ${n}`).toEqual(whole.rows);
      for (const p of parts.slice(1)) {
        const first = p.summary.shard.items.first;
        if (first % 4 !== 0) cuts.add(first);
        // Rows 4t…4t+3 are tensor t: only up_proj (every third tensor, no adapter on it) may be cut.
        if (first % 4 !== 0) expect(whole.rows[first]!.module, `N = ${n}, cut at row ${first}`).toBe('up_proj');
      }
    }
    // The check above ran on real cuts inside a tensor.
    expect(cuts.size).toBeGreaterThan(0);
  });

  it('combined folders of an adapter series are byte-identical to the unsharded folder', async () => {
    const f = await fixture();
    await analyze({ ...f, out: join(dir, 'adapters', 'whole') });
    const parts = [1, 2, 3].map((k) => join(dir, 'adapters', `part-${k}`));
    for (const [i, out] of parts.entries()) await analyzeShard({ ...f, out, workers: 2 }, { k: i + 1, n: 3 });
    await combine({ out: join(dir, 'adapters', 'combined'), shards: parts });
    for (const file of ['decomposition.arrow', 'decomposition.parquet', 'decomposition.csv', 'summary.json']) {
      expect(readFileSync(join(dir, 'adapters', 'combined', file)).equals(readFileSync(join(dir, 'adapters', 'whole', file))), file).toBe(true);
    }
  });
});

/**
 * No command writes over, into or around its inputs, and none replaces what is not its own
 * earlier output without --force (src/io/output-guard.ts). Every refusal is checked to have
 * written nothing: the bytes of every file under the test folder are hashed before and after.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDorascopeError } from '../../src/errors.js';
import { realPathOf } from '../../src/io/output-guard.js';
import { exactValues, writeAdapter, writeModel } from '../helpers/models.js';
import { rng } from '../helpers/random.js';
import { runQuiet as run } from '../helpers/cli-quiet.js';

let root: string;
const P = 'base_model.model.model.layers.0.self_attn.';
const NAMES = ['model.layers.0.self_attn.q_proj.weight', 'model.layers.0.self_attn.v_proj.weight'];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ds-guard-'));
  const next = rng(11);
  mkdirSync(join(root, 'base'));
  await writeModel(join(root, 'base', 'model.safetensors'), Object.fromEntries(NAMES.map((n) => [n, { shape: [4, 4], data: exactValues(next, 16) }])));
  writeFileSync(join(root, 'base', 'config.json'), '{"model_type":"llama"}\n');
  await writeAdapter(join(root, 'adapter'), { r: 2, lora_alpha: 4, target_modules: ['q_proj'] }, {
    [`${P}q_proj.lora_A.weight`]: { shape: [2, 4], data: exactValues(next, 8) },
    [`${P}q_proj.lora_B.weight`]: { shape: [4, 2], data: exactValues(next, 8) },
  });
  await writeModel(join(root, 'ck.safetensors'), Object.fromEntries(NAMES.map((n) => [n, { shape: [4, 4], data: exactValues(next, 16) }])));
});
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

/** Every path under `dir` (links not followed) with the SHA-256 of each file's bytes. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name), rel = relative(dir, p);
      if (e.isDirectory()) { out[`${rel}/`] = 'dir'; walk(p); }
      else if (e.isSymbolicLink()) out[rel] = 'link';
      else out[rel] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

const merge = (out: string, ...more: string[]) => run(['merge', '--base', join(root, 'base'), '--adapter', join(root, 'adapter'), '--out', out, ...more]);

describe('an output never overlaps an input', () => {
  const cases: Array<[string, () => string]> = [
    ['--out B (the base folder itself)', () => join(root, 'base')],
    ['--out A (the adapter folder)', () => join(root, 'adapter')],
    ['--out inside the base', () => join(root, 'base', 'merged')],
    ['--out containing both inputs', () => root],
    ['--out A/../B (a .. path)', () => `${join(root, 'adapter')}/../base`],
    ['--out a symlink to the base', () => { const l = join(root, 'link-to-base'); if (!existsSync(l)) symlinkSync(join(root, 'base'), l); return l; }],
    ['--out below a symlink into the adapter', () => { const l = join(root, 'link-to-adapter'); if (!existsSync(l)) symlinkSync(join(root, 'adapter'), l); return join(l, 'new', 'deeper'); }],
    ['--out a dangling symlink pointing into the base', () => { const l = join(root, 'dangling'); if (!existsSync(l)) symlinkSync(join(root, 'base', 'not-yet'), l); return l; }],
  ];
  for (const [name, out] of cases) {
    it(`merge ${name}: E_OUTPUT_OVERLAP, nothing written`, async () => {
      const o = out();
      const before = snapshot(root);
      const r = await merge(o);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('[E_OUTPUT_OVERLAP]');
      expect(r.stderr).toContain(JSON.stringify(o));
      expect(snapshot(root)).toEqual(before);
      // --force replaces outputs of another kind, never inputs.
      expect((await merge(o, '--force')).code).toBe(1);
      expect(snapshot(root)).toEqual(before);
    });
  }

  it('analyze --out inside a run, the base or around them: refused, nothing written', async () => {
    for (const o of [join(root, 'ck.safetensors'), join(root, 'base', 'analysis'), root, `${root}/x/../base`]) {
      const before = snapshot(root);
      const r = await run(['analyze', '--base', join(root, 'base'), join(root, 'ck.safetensors'), '--out', o, '--quiet']);
      expect(r.code, o).toBe(1);
      expect(r.stderr).toContain('[E_OUTPUT_OVERLAP]');
      expect(snapshot(root)).toEqual(before);
    }
  });

  it('report --out over a file of its analysis folder is refused; DIR/report.html beside them is fine', async () => {
    const an = join(root, 'an-report');
    expect((await run(['analyze', '--base', join(root, 'base'), join(root, 'ck.safetensors'), '--out', an, '--quiet'])).code).toBe(0);
    for (const f of ['summary.json', 'decomposition.arrow', 'manifest.json']) {
      const before = snapshot(root);
      const r = await run(['report', an, '--out', join(an, f)]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('[E_OUTPUT_OVERLAP]');
      expect(snapshot(root)).toEqual(before);
    }
    // Image exports may not go into (or around) the analysis folder either; refused before the page is written.
    for (const args of [['--png', an], ['--svg', join(an, 'svg')], ['--png', root]]) {
      const before = snapshot(root);
      const r = await run(['report', an, ...args]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`[E_OUTPUT_OVERLAP]: ${args[0]}`);
      expect(snapshot(root)).toEqual(before);
    }
    expect((await run(['report', an])).code).toBe(0);
    expect(existsSync(join(an, 'report.html'))).toBe(true);
    // Rendering again replaces our own page without --force.
    expect((await run(['report', an])).code).toBe(0);
  });

  it('train --out inside --init, and reproduce --out/--work around --base: refused before anything is written', async () => {
    const { train } = await import('../../src/train/train.js');
    const { reproduce } = await import('../../src/reproduce/reproduce.js');
    const before = snapshot(root);
    await expect(train({ method: 'lora', steps: 1, init: join(root, 'base'), out: join(root, 'base', 'run') }))
      .rejects.toSatisfy((e) => isDorascopeError(e, 'E_OUTPUT_OVERLAP') && e.message.includes('--init'));
    await expect(reproduce({ out: root, quick: true, base: join(root, 'base'), log: () => undefined, engine: {} as never }))
      .rejects.toSatisfy((e) => isDorascopeError(e, 'E_OUTPUT_OVERLAP'));
    await expect(reproduce({ out: join(root, 'repro'), work: join(root, 'base', 'ck'), quick: true, base: join(root, 'base'), log: () => undefined, engine: {} as never }))
      .rejects.toSatisfy((e) => isDorascopeError(e, 'E_OUTPUT_OVERLAP') && e.message.startsWith('--work'));
    expect(snapshot(root)).toEqual(before);
  });

  it('train: a fresh run into a non-empty folder of other files, or onto a file, is refused; --force writes it', async () => {
    const { train } = await import('../../src/train/train.js');
    const foreign = join(root, 'notes');
    mkdirSync(foreign, { recursive: true });
    writeFileSync(join(foreign, 'thesis.tex'), 'mine\n');
    const file = join(root, 'a-file');
    writeFileSync(file, 'x\n');
    const before = snapshot(root);
    const tiny = { method: 'full' as const, steps: 1, backend: 'cpu' as const, config: { num_hidden_layers: 1, hidden_size: 8, intermediate_size: 16, num_attention_heads: 2 }, batchSize: 2, contextLength: 8 };
    await expect(train({ ...tiny, out: foreign })).rejects.toSatisfy((e) => isDorascopeError(e, 'E_OUTPUT_EXISTS') && e.message.includes('"thesis.tex"') && e.message.includes('--force'));
    await expect(train({ ...tiny, out: file })).rejects.toSatisfy((e) => isDorascopeError(e, 'E_OUTPUT_EXISTS') && e.message.includes('existing file'));
    expect(snapshot(root)).toEqual(before);
    await train({ ...tiny, out: foreign, force: true });
    expect(readdirSync(foreign)).toEqual(expect.arrayContaining(['thesis.tex', 'checkpoint-1']));
    expect(readFileSync(join(foreign, 'thesis.tex'), 'utf8')).toBe('mine\n');
  });

  it('realPathOf folds .. and follows links through the deepest existing ancestor', () => {
    expect(realPathOf(`${root}/adapter/../base/x/y`)).toBe(join(realPathOf(root), 'base', 'x', 'y'));
    expect(realPathOf(join(root, 'link-to-adapter', 'a'))).toBe(join(realPathOf(root), 'adapter', 'a'));
  });
});

describe('an existing output is replaced only when it is ours, of the same kind, or with --force', () => {
  it('merge --out EXISTING_FILE: E_OUTPUT_EXISTS naming the file (no "EEXIST EEXIST"); --force replaces it', async () => {
    const f = join(root, 'a-file');
    writeFileSync(f, 'precious');
    const before = snapshot(root);
    const r = await merge(f);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('[E_OUTPUT_EXISTS]');
    expect(r.stderr).toContain(`${JSON.stringify(f)} is an existing file`);
    expect(r.stderr).not.toMatch(/EEXIST/u);
    expect(snapshot(root)).toEqual(before);
    expect((await merge(f, '--force')).code).toBe(0);
    expect(statSync(f).isDirectory()).toBe(true);
    expect(readdirSync(f).sort()).toEqual(['config.json', 'manifest.json', 'model.safetensors']);
  });

  it('a folder of other files is refused without --force, replaced whole with it', async () => {
    const d = join(root, 'someone-elses');
    mkdirSync(d);
    writeFileSync(join(d, 'notes.txt'), 'keep me');
    const before = snapshot(root);
    for (const args of [['merge', '--base', join(root, 'base'), '--adapter', join(root, 'adapter'), '--out', d],
      ['analyze', '--base', join(root, 'base'), join(root, 'ck.safetensors'), '--out', d, '--quiet']]) {
      const r = await run(args);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('[E_OUTPUT_EXISTS]');
      expect(r.stderr).toContain('"notes.txt"');
      expect(snapshot(root)).toEqual(before);
    }
    expect((await merge(d, '--force')).code).toBe(0);
    expect(readdirSync(d).sort()).toEqual(['config.json', 'manifest.json', 'model.safetensors']);
  });

  it('an earlier merge is replaced by a merge, but not by an analysis (another kind) without --force', async () => {
    const d = join(root, 'merged');
    expect((await merge(d)).code).toBe(0);
    expect(JSON.parse(readFileSync(join(d, 'manifest.json'), 'utf8'))).toMatchObject({ tool: 'dorascope', kind: 'merge' });
    expect((await merge(d)).code).toBe(0);
    const before = snapshot(root);
    const r = await run(['analyze', '--base', join(root, 'base'), join(root, 'ck.safetensors'), '--out', d, '--quiet']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('holds a dorascope merge result, not analysis');
    expect(snapshot(root)).toEqual(before);
  });

  it('report --out over an HTML file that is not a dorascope report needs --force', async () => {
    const an = join(root, 'an-html');
    expect((await run(['analyze', '--base', join(root, 'base'), join(root, 'ck.safetensors'), '--out', an, '--quiet'])).code).toBe(0);
    const page = join(root, 'mine.html');
    writeFileSync(page, '<html>my own page</html>');
    const r = await run(['report', an, '--out', page]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('[E_OUTPUT_EXISTS]');
    expect(readFileSync(page, 'utf8')).toBe('<html>my own page</html>');
    expect((await run(['report', an, '--out', page, '--force'])).code).toBe(0);
    expect(readFileSync(page, 'utf8')).toContain('<meta name="generator" content="dorascope');
    // A page from before the generator tag (the published reports/full/index.html) is recognised as ours by its script.
    const legacy = join(root, 'legacy.html');
    writeFileSync(legacy, readFileSync('reports/full/index.html'));
    expect((await run(['report', an, '--out', legacy])).code).toBe(0);
  });
});

/**
 * User-supplied regular expressions (PEFT rank_pattern / alpha_pattern keys, target_modules as a
 * string, analyze --modules-regex) keep PEFT's matching rules but run on a linear-time engine:
 * a catastrophically backtracking pattern finishes, and an invalid or unsupported pattern is a
 * typed error (E_ADAPTER_CONFIG in a config, E_USAGE on the command line).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAdapterConfig } from '../../src/io/peft/adapter-config.js';
import { patternKey, targetMatches } from '../../src/io/peft/patterns.js';
import { writeAdapter, writeModel } from '../helpers/models.js';
import { runCli } from '../helpers/cli-process.js';
import { thrown } from '../helpers/rejection.js';

const root = mkdtempSync(join(tmpdir(), 'dorascope-regex-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const EVIL = '(.+)+X';

describe('PEFT semantics on the linear-time engine', () => {
  it('get_pattern_key: (.*\\.)?(KEY)$ anchored at both ends, the first key in file order wins', () => {
    const keys = ['layers.0.self_attn.q_proj', 'q_proj', 'experts.*.w1'];
    expect(patternKey(keys, 'model.layers.0.self_attn.q_proj')).toBe('layers.0.self_attn.q_proj');
    expect(patternKey(keys, 'model.layers.10.self_attn.q_proj')).toBe('q_proj'); // "layers.0." must start a segment
    expect(patternKey(keys, 'model.layers.1.self_attn.q_proj_extra')).toBeUndefined(); // anchored at the end
    expect(patternKey(keys, 'model.xq_proj')).toBeUndefined(); // the key starts after a dot or at the start
    expect(patternKey(keys, 'moe.experts.3.w1')).toBe('experts.*.w1'); // the key is a raw regex fragment
    expect(patternKey(['q_proj', 'layers.0.self_attn.q_proj'], 'model.layers.0.self_attn.q_proj')).toBe('q_proj');
  });

  it('target_modules as a string is re.fullmatch', () => {
    expect(targetMatches('.*\\.(q|v)_proj', 'model.layers.0.self_attn.q_proj')).toBe(true);
    expect(targetMatches('.*\\.(q|v)_proj', 'model.layers.0.self_attn.k_proj')).toBe(false);
    expect(targetMatches('q_proj', 'model.layers.0.self_attn.q_proj')).toBe(false); // a string must match the whole path
  });

  it(`a catastrophic pattern ${EVIL} against a 100,000-character name finishes under 2 s`, () => {
    const name = `${'a.'.repeat(50_000)}b`;
    const t0 = performance.now();
    expect(patternKey([EVIL], name)).toBeUndefined();
    expect(targetMatches(EVIL, name)).toBe(false);
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});

describe('invalid or unsupported patterns are typed errors', () => {
  it('in adapter_config.json: E_ADAPTER_CONFIG at parse, naming the file, the field and the key', () => {
    for (const [field, value] of [
      ['rank_pattern', { 'q_proj(': 4 }],
      ['alpha_pattern', { 'x[': 2 }],
      ['rank_pattern', { '(?=q)q_proj': 4 }], // lookahead: not in RE2
      ['rank_pattern', { '(a)\\1': 4 }], // backreference: not in RE2
    ] as const) {
      const e = thrown(() => parseAdapterConfig({ r: 8, lora_alpha: 16, [field]: value }, 'ad/adapter_config.json'));
      expect(e.code).toBe('E_ADAPTER_CONFIG');
      expect(e.message).toContain('ad/adapter_config.json');
      expect(e.message).toContain(field);
      expect(e.message).toContain(JSON.stringify(Object.keys(value)[0]));
    }
    const t = thrown(() => parseAdapterConfig({ r: 8, lora_alpha: 16, target_modules: '(q|v' }, 'ad/adapter_config.json'));
    expect(t.code).toBe('E_ADAPTER_CONFIG');
    expect(t.message).toContain('target_modules');
  });

  it('--modules-regex: an invalid pattern is E_USAGE (exit 2), not an internal error', async () => {
    const base = join(root, 'base.safetensors');
    await writeModel(base, { 'model.layers.0.mlp.up_proj.weight': { shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) } });
    const r = runCli(['analyze', '--base', base, base, '--modules-regex', '(q|v', '--out', join(root, 'o1')]);
    expect(r.err).toContain('[E_USAGE]');
    expect(r.err).toContain('--modules-regex');
    expect(r.status).toBe(2);
  });
});

describe('catastrophic patterns do not hang the commands', () => {
  it(`inspect of an adapter whose rank_pattern key is ${EVIL} finishes (child process, 20 s limit)`, async () => {
    const dir = join(root, 'evil-adapter');
    // A long module path: a backtracking engine needs ~2^len steps for (.+)+X on it.
    const mod = `model.layers.0.self_attn.${'q'.repeat(40)}`;
    await writeAdapter(dir, { r: 1, lora_alpha: 1, target_modules: [mod.split('.').pop()], rank_pattern: { [EVIL]: 2 }, alpha_pattern: { [EVIL]: 3 } }, {
      [`base_model.model.${mod}.lora_A.weight`]: { shape: [1, 2], data: new Float32Array([1, 0]) },
      [`base_model.model.${mod}.lora_B.weight`]: { shape: [2, 1], data: new Float32Array([0, 1]) },
    });
    const r = runCli(['inspect', dir, '--json'], 20_000);
    expect(r.signal, `inspect hung (killed after ${r.ms} ms)`).toBeNull();
    expect(r.status).toBe(0);
    expect(JSON.parse(r.out).adapter.modules[0].r).toBe(1); // the key does not match: the default rank
  });

  it(`analyze --modules-regex '${EVIL}' over long tensor names finishes (child process, 20 s limit)`, async () => {
    const base = join(root, 'long-names.safetensors');
    const t = { shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) };
    await writeModel(base, { [`model.layers.0.mlp.${'a'.repeat(40)}.weight`]: t, 'model.layers.0.mlp.X.weight': t });
    const r = runCli(['analyze', '--base', base, base, '--modules-regex', EVIL, '--quiet', '--out', join(root, 'o2')], 20_000);
    expect(r.signal, `analyze hung (killed after ${r.ms} ms)`).toBeNull();
    expect(r.err).toBe('');
    expect(r.status).toBe(0);
  });
});

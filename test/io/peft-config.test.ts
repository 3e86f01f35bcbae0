import { describe, expect, it } from 'vitest';
import { parseAdapterConfig } from '../../src/io/peft/adapter-config.js';
import { loraScaling } from '../../src/methods/lora.js';
import { parseAdapterKey } from '../../src/io/peft/keys.js';
import { patternKey, patternValue, targetMatches } from '../../src/io/peft/patterns.js';
import { isDorascopeError } from '../../src/errors.js';

function errorOf(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('adapter_config.json', () => {
  const base = { peft_type: 'LORA', r: 8, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'], some_future_field: { x: 1 } };

  it('reads the fields that change weights, ignores unknown ones, applies defaults', () => {
    const c = parseAdapterConfig(base, 'a/adapter_config.json');
    expect(c).toMatchObject({ r: 8, loraAlpha: 16, useRslora: false, useDora: false, fanInFanOut: false, rankPattern: {}, alphaPattern: {}, targetModules: ['q_proj', 'v_proj'], modulesToSave: null });
  });

  it('accepts a float alpha and a regex-string target_modules', () => {
    const c = parseAdapterConfig({ ...base, lora_alpha: 12.5, target_modules: '.*\\.(q|v)_proj', use_dora: true }, 'x');
    expect(c.loraAlpha).toBe(12.5);
    expect(c.targetModules).toBe('.*\\.(q|v)_proj');
    expect(c.useDora).toBe(true);
  });

  it('names the file and the field when a required field is missing or wrong', () => {
    const { r: _r, ...noR } = base;
    const e1 = errorOf(() => parseAdapterConfig(noR, '/runs/a/adapter_config.json'));
    expect(isDorascopeError(e1, 'E_ADAPTER_CONFIG')).toBe(true);
    expect((e1 as Error).message).toContain('/runs/a/adapter_config.json');
    expect((e1 as Error).message).toContain('"r"');
    const e2 = errorOf(() => parseAdapterConfig({ ...base, lora_alpha: 'sixteen' }, 'c.json'));
    expect((e2 as Error).message).toMatch(/lora_alpha.*sixteen/u);
    const e3 = errorOf(() => parseAdapterConfig({ ...base, rank_pattern: { q_proj: 2.5 } }, 'c.json'));
    expect((e3 as Error).message).toContain('rank_pattern.q_proj');
    const e4 = errorOf(() => parseAdapterConfig({ ...base, peft_type: 'IA3' }, 'c.json'));
    expect(isDorascopeError(e4, 'E_ADAPTER_CONFIG')).toBe(true);
  });

  it('scaling is alpha/r, or alpha/sqrt(r) with rsLoRA', () => {
    expect(loraScaling(8, 16, false)).toBe(2);
    expect(loraScaling(64, 16, true)).toBe(2);
    expect(loraScaling(4, 12.5, false)).toBe(3.125);
  });
});

describe('PEFT patterns', () => {
  it('rank_pattern: the first key in order whose (.*\\.)?(KEY)$ matches the module path', () => {
    const pat = { q_proj: 4, 'layers.0.self_attn.q_proj': 16 };
    // both keys match layer 0's q_proj; the first in order wins (PEFT get_pattern_key)
    expect(patternValue(pat, 'model.layers.0.self_attn.q_proj', 8)).toBe(4);
    expect(patternValue({ 'layers.0.self_attn.q_proj': 16, q_proj: 4 }, 'model.layers.0.self_attn.q_proj', 8)).toBe(16);
    expect(patternValue({ 'layers.0.self_attn.q_proj': 16, q_proj: 4 }, 'model.layers.10.self_attn.q_proj', 8)).toBe(4);
    // a key must match whole dotted segments at the end: "proj" does not match "q_proj"
    expect(patternValue({ proj: 2 }, 'model.layers.0.self_attn.q_proj', 8)).toBe(8);
    // keys are regexes
    expect(patternKey(['experts.*.w1'], 'model.layers.3.experts.5.w1')).toBe('experts.*.w1');
    // and a key equal to the whole path matches (the optional prefix group)
    expect(patternValue({ 'model.layers.1.mlp.up_proj': 3 }, 'model.layers.1.mlp.up_proj', 8)).toBe(3);
  });

  it('target_modules: list entries match a path suffix; a string must match the whole path', () => {
    expect(targetMatches(['q_proj'], 'model.layers.0.self_attn.q_proj')).toBe(true);
    expect(targetMatches(['proj'], 'model.layers.0.self_attn.q_proj')).toBe(false);
    expect(targetMatches('.*\\.(q|v)_proj', 'model.layers.0.self_attn.v_proj')).toBe(true);
    expect(targetMatches('(q|v)_proj', 'model.layers.0.self_attn.v_proj')).toBe(false);
    expect(targetMatches(null, 'x')).toBe(false);
  });

  it('an invalid pattern regex is an E_ADAPTER_CONFIG error, not a crash', () => {
    expect(isDorascopeError(errorOf(() => patternKey(['(unclosed'], 'a.b')), 'E_ADAPTER_CONFIG')).toBe(true);
  });
});

describe('adapter tensor names', () => {
  it('maps PEFT keys (with or without the adapter name) to module and role', () => {
    const k = (n: string) => {
      const p = parseAdapterKey(n);
      return [p.role, p.module, p.embedding, p.nvlabs, p.target];
    };
    expect(k('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')).toEqual(['A', 'model.layers.0.self_attn.q_proj', false, false, 'model.layers.0.self_attn.q_proj.weight']);
    expect(k('base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight')).toEqual(['B', 'model.layers.0.self_attn.q_proj', false, false, 'model.layers.0.self_attn.q_proj.weight']);
    expect(k('base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector')).toEqual(['magnitude', 'model.layers.0.self_attn.q_proj', false, false, 'model.layers.0.self_attn.q_proj.weight']);
    expect(k('base_model.model.x.lora_magnitude_vector.default.weight')[0]).toBe('magnitude');
    expect(k('base_model.model.model.embed_tokens.lora_embedding_A')).toEqual(['A', 'model.embed_tokens', true, false, 'model.embed_tokens.weight']);
    expect(k('base_model.model.model.embed_tokens.lora_embedding_B.default')).toEqual(['B', 'model.embed_tokens', true, false, 'model.embed_tokens.weight']);
    expect(k('base_model.model.model.layers.0.self_attn.q_proj.weight_m_wdecomp.weight')).toEqual(['magnitude', 'model.layers.0.self_attn.q_proj', false, true, 'model.layers.0.self_attn.q_proj.weight']);
    expect(k('base_model.model.score.modules_to_save.default.weight')).toEqual(['replace', 'score', false, false, 'score.weight']);
    expect(k('base_model.model.lm_head.weight')).toEqual(['replace', 'lm_head', false, false, 'lm_head.weight']);
  });
});

/**
 * Every number a command takes is checked at the edge (range, whole number, divisibility,
 * finiteness) with the allowed range in the message; worker counts are clamped to the cores.
 * Values that used to be accepted and then allocate without bound run in a child process with
 * a time limit, so a regression fails the test instead of taking the runner down.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAX_LAYER_INDEX, parseLayers, workerCount } from '../../src/analysis/analyze.js';
import { parseAdapterConfig } from '../../src/io/peft/adapter-config.js';
import { runCli } from '../helpers/cli-process.js';
import { thrown } from '../helpers/rejection.js';

describe('train: every numeric option is bounded before any work starts', () => {
  // [arguments, the option the message must name, a piece of the allowed range it must state]
  const cases: [string[], string, string][] = [
    [['--d-model', '1e6'], '--d-model', '≤ 4096'],
    [['-r', '1e9'], '--r', '≤ 4096'],
    [['-r', '0'], '--r', '≥ 1'],
    [['--steps', '1e12'], '--steps', '≤ 10000000'],
    [['--steps', '2.5'], '--steps', 'whole number'],
    [['--heads', '3', '--d-model', '16'], '--d-model 16 with --heads 3', 'multiple of the heads'],
    [['--heads', '4', '--d-model', '12'], '--d-model 12 with --heads 4', 'even head size'],
    [['-r', '128', '--d-model', '64'], '-r 128', 'd-model 64'],
    [['--lr', 'abc'], '--lr not a number', '> 0'],
    [['--lr', '0'], '--lr', '> 0'],
    [['--batch-size', '-1'], '--batch-size', '≥ 1'],
    [['--context-length', '1e9'], '--context-length', '≤ 8192'],
    [['--layers', '0'], '--layers', '≥ 1'],
    [['--seed', '-1'], '--seed', '≥ 0'],
    [['--alpha', 'Infinity'], '--alpha', 'finite'],
    [['--warmup-ratio', '2'], '--warmup-ratio', '≤ 1'],
    [['--eval-every', '-5'], '--eval-every', '≥ 0'],
    [['--save-every', '0.5'], '--save-every', 'whole number'],
    [['--projection-prng-key', '-1'], '--projection-prng-key', '≥ 0'],
    [['--vera-d-initial', 'NaN'], '--vera-d-initial', 'finite'],
  ];
  for (const [args, name, range] of cases) {
    it(`train ${args.join(' ')} → E_USAGE naming ${name}`, () => {
      const r = runCli(['train', '--method', 'lora', '--quiet', ...args], 30_000);
      expect(r.signal, `train ran on (killed after ${r.ms} ms)`).toBeNull();
      expect(r.err).toContain('[E_USAGE]');
      expect(r.err).toContain(name);
      expect(r.err).toContain(range);
      expect(r.status).toBe(2);
    });
  }
});

describe('train --init: config.json fields are bounded too', () => {
  it('hidden_size 1e6, a string layer count and 3 heads over 16 are E_USAGE naming the file, field and value', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dorascope-init-'));
    try {
      for (const [cfg, text] of [
        [{ hidden_size: 1e6 }, 'hidden_size must be a whole number from 2 to 16384, got 1000000'],
        [{ num_hidden_layers: '2' }, 'num_hidden_layers must be a whole number from 1 to 256, got the string "2"'],
        [{ hidden_size: 16, num_attention_heads: 3 }, 'hidden_size 16 must be a multiple of num_attention_heads 3'],
      ] as const) {
        writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
        const r = runCli(['train', '--method', 'full', '--init', dir, '--steps', '1', '--backend', 'cpu', '--quiet'], 60_000);
        expect(r.signal, `train ran on (killed after ${r.ms} ms)`).toBeNull();
        expect(r.err).toContain('[E_USAGE]');
        expect(r.err).toContain('config.json');
        expect(r.err).toContain(text);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('analyze: --workers and --layers', () => {
  it('--workers is clamped to the cores this process may use', () => {
    const cores = availableParallelism();
    expect(workerCount(100_000, 1)).toBe(Math.max(1, cores));
    expect(workerCount(1, 1)).toBe(1);
    expect(workerCount(0, 1e12)).toBe(0);
    for (const bad of [-1, 1.5, NaN]) expect(thrown(() => workerCount(bad, 1)).code).toBe('E_USAGE');
  });

  it('--workers that is not a whole number is E_USAGE from the command line', () => {
    const r = runCli(['analyze', '--base', 'x.safetensors', 'y.safetensors', '--workers', '-2'], 20_000);
    expect(r.err).toContain('[E_USAGE]');
    expect(r.err).toContain('--workers -2');
    expect(r.status).toBe(2);
  });

  it('--layers 0-99999999999 is refused without expanding the range (child process)', () => {
    const r = runCli(['analyze', '--base', 'x.safetensors', 'y.safetensors', '--layers', '0-99999999999'], 30_000);
    expect(r.signal, `analyze died or hung (${r.ms} ms)`).toBeNull();
    expect(r.err).toContain('[E_USAGE]');
    expect(r.err).toContain(String(MAX_LAYER_INDEX));
    expect(r.status).toBe(2);
  });

  it('the largest range accepted still expands', () => {
    expect(parseLayers(`0-2,${MAX_LAYER_INDEX}`)).toEqual([0, 1, 2, MAX_LAYER_INDEX]);
    expect(thrown(() => parseLayers(`${MAX_LAYER_INDEX + 1}`)).code).toBe('E_USAGE');
  });
});

describe('adapter_config.json numbers', () => {
  const path = 'ad/adapter_config.json';
  it('r and rank_pattern values are whole numbers in range; alphas finite and bounded', () => {
    const cases: [Record<string, unknown>, string, string][] = [
      [{ r: 1e9, lora_alpha: 16 }, '"r"', 'got 1000000000'],
      [{ r: 0, lora_alpha: 16 }, '"r"', 'from 1 to 65536'],
      [{ r: 8, lora_alpha: 1e300 }, '"lora_alpha"', 'got 1e+300'],
      [{ r: 8, lora_alpha: 16, rank_pattern: { q_proj: 2.5 } }, 'rank_pattern.q_proj', 'got 2.5'],
      [{ r: 8, lora_alpha: 16, rank_pattern: { q_proj: 1e7 } }, 'rank_pattern.q_proj', 'from 1 to 65536'],
      [{ r: 8, lora_alpha: 16, alpha_pattern: { q_proj: -1e300 } }, 'alpha_pattern.q_proj', 'got -1e+300'],
    ];
    for (const [cfg, field, text] of cases) {
      const e = thrown(() => parseAdapterConfig(cfg, path));
      expect(e.code).toBe('E_ADAPTER_CONFIG');
      expect(e.message).toContain(path);
      expect(e.message).toContain(field);
      expect(e.message).toContain(text);
    }
  });
});

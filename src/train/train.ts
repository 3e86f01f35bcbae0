import type * as tfc from '@tensorflow/tfjs-core';
import { DorascopeError } from '../errors.js';
import { initBackend, tf, type BackendName } from './backend.js';
import { initLora, loraScaling, loraVariant, type LoraParams } from './adapters/lora.js';
import { doraVariant, initMagnitude } from './adapters/dora.js';
import { AdamW } from './adamw.js';
import { runLoop, type StepInfo } from './loop.js';
import { forward, initWeights, lmLoss, weightShapes, type Adapters, type LlamaConfig } from './model.js';
import { loadCmudict, loadSotu, sampleWindows, seededRandom, type TextData } from './data.js';
import { saveBase, saveCheckpoint } from './checkpoint.js';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { openSource } from '../io/sources/open-source.js';
import type { Weights } from './model.js';

export type TrainMethod = 'full' | 'lora' | 'dora';

export interface TrainOptions {
  method: TrainMethod;
  steps: number;
  seed?: number;
  /** 'auto' picks wasm (the only fast backend implemented so far). */
  backend?: BackendName | 'auto';
  /** 'random' (default) or an HF folder written by `train` / any Llama-named model.safetensors + config.json. */
  init?: string;
  /** 'sotu' (pretraining text) or 'cmudict' (the downstream task); anything else is an E_USAGE error. */
  dataName?: string;
  config?: Partial<LlamaConfig>;
  /** LoRA rank, alpha, rsLoRA scaling and target module names (PEFT's target_modules). */
  r?: number;
  alpha?: number;
  rslora?: boolean;
  target?: string[];
  /** DoRA: treat ‖W + sBA‖ as constant in backward (paper §4.3); default true. */
  doraDetach?: boolean;
  lr?: number;
  weightDecay?: number;
  batchSize?: number;
  contextLength?: number;
  evalEvery?: number;
  data?: TextData;
  /** Run folder: `base/` (the random init) and `checkpoint-<step>/` every `saveEvery` steps and at the end. */
  out?: string;
  saveEvery?: number;
  onProgress?: (e: StepInfo & { evalLoss?: number }) => void;
}

export interface TrainResult {
  backend: BackendName;
  dataset: string;
  config: LlamaConfig;
  steps: number;
  trainLoss: number;
  evalLossBefore: number;
  evalLossAfter: number;
  logHistory: Array<StepInfo & { evalLoss?: number; eval_loss?: number; eval_accuracy?: number }>;
  /** Checkpoint folders written, oldest first (empty without `out`). */
  checkpoints: string[];
}

const DEFAULT_CONFIG: LlamaConfig = {
  vocab_size: 256, hidden_size: 64, intermediate_size: 172, num_hidden_layers: 2,
  num_attention_heads: 4, max_position_embeddings: 64, rms_norm_eps: 1e-6, rope_theta: 10000,
};

/**
 * Trains a tiny Llama-named model from a random init on byte-level SOTU text.
 * Deterministic given `seed` (inits, batches and the split all derive from it).
 * With `out`, writes HF Trainer / PEFT checkpoint folders (adapters also get
 * `out/base/`, the frozen init, so `dorascope analyze` can merge them).
 * Not done yet: --init BASE, optimizer state and --resume (see docs/train.md).
 */
export async function train(o: TrainOptions): Promise<TrainResult> {
  if (!Number.isInteger(o.steps) || o.steps < 1) {
    throw new DorascopeError('E_USAGE', `--steps must be a positive integer, got ${o.steps}`);
  }
  // Untyped callers (the reproduce engine) may pass a dataset name as `data`.
  const dataName = typeof (o.data as unknown) === 'string' ? (o.data as unknown as string) : o.dataName;
  if (dataName !== undefined && dataName !== 'sotu' && dataName !== 'cmudict') {
    throw new DorascopeError('E_USAGE', `data ${JSON.stringify(dataName)} is not implemented; use 'sotu' or 'cmudict'`);
  }
  const backend = await initBackend(o.backend === undefined || o.backend === 'auto' ? 'wasm' : o.backend);
  const t = tf();
  const init = o.init ?? 'random';
  const config: LlamaConfig = init === 'random' ? { ...DEFAULT_CONFIG, ...o.config } : await readConfig(init);
  const data = typeof (o.data as unknown) === 'object' && o.data !== undefined ? o.data : dataName === 'cmudict' ? loadCmudict() : loadSotu();
  if (config.vocab_size < data.vocabSize) {
    throw new DorascopeError('E_USAGE', `vocab_size ${config.vocab_size} < ${data.vocabSize} byte tokens`);
  }
  const rand = seededRandom(o.seed ?? 0);
  const dataRand = seededRandom((o.seed ?? 0) + 1);
  const rows = o.batchSize ?? 8, len = o.contextLength ?? 32;
  const weights = initWeights(config, rand, o.method === 'full');
  if (init !== 'random') await loadWeights(init, weights);
  let adapters: Adapters | undefined;
  const params: tfc.Variable[] = [];
  if (o.method === 'full') {
    params.push(...weights.values());
  } else {
    const r = o.r ?? 8;
    const s = loraScaling(r, o.alpha ?? 16, o.rslora ?? false);
    const target = o.target ?? ['q_proj', 'v_proj'];
    const layers = new Map<string, LoraParams>();
    for (const [name, shape] of weightShapes(config)) {
      const base = name.slice(0, -'.weight'.length);
      if (!target.includes(base.slice(base.lastIndexOf('.') + 1))) continue;
      const p = initLora(shape[0]!, shape[1]!, r, s, rand);
      if (o.method === 'dora') p.magnitude = initMagnitude(weights.get(name)!, p);
      layers.set(base, p);
      params.push(p.A, p.B, ...(p.magnitude ? [p.magnitude] : []));
    }
    if (layers.size === 0) {
      throw new DorascopeError('E_USAGE', `--target ${target.join(',')} matches no linear module`);
    }
    adapters = { variant: o.method === 'lora' ? loraVariant : doraVariant(o.doraDetach ?? true), layers };
  }
  // A fixed validation batch, drawn once from the held-out year.
  const valIds = t.tensor2d(sampleWindows(data.validation, 16, len, seededRandom(12345)), [16, len], 'int32');
  const evalLoss = () => t.tidy(() => lmLoss(config, weights, valIds, adapters).dataSync()[0]!);
  const evalLossBefore = evalLoss();
  // Next-byte top-1 accuracy on the same held-out windows (the task metric; HF logs it as eval_accuracy).
  const evalAccuracy = () => t.tidy(() => {
    const [B, T_] = valIds.shape;
    const inp = t.slice(valIds, [0, 0], [B, T_ - 1]) as tfc.Tensor2D;
    const tgt = t.reshape(t.slice(valIds, [0, 1], [B, T_ - 1]), [B * (T_ - 1)]);
    const pred = t.argMax(forward(config, weights, inp, adapters), -1);
    return t.mean(t.cast(t.equal(t.reshape(pred, [B * (T_ - 1)]), tgt), 'float32')).dataSync()[0]!;
  });
  const opt = new AdamW({ lr: o.lr ?? (o.method === 'full' ? 3e-3 : 1e-2), weightDecay: o.weightDecay ?? 0 });
  const logHistory: TrainResult['logHistory'] = [];
  const checkpoints: string[] = [];
  const metadata = { backend, dataset: data.dataset, seed: String(o.seed ?? 0), method: o.method };
  const save = async (step: number) => {
    if (o.out === undefined) return;
    checkpoints.push(await saveCheckpoint(o.out, {
      step, config, weights, metadata, logHistory: logHistory.map((h) => ({ ...h })),
      ...(adapters === undefined ? {} : {
        adapters, peft: { r: o.r ?? 8, alpha: o.alpha ?? 16, rslora: o.rslora ?? false, target: o.target ?? ['q_proj', 'v_proj'] },
      }),
    }));
  };
  try {
    if (o.out !== undefined && o.method !== 'full') await saveBase(join(o.out, 'base'), config, weights, metadata);
    const last = await runLoop({
      params, optimizer: opt, steps: o.steps,
      loss: () => {
        const ids = t.tensor2d(sampleWindows(data.train, rows, len, dataRand), [rows, len], 'int32');
        return lmLoss(config, weights, ids, adapters);
      },
      onStep: async (info) => {
        const every = o.evalEvery ?? 0;
        const k0 = o.saveEvery ?? 0;
        // Evaluate on eval steps, at every checkpoint and at the end, so each checkpoint's
        // trainer_state.json carries its metric (HF names: eval_loss, eval_accuracy).
        const due = (every > 0 && info.step % every === 0) || (k0 > 0 && info.step % k0 === 0) || info.step === o.steps;
        const e = due ? (() => { const l = evalLoss(); return { ...info, evalLoss: l, eval_loss: l, eval_accuracy: evalAccuracy() }; })() : info;
        logHistory.push(e);
        o.onProgress?.(e);
        const k = o.saveEvery ?? 0;
        if ((k > 0 && info.step % k === 0) || info.step === o.steps) await save(info.step);
      },
    });
    return {
      backend, dataset: data.dataset, config, steps: o.steps,
      trainLoss: last!.loss, evalLossBefore, evalLossAfter: evalLoss(), logHistory, checkpoints,
    };
  } finally {
    opt.dispose();
    valIds.dispose();
    for (const v of params) v.dispose();
    for (const v of weights.values()) if (!v.isDisposed) v.dispose();
  }
}

async function readConfig(dir: string): Promise<LlamaConfig> {
  const path = join(dir, 'config.json');
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new DorascopeError('E_NOT_FOUND', `--init ${JSON.stringify(dir)}: cannot read ${path}`, { path }, { cause: e });
  }
  const c = { ...DEFAULT_CONFIG } as Record<string, number>;
  for (const k of Object.keys(DEFAULT_CONFIG)) {
    const v = raw[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new DorascopeError('E_USAGE', `${path}: ${k} must be a number, got ${JSON.stringify(v)}`, { path, key: k });
    }
    c[k] = v;
  }
  return c as unknown as LlamaConfig;
}

/** Overwrites the freshly initialised weights with the base's, checking each shape. */
async function loadWeights(dir: string, weights: Weights): Promise<void> {
  const t = tf();
  const src = await openSource(dir);
  try {
    for (const [name, v] of weights) {
      const info = src.info(name);
      if (info === undefined) throw new DorascopeError('E_MISSING_TENSOR', `--init ${JSON.stringify(dir)}: no tensor ${name}`, { name });
      if (info.shape.join('x') !== v.shape.join('x')) {
        throw new DorascopeError('E_SHAPE_MISMATCH', `--init ${JSON.stringify(dir)}: ${name} is [${info.shape.join(', ')}], config.json implies [${v.shape.join(', ')}]`, { name });
      }
      const data = await src.read(name);
      t.tidy(() => v.assign(t.tensor(data, v.shape)));
    }
  } finally {
    await src.close();
  }
}

import { JSON_CAPS, readTextCapped } from '../io/open-regular.js';
import { shownValue } from '../io/json-value.js';
import type * as tfc from '@tensorflow/tfjs-core';
import { join, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { DorascopeError } from '../errors.js';
import { selectBackend, tf } from '../compute/backend.js';
import type { BackendChoice, BackendInfo, BackendName } from '../compute/backend-types.js';
import { adapterVariant, buildAdapters, checkMagnitudeOnly } from './adapters/build.js';
import { AdamW } from './adamw.js';
import { runLoop } from './loop.js';
import type { LlamaConfig, StepInfo } from './types.js';
import { disposeRopeTables, forward, initWeights, lmLoss, type Adapters } from './model.js';
import { loadCmudict, loadSotu, sampleWindows, seededRandom, type TextData } from './data.js';
import { cleanStaleTemps, FILES, saveBase, saveCheckpoint, type ResumeState, type Trainable } from './checkpoint.js';
import { newestCheckpoint, restore } from './resume.js';
import { lrAt, makeSchedule, resolveWarmup } from './schedule.js';
import { hfLogEntry, MetricsLog, type LogEntry, type ReportTo } from './metrics-log.js';
import { openSource } from '../io/sources/open-source.js';
import { checkpointNumber } from '../io/sources/trainer-run.js';
import type { Weights } from './model.js';
import { checkNoOverlap } from '../io/output-guard.js';
import { lockOutput } from '../io/result-folder.js';

export type TrainMethod = 'full' | 'lora' | 'dora';

export interface TrainOptions {
  method: TrainMethod;
  /** Total optimizer steps (HF max_steps); when resuming, the step to end at. */
  steps: number;
  seed?: number;
  /** 'auto' (default): webgpu on a hardware GPU adapter, else tensorflow if installed, else wasm (backend.ts). */
  backend?: BackendChoice;
  /** Called once the backend is chosen (the CLI prints it, with what `auto` passed over and why). */
  onBackend?: (info: BackendInfo) => void;
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
  /**
   * DoRA only: modules that train only the magnitude m (paper Table 6: magnitude on all
   * modules, direction on some). Saved as PEFT DoRA modules with lora_B = 0 and lora_A frozen.
   */
  magnitudeOnly?: string[];
  /** DoRA: treat ‖W + sBA‖ as constant in backward (paper §4.3); default true. */
  doraDetach?: boolean;
  lr?: number;
  /** Hugging Face scheduler name: constant (default here), constant_with_warmup, linear, cosine. */
  lrScheduler?: string;
  /** HF warmup_steps (wins when > 0) and warmup_ratio (⌈steps·ratio⌉). */
  warmupSteps?: number;
  warmupRatio?: number;
  weightDecay?: number;
  batchSize?: number;
  contextLength?: number;
  evalEvery?: number;
  data?: TextData;
  /** Run folder: `base/` (the random init) and `checkpoint-<step>/` every `saveEvery` steps and at the end. */
  out?: string;
  saveEvery?: number;
  /** Continue from the newest complete checkpoint in `out` (same options → bitwise the same end weights). */
  resume?: boolean;
  /** Called once before the first step of this invocation (after set-up and any resume). */
  onStart?: (e: { startStep: number; totalSteps: number }) => void;
  onProgress?: (e: TrainProgress) => void;
  /** With `out`: besides `metrics.jsonl` (always), TensorBoard event files in `out/tensorboard/` (metrics-log.ts). */
  reportTo?: readonly ReportTo[];
}

/** One step, as reported to `onProgress`. */
export interface TrainProgress extends StepInfo {
  evalLoss?: number;
  /** Step this invocation started after (0, or the resumed checkpoint's step) and the last step. */
  startStep: number;
  totalSteps: number;
  /** Tokens consumed by this step (batch × context). */
  tokens: number;
}


export interface TrainResult {
  backend: BackendName;
  dataset: string;
  config: LlamaConfig;
  steps: number;
  /** Step this invocation started after: 0, or the checkpoint it resumed from. */
  startStep: number;
  resumedFrom?: string;
  trainLoss: number;
  /** Held-out loss when this invocation started (the init, or the resumed checkpoint). */
  evalLossBefore: number;
  evalLossAfter: number;
  logHistory: LogEntry[];
  /** Checkpoint folders written, oldest first (empty without `out`). */
  checkpoints: string[];
}

const DEFAULT_CONFIG: LlamaConfig = {
  vocab_size: 256, hidden_size: 64, intermediate_size: 172, num_hidden_layers: 2,
  num_attention_heads: 4, max_position_embeddings: 64, rms_norm_eps: 1e-6, rope_theta: 10000,
};

/**
 * Trains a tiny Llama-named model on byte-level text (SOTU or CMUdict).
 * Deterministic given `seed` (inits, batches and the split all derive from it).
 * With `out`, writes HF Trainer / PEFT checkpoint folders (adapters also get
 * `out/base/`, the frozen init, so `dorascope analyze` can merge them), each with the
 * optimizer, scheduler and data-order state that `resume` continues from.
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
  const magOnly = o.magnitudeOnly ?? [];
  const target = o.target ?? ['q_proj', 'v_proj'];
  const variant = o.method === 'full' ? undefined : adapterVariant({ method: o.method, doraDetach: o.doraDetach ?? true });
  // checked again in buildAdapters; here so the mistake is reported before any set-up
  checkMagnitudeOnly(o.method, variant, magOnly);
  if (o.resume === true && o.out === undefined) throw new DorascopeError('E_USAGE', '--resume needs --out (the run folder to resume)');
  const baseLr = o.lr ?? (o.method === 'full' ? 3e-3 : 1e-2);
  const warmup = resolveWarmup(o.steps, o.warmupSteps, o.warmupRatio);
  const schedule = makeSchedule(o.lrScheduler ?? 'constant', baseLr, o.steps, warmup);

  const chosen = await selectBackend(o.backend ?? 'auto');
  const backend: BackendName = chosen.name;
  o.onBackend?.(chosen);
  const t = tf();
  const init = o.init ?? 'random';
  // The run folder is written checkpoint by checkpoint; it must not be, hold or lie inside the weights it starts from.
  if (o.out !== undefined && init !== 'random') checkNoOverlap({ out: o.out, kind: 'train', inputs: [{ role: 'initial weights (--init)', path: init }] });
  const config: LlamaConfig = init === 'random' ? { ...DEFAULT_CONFIG, ...o.config } : await readConfig(init);
  const data = typeof (o.data as unknown) === 'object' && o.data !== undefined ? o.data : dataName === 'cmudict' ? loadCmudict() : loadSotu();
  if (config.vocab_size < data.vocabSize) {
    throw new DorascopeError('E_USAGE', `vocab_size ${config.vocab_size} < ${data.vocabSize} byte tokens`);
  }
  const seed = o.seed ?? 0;
  const rand = seededRandom(seed);
  // The data order's whole state is the number of draws from mulberry32(seed + 1): a
  // checkpoint records it and a resumed run replays that many draws (rng_state.json).
  const dataSeed = seed + 1;
  const dataSource = seededRandom(dataSeed);
  let draws = 0;
  const dataRand = () => { draws++; return dataSource(); };
  const rows = o.batchSize ?? 8, len = o.contextLength ?? 32;
  const weights = initWeights(config, rand, o.method === 'full');
  /** Every variable the weights file holds, and the subset the optimizer updates. */
  const saved: Trainable[] = [];
  const trainables: Trainable[] = [];
  let adapters: Adapters | undefined;
  const extra: tfc.Variable[] = [];
  const valIds = t.tensor2d(sampleWindows(data.validation, 16, len, seededRandom(12345)), [16, len], 'int32');
  const opt = new AdamW({ lr: baseLr, weightDecay: o.weightDecay ?? 0 });
  // One writer per run folder: a second `train --out` of the same folder fails (E_OUTPUT_LOCKED).
  const unlock = o.out === undefined ? undefined : lockOutput(o.out);
  let metricsLog: MetricsLog | undefined;
  try {
    if (init !== 'random') await loadWeights(init, weights);
    if (o.method === 'full') {
      for (const [key, v] of weights) saved.push({ key, v }), trainables.push({ key, v });
    } else {
      const built = buildAdapters(config, weights, {
        method: o.method, r: o.r ?? 8, alpha: o.alpha ?? 16, rslora: o.rslora ?? false, target, magnitudeOnly: magOnly,
        doraDetach: o.doraDetach ?? true,
      }, rand);
      adapters = built.adapters;
      saved.push(...built.saved);
      trainables.push(...built.trainables);
      extra.push(...built.saved.map((x) => x.v));
    }
    const params = trainables.map((x) => x.v);
    // A fixed validation batch, drawn once from the held-out split.
    // Scalars are read with `await data()`: dataSync throws on webgpu in Node.
    const read = async (x: tfc.Tensor): Promise<number> => { try { return (await x.data())[0]!; } finally { x.dispose(); } };
    const evalLoss = () => read(t.tidy(() => lmLoss(config, weights, valIds, adapters)));
    // Next-byte top-1 accuracy on the same held-out windows (the task metric; HF logs it as eval_accuracy).
    const evalAccuracy = () => read(t.tidy(() => {
      const [B, T_] = valIds.shape;
      const inp = t.slice(valIds, [0, 0], [B, T_ - 1]) as tfc.Tensor2D;
      const tgt = t.reshape(t.slice(valIds, [0, 1], [B, T_ - 1]), [B * (T_ - 1)]);
      const pred = t.argMax(forward(config, weights, inp, adapters), -1);
      return t.mean(t.cast(t.equal(t.reshape(pred, [B * (T_ - 1)]), tgt), 'float32'));
    }));
    // Everything that decides the numbers; a resume must match it key by key.
    const args: Record<string, unknown> = {
      method: o.method, seed, init: init === 'random' ? 'random' : resolve(init), dataset: data.dataset, backend, config,
      // Warmup as given, not as resolved: ⌈steps·ratio⌉ changes with --steps, which a resume may change.
      learning_rate: baseLr, lr_scheduler_type: schedule.name, warmup_steps: o.warmupSteps ?? 0, warmup_ratio: o.warmupRatio ?? 0, weight_decay: o.weightDecay ?? 0,
      per_device_train_batch_size: rows, context_length: len,
      ...(o.method === 'full' ? {} : {
        r: o.r ?? 8, lora_alpha: o.alpha ?? 16, use_rslora: o.rslora ?? false, target_modules: target,
        ...variant?.trainingArgs(magOnly),
      }),
    };
    let logHistory: LogEntry[] = [];
    let startStep = 0, tokensSeen = 0, resumedFrom: string | undefined;
    const weightsFile = o.method === 'full' ? FILES.model : FILES.adapter;
    if (o.out !== undefined) await cleanStaleTemps(o.out);
    // A fresh run never mixes with an earlier one's checkpoints (analyze would compare them against this run's base).
    if (o.out !== undefined && o.resume !== true) {
      const old = (await readdir(o.out).catch(() => [] as string[])).filter((n) => checkpointNumber(n) !== undefined);
      if (old.length > 0) {
        throw new DorascopeError('E_USAGE', `${JSON.stringify(o.out)} already holds ${old.length} checkpoint folder(s) (${old.sort().slice(0, 3).join(', ')}${old.length > 3 ? ', ...' : ''}) from an earlier run: pass --resume to continue it, or choose a new --out`);
      }
    }
    if (o.resume === true) {
      const ck = await newestCheckpoint(o.out!, weightsFile);
      const r = await restore(ck.dir, ck.step, weightsFile, saved, trainables, opt, args);
      for (let i = 0; i < r.dataDraws; i++) dataRand();
      logHistory = r.logHistory.map(hfLogEntry);
      startStep = r.step;
      tokensSeen = r.tokensSeen;
      resumedFrom = r.dir;
    }
    const evalLossBefore = await evalLoss();
    const checkpoints: string[] = [];
    const metadata = { backend, device: chosen.device, dataset: data.dataset, seed: String(seed), method: o.method };
    const state = (): ResumeState => ({
      optimizer: opt, trainables, schedule, dataRng: { algorithm: 'mulberry32', seed: dataSeed, draws }, args,
      evalSteps: o.evalEvery ?? 0, saveSteps: o.saveEvery ?? 0, batchSize: rows, tokensSeen,
    });
    const save = async (step: number) => {
      if (o.out === undefined) return;
      checkpoints.push(await saveCheckpoint(o.out, {
        step, config, weights, metadata, logHistory: logHistory.map((h) => ({ ...h })), state: state(),
        ...(adapters === undefined ? {} : {
          adapters, peft: { r: o.r ?? 8, alpha: o.alpha ?? 16, rslora: o.rslora ?? false, target: [...target, ...magOnly] },
        }),
      }));
    };
    if (o.out !== undefined && o.method !== 'full' && !(o.resume === true && hasBase(o.out))) {
      await saveBase(join(o.out, 'base'), config, weights, metadata);
    }
    // Metrics as they happen, beside the checkpoints: metrics.jsonl, and TensorBoard on request.
    if (o.out !== undefined) metricsLog = await MetricsLog.open(o.out, { startStep, reportTo: o.reportTo });
    o.onStart?.({ startStep, totalSteps: o.steps });
    const last = await runLoop({
      params, optimizer: opt, steps: o.steps, fromStep: startStep + 1,
      lr: (step) => lrAt(schedule, step),
      loss: () => {
        const ids = t.tensor2d(sampleWindows(data.train, rows, len, dataRand), [rows, len], 'int32');
        return lmLoss(config, weights, ids, adapters);
      },
      onStep: async (info) => {
        tokensSeen += rows * len;
        const every = o.evalEvery ?? 0;
        const k = o.saveEvery ?? 0;
        // Evaluate on eval steps, at every checkpoint and at the end, so each checkpoint's
        // trainer_state.json carries its metric (HF names: eval_loss, eval_accuracy).
        const due = (every > 0 && info.step % every === 0) || (k > 0 && info.step % k === 0) || info.step === o.steps;
        // learning_rate is the rate this step applied (HF logs the next step's: see docs/train.md).
        const entry: LogEntry = { step: info.step, loss: info.loss, learning_rate: info.learningRate };
        if (due) Object.assign(entry, { eval_loss: await evalLoss(), eval_accuracy: await evalAccuracy() });
        logHistory.push(entry);
        await metricsLog?.log(entry);
        o.onProgress?.({ ...info, ...(entry.eval_loss === undefined ? {} : { evalLoss: entry.eval_loss }), startStep, totalSteps: o.steps, tokens: rows * len });
        if ((k > 0 && info.step % k === 0) || info.step === o.steps) await save(info.step);
      },
    });
    const lastLoss = last?.loss ?? [...logHistory].reverse().find((h) => typeof h.loss === 'number')?.loss ?? NaN;
    return {
      backend, dataset: data.dataset, config, steps: o.steps, startStep, ...(resumedFrom === undefined ? {} : { resumedFrom }),
      trainLoss: lastLoss, evalLossBefore, evalLossAfter: await evalLoss(), logHistory, checkpoints,
    };
  } finally {
    await metricsLog?.close();
    unlock?.();
    disposeRopeTables();
    opt.dispose();
    valIds.dispose();
    for (const v of [...extra, ...weights.values()]) if (!v.isDisposed) v.dispose();
  }
}

function hasBase(runDir: string): boolean {
  return existsSync(join(runDir, 'base', FILES.model));
}

/**
 * [min, max, whole number] of each config.json field `--init` reads: the sizes the tfjs trainer
 * is built for, so a hostile or mistyped config cannot ask for an allocation without bound.
 */
const CONFIG_BOUNDS: Record<keyof LlamaConfig, readonly [number, number, boolean]> = {
  vocab_size: [1, 1 << 20, true], hidden_size: [2, 16_384, true], intermediate_size: [1, 65_536, true],
  num_hidden_layers: [1, 256, true], num_attention_heads: [1, 256, true], max_position_embeddings: [1, 1 << 20, true],
  rms_norm_eps: [Number.MIN_VALUE, 1, false], rope_theta: [Number.MIN_VALUE, 1e12, false],
};

async function readConfig(dir: string): Promise<LlamaConfig> {
  const path = join(dir, 'config.json');
  const text = await readTextCapped(path, '--init config', JSON_CAPS.config);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new DorascopeError('E_NOT_FOUND', `--init ${JSON.stringify(dir)}: cannot read ${path}`, { path }, { cause: e });
  }
  const c = { ...DEFAULT_CONFIG } as Record<string, number>;
  for (const k of Object.keys(DEFAULT_CONFIG)) {
    const v = raw[k];
    if (v === undefined) continue;
    const [lo, hi, whole] = CONFIG_BOUNDS[k as keyof LlamaConfig];
    if (typeof v !== 'number' || !Number.isFinite(v) || (whole && !Number.isInteger(v)) || v < lo || v > hi) {
      throw new DorascopeError('E_USAGE', `${path}: ${k} must be ${whole ? 'a whole number' : 'a number'} from ${lo} to ${hi}, got ${shownValue(v)}`, { path, key: k });
    }
    c[k] = v;
  }
  const heads = c['num_attention_heads']!, hidden = c['hidden_size']!;
  if (hidden % heads !== 0 || (hidden / heads) % 2 !== 0) {
    throw new DorascopeError('E_USAGE', `${path}: hidden_size ${hidden} must be a multiple of num_attention_heads ${heads} with an even head size (RoPE rotates pairs)`, { path });
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

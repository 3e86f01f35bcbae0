import { JSON_CAPS, readTextCapped } from '../io/open-regular.js';
import { shownValue } from '../io/json-value.js';
import type * as tfc from '@tensorflow/tfjs-core';
import { join, resolve } from 'node:path';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { DorascopeError } from '../errors.js';
import { selectBackend, tf } from '../compute/backend.js';
import type { BackendChoice, BackendInfo, BackendName } from '../compute/backend-types.js';
import { adapterVariant, buildAdapters, checkMagnitudeOnly } from './adapters/build.js';
import { AdamW } from './adamw.js';
import { runLoop } from './loop.js';
import type { AdapterMethod, LlamaConfig, StepInfo } from './types.js';
import type { AdapterHyper, AdapterVariant } from './adapters/lora.js';
import { defaultLr, defaultRank, TRAIN_DEFAULTS, VERA_DEFAULTS } from './defaults.js';
import { disposeRopeTables, forward, initWeights, lmLoss, type Adapters } from './model.js';
import { loadCmudict, loadSotu, sampleWindows, seededRandom, type TextData } from './data.js';
import { cleanStaleTemps, FILES, QUANTIZED_BASE_DIR, saveBase, saveCheckpoint, saveQuantizedBase, type ResumeState, type Trainable } from './checkpoint.js';
import { QuantizedBase, QUANT_TYPES, type QuantizeBaseOptions } from './quantized-base.js';
import { BLOCK_SIZES_4BIT, type Bnb4bitType } from '../io/quant/bnb-4bit.js';
import { newestCheckpoint, restore } from './resume.js';
import { lrAt, makeSchedule, resolveWarmup, type Schedule } from './schedule.js';
import { hfLogEntry, MetricsLog, type LogEntry, type ReportTo } from './metrics-log.js';
import { openSource } from '../io/sources/open-source.js';
import { checkpointNumber } from '../io/sources/trainer-run.js';
import type { Weights } from './model.js';
import { checkNoOverlap } from '../io/output-guard.js';
import { lockOutput } from '../io/result-folder.js';

export type TrainMethod = 'full' | AdapterMethod;

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
  /** Rank (default 8 for LoRA/DoRA, 256 for VeRA/DVoRA: PEFT's defaults), alpha, rsLoRA scaling and target module names (PEFT's target_modules). */
  r?: number;
  alpha?: number;
  rslora?: boolean;
  target?: string[];
  /**
   * DoRA only: modules that train only the magnitude m (paper Table 6: magnitude on all
   * modules, direction on some). Saved as PEFT DoRA modules with lora_B = 0 and lora_A frozen.
   */
  magnitudeOnly?: string[];
  /** DoRA/DVoRA: treat ‖W + ΔW‖ as constant in backward (paper §4.3); default true. */
  doraDetach?: boolean;
  /**
   * QLoRA / QDoRA: keep the frozen base's decoder linears as bitsandbytes 4-bit blocks of this type,
   * dequantized on the fly (quantized-base.ts); the run folder gets `quantized-base/` in
   * bitsandbytes' format beside the full-precision `base/`. Adapter methods only.
   */
  quantize?: Bnb4bitType;
  /** Values per absmax block (bitsandbytes' default 64). */
  quantBlockSize?: number;
  /** Double quantization of the absmax (`bnb_4bit_use_double_quant`; the QLoRA paper's recipe, default true). */
  doubleQuant?: boolean;
  /** VeRA/DVoRA: λ_d's initial value (PEFT `d_initial`, default 0.1) and the shared projections' seed (`projection_prng_key`, default 0). */
  veraDInitial?: number;
  projectionKey?: number;
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
  /** A fresh run may write into a non-empty `out` that holds files other than a run's own. */
  force?: boolean;
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

/** Every option resolved against TRAIN_DEFAULTS and checked, before any set-up. */
interface Settings {
  readonly method: TrainMethod;
  readonly steps: number;
  readonly seed: number;
  readonly init: string;
  readonly dataName: string;
  readonly target: string[];
  readonly magnitudeOnly: string[];
  /** The adapter method's variant; undefined for full fine-tuning. */
  readonly variant: AdapterVariant | undefined;
  /** LoRA rank, alpha and rsLoRA scaling (unused by full fine-tuning). */
  readonly r: number;
  readonly alpha: number;
  readonly rslora: boolean;
  readonly doraDetach: boolean;
  /** The 4-bit base's settings (QLoRA/QDoRA); undefined for a float32 base. */
  readonly quantize: QuantizeBaseOptions | undefined;
  readonly dInitial: number;
  readonly projectionKey: number;
  readonly baseLr: number;
  /** Warmup as given (training_args.json), not as resolved into the schedule. */
  readonly warmupSteps: number;
  readonly warmupRatio: number;
  readonly weightDecay: number;
  readonly schedule: Schedule;
  readonly batchSize: number;
  readonly contextLength: number;
  readonly evalEvery: number;
  readonly saveEvery: number;
}

/** The model being trained and what the optimizer updates. */
interface Model {
  readonly config: LlamaConfig;
  readonly data: TextData;
  readonly weights: Weights;
  readonly adapters: Adapters | undefined;
  /** The 4-bit linears the forward pass dequantizes (their float32 weights are then freed). */
  readonly quantized: QuantizedBase | undefined;
  /** Every variable the weights file holds, and the subset the optimizer updates. */
  readonly saved: Trainable[];
  readonly trainables: Trainable[];
}

/** The data order's whole state: mulberry32(seed + 1) and the number of draws made from it. */
interface DataOrder {
  readonly seed: number;
  readonly rand: () => number;
  draws: number;
}

/** Where this invocation starts: step 0, or the checkpoint it resumed from. */
interface Start {
  logHistory: LogEntry[];
  step: number;
  tokensSeen: number;
  resumedFrom: string | undefined;
}

/**
 * Trains a tiny Llama-named model on byte-level text (SOTU or CMUdict).
 * Deterministic given `seed` (inits, batches and the split all derive from it).
 * With `out`, writes HF Trainer / PEFT checkpoint folders (adapters also get
 * `out/base/`, the frozen init, so `dorascope analyze` can merge them), each with the
 * optimizer, scheduler and data-order state that `resume` continues from.
 */
export async function train(o: TrainOptions): Promise<TrainResult> {
  const s = resolveSettings(o);
  const chosen = await selectBackend(o.backend ?? 'auto');
  o.onBackend?.(chosen);
  const t = tf();
  // The run folder is written checkpoint by checkpoint; it must not be, hold or lie inside the weights it starts from.
  if (o.out !== undefined && s.init !== 'random') checkNoOverlap({ out: o.out, kind: 'train', inputs: [{ role: 'initial weights (--init)', path: s.init }] });
  if (o.out !== undefined && o.resume !== true) checkFreshRunFolder(o.out, o.force === true);
  const config = s.init === 'random' ? { ...TRAIN_DEFAULTS.model, ...o.config } : await readConfig(s.init);
  const data = loadData(o, s, config);
  const rand = seededRandom(s.seed);
  const order: DataOrder = { seed: s.seed + 1, rand: seededRandom(s.seed + 1), draws: 0 };
  const weights = initWeights(config, rand, s.method === 'full');
  const adapterVars: tfc.Variable[] = [];
  // A fixed validation batch, drawn once from the held-out split.
  const valIds = t.tensor2d(sampleWindows(data.validation, 16, s.contextLength, seededRandom(12345)), [16, s.contextLength], 'int32');
  const opt = new AdamW({ lr: s.baseLr, weightDecay: s.weightDecay });
  // One writer per run folder: a second `train --out` of the same folder fails (E_OUTPUT_LOCKED).
  const unlock = o.out === undefined ? undefined : lockOutput(o.out);
  let metricsLog: MetricsLog | undefined;
  let quantized: QuantizedBase | undefined;
  try {
    if (s.init !== 'random') await loadWeights(s.init, weights);
    if (s.quantize !== undefined) quantized = await QuantizedBase.quantize(weights, s.quantize);
    const model = attachTrainables(s, config, data, weights, rand, quantized);
    adapterVars.push(...(model.adapters === undefined ? [] : model.saved.map((x) => x.v)));
    const evaluate = evaluators(model, valIds);
    const args = trainingArgs(s, data, chosen.name, config);
    const start = await startOrResume(o, s, model, opt, args, order);
    const evalLossBefore = await evaluate.loss();
    const metadata = { backend: chosen.name, device: chosen.device, dataset: data.dataset, seed: String(s.seed), method: s.method };
    const checkpoints: string[] = [];
    const save = async (step: number) => {
      if (o.out === undefined) return;
      const state: ResumeState = {
        optimizer: opt, trainables: model.trainables, schedule: s.schedule, dataRng: { algorithm: 'mulberry32', seed: order.seed, draws: order.draws },
        args, evalSteps: s.evalEvery, saveSteps: s.saveEvery, batchSize: s.batchSize, tokensSeen: start.tokensSeen,
      };
      checkpoints.push(await saveCheckpoint(o.out, {
        step, config, weights, metadata, logHistory: start.logHistory.map((h) => ({ ...h })), state,
        ...(model.adapters === undefined ? {} : {
          adapters: model.adapters, peft: { ...hyper(s), target: [...s.target, ...s.magnitudeOnly] },
        }),
      }));
    };
    if (o.out !== undefined && s.method !== 'full' && !(o.resume === true && hasBase(o.out))) {
      await saveBase(join(o.out, 'base'), config, weights, metadata);
    }
    if (quantized !== undefined) {
      if (o.out !== undefined && !(o.resume === true && existsSync(join(o.out, QUANTIZED_BASE_DIR, FILES.model)))) {
        await saveQuantizedBase(join(o.out, QUANTIZED_BASE_DIR), config, weights, quantized, metadata);
      }
      // From here the forward pass reads the 4-bit blocks: the float32 linears are freed.
      for (const name of quantized.linears.keys()) {
        weights.get(name)?.dispose();
        weights.delete(name);
      }
    }
    // Metrics as they happen, beside the checkpoints: metrics.jsonl, and TensorBoard on request.
    if (o.out !== undefined) metricsLog = await MetricsLog.open(o.out, { startStep: start.step, reportTo: o.reportTo });
    o.onStart?.({ startStep: start.step, totalSteps: s.steps });
    const last = await runSteps(o, s, model, opt, order, start, evaluate, save, metricsLog);
    const lastLoss = last?.loss ?? [...start.logHistory].reverse().find((h) => typeof h.loss === 'number')?.loss ?? NaN;
    return {
      backend: chosen.name, dataset: data.dataset, config, steps: s.steps, startStep: start.step,
      ...(start.resumedFrom === undefined ? {} : { resumedFrom: start.resumedFrom }),
      trainLoss: lastLoss, evalLossBefore, evalLossAfter: await evaluate.loss(), logHistory: start.logHistory, checkpoints,
    };
  } finally {
    await metricsLog?.close();
    unlock?.();
    disposeRopeTables();
    opt.dispose();
    valIds.dispose();
    for (const v of [...adapterVars, ...weights.values()]) if (!v.isDisposed) v.dispose();
    quantized?.dispose();
  }
}

/** The adapter options every variant reads its own from. */
function hyper(s: Settings): AdapterHyper {
  return { r: s.r, alpha: s.alpha, rslora: s.rslora, target: s.target, dInitial: s.dInitial, projectionKey: s.projectionKey };
}

/** Checks the options and fills in TRAIN_DEFAULTS; throws E_USAGE before any set-up. */
function resolveSettings(o: TrainOptions): Settings {
  if (!Number.isInteger(o.steps) || o.steps < 1) {
    throw new DorascopeError('E_USAGE', `--steps must be a positive integer, got ${o.steps}`);
  }
  // Untyped callers may pass a dataset name as `data`.
  const dataName = typeof (o.data as unknown) === 'string' ? (o.data as unknown as string) : o.dataName;
  if (dataName !== undefined && dataName !== 'sotu' && dataName !== 'cmudict') {
    throw new DorascopeError('E_USAGE', `data ${JSON.stringify(dataName)} is not implemented; use 'sotu' or 'cmudict'`);
  }
  const magnitudeOnly = o.magnitudeOnly ?? [];
  const doraDetach = o.doraDetach ?? TRAIN_DEFAULTS.doraDetach;
  const variant = o.method === 'full' ? undefined : adapterVariant({ method: o.method, doraDetach });
  const dInitial = o.veraDInitial ?? VERA_DEFAULTS.dInitial, projectionKey = o.projectionKey ?? VERA_DEFAULTS.projectionKey;
  if (!Number.isFinite(dInitial)) throw new DorascopeError('E_USAGE', `--vera-d-initial must be a finite number, got ${dInitial}`);
  // mulberry32 takes a uint32 seed
  if (!Number.isInteger(projectionKey) || projectionKey < 0 || projectionKey > 0xffff_ffff) throw new DorascopeError('E_USAGE', `--projection-prng-key must be a whole number from 0 to 4294967295, got ${projectionKey}`);
  // checked again in buildAdapters; here so the mistake is reported before any set-up
  checkMagnitudeOnly(o.method, variant, magnitudeOnly);
  if (o.resume === true && o.out === undefined) throw new DorascopeError('E_USAGE', '--resume needs --out (the run folder to resume)');
  const quantize = resolveQuantize(o);
  const baseLr = o.lr ?? defaultLr(o.method);
  const warmup = resolveWarmup(o.steps, o.warmupSteps, o.warmupRatio);
  return {
    method: o.method, steps: o.steps, seed: o.seed ?? TRAIN_DEFAULTS.seed, init: o.init ?? TRAIN_DEFAULTS.init,
    dataName: dataName ?? TRAIN_DEFAULTS.dataName, target: o.target ?? [...TRAIN_DEFAULTS.target], magnitudeOnly, variant,
    r: o.r ?? defaultRank(o.method), alpha: o.alpha ?? TRAIN_DEFAULTS.alpha, rslora: o.rslora ?? TRAIN_DEFAULTS.rslora, doraDetach, quantize,
    dInitial, projectionKey, baseLr,
    warmupSteps: o.warmupSteps ?? TRAIN_DEFAULTS.warmupSteps, warmupRatio: o.warmupRatio ?? TRAIN_DEFAULTS.warmupRatio,
    weightDecay: o.weightDecay ?? TRAIN_DEFAULTS.weightDecay,
    schedule: makeSchedule(o.lrScheduler ?? TRAIN_DEFAULTS.lrScheduler, baseLr, o.steps, warmup),
    batchSize: o.batchSize ?? TRAIN_DEFAULTS.batchSize, contextLength: o.contextLength ?? TRAIN_DEFAULTS.contextLength,
    evalEvery: o.evalEvery ?? TRAIN_DEFAULTS.evalEvery, saveEvery: o.saveEvery ?? TRAIN_DEFAULTS.saveEvery,
  };
}

/** `--quantize` and its block size and double quantization, checked; undefined without `--quantize`. */
function resolveQuantize(o: TrainOptions): QuantizeBaseOptions | undefined {
  if (o.quantize === undefined) {
    if (o.quantBlockSize !== undefined || o.doubleQuant !== undefined) throw new DorascopeError('E_USAGE', '--quant-block-size and --double-quant set up a 4-bit base: they need --quantize nf4|fp4');
    return undefined;
  }
  if (!QUANT_TYPES.includes(o.quantize)) throw new DorascopeError('E_USAGE', `--quantize ${JSON.stringify(o.quantize)} is not one of ${QUANT_TYPES.join(', ')}`);
  // QLoRA freezes the quantized base: full fine-tuning would have to update 4-bit weights.
  if (o.method === 'full') throw new DorascopeError('E_USAGE', '--quantize keeps the frozen base in 4 bits; it needs an adapter method (--method lora, dora, vera or dvora), not full');
  const blockSize = o.quantBlockSize ?? TRAIN_DEFAULTS.quantBlockSize;
  if (!BLOCK_SIZES_4BIT.includes(blockSize)) throw new DorascopeError('E_USAGE', `--quant-block-size ${blockSize} is not one of bitsandbytes' ${BLOCK_SIZES_4BIT.join(', ')}`);
  return { quantType: o.quantize, blockSize, doubleQuant: o.doubleQuant ?? TRAIN_DEFAULTS.doubleQuant };
}

/** The text to train on (given, or loaded by name), checked against the model's vocabulary. */
function loadData(o: TrainOptions, s: Settings, config: LlamaConfig): TextData {
  const data = typeof (o.data as unknown) === 'object' && o.data !== undefined ? o.data : s.dataName === 'cmudict' ? loadCmudict() : loadSotu();
  if (config.vocab_size < data.vocabSize) {
    throw new DorascopeError('E_USAGE', `vocab_size ${config.vocab_size} < ${data.vocabSize} byte tokens`);
  }
  return data;
}

/** Full fine-tuning trains every weight; an adapter method puts its variant's adapters on the target modules. */
function attachTrainables(s: Settings, config: LlamaConfig, data: TextData, weights: Weights, rand: () => number, quantized: QuantizedBase | undefined): Model {
  if (s.variant === undefined) {
    const all = [...weights].map(([key, v]) => ({ key, v }));
    return { config, data, weights, adapters: undefined, quantized, saved: all, trainables: [...all] };
  }
  const spec = { ...hyper(s), method: s.variant.name, target: s.target, magnitudeOnly: s.magnitudeOnly, doraDetach: s.doraDetach };
  if (quantized === undefined) {
    const built = buildAdapters(config, weights, spec, rand);
    return { config, data, weights, adapters: built.adapters, quantized, saved: built.saved, trainables: built.trainables };
  }
  // The adapters are initialised on the weights the model computes with: DoRA's magnitude is the row
  // norm of the DEQUANTIZED weight (PEFT tuners/lora/dora.py, `dequantize_module_weight`).
  const t = tf();
  const view: Weights = new Map();
  const made: tfc.Variable[] = [];
  try {
    for (const [name, v] of weights) {
      const q = quantized.get(name);
      if (q === undefined) { view.set(name, v); continue; }
      const dq = q.dequantize();
      const dv = t.variable(dq, false);
      dq.dispose();
      made.push(dv);
      view.set(name, dv);
    }
    const built = buildAdapters(config, view, spec, rand);
    return { config, data, weights, adapters: built.adapters, quantized, saved: built.saved, trainables: built.trainables };
  } finally {
    for (const v of made) v.dispose();
  }
}

/** Held-out loss and next-byte top-1 accuracy (HF's eval_loss, eval_accuracy) on the fixed validation batch. */
function evaluators(m: Model, valIds: tfc.Tensor2D): { loss: () => Promise<number>; accuracy: () => Promise<number> } {
  const t = tf();
  // Scalars are read with `await data()`: dataSync throws on webgpu in Node.
  const read = async (x: tfc.Tensor): Promise<number> => { try { return (await x.data())[0] ?? NaN; } finally { x.dispose(); } };
  return {
    loss: () => read(t.tidy(() => lmLoss(m.config, m.weights, valIds, m.adapters, m.quantized))),
    accuracy: () => read(t.tidy(() => {
      const [B, T_] = valIds.shape;
      const inp = t.slice(valIds, [0, 0], [B, T_ - 1]) as tfc.Tensor2D;
      const tgt = t.reshape(t.slice(valIds, [0, 1], [B, T_ - 1]), [B * (T_ - 1)]);
      const pred = t.argMax(forward(m.config, m.weights, inp, m.adapters, m.quantized), -1);
      return t.mean(t.cast(t.equal(t.reshape(pred, [B * (T_ - 1)]), tgt), 'float32'));
    })),
  };
}

/** Everything that decides the numbers (training_args.json); a resume must match it key by key. */
function trainingArgs(s: Settings, data: TextData, backend: BackendName, config: LlamaConfig): Record<string, unknown> {
  return {
    method: s.method, seed: s.seed, init: s.init === 'random' ? 'random' : resolve(s.init), dataset: data.dataset, backend, config,
    // Warmup as given, not as resolved: ⌈steps·ratio⌉ changes with --steps, which a resume may change.
    learning_rate: s.baseLr, lr_scheduler_type: s.schedule.name, warmup_steps: s.warmupSteps, warmup_ratio: s.warmupRatio,
    weight_decay: s.weightDecay,
    per_device_train_batch_size: s.batchSize, context_length: s.contextLength,
    ...(s.variant === undefined ? {} : {
      r: s.r, target_modules: s.target, ...s.variant.trainingArgs(hyper(s), s.magnitudeOnly),
    }),
    // Only a quantized run has the field, so earlier runs' training_args.json still match on resume.
    ...(s.quantize === undefined ? {} : {
      quantization: { quant_method: 'bitsandbytes', bnb_4bit_quant_type: s.quantize.quantType, blocksize: s.quantize.blockSize, bnb_4bit_use_double_quant: s.quantize.doubleQuant },
    }),
  };
}

/** What a run folder holds besides its checkpoint folders (checkpoint.ts, metrics-log.ts, tfevents.ts, the lock). */
const RUN_FOLDER_ENTRIES = new Set(['base', QUANTIZED_BASE_DIR, 'metrics.jsonl', 'tensorboard']);

/**
 * A fresh run writes checkpoint folders, base/ and its logs into `out`: an existing file there, or a
 * non-empty folder holding anything else, is someone else's, refused unless `force`. (A folder with an
 * earlier run's checkpoints is refused later, with the hint to pass --resume.)
 */
function checkFreshRunFolder(out: string, force: boolean): void {
  let st: ReturnType<typeof statSync>;
  try { st = statSync(out); } catch { return; }
  if (!st.isDirectory()) throw new DorascopeError('E_OUTPUT_EXISTS', `--out ${JSON.stringify(out)} is an existing file, not a run folder; choose a folder`, { out });
  if (force) return;
  const other = readdirSync(out).filter((n) => !n.startsWith('.') && !RUN_FOLDER_ENTRIES.has(n) && checkpointNumber(n) === undefined);
  if (other.length > 0) {
    const shown = other.sort().slice(0, 3).map((n) => JSON.stringify(n)).join(', ') + (other.length > 3 ? ', ...' : '');
    throw new DorascopeError('E_OUTPUT_EXISTS', `--out ${JSON.stringify(out)} is not empty (${shown}) and is not a run folder; pass --force to write the run into it anyway, or choose another folder`, { out });
  }
}

/**
 * Prepares the run folder (removes a killed run's temporaries; refuses a fresh run over an
 * earlier run's checkpoints) and, with `resume`, restores the newest checkpoint's weights,
 * optimizer and data order.
 */
async function startOrResume(o: TrainOptions, s: Settings, m: Model, opt: AdamW, args: Record<string, unknown>, order: DataOrder): Promise<Start> {
  const start: Start = { logHistory: [], step: 0, tokensSeen: 0, resumedFrom: undefined };
  if (o.out === undefined) return start;
  await cleanStaleTemps(o.out);
  // A fresh run never mixes with an earlier one's checkpoints (analyze would compare them against this run's base).
  if (o.resume !== true) {
    const old = (await readdir(o.out).catch(() => [] as string[])).filter((n) => checkpointNumber(n) !== undefined);
    if (old.length > 0) {
      throw new DorascopeError('E_USAGE', `${JSON.stringify(o.out)} already holds ${old.length} checkpoint folder(s) (${old.sort().slice(0, 3).join(', ')}${old.length > 3 ? ', ...' : ''}) from an earlier run: pass --resume to continue it, or choose a new --out`);
    }
    return start;
  }
  const weightsFile = s.method === 'full' ? FILES.model : FILES.adapter;
  const ck = await newestCheckpoint(o.out, weightsFile);
  const r = await restore(ck.dir, ck.step, weightsFile, m.saved, m.trainables, opt, args);
  // The data order's whole state is the number of draws: replay them.
  for (let i = 0; i < r.dataDraws; i++) order.rand(), order.draws++;
  return { logHistory: r.logHistory.map(hfLogEntry), step: r.step, tokensSeen: r.tokensSeen, resumedFrom: r.dir };
}

/** The optimisation loop from the start step: logs every step, evaluates and saves when due. */
async function runSteps(o: TrainOptions, s: Settings, m: Model, opt: AdamW, order: DataOrder, start: Start,
  evaluate: ReturnType<typeof evaluators>, save: (step: number) => Promise<void>, metricsLog: MetricsLog | undefined): Promise<StepInfo | undefined> {
  const t = tf();
  const rows = s.batchSize, len = s.contextLength;
  const dataRand = () => { order.draws++; return order.rand(); };
  return runLoop({
    params: m.trainables.map((x) => x.v), optimizer: opt, steps: s.steps, fromStep: start.step + 1,
    lr: (step) => lrAt(s.schedule, step),
    loss: () => {
      const ids = t.tensor2d(sampleWindows(m.data.train, rows, len, dataRand), [rows, len], 'int32');
      return lmLoss(m.config, m.weights, ids, m.adapters, m.quantized);
    },
    onStep: async (info) => {
      start.tokensSeen += rows * len;
      const every = s.evalEvery, k = s.saveEvery;
      // Evaluate on eval steps, at every checkpoint and at the end, so each checkpoint's
      // trainer_state.json carries its metric (HF names: eval_loss, eval_accuracy).
      const due = (every > 0 && info.step % every === 0) || (k > 0 && info.step % k === 0) || info.step === s.steps;
      // learning_rate is the rate this step applied (HF logs the next step's: see docs/train.md).
      const entry: LogEntry = { step: info.step, loss: info.loss, learning_rate: info.learningRate };
      if (due) Object.assign(entry, { eval_loss: await evaluate.loss(), eval_accuracy: await evaluate.accuracy() });
      start.logHistory.push(entry);
      await metricsLog?.log(entry);
      o.onProgress?.({ ...info, ...(entry.eval_loss === undefined ? {} : { evalLoss: entry.eval_loss }), startStep: start.step, totalSteps: s.steps, tokens: rows * len });
      if ((k > 0 && info.step % k === 0) || info.step === s.steps) await save(info.step);
    },
  });
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
  const c = { ...TRAIN_DEFAULTS.model } as Record<string, number>;
  for (const k of Object.keys(TRAIN_DEFAULTS.model)) {
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

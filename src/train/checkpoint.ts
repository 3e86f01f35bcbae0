import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type * as tfc from '@tensorflow/tfjs-core';
import { DorascopeError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { layerKey } from '../io/peft/keys.js';
import type { AdapterHyper } from './adapters/lora.js';
import { checkpointFolder } from '../io/sources/trainer-run.js';
import { writeError } from '../io/write-error.js';
import { writeSafetensorsStreaming, type TensorSpec } from '../io/safetensors/writer.js';
import type { AdamW } from './adamw.js';
import type { Adapters, LlamaConfig, Weights } from './model.js';
import type { Schedule } from './schedule.js';
import type { QuantizedBase } from './quantized-base.js';
import { bnb4bitTensors } from '../io/quant/bnb-4bit-quantize.js';
import { bnb4bitQuantizationConfig } from '../io/quant/quant-config.js';

/** A trainable variable under the name it has in the checkpoint's weights file. */
export interface Trainable {
  key: string;
  v: tfc.Variable;
}

/** The state a checkpoint must hold so `--resume` continues bitwise like an uninterrupted run. */
export interface ResumeState {
  optimizer: AdamW;
  /** Trainable variables, keyed as in model.safetensors / adapter_model.safetensors. */
  trainables: readonly Trainable[];
  schedule: Schedule;
  /** The data-order generator: mulberry32(seed) after `draws` draws (replayed on resume). */
  dataRng: { algorithm: 'mulberry32'; seed: number; draws: number };
  /** The options that decide the run's numbers (training_args.json; compared on resume). */
  args: Record<string, unknown>;
  /** HF trainer_state.json fields. */
  evalSteps: number;
  saveSteps: number;
  batchSize: number;
  tokensSeen: number;
}

export interface CheckpointInfo {
  step: number;
  config: LlamaConfig;
  weights: Weights;
  adapters?: Adapters;
  /** The adapter's options, from which its variant writes adapter_config.json. */
  peft?: AdapterHyper;
  logHistory: ReadonlyArray<Record<string, number | undefined>>;
  /** Recorded in the safetensors metadata: backend, dataset, seed, method. */
  metadata: Record<string, string>;
  /** Optimizer, scheduler, RNG and HF trainer state; absent only in the tests' weight-only checkpoints. */
  state?: ResumeState;
}

/** File names inside `checkpoint-<step>/` (HF Trainer's, where HF has one; ours are JSON/safetensors, not pickles). */
export const FILES = {
  model: 'model.safetensors',
  adapter: 'adapter_model.safetensors',
  optimizer: 'optimizer.safetensors',
  scheduler: 'scheduler.json',
  rng: 'rng_state.json',
  args: 'training_args.json',
  trainerState: 'trainer_state.json',
} as const;

/** Temporary siblings a killed writer may leave: `.checkpoint-<n>.tmp-<pid>-<hex>` and `.old-` (see writeFolderAtomic). */
const STALE_RE = /^\.(checkpoint-\d+|base|quantized-base)\.(tmp|old)-\d+-[0-9a-f]+$/u;

/**
 * Writes a whole folder atomically: `fill` writes into a temporary sibling
 * (`.<name>.tmp-<pid>-<hex>`, which no reader looks at: the run reader wants `checkpoint-<n>`),
 * then one rename(2) publishes it. A run killed at any point leaves either no
 * `<name>` or a complete one. An existing `<name>` is moved aside first and removed after.
 */
export async function writeFolderAtomic(final: string, fill: (dir: string) => Promise<void>): Promise<void> {
  const parent = dirname(final), name = basename(final);
  const tag = () => `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = join(parent, `.${name}.tmp-${tag()}`);
  try {
    await mkdir(tmp, { recursive: true });
    await fill(tmp);
    if (existsSync(final)) {
      const old = join(parent, `.${name}.old-${tag()}`);
      await rename(final, old);
      await rename(tmp, final);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(tmp, final);
    }
    await fsyncDir(parent);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw writeError(final, e, 'write checkpoint folder');
  }
}

/** Makes the rename durable (POSIX: a rename is persisted by fsync of the directory). */
async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r').catch(() => undefined);
  if (fh === undefined) return;
  try {
    await fh.sync();
  } catch {
    // some file systems refuse fsync on a directory; the rename itself is still atomic
  } finally {
    await fh.close();
  }
}

/** Removes temporary checkpoint folders a killed run left in `runDir` (never read). Returns their names. */
export async function cleanStaleTemps(runDir: string): Promise<string[]> {
  if (!existsSync(runDir)) return [];
  const gone: string[] = [];
  for (const d of await readdir(runDir, { withFileTypes: true })) {
    if (!d.isDirectory() || !STALE_RE.test(d.name)) continue;
    await rm(join(runDir, d.name), { recursive: true, force: true });
    gone.push(d.name);
  }
  return gone;
}

/** A float32 tensor spec plus a producer that reads the variable only when the writer reaches it. */
function specsOf(entries: ReadonlyArray<[string, tfc.Tensor]>): { specs: TensorSpec[]; produce: (n: string) => Promise<Float32Array> } {
  const byName = new Map(entries);
  return {
    specs: entries.map(([name, v]) => ({ name, dtype: 'F32', shape: v.shape })),
    // `await data()` (not dataSync) so the same code serves webgpu; one tensor in memory at a time.
    produce: async (n) => (await byName.get(n)!.data()) as Float32Array,
  };
}

async function writeTensors(path: string, entries: ReadonlyArray<[string, tfc.Tensor]>, metadata: Record<string, string>): Promise<void> {
  const { specs, produce } = specsOf(entries);
  await writeSafetensorsStreaming(path, specs, produce, { format: 'pt', ...metadata });
}

const json = (x: unknown) => `${JSON.stringify(x, null, 2)}\n`;

/**
 * Writes `RUN_DIR/checkpoint-<step>/` in the HF Trainer layout, atomically as a whole:
 * full → model.safetensors + config.json; an adapter → adapter_model.safetensors +
 * adapter_config.json with PEFT's key names, as its variant names them
 * (`base_model.model.<module>.lora_A.weight`, `lora_magnitude_vector`, `base_model.vera_A`, …);
 * then the resume state (optimizer.safetensors, scheduler.json, rng_state.json, training_args.json) and trainer_state.json.
 */
export async function saveCheckpoint(runDir: string, c: CheckpointInfo): Promise<string> {
  const dir = join(runDir, checkpointFolder(c.step));
  await writeFolderAtomic(dir, async (tmp) => {
    await writeWeights(tmp, c);
    if (c.state !== undefined) await writeState(tmp, c, c.state);
    await writeTrainerState(tmp, c);
  });
  return dir;
}

async function writeWeights(dir: string, c: CheckpointInfo): Promise<void> {
  if (c.adapters === undefined) {
    const config = { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'float32', ...c.config };
    await writeTensors(join(dir, FILES.model), [...c.weights], c.metadata);
    await writeFileAtomic(join(dir, 'config.json'), json(config));
    return;
  }
  const { variant } = c.adapters;
  const entries: Array<[string, tfc.Tensor]> = (c.adapters.shared ?? []).map(({ key, v }) => [key, v]);
  for (const [mod, p] of c.adapters.layers) {
    for (const { name, v } of variant.tensors(p)) entries.push([layerKey(mod, name), v]);
  }
  await writeTensors(join(dir, FILES.adapter), entries, c.metadata);
  await writeFileAtomic(join(dir, 'adapter_config.json'), json(variant.adapterConfig(c.peft!)));
}

/**
 * Optimizer state key scheme (optimizer.safetensors): for each trainable tensor named K in
 * the weights file, `K.exp_avg` and `K.exp_avg_sq` (PyTorch Adam's state names), float32;
 * the step count and hyperparameters are in the metadata.
 */
async function writeState(dir: string, c: CheckpointInfo, s: ResumeState): Promise<void> {
  const o = s.optimizer.options;
  const entries: Array<[string, tfc.Tensor]> = [];
  for (const { key, v } of s.trainables) {
    const mv = s.optimizer.moments(v);
    if (mv === undefined) {
      throw new DorascopeError('E_INTERNAL', `checkpoint-${c.step}: no optimizer moments for ${key} (it received no gradient)`);
    }
    entries.push([`${key}.exp_avg`, mv.m], [`${key}.exp_avg_sq`, mv.v]);
  }
  await writeTensors(join(dir, FILES.optimizer), entries, {
    optimizer: 'AdamW', step: String(s.optimizer.step), lr: String(o.lr), beta1: String(o.beta1),
    beta2: String(o.beta2), eps: String(o.eps), weight_decay: String(o.weightDecay),
  });
  // HF's scheduler.pt holds last_epoch (= scheduler steps taken = global step) and the base rate.
  await writeFileAtomic(join(dir, FILES.scheduler), json({
    lr_scheduler_type: s.schedule.name, learning_rate: s.schedule.baseLr, warmup_steps: s.schedule.warmupSteps,
    num_training_steps: s.schedule.totalSteps, last_epoch: c.step,
  }));
  await writeFileAtomic(join(dir, FILES.rng), json({ data: s.dataRng }));
  await writeFileAtomic(join(dir, FILES.args), json(s.args));
}

/** trainer_state.json, last: HF TrainerState's field names. */
async function writeTrainerState(dir: string, c: CheckpointInfo): Promise<void> {
  const s = c.state;
  const best = bestEval(c.logHistory);
  await writeFileAtomic(join(dir, FILES.trainerState), json({
    best_metric: best?.value ?? null, best_model_checkpoint: null, epoch: null,
    eval_steps: s?.evalSteps ?? 0, global_step: c.step, is_hyper_param_search: false, is_local_process_zero: true,
    is_world_process_zero: true, log_history: c.logHistory, logging_steps: 1, max_steps: s?.schedule.totalSteps ?? c.step,
    num_input_tokens_seen: s?.tokensSeen ?? 0, num_train_epochs: 1, save_steps: s?.saveSteps ?? 0, total_flos: 0,
    train_batch_size: s?.batchSize ?? null, trial_name: null, trial_params: null,
  }));
}

function bestEval(h: ReadonlyArray<Record<string, number | undefined>>): { value: number } | undefined {
  let best: number | undefined;
  for (const e of h) {
    const l = e['eval_loss'];
    if (l !== undefined && Number.isFinite(l) && (best === undefined || l < best)) best = l;
  }
  return best === undefined ? undefined : { value: best };
}

/** Writes the frozen base weights as a plain HF folder (model.safetensors + config.json), atomically. */
export async function saveBase(dir: string, config: LlamaConfig, weights: Weights, metadata: Record<string, string>): Promise<void> {
  await writeFolderAtomic(dir, (tmp) => writeWeights(tmp, { step: 0, config, weights, logHistory: [], metadata }));
}

/** The run folder's 4-bit base (QLoRA/QDoRA), beside `base/`, the full-precision one. */
export const QUANTIZED_BASE_DIR = 'quantized-base';

/**
 * Writes the quantized base as Transformers saves a model loaded with `load_in_4bit` (model.safetensors
 * with bitsandbytes' keys for every quantized linear, io/quant/bnb-4bit-quantize.ts, the other weights
 * float32; config.json with `quantization_config`), atomically. `weights` must still hold every
 * float32 weight that is not quantized.
 */
export async function saveQuantizedBase(dir: string, config: LlamaConfig, weights: Weights, quantized: QuantizedBase, metadata: Record<string, string>): Promise<void> {
  const o = quantized.options;
  const specs: TensorSpec[] = [];
  const raw = new Map<string, Uint8Array>();
  for (const [name, v] of weights) {
    const q = quantized.get(name);
    if (q === undefined) { specs.push({ name, dtype: 'F32', shape: v.shape }); continue; }
    for (const r of bnb4bitTensors(name, q.stored, 'float32')) {
      specs.push({ name: r.name, dtype: r.dtype, shape: r.shape });
      raw.set(r.name, r.data);
    }
  }
  const cfg = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'float32', ...config,
    quantization_config: bnb4bitQuantizationConfig(o.quantType, o.doubleQuant),
  };
  await writeFolderAtomic(dir, async (tmp) => {
    await writeSafetensorsStreaming(join(tmp, FILES.model), specs,
      async (n) => raw.get(n) ?? ((await weights.get(n)!.data()) as Float32Array), { format: 'pt', ...metadata });
    await writeFileAtomic(join(tmp, 'config.json'), json(cfg));
  });
}

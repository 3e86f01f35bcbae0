/**
 * The trainer's defaults, in one place (nanoGPT's `GPTConfig` style: each value with why).
 * `train()` fills every option the caller leaves out from here, and `dorascope train` shows
 * the same values as its option defaults.
 */
import type { LlamaConfig } from './types.js';

export const TRAIN_DEFAULTS = {
  /** Seeds the init, LoRA's A, the batches and the split: the same seed gives the same run. */
  seed: 0,
  /** LoRA rank (PEFT `LoraConfig`'s default r = 8) and alpha = 2r, the usual choice, so s = alpha/r = 2. */
  r: 8,
  /**
   * VeRA's rank: PEFT `VeraConfig`'s default r = 256. VeRA trains only λ_b and λ_d, so it takes far higher
   * ranks than LoRA (the VeRA paper uses 256–1024) at a fraction of LoRA's trainable parameters.
   */
  veraR: 256,
  alpha: 16,
  /** rsLoRA's alpha/√r scaling is opt-in in PEFT (`use_rslora=False`). */
  rslora: false,
  /** The query and value projections: the LoRA paper's choice (§7.1) and PEFT's default for Llama. */
  target: ['q_proj', 'v_proj'] as readonly string[],
  /** DoRA: treat ‖W + sBA‖ as a constant in backward (paper §4.3), as PEFT does. */
  doraDetach: true,
  /** `--quantize`: bitsandbytes' block of 64 values per absmax (Transformers' Linear4bit default). */
  quantBlockSize: 64,
  /**
   * `--quantize`: double quantization on, the QLoRA paper's recipe (§3: saves 0.37 bit per parameter);
   * Transformers' BitsAndBytesConfig leaves it off unless `bnb_4bit_use_double_quant=True`.
   */
  doubleQuant: true,
  /**
   * AdamW learning rate. Adapters start at zero (B = 0) and train few parameters, so they take a
   * larger rate than full fine-tuning.
   */
  lr: { full: 3e-3, adapter: 1e-2 },
  /** Hugging Face scheduler name; constant, so a run's rate does not depend on its length. */
  lrScheduler: 'constant',
  /** No warmup and no weight decay unless asked (HF TrainingArguments' defaults). */
  warmupSteps: 0,
  warmupRatio: 0,
  weightDecay: 0,
  /** Sequences per step and bytes (tokens) per sequence. */
  batchSize: 8,
  contextLength: 32,
  /** Held-out evaluation and checkpoints only at the end, unless asked. */
  evalEvery: 0,
  saveEvery: 0,
  /** State of the Union text: the pretraining corpus (`cmudict` is the downstream task). */
  dataName: 'sotu',
  /** A fresh random model, or an HF folder to start from. */
  init: 'random',
  /** The `--init random` model: a two-layer byte-level Llama (config.json field names). */
  model: {
    vocab_size: 256, hidden_size: 64, intermediate_size: 172, num_hidden_layers: 2,
    num_attention_heads: 4, max_position_embeddings: 64, rms_norm_eps: 1e-6, rope_theta: 10000,
  } as Readonly<LlamaConfig>,
} as const;

/** The default learning rate of a method: full fine-tuning's, or the adapters'. */
export function defaultLr(method: 'full' | 'lora' | 'dora' | 'vera' | 'dvora'): number {
  return method === 'full' ? TRAIN_DEFAULTS.lr.full : TRAIN_DEFAULTS.lr.adapter;
}

/** Each method's default rank: VeRA's random projections need a much higher one than LoRA's factors. */
const DEFAULT_RANK: Readonly<Record<'full' | 'lora' | 'dora' | 'vera' | 'dvora', number>> = {
  full: TRAIN_DEFAULTS.r, lora: TRAIN_DEFAULTS.r, dora: TRAIN_DEFAULTS.r, vera: TRAIN_DEFAULTS.veraR, dvora: TRAIN_DEFAULTS.veraR,
};

/** The rank `method` trains at when `--r` is not given. */
export function defaultRank(method: 'full' | 'lora' | 'dora' | 'vera' | 'dvora'): number {
  return DEFAULT_RANK[method];
}

/** PEFT VeraConfig's defaults (`tuners/vera/config.py`): d_initial 0.1, projection_prng_key 0. */
export const VERA_DEFAULTS = { dInitial: 0.1, projectionKey: 0 } as const;

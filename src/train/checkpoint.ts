import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { writeSafetensors, type WriteTensor } from '../io/safetensors/writer.js';
import type { Adapters, LlamaConfig, Weights } from './model.js';

export interface CheckpointInfo {
  step: number;
  config: LlamaConfig;
  weights: Weights;
  adapters?: Adapters;
  /** PEFT fields for adapter_config.json. */
  peft?: { r: number; alpha: number; rslora: boolean; target: string[] };
  logHistory: ReadonlyArray<Record<string, number | undefined>>;
  /** Recorded in the safetensors metadata: backend, dataset, seed, method. */
  metadata: Record<string, string>;
}

function f32(name: string, v: { shape: number[]; dataSync(): ArrayLike<number> }): WriteTensor {
  return { name, dtype: 'F32', shape: v.shape, data: Float32Array.from(v.dataSync()) };
}

/**
 * Writes `RUN_DIR/checkpoint-<step>/` in the HF Trainer layout: full →
 * model.safetensors + config.json; lora/dora → adapter_model.safetensors +
 * adapter_config.json with PEFT's key names (`base_model.model.<module>.lora_A.weight`,
 * `lora_B.weight`, `lora_magnitude_vector`); trainer_state.json last, so a
 * folder without it is incomplete. Every file is written atomically.
 * Not written yet: optimizer state (so no --resume).
 */
export async function saveCheckpoint(runDir: string, c: CheckpointInfo): Promise<string> {
  const dir = join(runDir, `checkpoint-${c.step}`);
  await writeInto(dir, c, true);
  return dir;
}

async function writeInto(dir: string, c: CheckpointInfo, withState: boolean): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const config = { architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'float32', ...c.config };
  if (c.adapters === undefined) {
    const tensors = [...c.weights].map(([n, v]) => f32(n, v));
    await writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt', ...c.metadata });
    await writeFileAtomic(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  } else {
    const tensors: WriteTensor[] = [];
    for (const [mod, p] of c.adapters.layers) {
      const k = `base_model.model.${mod}`;
      tensors.push(f32(`${k}.lora_A.weight`, p.A), f32(`${k}.lora_B.weight`, p.B));
      if (p.magnitude) tensors.push(f32(`${k}.lora_magnitude_vector`, p.magnitude));
    }
    await writeSafetensors(join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt', ...c.metadata });
    const pf = c.peft!;
    const adapterConfig = {
      peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: null, r: pf.r, lora_alpha: pf.alpha,
      use_rslora: pf.rslora, use_dora: c.adapters.variant.name === 'dora', target_modules: pf.target,
      lora_dropout: 0, bias: 'none', fan_in_fan_out: false, modules_to_save: null, init_lora_weights: true,
      rank_pattern: {}, alpha_pattern: {}, layers_to_transform: null,
    };
    await writeFileAtomic(join(dir, 'adapter_config.json'), `${JSON.stringify(adapterConfig, null, 2)}\n`);
  }
  if (!withState) return;
  const state = { global_step: c.step, max_steps: c.step, log_history: c.logHistory };
  await writeFileAtomic(join(dir, 'trainer_state.json'), `${JSON.stringify(state, null, 2)}\n`);
}

/** Writes the frozen base weights as a plain HF folder (model.safetensors + config.json). */
export async function saveBase(dir: string, config: LlamaConfig, weights: Weights, metadata: Record<string, string>): Promise<void> {
  await writeInto(dir, { step: 0, config, weights, logHistory: [], metadata }, false);
}

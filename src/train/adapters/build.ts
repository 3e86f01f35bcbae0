import { DorascopeError } from '../../errors.js';
import type { Trainable } from '../checkpoint.js';
import { weightShapes, type Adapters, type LlamaConfig, type Weights } from '../model.js';
import { doraVariant, initMagnitude } from './dora.js';
import { loraScaling } from '../../methods/lora.js';
import { initLora, loraVariant, type LoraParams } from './lora.js';

export interface AdapterSpec {
  method: 'lora' | 'dora';
  r: number;
  alpha: number;
  rslora: boolean;
  /** Module names (`q_proj`, …) that train A, B (and m for DoRA). */
  target: readonly string[];
  /** DoRA: module names that train m only (paper Table 6). */
  magnitudeOnly: readonly string[];
  doraDetach: boolean;
}

export interface BuiltAdapters {
  adapters: Adapters;
  /** Every adapter tensor under its PEFT key (what adapter_model.safetensors holds). */
  saved: Trainable[];
  /** The subset the optimizer updates. */
  trainables: Trainable[];
}

/** The module name a weight belongs to (`model.layers.0.self_attn.q_proj` → `q_proj`). */
const leaf = (base: string) => base.slice(base.lastIndexOf('.') + 1);

/**
 * Puts a LoRA/DoRA adapter (PEFT init: A Kaiming-uniform, B = 0, m = ‖W‖_row) on every linear
 * module named in `target` or `magnitudeOnly`, in weight order, drawing A from `rand`.
 * Magnitude-only modules (paper Table 6: magnitude on all modules, direction on some) are
 * ordinary DoRA modules whose A and B are never trained: B stays 0, so W' = W0 and the layer
 * is m ⊙ W0/‖W0‖_row, which PEFT and our merge compute from the same three tensors.
 */
export function buildAdapters(config: LlamaConfig, weights: Weights, spec: AdapterSpec, rand: () => number): BuiltAdapters {
  if (spec.magnitudeOnly.length > 0 && spec.method !== 'dora') {
    throw new DorascopeError('E_USAGE', `--magnitude-only trains DoRA's magnitude; it needs --method dora, not ${spec.method}`);
  }
  const both = spec.magnitudeOnly.filter((m) => spec.target.includes(m));
  if (both.length > 0) {
    throw new DorascopeError('E_USAGE', `${both.join(',')} is in both --target and --magnitude-only; a module trains either its direction too or only its magnitude`);
  }
  const s = loraScaling(spec.r, spec.alpha, spec.rslora);
  const layers = new Map<string, LoraParams>();
  const saved: Trainable[] = [], trainables: Trainable[] = [];
  let directions = 0, magnitudes = 0;
  try {
    for (const [name, shape] of weightShapes(config)) {
      const base = name.slice(0, -'.weight'.length);
      const direction = spec.target.includes(leaf(base));
      if (!direction && !spec.magnitudeOnly.includes(leaf(base))) continue;
      const p = initLora(shape[0]!, shape[1]!, spec.r, s, rand);
      if (spec.method === 'dora') p.magnitude = initMagnitude(weights.get(name)!, p);
      layers.set(base, p);
      const k = `base_model.model.${base}`;
      const A = { key: `${k}.lora_A.weight`, v: p.A }, B = { key: `${k}.lora_B.weight`, v: p.B };
      const m = p.magnitude ? [{ key: `${k}.lora_magnitude_vector`, v: p.magnitude }] : [];
      saved.push(A, B, ...m);
      if (direction) trainables.push(A, B, ...m), directions++;
      else trainables.push(...m), magnitudes++;
    }
    if (directions === 0) throw new DorascopeError('E_USAGE', `--target ${spec.target.join(',')} matches no linear module`);
    if (spec.magnitudeOnly.length > 0 && magnitudes === 0) {
      throw new DorascopeError('E_USAGE', `--magnitude-only ${spec.magnitudeOnly.join(',')} matches no linear module`);
    }
  } catch (e) {
    for (const { v } of saved) v.dispose();
    throw e;
  }
  return {
    adapters: { variant: spec.method === 'lora' ? loraVariant : doraVariant(spec.doraDetach), layers },
    saved, trainables,
  };
}

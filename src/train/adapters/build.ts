import { DorascopeError } from '../../errors.js';
import { adapterKey } from '../../io/peft/keys.js';
import type { Trainable } from '../checkpoint.js';
import { weightShapes, type Adapters, type LlamaConfig, type Weights } from '../model.js';
import { doraVariant } from './dora.js';
import { loraScaling } from '../../methods/lora.js';
import { initLora, loraVariant, type AdapterVariant, type LoraParams } from './lora.js';

export type AdapterMethod = 'lora' | 'dora';

export interface AdapterSpec {
  method: AdapterMethod;
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

/** Each adapter method's training variant: a new method adds one line here. */
const VARIANTS: Readonly<Record<AdapterMethod, (spec: Pick<AdapterSpec, 'doraDetach'>) => AdapterVariant>> = {
  lora: () => loraVariant,
  dora: (spec) => doraVariant(spec.doraDetach),
};

/** The training variant of `method`. */
export function adapterVariant(spec: Pick<AdapterSpec, 'method' | 'doraDetach'>): AdapterVariant {
  return VARIANTS[spec.method](spec);
}

/** `--magnitude-only` needs a variant that trains a magnitude (`variant` undefined: full fine-tuning). */
export function checkMagnitudeOnly(method: string, variant: AdapterVariant | undefined, magnitudeOnly: readonly string[]): void {
  if (magnitudeOnly.length > 0 && !(variant?.roles.includes('magnitude') ?? false)) {
    throw new DorascopeError('E_USAGE', `--magnitude-only trains DoRA's magnitude; it needs --method dora, not ${method}`);
  }
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
  const variant = adapterVariant(spec);
  checkMagnitudeOnly(spec.method, variant, spec.magnitudeOnly);
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
      const W = weights.get(name);
      if (W === undefined) throw new DorascopeError('E_INTERNAL', `no base weight ${name} for its adapter`);
      variant.init(W, p);
      layers.set(base, p);
      const A = { key: adapterKey(base, 'A'), v: p.A }, B = { key: adapterKey(base, 'B'), v: p.B };
      const own = variant.own(p).map(({ role, v }) => ({ key: adapterKey(base, role), v }));
      saved.push(A, B, ...own);
      if (direction) trainables.push(A, B, ...own), directions++;
      else trainables.push(...own), magnitudes++;
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
    adapters: { variant, layers },
    saved, trainables,
  };
}

import { DorascopeError } from '../../errors.js';
import { layerKey } from '../../io/peft/keys.js';
import type { Trainable } from '../checkpoint.js';
import { weightShapes, type Adapters, type LlamaConfig, type Weights } from '../model.js';
import { doraVariant } from './dora.js';
import { loraVariant, type AdapterHyper, type AdapterMethod, type AdapterVariant } from './lora.js';
import { dvoraVariant, veraVariant } from './vera.js';

export type { AdapterMethod } from './lora.js';

export interface AdapterSpec extends AdapterHyper {
  method: AdapterMethod;
  /** Module names (`q_proj`, …) whose every adapter tensor trains. */
  target: readonly string[];
  /** DoRA/DVoRA: module names that train m only (paper Table 6). */
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
  vera: () => veraVariant,
  dvora: (spec) => dvoraVariant(spec.doraDetach),
};

/** The adapter methods `train --method` takes besides full fine-tuning. */
export const ADAPTER_METHODS = Object.keys(VARIANTS) as AdapterMethod[];

/** The training variant of `method`. */
export function adapterVariant(spec: Pick<AdapterSpec, 'method' | 'doraDetach'>): AdapterVariant {
  return VARIANTS[spec.method](spec);
}

/** `--magnitude-only` needs a variant that trains a magnitude (`variant` undefined: full fine-tuning). */
export function checkMagnitudeOnly(method: string, variant: AdapterVariant | undefined, magnitudeOnly: readonly string[]): void {
  if (magnitudeOnly.length > 0 && !(variant?.trainsMagnitude ?? false)) {
    throw new DorascopeError('E_USAGE', `--magnitude-only trains DoRA's magnitude; it needs --method dora or dvora, not ${method}`);
  }
}

/** The module name a weight belongs to (`model.layers.0.self_attn.q_proj` → `q_proj`). */
const leaf = (base: string) => base.slice(base.lastIndexOf('.') + 1);

/**
 * Puts the method's adapter on every linear module named in `target` or `magnitudeOnly`, in
 * weight order (LoRA/DoRA, PEFT init: A Kaiming-uniform from `rand`, B = 0, m = ‖W‖_row; VeRA:
 * see vera.ts). The variant creates the tensors shared by all layers first (VeRA's projections,
 * sized to the largest adapted layer), then each layer's own. Magnitude-only modules (paper
 * Table 6: magnitude on all modules, direction on some) are ordinary DoRA/DVoRA modules whose
 * direction tensors never train: ΔW stays 0, so the layer is m ⊙ W0/‖W0‖_row, which PEFT and our
 * merge compute from the same saved tensors.
 */
export function buildAdapters(config: LlamaConfig, weights: Weights, spec: AdapterSpec, rand: () => number): BuiltAdapters {
  const variant = adapterVariant(spec);
  checkMagnitudeOnly(spec.method, variant, spec.magnitudeOnly);
  const both = spec.magnitudeOnly.filter((m) => spec.target.includes(m));
  if (both.length > 0) {
    throw new DorascopeError('E_USAGE', `${both.join(',')} is in both --target and --magnitude-only; a module trains either its direction too or only its magnitude`);
  }
  const chosen: Array<{ base: string; direction: boolean; out: number; in: number }> = [];
  for (const [name, shape] of weightShapes(config)) {
    const base = name.slice(0, -'.weight'.length);
    const direction = spec.target.includes(leaf(base));
    if (direction || spec.magnitudeOnly.includes(leaf(base))) chosen.push({ base, direction, out: shape[0]!, in: shape[1]! });
  }
  if (!chosen.some((c) => c.direction)) throw new DorascopeError('E_USAGE', `--target ${spec.target.join(',')} matches no linear module`);
  if (spec.magnitudeOnly.length > 0 && chosen.every((c) => c.direction)) {
    throw new DorascopeError('E_USAGE', `--magnitude-only ${spec.magnitudeOnly.join(',')} matches no linear module`);
  }
  // B·A has rank at most min(in, out): a larger LoRA rank only adds parameters that cannot change ΔW
  // (PEFT does not stop it; the CLI checks the width first, this catches library callers and odd shapes).
  const narrow = variant.rankAtMostWidth ? chosen.find((c) => spec.r > Math.min(c.in, c.out)) : undefined;
  if (narrow !== undefined) {
    throw new DorascopeError('E_USAGE', `rank ${spec.r} is larger than ${narrow.base} allows (${narrow.out} × ${narrow.in}): a ${spec.method} rank is at most min(fan_in, fan_out)`);
  }
  const layers = new Map<string, unknown>();
  const saved: Trainable[] = [], trainables: Trainable[] = [];
  try {
    const setup = variant.setup(chosen, spec, rand);
    saved.push(...setup.shared);
    for (const c of chosen) {
      const W = weights.get(`${c.base}.weight`);
      if (W === undefined) throw new DorascopeError('E_INTERNAL', `no base weight ${c.base}.weight for its adapter`);
      const p = setup.layer(c, W);
      layers.set(c.base, p);
      for (const { name, v, part } of variant.tensors(p)) {
        const e = { key: layerKey(c.base, name), v };
        saved.push(e);
        if (c.direction || part === 'magnitude') trainables.push(e);
      }
    }
    return { adapters: { variant, layers, shared: setup.shared }, saved, trainables };
  } catch (e) {
    for (const { v } of saved) v.dispose();
    throw e;
  }
}

import type * as tfc from '@tensorflow/tfjs-core';
import { tf } from '../../compute/backend.js';
import type { SavedRole } from '../../io/peft/keys.js';

type T = tfc.Tensor;

/** Trainable factors of one adapted linear layer (PEFT layout: A r×in, B out×r). */
export interface LoraParams {
  A: tfc.Variable;
  B: tfc.Variable;
  scaling: number;
  /** DoRA's magnitude vector (length out), set by the DoRA variant's `init`; absent for plain LoRA. */
  magnitude?: tfc.Variable;
}

/** A tensor a variant adds to A and B, under the PEFT key role it is saved as (io/peft/keys.ts). */
export interface OwnTensor {
  role: SavedRole;
  v: tfc.Variable;
}

/**
 * A method variant is a plug-in, like PEFT's `LoraVariant` (`tuners/lora/variants.py`): it maps
 * the frozen base weight W (out×in), the adapter and the input x (n×in) to the layer output
 * (n×out), and it owns whatever it adds to LoRA's A and B: their initialisation, their saved
 * keys, whether they train, and its adapter_config.json / training_args.json fields. The trainer
 * and the checkpoint writer call these and never ask which method they run.
 */
export interface AdapterVariant {
  readonly name: 'lora' | 'dora';
  /** Roles of the tensors the variant adds to every layer (DoRA: the magnitude). */
  readonly roles: readonly SavedRole[];
  /** adapter_config.json fields that tell PEFT which variant to build (`use_dora`). */
  readonly peftConfig: Readonly<Record<string, unknown>>;
  /** Creates the variant's own tensors once A and B exist (`W`: the layer's frozen base weight). */
  init(W: T, p: LoraParams): void;
  /** The variant's own tensors of one layer, in save order (after A and B). */
  own(p: LoraParams): OwnTensor[];
  /** training_args.json fields of this variant (compared key by key on resume). */
  trainingArgs(magnitudeOnly: readonly string[]): Record<string, unknown>;
  forward(x: T, W: T, p: LoraParams): T;
  /** The effective weight (out×in) this layer applies, i.e. what a merge must produce. */
  merged(W: T, p: LoraParams): T;
}

/** y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ (LoRA paper eq. 3; PEFT's scaling s = alpha/r, or alpha/√r with rsLoRA). */
export const loraVariant: AdapterVariant = {
  name: 'lora',
  roles: [],
  peftConfig: { use_dora: false },
  init() {},
  own: () => [],
  trainingArgs: () => ({}),
  forward(x, W, p) {
    const t = tf();
    const base = t.matMul(x, W, false, true);
    const low = t.matMul(t.matMul(x, p.A, false, true), p.B, false, true);
    return t.add(base, t.mul(low, p.scaling));
  },
  merged(W, p) {
    const t = tf();
    return t.add(W, t.mul(t.matMul(p.B, p.A), p.scaling));
  },
};

/**
 * PEFT initialisation: A Kaiming-uniform(a=√5) → U(-1/√in, 1/√in), B = 0, so
 * the adapted layer equals the base layer at step 0. `rand` is a seeded
 * uniform [0,1) source so runs are reproducible.
 */
export function initLora(out: number, inp: number, r: number, scaling: number, rand: () => number): LoraParams {
  const t = tf();
  const bound = 1 / Math.sqrt(inp);
  const a = new Float32Array(r * inp);
  for (let i = 0; i < a.length; i++) a[i] = (2 * rand() - 1) * bound;
  return {
    A: t.variable(t.tensor2d(a, [r, inp])),
    B: t.variable(t.zeros([out, r])),
    scaling,
  };
}

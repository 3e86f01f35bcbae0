import type * as tfc from '@tensorflow/tfjs-core';
import { tf } from '../../compute/backend.js';
import { savedName } from '../../io/peft/keys.js';
import { loraScaling } from '../../methods/lora.js';
import type { AdapterMethod } from '../types.js';

export type { AdapterMethod } from '../types.js';

type T = tfc.Tensor;

/** The options a run's adapters are built and saved from (each method reads the ones it has). */
export interface AdapterHyper {
  r: number;
  /** LoRA/DoRA: alpha and rsLoRA scaling (s = alpha/r or alpha/√r). */
  alpha: number;
  rslora: boolean;
  /** Module names the adapter is put on (PEFT's target_modules). */
  target: readonly string[];
  /** VeRA/DVoRA: λ_d's initial value (PEFT VeraConfig `d_initial`) and the projections' seed (`projection_prng_key`). */
  dInitial?: number;
  projectionKey?: number;
}

/** Trainable factors of one adapted linear layer (PEFT layout: A r×in, B out×r). */
export interface LoraParams {
  A: tfc.Variable;
  B: tfc.Variable;
  scaling: number;
  /** DoRA's magnitude vector (length out), set by the DoRA variant's set-up; absent for plain LoRA. */
  magnitude?: tfc.Variable;
}

/**
 * A tensor of one adapted layer, under the name PEFT saves it by after `base_model.model.<module>.`
 * (`lora_A.weight`, `vera_lambda_b`, …). `part` says when it trains: `direction` tensors train on
 * the `--target` modules only, `magnitude` tensors also on `--magnitude-only` ones (paper Table 6).
 */
export interface LayerTensor {
  name: string;
  v: tfc.Variable;
  part: 'direction' | 'magnitude';
}

/** A tensor every layer shares (VeRA's projections), saved once under its model-level key and never trained. */
export interface SharedTensor {
  key: string;
  v: tfc.Variable;
}

/** One adapted layer's shape: out×in, as torch's nn.Linear stores the weight. */
export interface LayerShape {
  out: number;
  in: number;
}

/** A method's tensors for a whole run: the shared ones, and a maker of each layer's own parameters. */
export interface AdapterSetup<P> {
  shared: SharedTensor[];
  /** Creates one layer's parameters (`W`: the layer's frozen base weight, out×in). */
  layer(shape: LayerShape, W: T): P;
}

/**
 * The update ΔW a method adds to a frozen linear layer, as a plug-in: LoRA's s·B·A, VeRA's
 * Λ_b·B·Λ_d·A. It owns its parameters (creation, saved names, adapter_config.json). A variant
 * (`plainVariant` here, dora.ts `magnitudeVariant`) turns it into a layer.
 */
export interface UpdateMethod<P> {
  /** See `AdapterVariant.rankAtMostWidth`. */
  readonly rankAtMostWidth: boolean;
  /** The name DoRA's magnitude vector is saved by on top of this update (`lora_magnitude_vector`). */
  readonly magnitudeName: string;
  setup(shapes: readonly LayerShape[], h: AdapterHyper, rand: () => number): AdapterSetup<P>;
  /** The layer's own tensors, in save order. */
  tensors(p: P): LayerTensor[];
  /** x·ΔWᵀ (n×out) for x (n×in), without forming ΔW when that is cheaper. */
  apply(x: T, p: P): T;
  /** ΔW (out×in). */
  delta(p: P): T;
  /** adapter_config.json as PEFT writes it for this method; `magnitude` when DoRA's magnitude is on top. */
  adapterConfig(h: AdapterHyper, magnitude: boolean): Record<string, unknown>;
  /** training_args.json fields of the method (compared key by key on resume). */
  trainingArgs(h: AdapterHyper): Record<string, unknown>;
}

/**
 * A method variant is a plug-in, like PEFT's `LoraVariant` (`tuners/lora/variants.py`): it maps
 * the frozen base weight W (out×in), the layer's parameters P and the input x (n×in) to the layer
 * output (n×out), and it owns its parameters: their creation, saved names, whether they train,
 * and its adapter_config.json / training_args.json fields. The trainer and the checkpoint writer
 * call these and never ask which method they run.
 */
export interface AdapterVariant<P = unknown> {
  readonly name: AdapterMethod;
  /** Whether the variant trains a magnitude vector (so `--magnitude-only` means something). */
  readonly trainsMagnitude: boolean;
  /** Whether a rank above min(in, out) is pointless (LoRA's B·A cannot exceed it; VeRA's shared projections can). */
  readonly rankAtMostWidth: boolean;
  setup(shapes: readonly LayerShape[], h: AdapterHyper, rand: () => number): AdapterSetup<P>;
  /** The layer's own tensors, in save order. */
  tensors(p: P): LayerTensor[];
  adapterConfig(h: AdapterHyper): Record<string, unknown>;
  /** training_args.json fields of this variant (compared key by key on resume). */
  trainingArgs(h: AdapterHyper, magnitudeOnly: readonly string[]): Record<string, unknown>;
  forward(x: T, W: T, p: P): T;
  /** The effective weight (out×in) this layer applies, i.e. what a merge must produce. */
  merged(W: T, p: P): T;
}

/** The update alone: y = x·Wᵀ + x·ΔWᵀ, merged W' = W + ΔW. */
export function plainVariant<P>(name: AdapterMethod, u: UpdateMethod<P>): AdapterVariant<P> {
  return {
    name,
    trainsMagnitude: false,
    rankAtMostWidth: u.rankAtMostWidth,
    setup: (shapes, h, rand) => u.setup(shapes, h, rand),
    tensors: (p) => u.tensors(p),
    adapterConfig: (h) => u.adapterConfig(h, false),
    trainingArgs: (h) => u.trainingArgs(h),
    forward(x, W, p) {
      const t = tf();
      return t.add(t.matMul(x, W, false, true), u.apply(x, p));
    },
    merged: (W, p) => tf().add(W, u.delta(p)),
  };
}

/** LoRA (Hu et al. 2021, eq. 3): ΔW = s·B·A, s = alpha/r (or alpha/√r with rsLoRA, PEFT's `use_rslora`). */
export const loraUpdate: UpdateMethod<LoraParams> = {
  rankAtMostWidth: true,
  magnitudeName: savedName('magnitude'),
  setup(_shapes, h, rand) {
    const s = loraScaling(h.r, h.alpha, h.rslora);
    return { shared: [], layer: (shape) => initLora(shape.out, shape.in, h.r, s, rand) };
  },
  tensors: (p) => [{ name: savedName('A'), v: p.A, part: 'direction' }, { name: savedName('B'), v: p.B, part: 'direction' }],
  apply(x, p) {
    const t = tf();
    return t.mul(t.matMul(t.matMul(x, p.A, false, true), p.B, false, true), p.scaling);
  },
  delta: (p) => tf().mul(tf().matMul(p.B, p.A), p.scaling),
  // PEFT LoraConfig's fields (`tuners/lora/config.py`); `use_dora` makes PEFT build its DoRA variant.
  adapterConfig: (h, magnitude) => ({
    peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: null, r: h.r, lora_alpha: h.alpha,
    use_rslora: h.rslora, use_dora: magnitude, target_modules: [...h.target],
    lora_dropout: 0, bias: 'none', fan_in_fan_out: false, modules_to_save: null, init_lora_weights: true,
    rank_pattern: {}, alpha_pattern: {}, layers_to_transform: null,
  }),
  trainingArgs: (h) => ({ lora_alpha: h.alpha, use_rslora: h.rslora }),
};

/** y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ (LoRA paper eq. 3; PEFT's scaling s = alpha/r, or alpha/√r with rsLoRA). */
export const loraVariant: AdapterVariant<LoraParams> = plainVariant('lora', loraUpdate);

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

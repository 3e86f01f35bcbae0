/**
 * VeRA (Kopiczko et al. 2024, "VeRA: Vector-based Random Matrix Adaptation") as an update plug-in,
 * following huggingface/peft `tuners/vera/`:
 *
 * - one pair of frozen random projections shared by every adapted layer, vera_A (r × max in) and
 *   vera_B (max out × r), sized to the largest adapted layer (`model.py` `_find_dim`, line 112) and
 *   drawn Kaiming-uniform from `projection_prng_key` (`model.py` `_kaiming_init`, line 49, and
 *   `_init_vera_A_vera_B`, line 146: A first, then B);
 * - per layer λ_b (out), initialised to 0, and λ_d (r), initialised to `d_initial` = 0.1
 *   (`layer.py` `reset_vera_parameters`, line 135), so ΔW = 0 at step 0;
 * - ΔW = (λ_b ⊙ B[:out, :]) · (λ_d ⊙ A[:, :in]), no scaling factor; each layer slices the shared
 *   projections to its own in/out features (`layer.py` `get_delta_weight`, line 242, and
 *   `forward`, line 280: y = x·Wᵀ + λ_b ⊙ ((λ_d ⊙ (x·A_sᵀ))·B_sᵀ)).
 *
 * Saved keys (PEFT `model.py` `_get_adapter_state_dict`, line 270, adapter name removed as
 * `get_peft_model_state_dict` does): `base_model.vera_A`, `base_model.vera_B` once, and
 * `base_model.model.<module>.vera_lambda_b` / `.vera_lambda_d` per layer; io/peft/vera.ts reads them.
 *
 * Our projections come from mulberry32(projection_prng_key), not torch's generator, so the same
 * key gives other numbers than PEFT's: the trainer therefore always saves them
 * (`save_projection: true`), and PEFT then loads them from the file instead of regenerating them.
 */
import { VERA_DEFAULTS } from '../defaults.js';
import type * as tfc from '@tensorflow/tfjs-core';
import { tf } from '../../compute/backend.js';
import { modelKey } from '../../io/peft/keys.js';
import { mulberry32 } from '../../random.js';
import { magnitudeVariant, type WithMagnitude } from './dora.js';
import { plainVariant, type AdapterHyper, type AdapterVariant, type UpdateMethod } from './lora.js';

type T = tfc.Tensor;

/** One VeRA layer: its trainable scaling vectors and the shared frozen projections it slices. */
export interface VeraParams {
  /** λ_b (out) and λ_d (r): the layer's only trainable tensors. */
  lambdaB: tfc.Variable;
  lambdaD: tfc.Variable;
  /** The shared projections, whole: vera_A (r × max in), vera_B (max out × r). Frozen. */
  A: tfc.Variable;
  B: tfc.Variable;
  out: number;
  in: number;
}

/**
 * Kaiming-uniform with gain √2 on fan_in = the tensor's second dimension: U(−√(6/fan_in), √(6/fan_in))
 * (PEFT `_kaiming_init`: std = √2/√fan, bound = √3·std), drawn row-major from `rand`.
 */
export function kaimingUniform(rows: number, cols: number, rand: () => number): Float32Array {
  const bound = Math.sqrt(3) * (Math.SQRT2 / Math.sqrt(cols));
  const a = new Float32Array(rows * cols);
  for (let i = 0; i < a.length; i++) a[i] = (2 * rand() - 1) * bound;
  return a;
}

/** The slices a layer of `p.out`×`p.in` uses: A[:, :in] (r×in) and B[:out, :] (out×r). */
function sliced(p: VeraParams): { A: T; B: T } {
  const t = tf();
  const r = p.A.shape[0]!;
  return {
    A: p.A.shape[1] === p.in ? p.A : t.slice(p.A, [0, 0], [r, p.in]),
    B: p.B.shape[0] === p.out ? p.B : t.slice(p.B, [0, 0], [p.out, r]),
  };
}

const hyper = (h: AdapterHyper) => ({
  dInitial: h.dInitial ?? VERA_DEFAULTS.dInitial,
  projectionKey: h.projectionKey ?? VERA_DEFAULTS.projectionKey,
});

export const veraUpdate: UpdateMethod<VeraParams> = {
  // Each layer scales r random directions; r is not bounded by the layer's width (the paper uses r = 1024 on 768-wide RoBERTa).
  rankAtMostWidth: false,
  // PEFT has no DVoRA; its DoRA magnitude is saved as `lora_magnitude_vector`, and ours on VeRA
  // takes VeRA's prefix (docs/formats.md, "DVoRA (dorascope's format)").
  magnitudeName: 'vera_magnitude_vector',
  setup(shapes, h, _rand) {
    const t = tf();
    const { dInitial, projectionKey } = hyper(h);
    const maxIn = Math.max(...shapes.map((s) => s.in)), maxOut = Math.max(...shapes.map((s) => s.out));
    // The projections' own generator, as PEFT seeds one from projection_prng_key apart from the run's.
    const g = mulberry32(projectionKey);
    const A = t.variable(t.tensor2d(kaimingUniform(h.r, maxIn, g), [h.r, maxIn]), false);
    const B = t.variable(t.tensor2d(kaimingUniform(maxOut, h.r, g), [maxOut, h.r]), false);
    return {
      shared: [{ key: modelKey('vera_A'), v: A }, { key: modelKey('vera_B'), v: B }],
      layer: (shape) => ({
        lambdaB: t.variable(t.zeros([shape.out])),
        lambdaD: t.variable(t.fill([h.r], dInitial)),
        A, B, out: shape.out, in: shape.in,
      }),
    };
  },
  tensors: (p) => [{ name: 'vera_lambda_b', v: p.lambdaB, part: 'direction' }, { name: 'vera_lambda_d', v: p.lambdaD, part: 'direction' }],
  apply(x, p) {
    const t = tf();
    const { A, B } = sliced(p);
    return t.mul(t.matMul(t.mul(t.matMul(x, A, false, true), p.lambdaD), B, false, true), p.lambdaB);
  },
  delta(p) {
    const t = tf();
    const { A, B } = sliced(p);
    return t.matMul(t.mul(B, t.expandDims(p.lambdaB, 1)), t.mul(A, t.expandDims(p.lambdaD, 1)));
  },
  // PEFT VeraConfig's fields (`tuners/vera/config.py`); DVoRA adds `use_dora` (docs/formats.md, "DVoRA").
  adapterConfig: (h, magnitude) => ({
    peft_type: 'VERA', task_type: 'CAUSAL_LM', base_model_name_or_path: null, r: h.r,
    target_modules: [...h.target], projection_prng_key: hyper(h).projectionKey, save_projection: true,
    vera_dropout: 0, d_initial: hyper(h).dInitial, fan_in_fan_out: false, bias: 'none', modules_to_save: null,
    init_weights: true, layers_to_transform: null, layers_pattern: null,
    ...(magnitude ? { use_dora: true } : {}),
  }),
  trainingArgs: (h) => ({ d_initial: hyper(h).dInitial, projection_prng_key: hyper(h).projectionKey }),
};

export const veraVariant: AdapterVariant<VeraParams> = plainVariant('vera', veraUpdate);

/** DVoRA (DoRA paper, Liu et al. 2024): DoRA's magnitude on VeRA's update of the direction. */
export function dvoraVariant(detachNorm: boolean): AdapterVariant<WithMagnitude<VeraParams>> {
  return magnitudeVariant('dvora', veraUpdate, detachNorm);
}

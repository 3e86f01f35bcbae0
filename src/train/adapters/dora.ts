import type * as tfc from '@tensorflow/tfjs-core';
import { DorascopeError } from '../../errors.js';
import { tf } from '../../compute/backend.js';
import { loraUpdate, loraVariant, plainVariant, type AdapterMethod, type AdapterVariant, type LoraParams, type UpdateMethod } from './lora.js';

type T = tfc.Tensor;

/** A layer's parameters with DoRA's magnitude vector (length out) on top of its update's. */
export type WithMagnitude<P> = P & { magnitude?: tfc.Variable };

/**
 * Evaluates `f` as a constant of the gradient tape (tfjs has no stopGradient). Ops run inside a
 * customGrad's forward are not recorded (the engine raises `kernelDepth`), and this customGrad has
 * no tensor inputs, so backprop never reaches it: no zero gradients are built or added, and the
 * ops that consume the result skip their gradient wrt it (e.g. `div`'s wrt its divisor). An
 * identity customGrad returning zeros (the earlier `detach`) still ran the whole backward of
 * the norm on those zeros: 84 → 62 kernels per DoRA layer forward + backward. Detaching
 * ‖W + ΔW‖ is the paper's §4.3 gradient simplification (PEFT tuners/lora/dora.py:
 * `weight_norm = weight_norm.detach()`).
 */
function constant(f: () => T): T {
  const t = tf();
  const body = () => ({ value: f(), gradFunc: () => [] as T[] });
  return t.customGrad(body as unknown as Parameters<typeof t.customGrad>[0])() as T;
}

const rowNorm = (V: T): T => tf().sqrt(tf().sum(tf().square(V), 1));

/** Row norms of the adapted LoRA weight W' = W + s·B·A (out×in → out): PEFT's weight_norm over dim 1. */
export function adaptedRowNorm(W: T, p: LoraParams): T {
  return rowNorm(loraVariant.merged(W, p));
}

function magnitudeOf(p: { magnitude?: tfc.Variable }): tfc.Variable {
  if (p.magnitude === undefined) throw new DorascopeError('E_INTERNAL', 'DoRA layer without a magnitude vector (initMagnitude was not called)');
  return p.magnitude;
}

/**
 * DoRA's magnitude on top of any update (Liu et al. 2024, eq. 5): y = plain(x) ⊙ (m / ‖W'‖),
 * W' = W + ΔW, since x·W'ᵀ is exactly the plain layer's output. On LoRA's update this is DoRA;
 * on VeRA's it is the paper's DVoRA (§5.4, Table 5). m is initialised to ‖W0 + ΔW‖ row-wise, as PEFT does
 * (`tuners/lora/dora.py` `DoraLinearLayer.update_layer`); every update here starts at ΔW = 0, so
 * that is ‖W0‖ and the layer equals the base at step 0. With `detachNorm` (paper §4.3, PEFT
 * default) ‖W'‖ is computed off the tape, a constant in backprop, which saves memory and time;
 * without it the exact gradient flows through the norm.
 */
export function magnitudeVariant<P extends object>(name: AdapterMethod, u: UpdateMethod<P>, detachNorm: boolean): AdapterVariant<WithMagnitude<P>> {
  const plain = plainVariant(name, u);
  return {
    name,
    trainsMagnitude: true,
    rankAtMostWidth: u.rankAtMostWidth,
    setup(shapes, h, rand) {
      const s = u.setup(shapes, h, rand);
      return {
        shared: s.shared,
        layer(shape, W) {
          const p: WithMagnitude<P> = s.layer(shape, W);
          p.magnitude = tf().tidy(() => tf().variable(rowNorm(plain.merged(W, p))));
          return p;
        },
      };
    },
    tensors: (p) => [...u.tensors(p), { name: u.magnitudeName, v: magnitudeOf(p), part: 'magnitude' }],
    adapterConfig: (h) => u.adapterConfig(h, true),
    // magnitude_only: paper Table 6's modules that train m alone; dora_detach: §4.3's detached norm.
    trainingArgs: (h, magnitudeOnly) => ({ ...u.trainingArgs(h), magnitude_only: magnitudeOnly, dora_detach: detachNorm }),
    forward(x, W, p) {
      const t = tf();
      const m = magnitudeOf(p);
      const norm = detachNorm ? constant(() => rowNorm(plain.merged(W, p))) : rowNorm(plain.merged(W, p));
      return t.mul(plain.forward(x, W, p), t.div(m, norm));
    },
    merged(W, p) {
      const t = tf();
      const m = magnitudeOf(p);
      const Wp = plain.merged(W, p);
      return t.mul(Wp, t.expandDims(t.div(m, rowNorm(Wp)), 1));
    },
  };
}

/** DoRA as a variant of the LoRA layer (PEFT `tuners/lora/variants.py` `DoraLinearVariant`). */
export function doraVariant(detachNorm: boolean): AdapterVariant<WithMagnitude<LoraParams>> {
  return magnitudeVariant('dora', loraUpdate, detachNorm);
}

/**
 * PEFT initialises m = ‖W0 + s·B·A‖ row-wise (`tuners/lora/dora.py` `DoraLinearLayer.update_layer`,
 * with B = 0 at init that is ‖W0‖), so at step 0 DoRA equals the base layer.
 */
export function initMagnitude(W: T, p: LoraParams): tfc.Variable {
  const t = tf();
  return t.tidy(() => t.variable(adaptedRowNorm(W, p)));
}

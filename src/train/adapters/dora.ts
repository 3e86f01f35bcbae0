import type * as tfc from '@tensorflow/tfjs-core';
import { DorascopeError } from '../../errors.js';
import { tf } from '../../compute/backend.js';
import { loraVariant, type AdapterVariant, type LoraParams } from './lora.js';

type T = tfc.Tensor;

/**
 * Evaluates `f` as a constant of the gradient tape (tfjs has no stopGradient). Ops run inside a
 * customGrad's forward are not recorded (the engine raises `kernelDepth`), and this customGrad has
 * no tensor inputs, so backprop never reaches it: no zero gradients are built or added, and the
 * ops that consume the result skip their gradient wrt it (e.g. `div`'s wrt its divisor). An
 * identity customGrad returning zeros (the earlier `detach`) still ran the whole backward of
 * the norm on those zeros: 84 → 62 kernels per DoRA layer forward + backward. Detaching
 * ‖W + sBA‖ is the paper's §4.3 gradient simplification (PEFT tuners/lora/dora.py:
 * `weight_norm = weight_norm.detach()`).
 */
function constant(f: () => T): T {
  const t = tf();
  const body = () => ({ value: f(), gradFunc: () => [] as T[] });
  return t.customGrad(body as unknown as Parameters<typeof t.customGrad>[0])() as T;
}

/** Row norms of the adapted weight W' = W + s·B·A (out×in → out): PEFT's weight_norm over dim 1. */
export function adaptedRowNorm(W: T, p: LoraParams): T {
  const t = tf();
  return t.sqrt(t.sum(t.square(loraVariant.merged(W, p)), 1));
}

function magnitudeOf(p: LoraParams): tfc.Variable {
  if (p.magnitude === undefined) throw new DorascopeError('E_INTERNAL', 'DoRA layer without a magnitude vector (initMagnitude was not called)');
  return p.magnitude;
}

/**
 * DoRA (Liu et al. 2024, eq. 5) as a variant of the LoRA layer: y = lora(x) ⊙ (m / ‖W'‖),
 * W' = W + s·BA, since x·W'ᵀ is exactly the LoRA layer's output. With `detachNorm` (paper
 * §4.3, PEFT default) ‖W'‖ is computed off the tape, a constant in backprop, which saves memory
 * and time; without it the exact gradient flows through the norm.
 */
export function doraVariant(detachNorm: boolean): AdapterVariant {
  return {
    name: 'dora',
    roles: ['magnitude'],
    peftConfig: { use_dora: true },
    init(W, p) {
      p.magnitude = initMagnitude(W, p);
    },
    own: (p) => [{ role: 'magnitude', v: magnitudeOf(p) }],
    // magnitude_only: paper Table 6's modules that train m alone; dora_detach: §4.3's detached norm.
    trainingArgs: (magnitudeOnly) => ({ magnitude_only: magnitudeOnly, dora_detach: detachNorm }),
    forward(x, W, p) {
      const t = tf();
      const m = magnitudeOf(p);
      const norm = detachNorm ? constant(() => adaptedRowNorm(W, p)) : adaptedRowNorm(W, p);
      return t.mul(loraVariant.forward(x, W, p), t.div(m, norm));
    },
    merged(W, p) {
      const t = tf();
      const m = magnitudeOf(p);
      const Wp = loraVariant.merged(W, p);
      return t.mul(Wp, t.expandDims(t.div(m, t.sqrt(t.sum(t.square(Wp), 1))), 1));
    },
  };
}

/**
 * PEFT initialises m = ‖W0 + s·B·A‖ row-wise (`tuners/lora/dora.py` `DoraLinearLayer.update_layer`,
 * with B = 0 at init that is ‖W0‖), so at step 0 DoRA equals the base layer.
 */
export function initMagnitude(W: T, p: LoraParams): tfc.Variable {
  const t = tf();
  return t.tidy(() => t.variable(adaptedRowNorm(W, p)));
}

import type * as tfc from '@tensorflow/tfjs-core';
import { tf } from '../backend.js';
import type { AdapterVariant, LoraParams } from './lora.js';

type T = tfc.Tensor;

/** Identity whose gradient is zero: the ‖W + sBA‖ "constant" of DoRA §4.3. */
function detach(x: T): T {
  const t = tf();
  const body = (v: T) => ({ value: t.clone(v), gradFunc: (dy: T) => t.zerosLike(dy) });
  const f = t.customGrad(body as unknown as Parameters<typeof t.customGrad>[0]);
  return f(x) as T;
}

/** Row norms of the adapted weight W' = W + s·B·A (out×in → out): PEFT's weight_norm over dim 1. */
export function adaptedRowNorm(W: T, p: LoraParams): T {
  const t = tf();
  const Wp = t.add(W, t.mul(t.matMul(p.B, p.A), p.scaling));
  return t.sqrt(t.sum(t.square(Wp), 1));
}

/**
 * DoRA (Liu et al. 2024, eq. 5): y = x·W'ᵀ ⊙ (m / ‖W'‖), W' = W + s·BA.
 * With `detachNorm` (paper §4.3, PEFT default) ‖W'‖ is treated as a constant
 * in backprop, which saves memory; without it the exact gradient flows.
 */
export function doraVariant(detachNorm: boolean): AdapterVariant {
  return {
    name: 'dora',
    forward(x, W, p) {
      const t = tf();
      if (p.magnitude === undefined) throw new Error('DoRA layer without a magnitude vector');
      const rawNorm = adaptedRowNorm(W, p);
      const norm = detachNorm ? detach(rawNorm) : rawNorm;
      const base = t.matMul(x, W, false, true);
      const low = t.matMul(t.matMul(x, p.A, false, true), p.B, false, true);
      const adapted = t.add(base, t.mul(low, p.scaling));
      return t.mul(adapted, t.div(p.magnitude, norm));
    },
    merged(W, p) {
      const t = tf();
      if (p.magnitude === undefined) throw new Error('DoRA layer without a magnitude vector');
      const Wp = t.add(W, t.mul(t.matMul(p.B, p.A), p.scaling));
      return t.mul(Wp, t.expandDims(t.div(p.magnitude, adaptedRowNorm(W, p)), 1));
    },
  };
}

/** PEFT initialises m = ‖W‖ row-wise, so at step 0 (B = 0) DoRA equals the base layer. */
export function initMagnitude(W: T, p: LoraParams): tfc.Variable {
  const t = tf();
  return t.tidy(() => t.variable(adaptedRowNorm(W, p)));
}

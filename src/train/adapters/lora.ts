import type * as tfc from '@tensorflow/tfjs-core';
import { tf } from '../../compute/backend.js';

type T = tfc.Tensor;

/** Trainable factors of one adapted linear layer (PEFT layout: A r×in, B out×r). */
export interface LoraParams {
  A: tfc.Variable;
  B: tfc.Variable;
  scaling: number;
  /** DoRA magnitude vector (length out); absent for plain LoRA. */
  magnitude?: tfc.Variable;
}

/**
 * A method variant is a plug-in (STYLE.md): it maps the frozen base weight W
 * (out×in), the adapter and the input x (n×in) to the layer output (n×out).
 */
export interface AdapterVariant {
  readonly name: 'lora' | 'dora';
  forward(x: T, W: T, p: LoraParams): T;
  /** The effective weight (out×in) this layer applies, i.e. what a merge must produce. */
  merged(W: T, p: LoraParams): T;
}

/** y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ (LoRA paper eq. 3; PEFT's scaling s = alpha/r, or alpha/√r with rsLoRA). */
export const loraVariant: AdapterVariant = {
  name: 'lora',
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

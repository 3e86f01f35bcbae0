import type * as tfc from '@tensorflow/tfjs-core';
import { tf } from '../compute/backend.js';

export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

/**
 * AdamW (Loshchilov & Hutter 2019): Adam moments with decoupled weight decay,
 * p ← p − lr·(m̂/(√v̂+ε) + wd·p). tfjs-core has Adam but no AdamW, and we need
 * the moments as plain tensors so a checkpoint can save and restore them.
 */
export class AdamW {
  readonly m = new Map<string, tfc.Variable>();
  readonly v = new Map<string, tfc.Variable>();
  step = 0;
  private readonly o: Required<AdamWOptions>;

  constructor(opts: AdamWOptions) {
    this.o = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, ...opts };
  }

  /** Applies one update; `lr` overrides the base rate (for schedules). */
  apply(params: tfc.Variable[], grads: Record<string, tfc.Tensor>, lr = this.o.lr): void {
    const t = tf();
    const { beta1, beta2, eps, weightDecay } = this.o;
    this.step++;
    const bc1 = 1 - beta1 ** this.step;
    const bc2 = 1 - beta2 ** this.step;
    t.tidy(() => {
      for (const p of params) {
        const g = grads[p.name];
        if (g === undefined) continue;
        let m = this.m.get(p.name);
        let v = this.v.get(p.name);
        if (m === undefined || v === undefined) {
          m = t.variable(t.zerosLike(p), false);
          v = t.variable(t.zerosLike(p), false);
          this.m.set(p.name, m);
          this.v.set(p.name, v);
        }
        m.assign(t.add(t.mul(m, beta1), t.mul(g, 1 - beta1)));
        v.assign(t.add(t.mul(v, beta2), t.mul(t.square(g), 1 - beta2)));
        const upd = t.div(t.div(m, bc1), t.add(t.sqrt(t.div(v, bc2)), eps));
        p.assign(t.sub(p, t.mul(t.add(upd, t.mul(p, weightDecay)), lr)));
      }
    });
  }

  get baseLr(): number {
    return this.o.lr;
  }

  /** Hyperparameters, for the checkpoint's optimizer metadata. */
  get options(): Readonly<Required<AdamWOptions>> {
    return this.o;
  }

  /** First and second moments of `p` (PyTorch's exp_avg / exp_avg_sq); undefined before its first update. */
  moments(p: tfc.Variable): { m: tfc.Variable; v: tfc.Variable } | undefined {
    const m = this.m.get(p.name), v = this.v.get(p.name);
    return m === undefined || v === undefined ? undefined : { m, v };
  }

  /** Restores the moments of `p` from a checkpoint (values copied; shapes must match `p`). */
  setMoments(p: tfc.Variable, m: Float32Array, v: Float32Array): void {
    const t = tf();
    for (const [map, values] of [[this.m, m], [this.v, v]] as const) {
      map.get(p.name)?.dispose();
      map.set(p.name, t.tidy(() => t.variable(t.tensor(values, p.shape), false)));
    }
  }

  dispose(): void {
    for (const x of [...this.m.values(), ...this.v.values()]) x.dispose();
    this.m.clear();
    this.v.clear();
  }
}

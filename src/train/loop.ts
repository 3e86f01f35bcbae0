import type * as tfc from '@tensorflow/tfjs-core';
import { tf } from '../compute/backend.js';
import type { AdamW } from './adamw.js';

import type { StepInfo } from './types.js';
export type { StepInfo } from './types.js';

export interface LoopOptions {
  /** Trainable variables; everything else the loss touches stays frozen. */
  params: tfc.Variable[];
  /** Builds the scalar loss for a step; the loop does not know the model. */
  loss: (step: number) => tfc.Scalar;
  optimizer: AdamW;
  /** First step to run (1-based; > 1 when resuming) and last step, inclusive. */
  fromStep?: number;
  steps: number;
  /** Learning rate for a step (schedule); defaults to the optimizer's base rate. */
  lr?: (step: number) => number;
  /** Called after each step with its loss: logging, evaluation, checkpointing. */
  onStep?: (info: StepInfo) => void | Promise<void>;
}

/** Runs the optimisation loop; each step's tensors live inside one tf.tidy. */
export async function runLoop(o: LoopOptions): Promise<StepInfo | undefined> {
  const t = tf();
  let last: StepInfo | undefined;
  for (let step = o.fromStep ?? 1; step <= o.steps; step++) {
    const lr = o.lr?.(step) ?? o.optimizer.baseLr;
    const lossValue = t.tidy(() => {
      const { value, grads } = t.variableGrads(() => o.loss(step), o.params);
      o.optimizer.apply(o.params, grads, lr);
      return value;
    });
    // `await data()` rather than dataSync: the only read that works on webgpu in Node.
    const loss = (await lossValue.data())[0]!;
    lossValue.dispose();
    last = { step, loss, learningRate: lr };
    await o.onStep?.(last);
  }
  return last;
}

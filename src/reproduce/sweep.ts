/**
 * Learning-rate choice per method family from the sweep's validation results. The rule is fixed in
 * advance and written into the report: highest validation metric; ties (common on a tiny model whose
 * accuracy is still 0) go to the lower validation loss, then to the smaller learning rate.
 * It looks only at the task metric, never at the weight analysis (tuning the recipe is allowed,
 * tuning toward the paper's signs is not).
 */
import { DorascopeError } from '../errors.js';
import type { RunMetric } from './metrics.js';

export interface SweepPoint {
  readonly lr: number;
  readonly metric: RunMetric;
}

export function chooseLearningRate(family: string, points: readonly SweepPoint[]): number {
  if (points.length === 0) throw new DorascopeError('E_INTERNAL', `learning-rate sweep for ${family} has no runs`);
  const key = (p: SweepPoint): [number, number, number] => [
    p.metric.value ?? Number.NEGATIVE_INFINITY,
    -(p.metric.evalLoss ?? Number.POSITIVE_INFINITY),
    -p.lr,
  ];
  let best = points[0]!;
  for (const p of points.slice(1)) {
    const a = key(p);
    const b = key(best);
    if (a[0] > b[0] || (a[0] === b[0] && (a[1] > b[1] || (a[1] === b[1] && a[2] > b[2])))) best = p;
  }
  return best.lr;
}

/**
 * Reads a run's validation metric back from what the trainer wrote, the Hugging Face Trainer's
 * `trainer_state.json` (`log_history` holds `{ step, eval_loss, eval_<metric> }` entries), so the
 * reproduction reads the same file any other HF tool would and needs no side channel from the trainer.
 */
import { join } from 'node:path';
import { DorascopeError, q } from '../errors.js';
import { JSON_CAPS, readTextCapped } from '../io/open-regular.js';

export interface RunMetric {
  readonly step: number;
  /** e.g. `eval_accuracy`; null when the run logged only a loss. */
  readonly name: string | null;
  readonly value: number | null;
  readonly evalLoss: number | null;
}

/** Keys that HF logs beside every eval but that are not task metrics. */
const NOT_METRICS = new Set(['eval_loss', 'eval_runtime', 'eval_samples_per_second', 'eval_steps_per_second', 'eval_perplexity']);

/** The last evaluation in `log_history` of `<checkpointDir>/trainer_state.json`. */
export async function readFinalMetric(checkpointDir: string, preferred?: string): Promise<RunMetric> {
  const { state, path } = await readTrainerState(checkpointDir);
  return finalMetric(state, path, preferred);
}

/** Pure part of readFinalMetric: picks the last eval entry of a parsed trainer_state.json. */
export function finalMetric(state: unknown, path: string, preferred?: string): RunMetric {
  const history = (state as { log_history?: unknown } | null)?.log_history;
  if (!Array.isArray(history)) {
    throw new DorascopeError('E_TRAINER_STATE', `${q(path)} has no log_history array`);
  }
  let best: Record<string, unknown> | undefined;
  for (const entry of history) {
    if (entry === null || typeof entry !== 'object') continue;
    const e = entry as Record<string, unknown>;
    if (!Object.keys(e).some((k) => k.startsWith('eval_'))) continue;
    if (best === undefined || Number(e['step']) >= Number(best['step'])) best = e;
  }
  if (best === undefined) {
    throw new DorascopeError('E_TRAINER_STATE', `${q(path)} logs no evaluation (no eval_* key in log_history)`);
  }
  const name =
    preferred !== undefined && typeof best[preferred] === 'number'
      ? preferred
      : (Object.keys(best).find((k) => k.startsWith('eval_') && !NOT_METRICS.has(k) && typeof best[k] === 'number') ?? null);
  const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  return {
    step: Number(best['step']),
    name,
    value: name === null ? null : num(best[name]),
    evalLoss: num(best['eval_loss']),
  };
}

/** One held-out evaluation of a run's `log_history`. */
export interface EvalPoint {
  readonly step: number;
  readonly evalLoss: number;
}

/** Every `eval_loss` of `<checkpointDir>/trainer_state.json`, in step order: the learning curve. */
export async function readEvalCurve(checkpointDir: string): Promise<EvalPoint[]> {
  const { state, path } = await readTrainerState(checkpointDir);
  const history = (state as { log_history?: unknown } | null)?.log_history;
  if (!Array.isArray(history)) throw new DorascopeError('E_TRAINER_STATE', `${q(path)} has no log_history array`);
  const out: EvalPoint[] = [];
  for (const e of history) {
    const step = (e as { step?: unknown } | null)?.step, loss = (e as { eval_loss?: unknown } | null)?.eval_loss;
    if (typeof step === 'number' && typeof loss === 'number' && Number.isFinite(loss)) out.push({ step, evalLoss: loss });
  }
  return out.sort((a, b) => a.step - b.step);
}

/**
 * How much the held-out loss still fell over the last quarter of training, relative to its final
 * value: near 0 when the curve has flattened. null with fewer than two evaluations.
 */
export function lateImprovement(curve: readonly EvalPoint[]): number | null {
  if (curve.length < 2) return null;
  const last = curve[curve.length - 1]!;
  const from = last.step - (last.step - curve[0]!.step) / 4;
  const ref = curve.find((p) => p.step >= from) ?? curve[0]!;
  return (ref.evalLoss - last.evalLoss) / last.evalLoss;
}

/** `<checkpointDir>/trainer_state.json`, parsed (through the capped regular-file reader). */
async function readTrainerState(checkpointDir: string): Promise<{ state: unknown; path: string }> {
  const path = join(checkpointDir, 'trainer_state.json');
  try {
    return { state: JSON.parse(await readTextCapped(path, 'trainer state', JSON_CAPS.trainerState)), path };
  } catch (e) {
    if (e instanceof DorascopeError) throw e;
    throw new DorascopeError('E_TRAINER_STATE', `cannot read ${q(path)}: ${(e as Error).message}`, undefined, { cause: e });
  }
}

import { DorascopeError } from '../errors.js';

/**
 * Learning-rate schedules with Hugging Face's names and formulas
 * (transformers `optimization.py`: `get_constant_schedule`, `get_constant_schedule_with_warmup`,
 * `get_linear_schedule_with_warmup`, `get_cosine_schedule_with_warmup` with num_cycles 0.5).
 * A schedule is a pure function of the step, so its whole state is these four numbers:
 * resuming needs no saved tensor, only the same numbers (checkpoint `scheduler.json`).
 */
export const SCHEDULERS = ['constant', 'constant_with_warmup', 'linear', 'cosine'] as const;
export type SchedulerName = (typeof SCHEDULERS)[number];

export interface Schedule {
  readonly name: SchedulerName;
  /** The peak rate (HF `learning_rate`). */
  readonly baseLr: number;
  readonly warmupSteps: number;
  /** HF `num_training_steps` (our `--steps`). */
  readonly totalSteps: number;
}

/**
 * HF `TrainingArguments.get_warmup_steps`: an explicit `warmup_steps` > 0 wins, else
 * ⌈total · warmup_ratio⌉.
 */
export function resolveWarmup(totalSteps: number, warmupSteps = 0, warmupRatio = 0): number {
  if (!Number.isInteger(warmupSteps) || warmupSteps < 0) {
    throw new DorascopeError('E_USAGE', `--warmup-steps must be a non-negative integer, got ${warmupSteps}`);
  }
  if (!Number.isFinite(warmupRatio) || warmupRatio < 0 || warmupRatio > 1) {
    throw new DorascopeError('E_USAGE', `--warmup-ratio must be in [0, 1], got ${warmupRatio}`);
  }
  return warmupSteps > 0 ? warmupSteps : Math.ceil(totalSteps * warmupRatio);
}

/** Checks the options and builds a schedule; `constant` with warmup is refused (HF silently ignores it). */
export function makeSchedule(name: string, baseLr: number, totalSteps: number, warmupSteps: number): Schedule {
  if (!(SCHEDULERS as readonly string[]).includes(name)) {
    throw new DorascopeError('E_USAGE', `--lr-scheduler ${JSON.stringify(name)} is not one of ${SCHEDULERS.join(', ')}`);
  }
  if (!Number.isFinite(baseLr) || baseLr < 0) throw new DorascopeError('E_USAGE', `--lr must be a finite non-negative number, got ${baseLr}`);
  if (name === 'constant' && warmupSteps > 0) {
    // HF's `constant` ignores warmup without a word; a user who asked for warmup gets it or an error.
    throw new DorascopeError('E_USAGE', `--lr-scheduler constant has no warmup (as in Hugging Face); use constant_with_warmup for ${warmupSteps} warmup steps`);
  }
  return { name: name as SchedulerName, baseLr, warmupSteps, totalSteps };
}

/**
 * HF's multiplier λ(k) after k scheduler steps (k = 0 before the first optimizer step).
 * Warmup: k / max(1, warmup). Linear: (total − k) / max(1, total − warmup), floored at 0.
 * Cosine: ½(1 + cos(π·p)), p = (k − warmup) / max(1, total − warmup), floored at 0.
 */
export function lrMultiplier(s: Schedule, k: number): number {
  if (s.name === 'constant') return 1;
  if (k < s.warmupSteps) return k / Math.max(1, s.warmupSteps);
  switch (s.name) {
    case 'constant_with_warmup':
      return 1;
    case 'linear':
      return Math.max(0, (s.totalSteps - k) / Math.max(1, s.totalSteps - s.warmupSteps));
    case 'cosine': {
      const p = (k - s.warmupSteps) / Math.max(1, s.totalSteps - s.warmupSteps);
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 2 * 0.5 * p)));
    }
  }
}

/**
 * The rate optimizer step `step` (1-based) applies. HF calls `scheduler.step()` after each
 * optimizer step, so step 1 uses λ(0) (0 under warmup), step n uses λ(n − 1).
 */
export function lrAt(s: Schedule, step: number): number {
  return s.baseLr * lrMultiplier(s, step - 1);
}

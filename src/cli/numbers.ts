/**
 * Bounds for every number a command accepts. yargs turns `--steps 1e12` or `--r abc`
 * into a number (or NaN) without complaint; these checks run before any work starts, so
 * a value out of range is an E_USAGE error that names the option, the value as typed and
 * the allowed range, instead of an allocation that grows until the machine gives out.
 */
import { DorascopeError } from '../errors.js';

export interface Bound {
  readonly min: number;
  readonly max: number;
  /** Whole numbers only (counts, sizes, seeds). */
  readonly integer?: boolean;
  /** `min` itself is not allowed (a learning rate of 0 learns nothing). */
  readonly minExclusive?: boolean;
}

function range(b: Bound): string {
  const lo = b.minExclusive ? `> ${b.min}` : `≥ ${b.min}`;
  return `${b.integer ? 'a whole number' : 'a finite number'} ${lo} and ≤ ${b.max}`;
}

/** Returns `value` when it is within `b`, else throws E_USAGE naming `--name`, the value and the range. */
export function bounded(name: string, value: unknown, b: Bound): number {
  const ok = typeof value === 'number' && Number.isFinite(value)
    && (!b.integer || Number.isInteger(value))
    && (b.minExclusive ? value > b.min : value >= b.min) && value <= b.max;
  if (!ok) {
    // yargs reports an unparsable value as NaN; say what it was rather than "NaN".
    const shown = typeof value === 'number' ? (Number.isNaN(value) ? 'not a number' : String(value)) : JSON.stringify(value);
    throw new DorascopeError('E_USAGE', `--${name} ${shown}: expected ${range(b)}`, { option: name, value });
  }
  return value as number;
}

/** `bounded` for an option that may be absent. */
export function boundedOptional(name: string, value: unknown, b: Bound): number | undefined {
  return value === undefined ? undefined : bounded(name, value, b);
}

/** The training options' bounds: a tiny tfjs model on one machine (the sizes the trainer is built for). */
export const TRAIN_BOUNDS = {
  steps: { min: 1, max: 10_000_000, integer: true },
  seed: { min: 0, max: 0xffff_ffff, integer: true }, // mulberry32 takes a uint32 seed
  r: { min: 1, max: 4096, integer: true },
  'vera-d-initial': { min: -1000, max: 1000 },
  'projection-prng-key': { min: 0, max: 0xffff_ffff, integer: true }, // mulberry32 takes a uint32 seed
  alpha: { min: 0, max: 1e6, minExclusive: true },
  lr: { min: 0, max: 10, minExclusive: true },
  'warmup-steps': { min: 0, max: 10_000_000, integer: true },
  'warmup-ratio': { min: 0, max: 1 },
  'weight-decay': { min: 0, max: 1 },
  layers: { min: 1, max: 64, integer: true },
  'd-model': { min: 2, max: 4096, integer: true },
  heads: { min: 1, max: 256, integer: true },
  'eval-every': { min: 0, max: 10_000_000, integer: true },
  'save-every': { min: 0, max: 10_000_000, integer: true },
  'batch-size': { min: 1, max: 4096, integer: true },
  'context-length': { min: 2, max: 8192, integer: true },
} as const satisfies Record<string, Bound>;

/**
 * Checks the training options against TRAIN_BOUNDS and against each other: the hidden size
 * must split into whole heads of even size (RoPE rotates pairs of dimensions), and a LoRA/DoRA
 * rank cannot exceed the hidden size (B·A has rank at most min(in, out); VeRA's may: `rankBounded`
 * false).
 */
export function checkTrainNumbers(a: Record<string, unknown>, rankBounded = a['method'] !== 'full'): void {
  for (const [name, b] of Object.entries(TRAIN_BOUNDS)) boundedOptional(name, a[name], b);
  const d = a['d-model'] as number | undefined, h = a['heads'] as number | undefined, r = a['r'] as number | undefined;
  if (d !== undefined && h !== undefined && (d % h !== 0 || (d / h) % 2 !== 0)) {
    throw new DorascopeError('E_USAGE', `--d-model ${d} with --heads ${h}: the hidden size must be a multiple of the heads with an even head size (RoPE rotates pairs), e.g. --d-model ${h * 2 * Math.max(1, Math.round(d / (2 * h)))}`);
  }
  if (rankBounded && d !== undefined && r !== undefined && r > d) {
    throw new DorascopeError('E_USAGE', `-r ${r} is larger than --d-model ${d}: a LoRA rank is at most min(fan_in, fan_out)`);
  }
}

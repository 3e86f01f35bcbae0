/**
 * How many analysis worker threads (pool.ts) an analysis gets: a module of its own, without the
 * pool's imports, so that the CLI can decide before it loads the analysis and the published
 * declarations of analyze.ts stay free of the workers' (and their tfjs) types.
 */
import { availableParallelism } from 'node:os';
import { DorascopeError } from '../errors.js';

/**
 * Worker threads for `workers` (undefined: automatic): none for small analyses, where starting
 * them (≈0.1 s each) costs more than it saves; else one per core, at most two (the analysis is
 * bound by reading and decoding, and two tasks in flight already keep a reader busy).
 */
export function workerCount(workers: number | undefined, elements: number): number {
  if (workers !== undefined) {
    if (!Number.isInteger(workers) || workers < 0) throw new DorascopeError('E_USAGE', `--workers ${workers}: expected a whole number ≥ 0`);
    // More threads than cores add memory (each holds decoded tensors), never speed.
    return Math.min(workers, Math.max(1, availableParallelism()));
  }
  if (elements < AUTO_WORKERS_MIN_ELEMENTS) return 0;
  const cores = availableParallelism();
  return cores >= 2 ? 2 : 0;
}

/** Automatic workers from this many weight elements to analyse (base elements × checkpoints): 2²⁵ ≈ 134 MB of float32. */
export const AUTO_WORKERS_MIN_ELEMENTS = 1 << 25;

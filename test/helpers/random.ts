import { mulberry32 } from '../../src/random.js';

/** The project's seeded generator (src/random.ts mulberry32), so test data is reproducible without fixtures. */
export const rng: (seed: number) => () => number = mulberry32;

/** `n` values uniform in [-scale, scale), as float32. */
export function randn(next: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (next() * 2 - 1) * scale;
  return out;
}

/**
 * Adapters whose update is not a low-rank sum B·A (PEFT's IA³, LoHa and LoKr): each is a
 * `DeltaMethod` plug-in that names the tensors it saves and merges them onto the base weight
 * W as PEFT's layer does. The merge is W′ = W + ΔW for LoHa/LoKr (peft `tuners/lycoris_utils.py`
 * `LycorisLayer.merge`, l. 114) and W ⊙ l for IA³. A method whose ΔM/ΔD has a cheap exact algebra
 * (IA³: a per-element rescaling of W0) supplies it as `exactFeatures`; the others (LoHa, LoKr) take
 * the merge path of the analysis (W′ compared with W0 like any checkpoint), one tensor at a time.
 *
 * Pure numeric kernels: float32 in, float64 accumulation, float32 out (as methods/merge.ts).
 */
import { DorascopeError } from '../errors.js';

/** One saved tensor of a module, decoded to float32. */
export interface DeltaTensor {
  readonly data: Float32Array;
  readonly shape: readonly number[];
}

/** What a module's merge needs beyond its tensors, from adapter_config.json. */
export interface DeltaParams {
  /** alpha / r (LoHa, LoKr); 1 for IA³. */
  readonly scaling: number;
  /** IA³: the module is in `feedforward_modules` (scale inputs, not outputs). */
  readonly feedforward: boolean;
  /** IA³: the base weight is stored (in, out) (GPT-2 Conv1D). */
  readonly fanInFanOut: boolean;
}

/**
 * W′ against W0 per output feature n, by exact algebra (no W′ is formed), all float64: what the
 * analysis needs to build ΔM/ΔD (analysis/exact-adapter-series.ts `FeatureSums`).
 */
export interface FeatureTerms {
  /** ‖w_n‖² */
  readonly w2: Float64Array;
  /** ‖w′_n‖ */
  readonly mt: Float64Array;
  /** cos(w_n, w′_n), and 1 − cos computed without cancellation. */
  readonly cos: Float64Array;
  readonly omc: Float64Array;
  /** ‖w′_n − w_n‖² */
  readonly d2: Float64Array;
  /** |‖w′_n‖ − ‖w_n‖|, computed without cancellation. */
  readonly dm: Float64Array;
  /** NaN or ±Inf in W0 or in the method's tensors. */
  readonly nonFinite: boolean;
}

export interface DeltaMethod {
  readonly name: 'ia3' | 'loha' | 'lokr';
  /** `peft_type` in adapter_config.json. */
  readonly peftType: string;
  /** Tensor roles the layer saves (`<module>.<role>` in the adapter file). */
  readonly roles: readonly string[];
  /** What each role is (shown by `inspect`). */
  readonly labels: Readonly<Record<string, string>>;
  /** Roles a module must have (a module may carry one of several alternatives, checked by `merge`). */
  readonly required: readonly string[];
  /** Whether the config's `r`/`alpha` (and rank/alpha patterns) define a scaling alpha/r. */
  readonly scaled: boolean;
  /**
   * W′ for base weight W of `shape` (storage layout, row-major). `t` maps each saved role to its
   * tensor. `what` names the tensor in errors.
   */
  merge(W: Float32Array, shape: readonly number[], t: ReadonlyMap<string, DeltaTensor>, p: DeltaParams, what: string): Float32Array;
  /** Whether the module's merge also changes the layer's bias (`<module>.bias`); then `mergeBias` gives it. */
  changesBias(p: DeltaParams): boolean;
  /**
   * Parameters trained on one adapted tensor of `rows` output features and `cols` inputs at rank r
   * (`config`: adapter_config.json), or null when they cannot be told from these.
   */
  trainableParams(r: number, rows: number, cols: number, feedforward: boolean, config: Readonly<Record<string, unknown>>): number | null;
  /**
   * ΔM/ΔD terms of the module on base weight W (storage layout `shape`) with the output features
   * along its rows (`featuresAreRows`) or its columns (a 2-D W), by exact algebra; absent when the
   * method has none (the analysis then merges W′).
   */
  readonly exactFeatures?: ((W: Float32Array, shape: readonly number[], featuresAreRows: boolean, t: ReadonlyMap<string, DeltaTensor>, p: DeltaParams, what: string) => FeatureTerms) | undefined;
  mergeBias(b: Float32Array, t: ReadonlyMap<string, DeltaTensor>, p: DeltaParams, what: string): Float32Array;
}

export function shapeError(what: string, why: string): never {
  throw new DorascopeError('E_SHAPE_MISMATCH', `${what}: ${why}`);
}

export function product(s: readonly number[]): number {
  return s.reduce((p, d) => p * d, 1);
}

export const fmt = (s: readonly number[]): string => `[${s.join(', ')}]`;

/** Row-major (m, k) · (k, n) in float64. */
export function matmul64(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const x = a[i * k + p]!;
      if (x === 0) continue;
      const o = i * n, bo = p * n;
      for (let j = 0; j < n; j++) out[o + j]! += x * b[bo + j]!;
    }
  }
  return out;
}

/** A 2-D factor's matrix product `a @ b` with its shape checks: (m, k) @ (k, n). */
export function factorProduct(a: DeltaTensor, b: DeltaTensor, names: string, what: string): { data: Float64Array; rows: number; cols: number } {
  if (a.shape.length !== 2 || b.shape.length !== 2 || a.shape[1] !== b.shape[0]) {
    shapeError(what, `${names} do not multiply (${fmt(a.shape)} @ ${fmt(b.shape)})`);
  }
  return { data: matmul64(a.data, b.data, a.shape[0]!, a.shape[1]!, b.shape[1]!), rows: a.shape[0]!, cols: b.shape[1]! };
}

/** W + ΔW rounded once to float32, after checking ΔW has W's element count. */
export function addDelta(W: Float32Array, delta: Float64Array, scale: number, what: string): Float32Array {
  if (delta.length !== W.length) shapeError(what, `the update has ${delta.length} values, the base tensor ${W.length}`);
  const out = new Float32Array(W.length);
  for (let i = 0; i < W.length; i++) out[i] = W[i]! + scale * delta[i]!;
  return out;
}

/**
 * The LoRA merge, as PEFT computes it (huggingface/peft `tuners/lora/layer.py`,
 * `get_delta_weight` of Linear, Conv and Embedding): W' = W + s·(B·A), with the
 * product laid onto W's storage layout. Each method is a *variant* of this merge
 * (`MergeVariant`: lora.ts keeps V = W + s·B·A, dora.ts rescales it per output feature;
 * variants.ts picks one from the factors).
 *
 * Pure numeric kernel: Float32Arrays in (already decoded from F32/F16/BF16 at the
 * reader), Float32Array out. Every product and sum is accumulated in float64 and
 * rounded to float32 once, so the result is the float64 merge to within one float32
 * rounding (PEFT itself merges in the base's dtype; we are at least as exact).
 */
import { DorascopeError } from '../errors.js';

/**
 * How the adapter's product lies on the base tensor:
 * - `linear`:    W (out, in), torch nn.Linear.            ΔW = s·B·A
 * - `conv`:      W (out, in, k...), nn.Conv1d/2d/3d. A (r, in, k...), B (out, r, 1...).
 *                ΔW[o,·] = s·Σ_k B[o,k]·A[k,·] over the flattened (in·k...) axis, which is
 *                what PEFT's `F.conv2d(A.permute(1,0,2,3), B)` computes for a 1×1 B.
 * - `conv1d`:    W (in, out), GPT-2 `Conv1D` (fan_in_fan_out): ΔW = s·(B·A)ᵀ.
 * - `embedding`: W (vocab, dim); A (r, vocab), B (dim, r): ΔW = s·(B·A)ᵀ (PEFT Embedding).
 * In `conv1d` and `embedding` the output features are the *columns* of W.
 */
export type Layout = 'linear' | 'conv1d' | 'conv' | 'embedding';

/** The factors of one adapted module, decoded to float32. */
export interface LoraFactors {
  readonly layout: Layout;
  /** Rank r. */
  readonly r: number;
  /** Output features (rows of B). */
  readonly out: number;
  /** Input features of A, flattened (in·kh·kw for conv; vocab for embedding). */
  readonly in: number;
  /** A, row-major (r, in). */
  readonly A: Float32Array;
  /** B, row-major (out, r). */
  readonly B: Float32Array;
  /** s = alpha/r, or alpha/√r with rsLoRA. */
  readonly scaling: number;
  /** DoRA magnitude m, one per output feature (length `out`); absent for plain LoRA. */
  readonly magnitude?: Float32Array | undefined;
}

/** Whether W's rows are the output features (true) or its columns (conv1d, embedding). */
export function rowsAreOutputs(layout: Layout): boolean {
  return layout === 'linear' || layout === 'conv';
}

/** W's storage as (rows, cols): (out, in) when rows are outputs, else (in, out). */
export function storageShape(f: LoraFactors): [number, number] {
  return rowsAreOutputs(f.layout) ? [f.out, f.in] : [f.in, f.out];
}

/** Checks that the factors fit each other and a base tensor of `baseLength` elements. */
export function checkFactors(f: LoraFactors, baseLength: number, what: string): void {
  const bad = (msg: string): never => {
    throw new DorascopeError('E_SHAPE_MISMATCH', `${what}: ${msg}`);
  };
  if (f.A.length !== f.r * f.in) bad(`lora_A has ${f.A.length} values, expected r·in = ${f.r}·${f.in}`);
  if (f.B.length !== f.out * f.r) bad(`lora_B has ${f.B.length} values, expected out·r = ${f.out}·${f.r}`);
  if (baseLength !== f.out * f.in) bad(`base tensor has ${baseLength} values, the adapter implies out·in = ${f.out}·${f.in}`);
  if (f.magnitude && f.magnitude.length !== f.out) bad(`magnitude has ${f.magnitude.length} values, expected ${f.out}`);
  if (!Number.isFinite(f.scaling)) bad(`scaling ${f.scaling} is not finite`);
}

/**
 * Writes row `i` of V = W + s·ΔW (storage layout) into `dst` (float64, length cols).
 * `Bt` is B transposed to (r, out) in float64, needed when rows are inputs.
 */
export function loraRow(W: Float32Array, f: LoraFactors, i: number, dst: Float64Array, Bt: Float64Array | null): void {
  const [, cols] = storageShape(f);
  const base = i * cols;
  for (let j = 0; j < cols; j++) dst[j] = 0;
  if (rowsAreOutputs(f.layout)) {
    // row o of B·A = Σ_k B[o,k] · A[k,:]
    for (let k = 0; k < f.r; k++) {
      const b = f.B[i * f.r + k]!;
      if (b === 0) continue;
      const a0 = k * f.in;
      for (let j = 0; j < cols; j++) dst[j]! += b * f.A[a0 + j]!;
    }
  } else {
    // row i of (B·A)ᵀ = Σ_k A[k,i] · B[:,k]
    const bt = Bt as Float64Array;
    for (let k = 0; k < f.r; k++) {
      const a = f.A[k * f.in + i]!;
      if (a === 0) continue;
      const b0 = k * f.out;
      for (let j = 0; j < cols; j++) dst[j]! += a * bt[b0 + j]!;
    }
  }
  const s = f.scaling;
  for (let j = 0; j < cols; j++) dst[j] = W[base + j]! + s * dst[j]!;
}

/** B (out, r) transposed to (r, out) in float64, so the inner loop of `loraRow` is contiguous. */
export function transposeB(f: LoraFactors): Float64Array {
  const bt = new Float64Array(f.r * f.out);
  for (let o = 0; o < f.out; o++) for (let k = 0; k < f.r; k++) bt[k * f.out + o] = f.B[o * f.r + k]!;
  return bt;
}

/**
 * A merge variant post-processes the LoRA sum V (PEFT's `LoraVariant`): plain LoRA
 * keeps V, DoRA rescales each output feature. It gets the rows of V one by one.
 */
/**
 * One output feature of the LoRA sum v = w + δ (δ = s·B_n·A), as the exact ΔM/ΔD path
 * (analysis/exact-adapter-series.ts) computes it without materialising v; all float64.
 */
export interface LoraSumFeature {
  /** ‖w‖² */
  w2: number;
  /** w·δ */
  wd: number;
  /** ‖δ‖² */
  dd: number;
  /** ‖w‖ */
  m0: number;
  /** ‖v‖ */
  vn: number;
  /** cos(w, v), and 1 − cos(w, v) computed stably (0 and 1 when w or v is zero). */
  cosWV: number;
  omcWV: number;
}

/** The merged feature w′ against w: what a variant's exact algebra gives. */
export interface MergedFeature {
  /** ‖w′‖ */
  mt: number;
  /** cos(w, w′) and 1 − cos(w, w′). */
  cos: number;
  omc: number;
  /** ‖w′ − w‖² */
  d2: number;
  /** This feature's |‖w′‖ − ‖w‖|, computed without cancellation where the variant can. */
  dm: number;
  /** Whether a factor of the variant's own (e.g. DoRA's m) is NaN or infinite. */
  nonFinite: boolean;
}

export interface MergeVariant {
  readonly name: 'lora' | 'dora';
  /** Writes W' = variant(V) into `out` (storage layout). */
  apply(W: Float32Array, f: LoraFactors, out: Float32Array): void;
  /**
   * The merged feature n from its LoRA sum `v`, by exact algebra (no W′ is formed), written
   * into `out`. `f` holds the variant's own factors (DoRA: the magnitude).
   */
  exactFeature(v: LoraSumFeature, f: Pick<LoraFactors, 'magnitude'>, n: number, out: MergedFeature): void;
  /** Parameters the method trains on one adapted tensor of `rows` output features and `cols` inputs, at rank r. */
  trainableParams(r: number, rows: number, cols: number): number;
}

/**
 * Merges one adapted module onto its base tensor W (storage layout, decoded to
 * float32). The variant is picked by the caller (`variantFor` in variants.ts), never by an `if` here.
 */
export function mergeModule(W: Float32Array, f: LoraFactors, variant: MergeVariant, what = 'tensor'): Float32Array {
  checkFactors(f, W.length, what);
  const out = new Float32Array(W.length);
  variant.apply(W, f, out);
  return out;
}

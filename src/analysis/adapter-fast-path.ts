/**
 * The adapter fast path of the streaming analysis: for one base tensor, every checkpoint that is
 * a LoRA/DoRA adapter adapting it is analysed by exact algebra (exact-adapter-series.ts) from one
 * stacked product W0·Aᵀ (compute/base-times-a.ts), instead of merging W′ = W0 + s·B·A per checkpoint.
 *
 * Covered: every layout the merge covers whose output features lie along the axis the analysis
 * uses for that tensor name (linear and conv: rows; GPT-2 Conv1D with fan_in_fan_out: columns).
 * A checkpoint outside that (a layout that disagrees with the name's axis, e.g. an embedding, whose
 * rows the analysis takes as features while the adapter's outputs are its columns) stays on the
 * merge path, which is also kept for everything else (full weights, modules_to_save).
 *
 * An adapter without LoRA factors whose method has its own exact algebra (IA³: methods/ia3.ts; the
 * adapter's `featureAlgebra`) takes it here too, for either feature axis: one pass over W0 per
 * checkpoint, no W′ formed. LoHa and LoKr have none and stay on the merge path.
 */
import type { MergedAdapterSource } from '../io/peft/merged-source.js';
import { checkFactors, rowsAreOutputs, type LoraFactors } from '../methods/merge.js';
import { adapterDecompose, featureDecompose } from './exact-adapter-series.js';
import { productFor, type BaseProduct, type ProductEngine } from '../compute/base-times-a.js';
import { hasTfjsWasm } from '../compute/tfjs.js';
import type { Decomposition, FeatureAxis } from './decompose.js';
import { q } from '../errors.js';

/** `auto`: tfjs for products of at least this many multiply-adds, the float64 loop below it. */
export const AUTO_TFJS_MIN_MACS = 1 << 22;
/** Stacked rows per product: bounds c (out×R) to a few base tensors' worth of memory. */
export const MAX_STACK = 1024;
/** Checkpoints whose factors are read ahead (each a module's A, B and magnitude: small beside W0). */
const FACTORS_AHEAD = 8;

export type ProductChoice = ProductEngine | 'auto';

export interface FastResult {
  readonly d: Decomposition;
  /** Adapter bytes read for this checkpoint (A, B, magnitude). */
  readonly bytes: number;
}

/** Whether this adapter checkpoint can take the fast path for tensor `name` with features along `axis`. */
export function fastPathApplies(src: MergedAdapterSource, name: string, axis: FeatureAxis): boolean {
  const m = src.adapted.get(name);
  const info = src.base.info(name);
  if (!m || !info) return false;
  if (!src.adapter.exact) return src.adapter.featureAlgebra?.applies(m) ?? false;
  return rowsAreOutputs(src.adapter.layoutFor(m, info)) === (axis === 'rows');
}

function factorBytes(src: MergedAdapterSource, name: string): number {
  const m = src.adapted.get(name)!;
  const size = (t: string | undefined) => (t === undefined ? 0 : src.adapter.file.info(t)?.byteLength ?? 0);
  return size(m.a) + size(m.b) + size(m.magnitude);
}

/**
 * Decomposes tensor `name` for each adapter source (all passing `fastPathApplies`), in order.
 * `w0` is the base tensor in storage layout (rows×cols); `norms0` its feature norms.
 */
export async function fastAdapterDecompose(name: string, w0: Float32Array, rows: number, cols: number, axis: FeatureAxis, norms0: Float64Array,
  sources: readonly MergedAdapterSource[], choice: ProductChoice, perRow: boolean): Promise<FastResult[]> {
  // Methods with their own algebra first (each on its own), then the LoRA-factor ones (one stacked product); results in input order.
  const results = new Array<FastResult>(sources.length);
  const lora: number[] = [];
  for (const [i, src] of sources.entries()) {
    const alg = src.adapter.exact ? undefined : src.adapter.featureAlgebra;
    if (!alg) { lora.push(i); continue; }
    const m = src.adapted.get(name)!;
    const what = `${q(name)} (adapter ${q(src.adapter.dir)})`;
    const t = await alg.terms(m, src.base.info(name)!, w0, axis === 'rows', what);
    results[i] = { d: featureDecompose(t, perRow), bytes: alg.bytes(m) };
  }
  const fromFactors = await factorDecompose(name, w0, rows, cols, axis, norms0, lora.map((i) => sources[i]!), choice, perRow);
  lora.forEach((i, k) => { results[i] = fromFactors[k]!; });
  return results;
}

/** The LoRA-factor checkpoints of `fastAdapterDecompose`: stacked A, one product W0·Aᵀ per group. */
async function factorDecompose(name: string, w0: Float32Array, rows: number, cols: number, axis: FeatureAxis, norms0: Float64Array,
  sources: readonly MergedAdapterSource[], choice: ProductChoice, perRow: boolean): Promise<FastResult[]> {
  const featuresAreRows = axis === 'rows';
  const out = featuresAreRows ? rows : cols;
  const inDim = featuresAreRows ? cols : rows;
  const ww = new Float64Array(out);
  for (let n = 0; n < out; n++) ww[n] = norms0[n]! * norms0[n]!;
  const results: FastResult[] = [];
  // The factor reads of the next few checkpoints are in flight while one is awaited (each is a few
  // small reads; one after another, the thread would mostly wait on the file system).
  const reads: (Promise<LoraFactors> | undefined)[] = [];
  const factorsOf = (i: number): Promise<LoraFactors> => {
    for (let j = i; j < Math.min(sources.length, i + FACTORS_AHEAD); j++) {
      if (reads[j] !== undefined) continue;
      const p = sources[j]!.factors(name);
      p.catch(() => undefined); // awaited in order; keeps a failure from being reported as unhandled meanwhile
      reads[j] = p;
    }
    const p = reads[i]!;
    reads[i] = undefined;
    return p;
  };
  let pending: LoraFactors | undefined;
  for (let start = 0; start < sources.length;) {
    // A group of checkpoints whose stacked A has at most MAX_STACK rows (at least one checkpoint).
    const group: { f: LoraFactors; bytes: number }[] = [];
    let R = 0;
    while (start < sources.length) {
      const src = sources[start]!;
      const f = pending ?? await factorsOf(start);
      pending = undefined;
      checkFactors(f, w0.length, `${q(name)} (adapter ${q(src.adapter.dir)})`);
      if (group.length > 0 && R + f.r > MAX_STACK) { pending = f; break; }
      group.push({ f, bytes: factorBytes(src, name) });
      R += f.r;
      start++;
    }
    const stack = new Float32Array(R * inDim);
    let off = 0;
    for (const { f } of group) { stack.set(f.A, off * inDim); off += f.r; }
    // `auto` uses tfjs only when it is installed (an optional dependency); else the float64 JS product.
    const engine: BaseProduct = productFor(choice === 'auto' ? (out * inDim * R >= AUTO_TFJS_MIN_MACS && hasTfjsWasm() ? 'tfjs' : 'js') : choice);
    const c = await engine(w0, stack, out, inDim, R, featuresAreRows);
    off = 0;
    for (const { f, bytes } of group) {
      results.push({ d: adapterDecompose(f, inDim, ww, c, R, off, perRow), bytes });
      off += f.r;
    }
  }
  return results;
}

/**
 * Picks each module's merge variant from its factors (PEFT `tuners/lora/layer.py` resolves
 * its `LoraVariant` the same way, from the layer's configuration): a method adds its
 * variant here, and no merge code asks which method it runs.
 */
import { doraVariant } from './dora.js';
import { loraVariant } from './lora.js';
import { type LoraFactors, type MergeVariant, mergeModule } from './merge.js';

/** The merge variant for a module's factors: DoRA when it carries a magnitude vector, else plain LoRA. */
export function variantFor(f: Pick<LoraFactors, 'magnitude'>): MergeVariant {
  return f.magnitude ? doraVariant : loraVariant;
}

/**
 * The variant an adapter_config.json asks for: PEFT's `resolve_lora_variant` (`tuners/lora/layer.py`)
 * returns the DoRA variant when `use_dora` is set, else none (plain LoRA).
 */
export function variantForConfig(c: { readonly useDora: boolean }): MergeVariant {
  return c.useDora ? doraVariant : loraVariant;
}

/** W' for one module, exactly as PEFT merges it (LoRA or DoRA, chosen by the factors). */
export function mergeFactors(W: Float32Array, f: LoraFactors, what = 'tensor'): Float32Array {
  return mergeModule(W, f, variantFor(f), what);
}

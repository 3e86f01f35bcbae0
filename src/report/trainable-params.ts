/**
 * Trainable parameters of a run, counted over the tensors the analysis covered (the summary table's
 * "trainable params (analysed tensors)" column). For an adapter run, from its adapter_config.json and the
 * tensors' shapes: LoRA trains A (r × in) and B (out × r), r·(in + out) per adapted tensor (Hu et al. 2021,
 * §4.1), with r from `rank_pattern` where a key matches (PEFT's rule, src/io/peft/patterns.ts); DoRA adds its
 * magnitude vector, one value per output feature (DoRA paper, Eq. 5). For full fine-tuning every element of
 * every analysed tensor is trained. Embeddings, norms, biases and tensors left out of the analysis are not
 * counted, so the number is a lower bound for the whole model, and the column says so.
 */
import { DorascopeError, q } from '../errors.js';
import { parseAdapterConfig } from '../io/peft/adapter-config.js';
import { layerIndexOf, patternValue, targetMatches } from '../io/peft/patterns.js';
import { PEFT_TYPE_READERS } from '../io/peft/peft-types.js';
import { variantForConfig } from '../methods/variants.js';
import { deltaMethodFor } from '../methods/delta-methods.js';
import type { DeltaMethod } from '../methods/delta.js';
import { parseDeltaConfig } from '../io/peft/delta-adapter.js';

/** The count for an IA³/LoHa/LoKr run (methods/delta.ts `trainableParams`), or null when the method cannot tell. */
function deltaTrainable(method: DeltaMethod, json: Record<string, unknown>, list: readonly AnalysedTensor[], where: string): number | null {
  let parsed: ReturnType<typeof parseDeltaConfig>;
  try { parsed = parseDeltaConfig(json, method, where); } catch (e) {
    throw new DorascopeError('E_ANALYSIS_DIR', `${where}: adapter config of the run cannot be read: ${(e as Error).message}`);
  }
  const c = parsed.config;
  if (c.targetModules === null) return null;
  let n = 0;
  for (const t of list) {
    const path = modulePath(t.tensor);
    if (!targetMatches(c.targetModules, path)) continue;
    const r = patternValue(c.rankPattern, path, c.r, `${q(where)} rank_pattern`);
    const k = method.trainableParams(r, t.rows, t.cols, targetMatches(parsed.feedforward, path));
    if (k === null) return null;
    n += k;
  }
  return n;
}

/** One analysed tensor: its name and its shape as the analysis saw it (rows = output features, cols = the rest). */
export interface AnalysedTensor { tensor: string; rows: number; cols: number }

/** The module path PEFT matches patterns against: the tensor name without PEFT's wrapper prefix and `.weight`. */
export function modulePath(tensor: string): string {
  return tensor.replace(/^base_model\.model\./u, '').replace(/\.weight$/u, '');
}

/**
 * `method` is the analysis's (`ft` | `lora` | `dora`); `config` is the run's adapter_config.json as parsed JSON
 * (null for full fine-tuning, or when not recorded). Returns null when the count cannot be known: an adapter
 * run without its config or target_modules, or a tensor without a positive shape. `where` names the source
 * of `config` in errors.
 */
export function trainableParams(method: string, config: unknown, tensors: readonly AnalysedTensor[], where = 'adapter_config'): number | null {
  const seen = new Map<string, AnalysedTensor>();
  for (const t of tensors) seen.set(t.tensor, t);
  const list = [...seen.values()];
  if (list.some((t) => !(Number.isInteger(t.rows) && t.rows > 0 && Number.isInteger(t.cols) && t.cols > 0))) return null;
  if (method === 'ft') return list.reduce((n, t) => n + t.rows * t.cols, 0);
  if (config === null || config === undefined) return null;
  const delta = typeof config === 'object' && !Array.isArray(config) ? deltaMethodFor((config as Record<string, unknown>)['peft_type']) : undefined;
  if (delta) return deltaTrainable(delta, config as Record<string, unknown>, list, where);
  // PEFT types read by their own plug-in (VeRA, AdaLoRA) train other tensors than A and B: not counted here.
  const type = typeof config === 'object' && !Array.isArray(config) ? (config as Record<string, unknown>)['peft_type'] : undefined;
  if (typeof type === 'string' && Object.hasOwn(PEFT_TYPE_READERS, type.toUpperCase())) return null;
  let c: ReturnType<typeof parseAdapterConfig>;
  try { c = parseAdapterConfig(config, where); } catch (e) {
    throw new DorascopeError('E_ANALYSIS_DIR', `${where}: adapter config of the run cannot be read: ${(e as Error).message}`);
  }
  if (c.targetModules === null) return null;
  const variant = variantForConfig(c);
  let n = 0;
  for (const t of list) {
    const path = modulePath(t.tensor);
    if (!targetMatches(c.targetModules, path)) continue;
    if (c.layersToTransform !== null) {
      const l = layerIndexOf(path);
      if (l === undefined || !c.layersToTransform.includes(l)) continue;
    }
    const r = patternValue(c.rankPattern, path, c.r, `${q(where)} rank_pattern`);
    n += variant.trainableParams(r, t.rows, t.cols);
  }
  return n;
}

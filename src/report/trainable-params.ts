/**
 * Trainable parameters of a run, counted over the tensors the analysis covered (the summary table's
 * "trainable params (analysed tensors)" column). For an adapter run, from its adapter_config.json and the
 * tensors' shapes: LoRA trains A (r × in) and B (out × r), r·(in + out) per adapted tensor (Hu et al. 2021,
 * §4.1), with r from `rank_pattern` where a key matches (PEFT's rule, src/io/peft/patterns.ts); DoRA adds its
 * magnitude vector, one value per output feature (DoRA paper, Eq. 5); VeRA, AdaLoRA, IA³, LoHa and LoKr count their
 * own tensors, each by its plug-in (io/peft/peft-types.ts `trainableRuleFor`). For full fine-tuning every element of
 * every analysed tensor is trained. Embeddings, norms, biases and tensors left out of the analysis are not
 * counted, so the number is a lower bound for the whole model, and the column says so.
 */
import { DorascopeError } from '../errors.js';
import { layerIndexOf, targetMatches } from '../io/peft/patterns.js';
import { trainableRuleFor } from '../io/peft/peft-types.js';
import type { TrainableRule } from '../io/peft/trainable-rule.js';

/** One analysed tensor: its name and its shape as the analysis saw it (rows = output features, cols = the rest). */
export interface AnalysedTensor { tensor: string; rows: number; cols: number }

/** The module path PEFT matches patterns against: the tensor name without PEFT's wrapper prefix and `.weight`. */
export function modulePath(tensor: string): string {
  return tensor.replace(/^base_model\.model\./u, '').replace(/\.weight$/u, '');
}

/**
 * `method` is the analysis's (`ft`, or the adapter's method); `config` is the run's adapter_config.json as parsed JSON
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
  // Each method's plug-in (io/peft/peft-types.ts) says which tensors it adapts and what it trains on each.
  let rule: TrainableRule;
  try {
    if (typeof config !== 'object' || Array.isArray(config)) throw new Error('it is not a JSON object');
    rule = trainableRuleFor(config as Record<string, unknown>, where);
  } catch (e) {
    throw new DorascopeError('E_ANALYSIS_DIR', `${where}: adapter config of the run cannot be read: ${(e as Error).message}`);
  }
  if (rule.targetModules === null) return null;
  let n = 0;
  for (const t of list) {
    const path = modulePath(t.tensor);
    if (!targetMatches(rule.targetModules, path)) continue;
    if (rule.layersToTransform !== null) {
      const l = layerIndexOf(path);
      if (l === undefined || !rule.layersToTransform.includes(l)) continue;
    }
    const k = rule.count(path, t.rows, t.cols);
    if (k === null) return null;
    n += k;
  }
  return n;
}

/**
 * Every PEFT method dorascope reads, as a plug-in per `peft_type` as adapter_config.json writes it
 * (PEFT `utils/peft_types.py` `PeftType`): how its adapter is read, what each saved tensor is (shown
 * by `inspect`), and how its trainable parameters are counted (the report). A method adds its entry
 * here (or, for a `DeltaMethod`, in methods/delta-methods.ts); no shared code asks for a type by name.
 *
 * Counts, per adapted tensor of `rows` output features and `cols` inputs:
 * - LoRA r·(rows + cols) (A and B, Hu et al. 2021 §4.1), DoRA + rows (its magnitude, paper eq. 5)
 *   (methods/lora.ts, dora.ts);
 * - VeRA rows + r: its `vera_lambda_b` and `vera_lambda_d`; the shared projections are frozen
 *   (PEFT `tuners/vera/layer.py` `update_layer`); DVoRA + rows (its `vera_magnitude_vector`);
 * - AdaLoRA init_r·(rows + cols + 1): `lora_A`, `lora_B` and `lora_E` as created at `init_r`
 *   (`tuners/adalora/layer.py` `update_layer`), what PEFT reports as trainable before pruning;
 * - IA³, LoHa, LoKr: methods/delta.ts `trainableParams`.
 */
import { readAdaLora } from './adalora.js';
import { type AdapterConfig, parseAdapterConfig } from './adapter-config.js';
import type { MethodReader } from './method-reader.js';
import { patternValue } from './patterns.js';
import type { TrainableCounter } from './trainable-rule.js';
import { readVera } from './vera.js';
import { variantForConfig } from '../../methods/variants.js';
import { deltaMethodFor } from '../../methods/delta-methods.js';
import { deltaTrainable } from './delta-adapter.js';

export interface PeftTypePlugin {
  readonly read: MethodReader;
  /** Each tensor role the method saves → what it is. */
  readonly labels: Readonly<Record<string, string>>;
  /** Roles saved once for the whole model (`base_model.<role>`), shared by every module. */
  readonly shared: readonly string[];
  readonly trainable: TrainableCounter;
}

/** The rule shared by LoRA-family configs: target_modules, layers_to_transform and a per-module rank. */
function rule(c: AdapterConfig, count: (r: number, rows: number, cols: number) => number, where: string) {
  return {
    targetModules: c.targetModules,
    layersToTransform: c.layersToTransform,
    count: (path: string, rows: number, cols: number) => count(patternValue(c.rankPattern, path, c.r, `${where} rank_pattern`), rows, cols),
  };
}

/** LoRA, rsLoRA and DoRA (`peft_type` LORA, or DORA as the NVlabs fork writes it). */
export const loraTrainable: TrainableCounter = (json, where) => {
  const c = parseAdapterConfig(json, where);
  const variant = variantForConfig(c);
  return rule(c, (r, rows, cols) => variant.trainableParams(r, rows, cols), where);
};

export const LORA_LABELS: Readonly<Record<string, string>> = {
  lora_A: 'down-projection A (r × in)',
  lora_B: 'up-projection B (out × r)',
  lora_embedding_A: 'embedding down-projection A (r × vocab)',
  lora_embedding_B: 'embedding up-projection B (dim × r)',
  lora_magnitude_vector: 'DoRA magnitude m, one per output feature',
};

export const PEFT_TYPE_PLUGINS: Readonly<Record<string, PeftTypePlugin>> = {
  VERA: {
    read: readVera,
    labels: {
      vera_A: 'shared frozen random projection A (r × max in), sliced to the layer\'s inputs',
      vera_B: 'shared frozen random projection B (max out × r), sliced to the layer\'s outputs',
      vera_lambda_b: 'trained scale λ_b of B\'s rows (out)',
      vera_lambda_d: 'trained scale λ_d of A\'s rows (r)',
      vera_magnitude_vector: 'DVoRA magnitude m, one per output feature (dorascope\'s format, docs/formats.md)',
    },
    shared: ['vera_A', 'vera_B'],
    trainable: (json, where) => {
      // As readVera parses it: VeraConfig's default r is 256; VeRA has no alpha.
      const r = json['r'] ?? 256;
      const c = parseAdapterConfig({ ...json, peft_type: 'LORA', r, lora_alpha: r, use_dora: false, use_rslora: false, rank_pattern: null, alpha_pattern: null }, where);
      // DVoRA (`use_dora`, dorascope's format) also trains a magnitude per output feature.
      const m = json['use_dora'] === true ? 1 : 0;
      return { targetModules: c.targetModules, layersToTransform: c.layersToTransform, count: (_p, rows) => rows + c.r + m * rows };
    },
  },
  ADALORA: {
    read: readAdaLora,
    labels: {
      lora_A: 'right singular vectors P (r × in)',
      lora_B: 'left singular vectors Q (out × r)',
      lora_E: 'singular values Λ (r × 1)',
      ranknum: 'rank the update is divided by (scaling / (ranknum + 1e-5))',
    },
    shared: [],
    trainable: (json, where) => {
      const initR = json['init_r'] ?? 12; // AdaLoraConfig default
      const c = parseAdapterConfig({ ...json, peft_type: 'LORA', r: initR, lora_alpha: json['lora_alpha'] ?? 8, use_dora: false, use_rslora: false, rank_pattern: null, alpha_pattern: null }, where);
      return { targetModules: c.targetModules, layersToTransform: c.layersToTransform, count: (_p, rows, cols) => c.r * (rows + cols + 1) };
    },
  },
};

/** The plug-in for a `peft_type` (case-insensitive), or undefined for LoRA/DoRA and the delta methods. */
export function peftTypePlugin(peftType: unknown): PeftTypePlugin | undefined {
  if (typeof peftType !== 'string') return undefined;
  const t = peftType.toUpperCase();
  return Object.hasOwn(PEFT_TYPE_PLUGINS, t) ? PEFT_TYPE_PLUGINS[t] : undefined;
}

/** The trainable-parameter rule of any adapter_config.json, by its `peft_type` (LoRA/DoRA when none of the others). */
export const trainableRuleFor: TrainableCounter = (json, where) => {
  const plugin = peftTypePlugin(json['peft_type']);
  if (plugin) return plugin.trainable(json, where);
  const delta = deltaMethodFor(json['peft_type']);
  return delta ? deltaTrainable(delta)(json, where) : loraTrainable(json, where);
};

/** The readers alone, by `peft_type`. */
export const PEFT_TYPE_READERS: Readonly<Record<string, MethodReader>> =
  Object.fromEntries(Object.entries(PEFT_TYPE_PLUGINS).map(([t, p]) => [t, p.read]));

/**
 * The `Adapter` shape every PEFT method reader returns (adapter.ts for LoRA/DoRA, delta-adapter.ts
 * for IA³/LoHa/LoKr), in a file of its own so the readers do not import each other.
 */
import type { FeatureTerms } from '../../methods/delta.js';
import type { LoraFactors, Layout } from '../../methods/merge.js';
import type { SafetensorsFile } from '../safetensors/reader.js';
import type { TensorInfo } from '../types.js';
import type { AdapterConfig } from './adapter-config.js';

export interface AdapterModule {
  /** Module path in the base model, e.g. `model.layers.0.self_attn.q_proj`. */
  readonly module: string;
  /** The base tensor it adapts, by PEFT's convention `<module>.weight` (see `resolveBaseName`). */
  readonly target: string;
  /** Tensor names in the adapter file. */
  readonly a: string;
  readonly b: string;
  readonly magnitude: string | undefined;
  readonly embedding: boolean;
  /** `lora` or `dora`; another PEFT type's reader names its own (`vera`, `adalora`, `ia3`, `loha`, `lokr`). */
  readonly method: string;
  /** A module's second target that the base may lack (IA³'s bias): skipped when absent. */
  readonly optional?: boolean | undefined;
  readonly r: number;
  readonly alpha: number;
  readonly scaling: number;
}

/** One tensor a module reads from the adapter file, with its role in the method's update (for `inspect`). */
export interface ModuleTensor {
  /** The method's name for it (`lora_A`, `hada_w1_a`, `ia3_l`, `vera_lambda_b`, …). */
  readonly role: string;
  /** The tensor's name in the adapter file. */
  readonly tensor: string;
  /** What it is, in a few words. */
  readonly meaning: string;
}

/** A method's own exact ΔM/ΔD algebra on a module, other than LoRA factors (IA³: methods/delta.ts `exactFeatures`). */
export interface FeatureAlgebra {
  /** Whether module m has it (else it takes the merge path). */
  applies(m: AdapterModule): boolean;
  /** The module's per-feature terms on base tensor W0 (storage layout of `base`), features along rows or columns. */
  terms(m: AdapterModule, base: TensorInfo, W0: Float32Array, featuresAreRows: boolean, what: string): Promise<FeatureTerms>;
  /** Adapter bytes it reads for the module. */
  bytes(m: AdapterModule): number;
}

export interface Adapter {
  readonly dir: string;
  readonly configPath: string;
  readonly weightsPath: string;
  readonly config: AdapterConfig;
  /** `dora` when any module carries a magnitude vector (or the config says use_dora); else `lora`, or another PEFT type's name. */
  readonly method: string;
  /** Whether `readFactors` gives LoRA factors, so the exact ΔM/ΔD algebra applies; else only the merge path. */
  readonly exact: boolean;
  readonly modules: readonly AdapterModule[];
  /** Full replacements (modules_to_save): base tensor name → adapter tensor name. */
  readonly replacements: ReadonlyMap<string, string>;
  /** The adapter file itself (headers, raw tensors). */
  readonly file: SafetensorsFile;
  /** The layout of a module on a base tensor of the given shape. */
  layoutFor(m: AdapterModule, base: TensorInfo): Layout;
  /** The module's factors for that base tensor (reads A, B and m from the file). */
  readFactors(m: AdapterModule, base: TensorInfo): Promise<LoraFactors>;
  /** When `exact` is false: the method's own exact algebra, if it has one (else the analysis merges per tensor). */
  readonly featureAlgebra?: FeatureAlgebra | undefined;
  /** The tensors module m reads, by role, from the adapter file's headers. */
  tensorsOf(m: AdapterModule): readonly ModuleTensor[];
  /** W′: the module merged onto its base tensor W (of `base`'s shape), as PEFT's `merge` does. */
  mergeInto(m: AdapterModule, base: TensorInfo, W: Float32Array, what: string): Promise<Float32Array>;
  close(): Promise<void>;
}

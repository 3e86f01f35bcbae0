/**
 * PEFT adapter types other than LoRA/DoRA whose update is still a product B′·A′ of two factors,
 * read by a plug-in per `peft_type` (PEFT_TYPE_READERS in peft-types.ts). Each reader turns its
 * method's saved tensors into the LoRA factors of methods/merge.ts (`LoraFactors`), so merge,
 * the merge path of analyze and the exact ΔM/ΔD path need no branch of their own.
 */
import type { LoraFactors, Layout } from '../../methods/merge.js';
import type { SafetensorsFile } from '../safetensors/reader.js';
import type { TensorInfo } from '../types.js';
import type { AdapterConfig } from './adapter-config.js';
import type { AdapterModule } from './adapter-types.js';

/** One adapted module as `Adapter.modules` lists it. */
export type MethodModule = AdapterModule;

export interface MethodReaderInput {
  readonly configPath: string;
  readonly weightsPath: string;
  /** adapter_config.json, parsed. */
  readonly json: Record<string, unknown>;
  readonly file: SafetensorsFile;
}

export interface MethodAdapterParts {
  readonly config: AdapterConfig;
  readonly method: string;
  readonly modules: readonly MethodModule[];
  readonly replacements: ReadonlyMap<string, string>;
  layoutFor(m: MethodModule, base: TensorInfo): Layout;
  readFactors(m: MethodModule, base: TensorInfo): Promise<LoraFactors>;
}

export type MethodReader = (input: MethodReaderInput) => MethodAdapterParts;

/**
 * The readers of PEFT adapter types beyond LoRA/DoRA, by `peft_type` as adapter_config.json writes it
 * (PEFT `utils/peft_types.py` `PeftType`). A method adds its reader here; adapter.ts asks no type by name.
 */
import { readAdaLora } from './adalora.js';
import type { MethodReader } from './method-reader.js';
import { readVera } from './vera.js';

export const PEFT_TYPE_READERS: Readonly<Record<string, MethodReader>> = {
  VERA: readVera,
  ADALORA: readAdaLora,
};

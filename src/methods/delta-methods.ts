/** The `DeltaMethod` plug-ins (delta.ts), picked by adapter_config.json `peft_type`. */
import type { DeltaMethod } from './delta.js';
import { ia3Method } from './ia3.js';
import { lohaMethod } from './loha.js';
import { lokrMethod } from './lokr.js';

const METHODS: readonly DeltaMethod[] = [ia3Method, lohaMethod, lokrMethod];

/** The plug-in for a `peft_type`, or undefined when it is not one of these. */
export function deltaMethodFor(peftType: unknown): DeltaMethod | undefined {
  if (typeof peftType !== 'string') return undefined;
  const t = peftType.toUpperCase();
  return METHODS.find((m) => m.peftType === t);
}

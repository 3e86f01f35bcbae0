/**
 * Tensor names in a PEFT adapter file, both ways: `adapterKey` builds the names our trainer
 * saves and `parseAdapterKey` reads any PEFT file's. Names (peft `utils/save_and_load.py`
 * `get_peft_model_state_dict`): PEFT saves `base_model.model.<module path>.<role>`,
 * with the adapter name removed (older or hand-made files keep it:
 * `.lora_A.default.weight`, which we accept). Roles:
 *   lora_A.weight (r, in)             lora_B.weight (out, r)
 *   lora_embedding_A (r, vocab)       lora_embedding_B (dim, r)      (no `.weight`)
 *   lora_magnitude_vector (out,)      DoRA magnitude (saved without `.weight`; accept it)
 *   weight_m_wdecomp.weight (out, 1)  DoRA magnitude in the NVlabs/DoRA fork's format
 *   modules_to_save.<adapter>.<param> a full replacement of `<module path>.<param>`
 * Any other tensor under the prefix (e.g. `lm_head.weight` saved for modules_to_save)
 * replaces the base tensor of that name.
 */

export type KeyRole = 'A' | 'B' | 'magnitude' | 'replace';

export interface ParsedKey {
  readonly role: KeyRole;
  /** Module path in the base model (`model.layers.0.self_attn.q_proj`), for A/B/magnitude. */
  readonly module: string;
  /** For `replace`: the base tensor name it replaces. */
  readonly target: string;
  /** Whether A/B came from `lora_embedding_*`. */
  readonly embedding: boolean;
  /** Whether the magnitude is the NVlabs (out, 1) form. */
  readonly nvlabs: boolean;
  /** Adapter name found in the key, if any. */
  readonly adapterName: string | undefined;
}

export const PEFT_PREFIX = 'base_model.model.';

/** The roles a LoRA-family layer saves (a method variant names the ones beyond A and B). */
export type SavedRole = Exclude<KeyRole, 'replace'>;

/** What PEFT's `get_peft_model_state_dict` calls each role of a linear layer, adapter name removed. */
const SAVED_NAME: Readonly<Record<SavedRole, string>> = {
  A: 'lora_A.weight',
  B: 'lora_B.weight',
  magnitude: 'lora_magnitude_vector',
};

/** The name PEFT saves `role` of a LoRA layer by, after the module path: `lora_A.weight`, …. */
export function savedName(role: SavedRole): string {
  return SAVED_NAME[role];
}

/** The key PEFT saves `role` of module `module` under: `base_model.model.<module>.lora_A.weight`, …. */
export function adapterKey(module: string, role: SavedRole): string {
  return layerKey(module, SAVED_NAME[role]);
}

/** The key of a layer tensor saved by `name` (`vera_lambda_b`, `lora_A.weight`): `base_model.model.<module>.<name>`. */
export function layerKey(module: string, name: string): string {
  return `${PEFT_PREFIX}${module}.${name}`;
}

/**
 * The key of a model-level tensor of PEFT's tuner, adapter name removed: `base_model.vera_A`
 * (PEFT `tuners/vera/model.py` `_get_adapter_state_dict` stores `base_model.vera_A.<adapter>`,
 * and `get_peft_model_state_dict` strips the adapter name on save).
 */
export function modelKey(name: string): string {
  return `base_model.${name}`;
}

// `<module>.<role>[.<adapter>][.weight]`; the adapter name is one dotted segment.
const ROLE_RE =
  /^(?<module>.+)\.(?<role>lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)(?:\.(?<adapter>[^.]+))?(?:\.weight)?$/u;
const NVLABS_RE = /^(?<module>.+)\.weight_m_wdecomp\.weight$/u;
const SAVE_RE = /^(?<module>.+)\.modules_to_save\.(?<adapter>[^.]+)\.(?<param>.+)$/u;

/** Strips PEFT's wrapper prefix; names without it are taken as module paths already. */
export function stripPrefix(name: string): string {
  return name.startsWith(PEFT_PREFIX) ? name.slice(PEFT_PREFIX.length) : name;
}

export function parseAdapterKey(name: string): ParsedKey {
  const key = stripPrefix(name);
  let m = ROLE_RE.exec(key);
  if (m?.groups) {
    const g = m.groups;
    // `.lora_A.weight` parses with adapter "weight" absent because `.weight` is optional last;
    // guard the case `lora_A.weight` read as adapter name "weight".
    const adapter = g['adapter'] === 'weight' ? undefined : g['adapter'];
    const r = g['role']!;
    const role: KeyRole = r.endsWith('A') ? 'A' : r.endsWith('B') ? 'B' : 'magnitude';
    return { role, module: g['module']!, target: `${g['module']}.weight`, embedding: r.startsWith('lora_embedding'), nvlabs: false, adapterName: adapter };
  }
  m = NVLABS_RE.exec(key);
  if (m?.groups) {
    const mod = m.groups['module']!;
    return { role: 'magnitude', module: mod, target: `${mod}.weight`, embedding: false, nvlabs: true, adapterName: undefined };
  }
  m = SAVE_RE.exec(key);
  if (m?.groups) {
    const mod = m.groups['module']!;
    return { role: 'replace', module: mod, target: `${mod}.${m.groups['param']}`, embedding: false, nvlabs: false, adapterName: m.groups['adapter'] };
  }
  const dot = key.lastIndexOf('.');
  return { role: 'replace', module: dot > 0 ? key.slice(0, dot) : key, target: key, embedding: false, nvlabs: false, adapterName: undefined };
}

/**
 * A per-module tensor of another PEFT method, `<module>.<role>[.<adapter>][.weight]` under PEFT's
 * prefix (VeRA `vera_lambda_b`, AdaLoRA `lora_E`, …), for one of `roles`; undefined when the name
 * has none of them. PEFT saves ParameterDict entries without `.weight` and removes the adapter name.
 */
export function parseMethodKey(name: string, roles: readonly string[]): { module: string; role: string } | undefined {
  const key = stripPrefix(name);
  for (const role of roles) {
    const at = key.lastIndexOf(`.${role}`);
    if (at <= 0) continue;
    const rest = key.slice(at + role.length + 1);
    // What may follow the role: nothing, `.weight`, an adapter name, or both.
    if (/^(?:\.[^.]+)?(?:\.weight)?$/u.test(rest)) return { module: key.slice(0, at), role };
  }
  return undefined;
}

/** Whether `name` is a model-level tensor of PEFT's tuner (`base_model.vera_A`, with or without an adapter name). */
export function modelLevelKey(name: string, role: string): boolean {
  return name === `base_model.${role}` || (name.startsWith(`base_model.${role}.`) && !name.slice(`base_model.${role}.`.length).includes('.'));
}

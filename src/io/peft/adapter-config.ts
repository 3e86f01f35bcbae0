/**
 * `adapter_config.json` as PEFT's `LoraConfig` writes it (peft `tuners/lora/config.py`).
 * Only the fields that change the effective weights are read; unknown fields are
 * ignored (PEFT adds new ones every release). Missing or mistyped required fields
 * give E_ADAPTER_CONFIG naming the file and the field.
 */
import { DorascopeError, q } from '../../errors.js';
import { parseJsonLenient } from '../sources/lenient-json.js';
import { JSON_CAPS, readTextCapped } from '../open-regular.js';
import { shownValue } from '../json-value.js';
import { compileSafe } from '../safe-regex.js';

export interface AdapterConfig {
  /** `peft_type` as written ("LORA"; the NVlabs/DoRA fork writes "DORA"). */
  readonly peftType: string;
  /** Default rank r. */
  readonly r: number;
  /** Default alpha (PEFT allows a float). */
  readonly loraAlpha: number;
  /** rsLoRA (Kalajdzievski 2023): s = alpha/√r instead of alpha/r. */
  readonly useRslora: boolean;
  readonly useDora: boolean;
  /** Per-module ranks and alphas, in file order (first match wins). */
  readonly rankPattern: Readonly<Record<string, number>>;
  readonly alphaPattern: Readonly<Record<string, number>>;
  /** A hint only: the layout is decided from tensor shapes (see adapter.ts). */
  readonly fanInFanOut: boolean;
  readonly targetModules: string | readonly string[] | null;
  readonly modulesToSave: readonly string[] | null;
  readonly layersToTransform: readonly number[] | null;
  readonly baseModelNameOrPath: string | null;
  /** The parsed JSON, for manifests. */
  readonly raw: Readonly<Record<string, unknown>>;
}

/** The largest rank accepted (PEFT ranks are ≤ 1024 in practice; a rank is at most min(fan_in, fan_out)). */
export const MAX_RANK = 65_536;
/** The largest |alpha| accepted: the scaling alpha/r must stay a sane float32 factor. */
export const MAX_ALPHA = 1e9;

export async function readAdapterConfig(path: string): Promise<AdapterConfig> {
  return parseAdapterConfig(await readAdapterConfigJson(path), path);
}

/** adapter_config.json parsed as Python's json.dump writes it (bare NaN/Infinity), not yet checked. */
export async function readAdapterConfigJson(path: string): Promise<unknown> {
  const text = await readTextCapped(path, 'adapter config', JSON_CAPS.config);
  try {
    return parseJsonLenient(text);
  } catch (e) {
    throw new DorascopeError('E_ADAPTER_CONFIG', `${q(path)} is not valid JSON: ${(e as Error).message}`);
  }
}

export function parseAdapterConfig(json: unknown, path: string): AdapterConfig {
  const fail = (field: string, why: string): never => {
    throw new DorascopeError('E_ADAPTER_CONFIG', `${q(path)}: field ${q(field)} ${why}`, { path, field });
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('(root)', 'must be a JSON object');
  const o = json as Record<string, unknown>;
  const num = (field: string, required: boolean, dflt: number, integer: boolean): number => {
    const v = o[field];
    if (v === undefined || v === null) return required ? fail(field, 'is missing') : dflt;
    if (typeof v !== 'number' || !Number.isFinite(v)) return fail(field, `must be a finite number, got ${shownValue(v)}`);
    if (integer && (!Number.isInteger(v) || v <= 0 || v > MAX_RANK)) return fail(field, `must be a whole number from 1 to ${MAX_RANK}, got ${shownValue(v)}`);
    if (!integer && Math.abs(v) > MAX_ALPHA) return fail(field, `must be between -${MAX_ALPHA} and ${MAX_ALPHA}, got ${shownValue(v)}`);
    return v;
  };
  const bool = (field: string): boolean => {
    const v = o[field];
    if (v === undefined || v === null) return false;
    if (typeof v !== 'boolean') return fail(field, `must be true or false, got ${shownValue(v)}`);
    return v;
  };
  const pattern = (field: string, integer: boolean): Record<string, number> => {
    const v = o[field];
    if (v === undefined || v === null) return {};
    if (typeof v !== 'object' || Array.isArray(v)) return fail(field, 'must be an object of pattern → number');
    const out: Record<string, number> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (typeof x !== 'number' || !Number.isFinite(x) || (integer && (!Number.isInteger(x) || x <= 0 || x > MAX_RANK)) || (!integer && Math.abs(x) > MAX_ALPHA)) {
        fail(`${field}.${k}`, `must be ${integer ? `a whole number from 1 to ${MAX_RANK}` : `a finite number between -${MAX_ALPHA} and ${MAX_ALPHA}`}, got ${shownValue(x)}`);
      }
      // Keys are regexes (PEFT get_pattern_key): an invalid one is a config error now, not at first use.
      compileSafe(`(?:.*\\.)?(?:${k})`, `${q(path)}: ${field} key ${q(k)}`, 'E_ADAPTER_CONFIG');
      out[k] = x as number;
    }
    return out;
  };
  const strList = (field: string): string[] | null => {
    const v = o[field];
    if (v === undefined || v === null) return null;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) return fail(field, 'must be a list of strings');
    return v as string[];
  };
  const peftType = o['peft_type'] === undefined ? 'LORA' : o['peft_type'];
  if (typeof peftType !== 'string' || !['LORA', 'DORA'].includes(peftType.toUpperCase())) {
    fail('peft_type', `is ${shownValue(peftType)}; dorascope reads LoRA and DoRA adapters only`);
  }
  let targetModules: string | string[] | null = null;
  const tm = o['target_modules'];
  if (typeof tm === 'string') {
    targetModules = tm;
    if (tm !== 'all-linear') compileSafe(`(?:${tm})`, `${q(path)}: target_modules`, 'E_ADAPTER_CONFIG');
  }
  else if (tm !== undefined && tm !== null) targetModules = strList('target_modules');
  let layersToTransform: number[] | null = null;
  const lt = o['layers_to_transform'];
  if (typeof lt === 'number') layersToTransform = [lt];
  else if (Array.isArray(lt) && lt.every((x) => Number.isInteger(x))) layersToTransform = lt as number[];
  else if (lt !== undefined && lt !== null) fail('layers_to_transform', 'must be an integer or a list of integers');
  const base = o['base_model_name_or_path'];
  return {
    peftType: (peftType as string).toUpperCase(),
    r: num('r', true, 8, true),
    loraAlpha: num('lora_alpha', true, 8, false),
    useRslora: bool('use_rslora'),
    useDora: bool('use_dora') || (peftType as string).toUpperCase() === 'DORA',
    rankPattern: pattern('rank_pattern', true),
    alphaPattern: pattern('alpha_pattern', false),
    fanInFanOut: bool('fan_in_fan_out'),
    targetModules,
    modulesToSave: strList('modules_to_save'),
    layersToTransform,
    baseModelNameOrPath: typeof base === 'string' ? base : null,
    raw: o,
  };
}

/**
 * Which rank and alpha fields an adapter_config.json names: LoRA/AdaLoRA `r` (AdaLoRA also `init_r`) and
 * `lora_alpha`, LoHa/LoKr (LyCORIS) `r` and `alpha`, VeRA `r` alone, IA³ neither. Shown as the config names them
 * (`inspect`, the report's r and alpha columns), so a method without one shows none.
 */
export function scaleKeys(raw: Readonly<Record<string, unknown>>): { rank: boolean; alpha: 'lora_alpha' | 'alpha' | null } {
  const has = (k: string) => Object.hasOwn(raw, k);
  return { rank: has('r') || has('init_r'), alpha: has('lora_alpha') ? 'lora_alpha' : has('alpha') ? 'alpha' : null };
}

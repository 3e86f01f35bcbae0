/**
 * config.json's `quantization_config` for bitsandbytes, as Transformers writes it
 * (`BitsAndBytesConfig.to_dict()`, transformers/utils/quantization_config.py), and its cross-check
 * against what the tensor keys say. The keys decide how a weight is decoded (quantized-source.ts);
 * the config is a second witness: when both are present they must agree.
 */
import { DorascopeError, q } from '../../errors.js';
import type { TensorInfo } from '../types.js';
import type { Bnb4bitType } from './bnb-4bit.js';

/** What a bitsandbytes `quantization_config` says about the weights. */
export interface BnbConfig {
  readonly bits: 4 | 8;
  /** 4-bit: `bnb_4bit_quant_type` (Transformers' default "fp4"). */
  readonly quantType: Bnb4bitType | null;
  /** 4-bit: `bnb_4bit_use_double_quant` (default false). */
  readonly doubleQuant: boolean;
}

/** The `quantization_config` Transformers saves for a model loaded with these 4-bit settings. */
export function bnb4bitQuantizationConfig(quantType: Bnb4bitType, doubleQuant: boolean, computeDtype = 'float32'): Record<string, unknown> {
  return {
    _load_in_4bit: true, _load_in_8bit: false,
    bnb_4bit_compute_dtype: computeDtype, bnb_4bit_quant_storage: 'uint8',
    bnb_4bit_quant_type: quantType, bnb_4bit_use_double_quant: doubleQuant,
    llm_int8_enable_fp32_cpu_offload: false, llm_int8_has_fp16_weight: false, llm_int8_skip_modules: null,
    llm_int8_threshold: 6.0, load_in_4bit: true, load_in_8bit: false, quant_method: 'bitsandbytes',
  };
}

/**
 * Parses config.json's `quantization_config` (`where` names the file); undefined when there is none.
 * Another quant_method (gptq, awq, ...) is E_UNSUPPORTED_FORMAT: its tensors would be misread as plain ones.
 */
export function parseQuantizationConfig(config: unknown, where: string): BnbConfig | undefined {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) return undefined;
  const qc = (config as Record<string, unknown>)['quantization_config'];
  if (qc === undefined || qc === null) return undefined;
  const bad = (what: string): never => { throw new DorascopeError('E_QUANT_CONFIG', `${where}: quantization_config ${what}`); };
  if (typeof qc !== 'object' || Array.isArray(qc)) return bad('is not a JSON object');
  const o = qc as Record<string, unknown>;
  const method = o['quant_method'] ?? 'bitsandbytes'; // configs older than quant_method are bitsandbytes'
  if (method !== 'bitsandbytes') {
    throw new DorascopeError('E_UNSUPPORTED_FORMAT', `${where}: quantization_config.quant_method is ${JSON.stringify(method)}; dorascope reads bitsandbytes quantization (NF4, FP4, LLM.int8) only`);
  }
  const flag = (k: string): boolean => {
    const v = o[k] ?? o[`_${k}`];
    if (v !== undefined && typeof v !== 'boolean') bad(`.${k} is ${JSON.stringify(v)}, not true or false`);
    return v === true;
  };
  const four = flag('load_in_4bit'), eight = flag('load_in_8bit');
  if (four === eight) return bad(four ? 'sets both load_in_4bit and load_in_8bit' : 'sets neither load_in_4bit nor load_in_8bit');
  if (eight) return { bits: 8, quantType: null, doubleQuant: false };
  const type = o['bnb_4bit_quant_type'] ?? 'fp4';
  if (type !== 'nf4' && type !== 'fp4') return bad(`.bnb_4bit_quant_type is ${JSON.stringify(type)}, not "nf4" or "fp4"`);
  const dq = o['bnb_4bit_use_double_quant'] ?? false;
  if (typeof dq !== 'boolean') return bad(`.bnb_4bit_use_double_quant is ${JSON.stringify(dq)}, not true or false`);
  return { bits: 4, quantType: type, doubleQuant: dq };
}

/**
 * Checks the weights the keys describe (`list`, as quantized-source.ts lists them) against the config:
 * E_QUANT_CONFIG naming the first weight that disagrees, or the config when no weight is quantized.
 */
export function checkQuantizationConfig(cfg: BnbConfig, list: readonly TensorInfo[], where: string): void {
  const quantized = list.filter((t) => t.quant !== undefined);
  const says = cfg.bits === 8 ? 'load_in_8bit (LLM.int8)' : `load_in_4bit, ${cfg.quantType}${cfg.doubleQuant ? ', double quant' : ', no double quant'}`;
  if (quantized.length === 0) {
    throw new DorascopeError('E_QUANT_CONFIG', `${where} says ${says}, but no tensor is stored quantized (no .quant_state.bitsandbytes__* or .SCB keys)`);
  }
  for (const t of quantized) {
    const qi = t.quant!;
    const is = qi.type === 'int8' ? 'LLM.int8' : `${qi.type}${qi.doubleQuant ? ', double quant' : ', no double quant'}`;
    const agrees = cfg.bits === 8 ? qi.type === 'int8' : qi.type === cfg.quantType && qi.doubleQuant === cfg.doubleQuant;
    if (!agrees) throw new DorascopeError('E_QUANT_CONFIG', `${where} says ${says}, but tensor ${q(t.name)} is stored ${is} (its keys: ${qi.stored.join(', ')})`, { name: t.name });
  }
}

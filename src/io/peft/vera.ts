/**
 * PEFT VeRA adapters (`peft_type: "VERA"`; Kopiczko et al. 2024, "VeRA: Vector-based Random Matrix
 * Adaptation"), as huggingface/peft `tuners/vera/` saves and merges them:
 *
 * - one pair of frozen random projections shared by every adapted layer, `vera_A` (r, max_in) and
 *   `vera_B` (max_out, r), saved once as `base_model.vera_A` / `base_model.vera_B` when
 *   `save_projection` is true (`model.py` `_get_adapter_state_dict`, around line 270);
 * - per module `vera_lambda_d` (r) and `vera_lambda_b` (out);
 * - `layer.py` `get_delta_weight` (line 214): ΔW = (λ_b ⊙ B[:out, :]) @ (λ_d ⊙ A[:, :in]), transposed
 *   when `fan_in_fan_out` (GPT-2 Conv1D), with no scaling factor.
 *
 * So ΔW is the LoRA product B′·A′ with B′ = diag(λ_b)·B[:out] and A′ = diag(λ_d)·A[:, :in] and s = 1:
 * the reader hands merge and analysis LoRA factors and they need nothing VeRA-specific. B′ and A′ are
 * each rounded to float32 once (one product per element), then merged with float64 accumulation.
 *
 * DVoRA (the DoRA paper's DoRA-on-VeRA; PEFT has no such type) is saved by dorascope's trainer as a
 * VeRA adapter plus one DoRA magnitude vector per module, `base_model.model.<module>.vera_magnitude_vector`
 * (out), with `"use_dora": true` in the VeRA config (docs/formats.md, "DVoRA"). The reader hands the
 * magnitude on with the factors, so merge and the exact ΔM/ΔD path apply DoRA's
 * W' = m ⊙ (W + ΔW)/‖W + ΔW‖_row to VeRA's ΔW with no code of their own.
 *
 * Without saved projections PEFT regenerates them from `projection_prng_key` with torch's CPU
 * generator (`model.py` `_init_vera_A_vera_B`), which we cannot reproduce: such an adapter is refused.
 */
import { DorascopeError, q } from '../../errors.js';
import type { Layout } from '../../methods/merge.js';
import { shownValue } from '../json-value.js';
import type { TensorInfo } from '../types.js';
import { type AdapterConfig, parseAdapterConfig } from './adapter-config.js';
import { modelLevelKey, parseAdapterKey, parseMethodKey } from './keys.js';
import type { MethodModule, MethodReader } from './method-reader.js';

const ROLES = ['vera_lambda_b', 'vera_lambda_d', 'vera_magnitude_vector'] as const;
const CONV1D_NAMES = /(?:^|\.)(?:c_attn|c_proj|c_fc|c_attn_proj|q_attn)$/u;

/**
 * VeRA adapts nn.Linear (out, in) and GPT-2 Conv1D (in, out) (`model.py` `_create_new_module`): the
 * layout follows from which side of the base has λ_b's length; a square base takes `fan_in_fan_out`.
 */
export function veraLayout(mod: string, out: number, base: readonly number[], fanInFanOut: boolean): { layout: Layout; in: number } {
  if (base.length !== 2) throw new DorascopeError('E_SHAPE_MISMATCH', `VeRA module ${q(mod)}: the base tensor has shape [${base.join(', ')}], VeRA adapts 2-D linear weights only`);
  const linear = base[0] === out, conv1d = base[1] === out;
  if (linear && conv1d) return fanInFanOut || CONV1D_NAMES.test(mod) ? { layout: 'conv1d', in: base[0]! } : { layout: 'linear', in: base[1]! };
  if (linear) return { layout: 'linear', in: base[1]! };
  if (conv1d) return { layout: 'conv1d', in: base[0]! };
  throw new DorascopeError('E_SHAPE_MISMATCH', `VeRA module ${q(mod)}: vera_lambda_b has ${out} values, but the base tensor's shape [${base.join(', ')}] has no side of that length`);
}

/** VeraConfig's fields as read (`tuners/vera/config.py`), with the fields VeRA shares with LoRA checked as LoRA's. */
function parseVeraConfig(json: Record<string, unknown>, configPath: string): { r: number; saveProjection: boolean; dvora: boolean; config: AdapterConfig } {
  const fail = (field: string, why: string): never => {
    throw new DorascopeError('E_ADAPTER_CONFIG', `${q(configPath)}: field ${q(field)} ${why}`, { path: configPath, field });
  };
  const r = (json['r'] ?? 256) as number; // VeraConfig default
  if (typeof r !== 'number' || !Number.isInteger(r) || r <= 0) fail('r', `must be a whole number from 1, got ${shownValue(r)}`);
  const saveProjection = json['save_projection'] ?? true;
  if (typeof saveProjection !== 'boolean') fail('save_projection', `must be true or false, got ${shownValue(saveProjection)}`);
  // dorascope's DVoRA flag; PEFT's VeraConfig has no such field (it drops it with a warning on load).
  const dvora = json['use_dora'] ?? false;
  if (typeof dvora !== 'boolean') fail('use_dora', `must be true or false, got ${shownValue(dvora)}`);
  // The fields VeRA shares with LoRA (target_modules, modules_to_save, fan_in_fan_out, …) are checked as LoRA's;
  // VeRA has no alpha and no scaling, shown as lora_alpha = r so that alpha/r is the 1 it multiplies by.
  const common = parseAdapterConfig({ ...json, peft_type: 'LORA', r, lora_alpha: r, use_dora: dvora, use_rslora: false, rank_pattern: null, alpha_pattern: null }, configPath);
  return { r, saveProjection: saveProjection as boolean, dvora: dvora as boolean, config: { ...common, peftType: 'VERA', raw: json } };
}

export const readVera: MethodReader = ({ configPath, weightsPath, json, file }) => {
  const { r, saveProjection, dvora, config } = parseVeraConfig(json, configPath);

  const keysErr = (name: string, why: string): never => {
    throw new DorascopeError('E_ADAPTER_KEYS', `${q(weightsPath)}: tensor ${q(name)} ${why}`);
  };
  let A: string | undefined, B: string | undefined;
  const parts = new Map<string, { vera_lambda_b?: string; vera_lambda_d?: string; vera_magnitude_vector?: string }>();
  const replacements = new Map<string, string>();
  for (const t of file.tensors) {
    if (modelLevelKey(t.name, 'vera_A')) { if (A !== undefined) keysErr(t.name, 'is a second vera_A (several adapters in one file are not supported)'); A = t.name; continue; }
    if (modelLevelKey(t.name, 'vera_B')) { if (B !== undefined) keysErr(t.name, 'is a second vera_B (several adapters in one file are not supported)'); B = t.name; continue; }
    const k = parseMethodKey(t.name, ROLES);
    if (k) {
      const p = parts.get(k.module) ?? {};
      const role = k.role as (typeof ROLES)[number];
      if (p[role] !== undefined) keysErr(t.name, `is a second ${role} for module ${q(k.module)} (several adapters in one file are not supported)`);
      p[role] = t.name;
      parts.set(k.module, p);
      continue;
    }
    const rep = parseAdapterKey(t.name);
    if (rep.role !== 'replace' || /(?:^|\.)(?:vera|lora)_[A-Za-z_]+(?:\.|$)/u.test(rep.target)) keysErr(t.name, 'is not a VeRA tensor dorascope knows');
    if (replacements.has(rep.target)) keysErr(t.name, `replaces ${q(rep.target)} a second time`);
    replacements.set(rep.target, t.name);
  }
  if (A === undefined || B === undefined) {
    if (!saveProjection) {
      throw new DorascopeError('E_UNSUPPORTED_FORMAT',
        `${q(configPath)}: save_projection is false, so the VeRA projections vera_A/vera_B are not in ${q(weightsPath)}; PEFT regenerates them from projection_prng_key ${shownValue(json['projection_prng_key'])} with torch's random generator, which dorascope cannot reproduce. Save the adapter again with save_projection=True`);
    }
    keysErr(A === undefined ? 'base_model.vera_A' : 'base_model.vera_B', 'is missing (save_projection is true, so PEFT saves it)');
  }
  const aShape = file.info(A!)!.shape, bShape = file.info(B!)!.shape;
  if (aShape.length !== 2 || bShape.length !== 2 || bShape[1] !== aShape[0]) keysErr(A!, `and vera_B have shapes [${aShape.join(', ')}] and [${bShape.join(', ')}]; expected (r, max_in) and (max_out, r)`);
  const rank = aShape[0]!;
  if (rank !== r) keysErr(A!, `has rank ${rank} but ${q(configPath)} gives r = ${r}`);

  const modules: MethodModule[] = [];
  const names = new Map<MethodModule, { lb: string; ld: string; m: string | undefined }>();
  for (const [mod, p] of [...parts].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))) {
    if (!p.vera_lambda_b || !p.vera_lambda_d) keysErr(p.vera_lambda_b ?? p.vera_lambda_d ?? p.vera_magnitude_vector!, `belongs to module ${q(mod)}, which lacks its ${p.vera_lambda_b ? 'vera_lambda_d' : 'vera_lambda_b'}`);
    if (dvora && !p.vera_magnitude_vector) keysErr(p.vera_lambda_b!, `belongs to module ${q(mod)}: use_dora is true (DVoRA) but it has no vera_magnitude_vector`);
    const mv = p.vera_magnitude_vector;
    if (mv !== undefined) {
      const ms = file.info(mv)!.shape, lbs = file.info(p.vera_lambda_b!)!.shape;
      if (ms.length !== 1 || ms[0] !== lbs[0]) keysErr(mv, `has shape [${ms.join(', ')}], expected [${lbs[0]}] (one per output feature, as vera_lambda_b)`);
    }
    const ld = file.info(p.vera_lambda_d!)!.shape;
    if (ld.length !== 1 || ld[0] !== rank) keysErr(p.vera_lambda_d!, `has shape [${ld.join(', ')}], expected [${rank}] (the rank of vera_A)`);
    if (file.info(p.vera_lambda_b!)!.shape.length !== 1) keysErr(p.vera_lambda_b!, 'must be a vector');
    const m: MethodModule = { module: mod, target: `${mod}.weight`, a: A!, b: B!, magnitude: mv, embedding: false, method: mv ? 'dvora' : 'vera', r: rank, alpha: rank, scaling: 1 };
    modules.push(m);
    names.set(m, { lb: p.vera_lambda_b!, ld: p.vera_lambda_d!, m: mv });
  }
  let shared: Promise<[Float32Array, Float32Array]> | undefined;

  const placed = (m: MethodModule, base: TensorInfo): { layout: Layout; out: number; in: number } => {
    const out = file.info(names.get(m)!.lb)!.shape[0]!;
    const { layout, in: inn } = veraLayout(m.module, out, base.shape, config.fanInFanOut);
    // PEFT's `update_layer` (layer.py, line 110) refuses a layer larger than the shared projections.
    if (inn > aShape[1]!) throw new DorascopeError('E_SHAPE_MISMATCH', `VeRA module ${q(m.module)} has ${inn} input features, more than vera_A's ${aShape[1]} columns`);
    if (out > bShape[0]!) throw new DorascopeError('E_SHAPE_MISMATCH', `VeRA module ${q(m.module)} has ${out} output features, more than vera_B's ${bShape[0]} rows`);
    return { layout, out, in: inn };
  };
  return {
    config, method: dvora || modules.some((m) => m.magnitude !== undefined) ? 'dvora' : 'vera', modules, replacements,
    layoutFor: (m, base) => placed(m, base).layout,
    async readFactors(m, base) {
      const { layout, out, in: inn } = placed(m, base);
      shared ??= Promise.all([file.readFloat32(A!), file.readFloat32(B!)]);
      const [va, vb] = await shared;
      const n = names.get(m)!;
      const [lb, ld] = await Promise.all([file.readFloat32(n.lb), file.readFloat32(n.ld)]);
      const maxIn = aShape[1]!;
      const a = new Float32Array(rank * inn);
      for (let k = 0; k < rank; k++) for (let j = 0; j < inn; j++) a[k * inn + j] = ld[k]! * va[k * maxIn + j]!;
      const b = new Float32Array(out * rank);
      for (let o = 0; o < out; o++) for (let k = 0; k < rank; k++) b[o * rank + k] = lb[o]! * vb[o * rank + k]!;
      const magnitude = n.m === undefined ? undefined : await file.readFloat32(n.m);
      return { layout, r: rank, out, in: inn, A: a, B: b, scaling: 1, magnitude };
    },
  };
};

/**
 * PEFT AdaLoRA adapters (`peft_type: "ADALORA"`; Zhang et al. 2023, "AdaLoRA: Adaptive Budget
 * Allocation for Parameter-Efficient Fine-Tuning"), as huggingface/peft `tuners/adalora/` saves and
 * merges them:
 *
 * - per module `lora_A` (r, in), `lora_B` (out, r) and the singular values `lora_E` (r, 1)
 *   (`layer.py` `update_layer`), saved without `.weight` (ParameterDicts);
 * - `layer.py` `get_delta_weight` (line 168): ΔW = B @ (A ⊙ E) · scaling / (ranknum + 1e-5), transposed
 *   when `fan_in_fan_out`; `scaling` is lora_alpha, or the layer's rank when lora_alpha ≤ 0 (line 85);
 * - `ranknum` is not saved: it is always float(r) at creation with r = `init_r` (`model.py` line 128),
 *   and pruning keeps it (`resize_modules_by_rank_pattern`, "the scaling is exactly as the previous").
 *   Older files that did save `<module>.ranknum` are read with that value.
 * - `rank_pattern` maps `<module>.lora_E` to a boolean mask over the init_r ranks; the saved tensors are
 *   already cut to the kept ranks (`resize_state_dict_by_rank_pattern`), so a mask's count of `true`
 *   must equal the saved rank.
 *
 * So ΔW is the LoRA product B·A′ with A′ = A ⊙ E (each row k of A times E[k]) and
 * s = scaling / (ranknum + 1e-5): merge and analysis get LoRA factors. A′ is rounded to float32 once.
 */
import { DorascopeError, q } from '../../errors.js';
import type { Layout } from '../../methods/merge.js';
import { shownValue } from '../json-value.js';
import type { TensorInfo } from '../types.js';
import { type AdapterConfig, MAX_RANK, parseAdapterConfig } from './adapter-config.js';
import { parseMethodKey, stripPrefix } from './keys.js';
import type { MethodModule, MethodReader } from './method-reader.js';
import { veraLayout } from './vera.js';

const ROLES = ['lora_A', 'lora_B', 'lora_E', 'ranknum'] as const;
type Role = (typeof ROLES)[number];

/** AdaLoRA's scale of B·(A⊙E), from `get_delta_weight`: scaling / (ranknum + 1e-5). */
export function adaloraScaling(alpha: number, rank: number, ranknum: number): number {
  return (alpha > 0 ? alpha : rank) / (ranknum + 1e-5);
}

export const readAdaLora: MethodReader = ({ configPath, weightsPath, json, file }) => {
  const fail = (field: string, why: string): never => {
    throw new DorascopeError('E_ADAPTER_CONFIG', `${q(configPath)}: field ${q(field)} ${why}`, { path: configPath, field });
  };
  const initR = (json['init_r'] ?? 12) as number; // AdaLoraConfig default
  if (typeof initR !== 'number' || !Number.isInteger(initR) || initR <= 0 || initR > MAX_RANK) fail('init_r', `must be a whole number from 1 to ${MAX_RANK}, got ${shownValue(initR)}`);
  const alpha = (json['lora_alpha'] ?? 8) as number; // LoraConfig default
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) fail('lora_alpha', `must be a finite number, got ${shownValue(alpha)}`);
  // Kept ranks by module, from the boolean masks of rank_pattern.
  const kept: Record<string, number> = {};
  const rp = json['rank_pattern'];
  if (rp !== undefined && rp !== null) {
    if (typeof rp !== 'object' || Array.isArray(rp)) fail('rank_pattern', 'must be an object of name → list of booleans');
    for (const [name, mask] of Object.entries(rp as Record<string, unknown>)) {
      if (!Array.isArray(mask) || mask.some((x) => typeof x !== 'boolean')) fail(`rank_pattern.${name}`, 'must be a list of true/false (AdaLoRA rank mask)');
      // PEFT cuts the last dotted segment (`lora_E`) to get the module (`resize_state_dict_by_rank_pattern`).
      const mod = stripPrefix(name).split('.').slice(0, -1).join('.');
      kept[mod] = (mask as boolean[]).filter(Boolean).length;
    }
  }
  // The fields AdaLoRA shares with LoRA are checked as LoRA's; r is AdaLoRA's init_r.
  const common = parseAdapterConfig({ ...json, peft_type: 'LORA', r: initR, lora_alpha: alpha, use_dora: false, use_rslora: false, rank_pattern: null, alpha_pattern: null }, configPath);
  const config: AdapterConfig = { ...common, peftType: 'ADALORA', rankPattern: kept, raw: json };

  const keysErr = (name: string, why: string): never => {
    throw new DorascopeError('E_ADAPTER_KEYS', `${q(weightsPath)}: tensor ${q(name)} ${why}`);
  };
  const parts = new Map<string, Partial<Record<Role, string>>>();
  const replacements = new Map<string, string>();
  for (const t of file.tensors) {
    const k = parseMethodKey(t.name, ROLES);
    if (!k) {
      const target = stripPrefix(t.name);
      if (/(?:^|\.)lora_[A-Za-z_]+(?:\.|$)/u.test(target)) keysErr(t.name, 'is not an AdaLoRA tensor dorascope knows');
      if (replacements.has(target)) keysErr(t.name, `replaces ${q(target)} a second time`);
      replacements.set(target, t.name);
      continue;
    }
    const p = parts.get(k.module) ?? {};
    const role = k.role as Role;
    if (p[role] !== undefined) keysErr(t.name, `is a second ${role} for module ${q(k.module)} (several adapters in one file are not supported)`);
    p[role] = t.name;
    parts.set(k.module, p);
  }
  const modules: MethodModule[] = [];
  const extra = new Map<MethodModule, { e: string; ranknum: string | undefined }>();
  for (const [mod, p] of [...parts].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))) {
    const any = p.lora_A ?? p.lora_B ?? p.lora_E ?? p.ranknum!;
    for (const role of ['lora_A', 'lora_B', 'lora_E'] as const) if (!p[role]) keysErr(any, `belongs to module ${q(mod)}, which lacks its ${role}`);
    const a = file.info(p.lora_A!)!.shape, b = file.info(p.lora_B!)!.shape, e = file.info(p.lora_E!)!.shape;
    const r = a[0]!;
    if (a.length !== 2 || b.length !== 2 || b[1] !== r || e[0] !== r || e.length > 2 || (e.length === 2 && e[1] !== 1)) {
      keysErr(p.lora_A!, `does not fit: lora_A [${a.join(', ')}], lora_B [${b.join(', ')}], lora_E [${e.join(', ')}]; expected (r, in), (out, r), (r, 1)`);
    }
    const mask = kept[mod];
    if (mask !== undefined && mask !== r) throw new DorascopeError('E_SHAPE_MISMATCH', `${q(weightsPath)}: ${q(p.lora_A!)} has rank ${r} but rank_pattern of ${q(configPath)} keeps ${mask} ranks of module ${q(mod)}`);
    if (mask === undefined && r !== initR) throw new DorascopeError('E_SHAPE_MISMATCH', `${q(weightsPath)}: ${q(p.lora_A!)} has rank ${r} but ${q(configPath)} gives init_r = ${initR} and no rank_pattern entry for module ${q(mod)}`);
    const m: MethodModule = { module: mod, target: `${mod}.weight`, a: p.lora_A!, b: p.lora_B!, magnitude: undefined, embedding: false, method: 'adalora', r, alpha, scaling: adaloraScaling(alpha, r, initR) };
    modules.push(m);
    extra.set(m, { e: p.lora_E!, ranknum: p.ranknum });
  }
  const place = (m: MethodModule, base: TensorInfo): Layout => {
    const { layout, in: inn } = veraLayout(m.module, file.info(m.b)!.shape[0]!, base.shape, config.fanInFanOut);
    if (file.info(m.a)!.shape[1] !== inn) throw new DorascopeError('E_SHAPE_MISMATCH', `AdaLoRA module ${q(m.module)}: lora_A has ${file.info(m.a)!.shape[1]} input features, the base tensor has shape [${base.shape.join(', ')}]`);
    return layout;
  };
  return {
    config, method: 'adalora', modules, replacements,
    layoutFor: place,
    async readFactors(m, base) {
      const layout = place(m, base);
      const x = extra.get(m)!;
      const [A, B, E] = await Promise.all([file.readFloat32(m.a), file.readFloat32(m.b), file.readFloat32(x.e)]);
      let scaling = m.scaling;
      if (x.ranknum !== undefined) {
        const rn = await file.readFloat32(x.ranknum);
        if (rn.length !== 1 || !Number.isFinite(rn[0]!)) keysErr(x.ranknum, 'must hold one finite number');
        scaling = adaloraScaling(m.alpha, m.r, rn[0]!);
      }
      const out = file.info(m.b)!.shape[0]!, inn = file.info(m.a)!.shape[1]!;
      const a = new Float32Array(m.r * inn);
      for (let k = 0; k < m.r; k++) for (let j = 0; j < inn; j++) a[k * inn + j] = A[k * inn + j]! * E[k]!;
      return { layout, r: m.r, out, in: inn, A: a, B, scaling, magnitude: undefined };
    },
  };
};

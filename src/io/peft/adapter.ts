/**
 * A PEFT LoRA/DoRA adapter folder (`adapter_config.json` + `adapter_model.safetensors`):
 * its config, its modules with their per-module rank, alpha and scaling (rank_pattern /
 * alpha_pattern applied as PEFT does), and the factors of any one module, decoded to
 * float32, with the layout decided from the tensor shapes (see `decideLayout`).
 * Headers are read at open; tensor data only when a module's factors are asked for.
 */
import { existsSync } from 'node:fs';
import { entryExists } from '../open-regular.js';
import { join } from 'node:path';
import { DorascopeError, q } from '../../errors.js';
import type { Layout } from '../../methods/merge.js';
import { openSafetensors, type SafetensorsFile } from '../safetensors/reader.js';
import type { TensorInfo } from '../types.js';
import { loraScaling } from '../../methods/lora.js';
import { type AdapterConfig, parseAdapterConfig, readAdapterConfigJson } from './adapter-config.js';
import { LORA_LABELS, peftTypePlugin } from './peft-types.js';
import { modelLevelKey, parseAdapterKey, parseMethodKey } from './keys.js';
import { patternKey, patternValue } from './patterns.js';
import { mergeFactors } from '../../methods/variants.js';
import { deltaMethodFor } from '../../methods/delta-methods.js';
import { openDeltaAdapter } from './delta-adapter.js';
import type { Adapter, AdapterModule, ModuleTensor } from './adapter-types.js';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
const ADAPTER_PICKLES = ['adapter_model.bin', 'adapter_model.pt', 'adapter_model.pth'];

export type { Adapter, AdapterModule } from './adapter-types.js';

/** Whether a folder looks like a PEFT adapter. */
export function isAdapterDir(dir: string): boolean {
  return entryExists(join(dir, ADAPTER_CONFIG));
}

// GPT-2 style Conv1D module names (transformers `pytorch_utils.Conv1D`): used only to break
// the tie when a square weight could be either layout and the config says fan_in_fan_out=false
// (PEFT itself then warns and forces fan_in_fan_out=True for Conv1D).
const CONV1D_NAMES = /(?:^|\.)(?:c_attn|c_proj|c_fc|c_attn_proj|q_attn)$/u;

/**
 * The layout of an adapted module, from shapes first (PEFT's `fan_in_fan_out` flag is
 * a hint: users get it wrong, and a GPT-2 Conv1D stores (in, out)).
 */
export function decideLayout(mod: string, a: readonly number[], b: readonly number[], base: readonly number[], fanInFanOut: boolean, embedding: boolean): Layout {
  const bad = (why: string): never => {
    throw new DorascopeError('E_SHAPE_MISMATCH', `adapter module ${q(mod)}: ${why} (lora_A ${fmt(a)}, lora_B ${fmt(b)}, base ${fmt(base)})`);
  };
  if (a.length < 2 || b.length < 2) bad('lora_A and lora_B must have at least 2 dimensions');
  const r = a[0]!;
  if (b[1] !== r) bad(`rank of lora_A (${r}) differs from lora_B's second dimension (${b[1]})`);
  if (embedding) {
    // A (r, vocab), B (dim, r) onto (vocab, dim)
    if (a.length !== 2 || b.length !== 2 || base.length !== 2 || base[0] !== a[1] || base[1] !== b[0]) bad('embedding shapes do not fit');
    return 'embedding';
  }
  if (a.length > 2 || base.length > 2) {
    // conv: A (r, in, k...), B (out, r, 1...) onto (out, in, k...)
    const ok = base.length === a.length && base[0] === b[0] && a.slice(1).every((d, i) => base[i + 1] === d) && b.slice(2).every((d) => d === 1);
    if (!ok) bad('conv shapes do not fit (PEFT conv adapters have B (out, r, 1, 1) and A (r, in, kh, kw))');
    return 'conv';
  }
  if (base.length !== 2) bad('a 2-D adapter needs a 2-D base tensor');
  const out = b[0]!;
  const inn = a[1]!;
  const asLinear = base[0] === out && base[1] === inn;
  const asConv1d = base[0] === inn && base[1] === out;
  if (asLinear && asConv1d) return fanInFanOut || CONV1D_NAMES.test(mod) ? 'conv1d' : 'linear';
  if (asLinear) return 'linear';
  if (asConv1d) return 'conv1d';
  return bad('shapes fit neither (out, in) nor Conv1D (in, out)');
}

function fmt(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

function product(s: readonly number[]): number {
  return s.reduce((p, d) => p * d, 1);
}

export async function openAdapter(dir: string): Promise<Adapter> {
  const configPath = join(dir, ADAPTER_CONFIG);
  const weightsPath = join(dir, ADAPTER_WEIGHTS);
  if (!entryExists(configPath)) throw new DorascopeError('E_NOT_FOUND', `${q(dir)} is not a PEFT adapter folder: ${ADAPTER_CONFIG} is missing`);
  const json = await readAdapterConfigJson(configPath);
  const peftType = typeof json === 'object' && json !== null && !Array.isArray(json) ? (json as Record<string, unknown>)['peft_type'] : undefined;
  // Other PEFT types are read by their own plug-in (peft-types.ts); LoRA/DoRA below.
  const plugin = peftTypePlugin(peftType);
  const reader = plugin?.read;
  // IA³, LoHa and LoKr have no LoRA factors: a `DeltaMethod` plug-in (methods/delta.ts) merges them.
  const delta = reader ? undefined : deltaMethodFor(peftType);
  const config = reader || delta ? undefined : parseAdapterConfig(json, configPath);
  if (!entryExists(weightsPath)) {
    const pickle = ADAPTER_PICKLES.find((f) => existsSync(join(dir, f)));
    if (pickle) {
      throw new DorascopeError('E_PICKLE', `${q(join(dir, pickle))} is a pickle checkpoint, which dorascope does not load (unpickling runs code); convert it to ${ADAPTER_WEIGHTS} with the safetensors library`);
    }
    throw new DorascopeError('E_NOT_FOUND', `${q(dir)}: ${ADAPTER_WEIGHTS} is missing`);
  }
  if (delta) return openDeltaAdapter(dir, configPath, weightsPath, json as Record<string, unknown>, delta);
  const file = await openSafetensors(weightsPath);
  try {
    if (reader) {
      const parts = reader({ configPath, weightsPath, json: json as Record<string, unknown>, file });
      const tensorsOf = pluginTensors(file, plugin!.labels, plugin!.shared);
      return {
        dir, configPath, weightsPath, file, ...parts, exact: true, tensorsOf,
        mergeInto: async (m, base, W, what) => mergeFactors(W, await parts.readFactors(m, base), what),
        close: () => file.close(),
      };
    }
    return buildAdapter(dir, configPath, weightsPath, config!, file);
  } catch (e) {
    await file.close();
    throw e;
  }
}

/**
 * The tensors of each module of a plug-in's adapter file, by its roles: `<module>.<role>` keys, plus the
 * model-level ones (`base_model.<role>`) every module shares.
 */
function pluginTensors(file: SafetensorsFile, labels: Readonly<Record<string, string>>, shared: readonly string[]): Adapter['tensorsOf'] {
  const roles = Object.keys(labels).filter((r) => !shared.includes(r));
  const byModule = new Map<string, ModuleTensor[]>();
  const common: ModuleTensor[] = [];
  for (const t of file.tensors) {
    const s = shared.find((r) => modelLevelKey(t.name, r));
    if (s !== undefined) { common.push({ role: s, tensor: t.name, meaning: labels[s]! }); continue; }
    const k = parseMethodKey(t.name, roles);
    if (!k) continue;
    const list = byModule.get(k.module) ?? [];
    if (list.length === 0) byModule.set(k.module, list);
    list.push({ role: k.role, tensor: t.name, meaning: labels[k.role]! });
  }
  const order = Object.keys(labels);
  return (m) => [...common, ...(byModule.get(m.module) ?? [])].sort((x, y) => order.indexOf(x.role) - order.indexOf(y.role));
}

function buildAdapter(dir: string, configPath: string, weightsPath: string, config: AdapterConfig, file: SafetensorsFile): Adapter {
  const parts = new Map<string, { a?: string; b?: string; m?: string; emb: boolean }>();
  const replacements = new Map<string, string>();
  const keysErr = (name: string, why: string): never => {
    throw new DorascopeError('E_ADAPTER_KEYS', `${q(weightsPath)}: tensor ${q(name)} ${why}`);
  };
  for (const t of file.tensors) {
    const k = parseAdapterKey(t.name);
    if (k.role === 'replace') {
      if (/(?:^|\.)lora_[A-Za-z_]+(?:\.|$)/u.test(k.target)) keysErr(t.name, 'is a LoRA tensor dorascope does not know (lora_bias and other PEFT extras are not supported)');
      if (replacements.has(k.target)) keysErr(t.name, `replaces ${q(k.target)} a second time`);
      replacements.set(k.target, t.name);
      continue;
    }
    const p = parts.get(k.module) ?? { emb: k.embedding };
    const slot = k.role === 'A' ? 'a' : k.role === 'B' ? 'b' : 'm';
    if (p[slot] !== undefined) keysErr(t.name, `is a second ${k.role} for module ${q(k.module)} (several adapters in one file are not supported)`);
    p[slot] = t.name;
    p.emb ||= k.embedding;
    parts.set(k.module, p);
  }
  const rankKeys = Object.keys(config.rankPattern);
  const modules: AdapterModule[] = [];
  for (const [mod, p] of [...parts].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))) {
    if (!p.a || !p.b) keysErr(p.a ?? p.b ?? p.m ?? mod, `belongs to module ${q(mod)}, which lacks its ${p.a ? 'lora_B' : 'lora_A'} tensor`);
    if (config.useDora && !p.m) keysErr(p.a!, `belongs to module ${q(mod)}: use_dora is true but it has no lora_magnitude_vector`);
    const r = patternValue(config.rankPattern, mod, config.r, 'rank_pattern');
    const alpha = patternValue(config.alphaPattern, mod, config.loraAlpha, 'alpha_pattern');
    const aInfo = file.info(p.a!)!;
    if (aInfo.shape[0] !== r) {
      const key = patternKey(rankKeys, mod);
      throw new DorascopeError('E_SHAPE_MISMATCH',
        `${q(weightsPath)}: ${q(p.a!)} has rank ${aInfo.shape[0]} but ${q(configPath)} gives r = ${r} for module ${q(mod)}${key === undefined ? '' : ` (rank_pattern key ${q(key)})`}`);
    }
    modules.push({
      module: mod, target: `${mod}.weight`, a: p.a!, b: p.b!, magnitude: p.m, embedding: p.emb,
      method: p.m ? 'dora' : 'lora', r, alpha, scaling: loraScaling(r, alpha, config.useRslora),
    });
  }
  const method = config.useDora || modules.some((m) => m.method === 'dora') ? 'dora' : 'lora';

  const layoutFor = (m: AdapterModule, base: TensorInfo): Layout =>
    decideLayout(m.module, file.info(m.a)!.shape, file.info(m.b)!.shape, base.shape, config.fanInFanOut, m.embedding);

  const tensorsOf = (m: AdapterModule): ModuleTensor[] => {
    const roleA = m.embedding ? 'lora_embedding_A' : 'lora_A', roleB = m.embedding ? 'lora_embedding_B' : 'lora_B';
    const list: ModuleTensor[] = [{ role: roleA, tensor: m.a, meaning: LORA_LABELS[roleA]! }, { role: roleB, tensor: m.b, meaning: LORA_LABELS[roleB]! }];
    if (m.magnitude) list.push({ role: 'lora_magnitude_vector', tensor: m.magnitude, meaning: LORA_LABELS['lora_magnitude_vector']! });
    return list;
  };
  return {
    dir, configPath, weightsPath, config, method, exact: true, modules, replacements, file,
    layoutFor, tensorsOf,
    async mergeInto(m, base, W, what) {
      return mergeFactors(W, await this.readFactors(m, base), what);
    },
    async readFactors(m, base) {
      const layout = layoutFor(m, base);
      const aShape = file.info(m.a)!.shape;
      const bShape = file.info(m.b)!.shape;
      const out = bShape[0]!;
      const inn = product(aShape.slice(1));
      let magnitude: Float32Array | undefined;
      if (m.magnitude) {
        const mv: Float32Array = await file.readFloat32(m.magnitude);
        magnitude = mv;
        if (mv.length !== out) {
          throw new DorascopeError('E_SHAPE_MISMATCH', `${q(weightsPath)}: magnitude ${q(m.magnitude)} has ${mv.length} values, module ${q(m.module)} has ${out} output features`);
        }
      }
      return { layout, r: m.r, out, in: inn, A: await file.readFloat32(m.a), B: await file.readFloat32(m.b), scaling: m.scaling, magnitude };
    },
    close: () => file.close(),
  };
}

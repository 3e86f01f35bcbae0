/**
 * PEFT adapters whose layers are `DeltaMethod` plug-ins (methods/delta.ts: IA³, LoHa, LoKr), read
 * into the same `Adapter` shape as LoRA's (adapter.ts) so inspect, merge and analyze treat them
 * alike. They have no LoRA factors (`exact: false`): the analysis uses the method's own exact algebra
 * where it has one (`featureAlgebra`, IA³ on weights), else merges W′ per tensor.
 *
 * Config fields (PEFT `tuners/lycoris_utils.py` `LycorisConfig`, `tuners/ia3/config.py` `IA3Config`):
 * LoHa/LoKr `r`, `alpha` (default 8 each), `rank_pattern`, `alpha_pattern`; IA³ `feedforward_modules`
 * and `fan_in_fan_out`; all `target_modules`, `modules_to_save`.
 */
import { DorascopeError, q } from '../../errors.js';
import type { DeltaMethod, DeltaParams, DeltaTensor } from '../../methods/delta.js';
import type { Layout } from '../../methods/merge.js';
import { openSafetensors } from '../safetensors/reader.js';
import { type AdapterConfig, parseAdapterConfig } from './adapter-config.js';
import type { Adapter, AdapterModule, FeatureAlgebra } from './adapter-types.js';
import { parseAdapterKey, parseMethodKey } from './keys.js';
import { patternValue, targetMatches } from './patterns.js';
import type { TrainableCounter } from './trainable-rule.js';

interface DeltaModule extends AdapterModule {
  /** Role → tensor name in the adapter file. */
  readonly tensors: ReadonlyMap<string, string>;
  readonly feedforward: boolean;
  /** IA³'s bias target (scaled by l, as PEFT's `merge` does for non-feed-forward modules). */
  readonly bias: boolean;
}

/** adapter_config.json of a delta method: the fields LoRA's parser checks, plus IA³'s `feedforward_modules`. */
export function parseDeltaConfig(json: Record<string, unknown>, method: DeltaMethod, configPath: string): { config: AdapterConfig; feedforward: string | string[] | null } {
  // The shared fields (patterns, target_modules, modules_to_save) are checked by LoRA's parser:
  // LyCORIS' `alpha` plays `lora_alpha`'s part; IA³ has neither (r = alpha = 1: no scaling).
  const scaled = method.scaled;
  const config = {
    ...parseAdapterConfig({
      ...json, peft_type: 'LORA', use_dora: false, use_rslora: false,
      r: scaled ? json['r'] ?? 8 : 1, lora_alpha: scaled ? json['alpha'] ?? 8 : 1,
      rank_pattern: scaled ? json['rank_pattern'] : null, alpha_pattern: scaled ? json['alpha_pattern'] : null,
    }, configPath),
    peftType: method.peftType,
    raw: json,
  };
  const ff = json['feedforward_modules'];
  if (ff !== undefined && ff !== null && typeof ff !== 'string' && !(Array.isArray(ff) && ff.every((x) => typeof x === 'string'))) {
    throw new DorascopeError('E_ADAPTER_CONFIG', `${q(configPath)}: field "feedforward_modules" must be a string or a list of strings`, { path: configPath, field: 'feedforward_modules' });
  }
  return { config, feedforward: (ff ?? null) as string | string[] | null };
}

/** The method's trainable-parameter rule (trainable-rule.ts) from its config: rank by rank_pattern, IA³'s feed-forward flag. */
export function deltaTrainable(method: DeltaMethod): TrainableCounter {
  return (json, where) => {
    const { config: c, feedforward } = parseDeltaConfig(json as Record<string, unknown>, method, where);
    return {
      targetModules: c.targetModules,
      layersToTransform: c.layersToTransform,
      count: (path, rows, cols) => method.trainableParams(
        method.scaled ? patternValue(c.rankPattern, path, c.r, `${where} rank_pattern`) : 1, rows, cols, targetMatches(feedforward, path), json),
    };
  };
}

export async function openDeltaAdapter(dir: string, configPath: string, weightsPath: string, json: Record<string, unknown>, method: DeltaMethod): Promise<Adapter> {
  const { config, feedforward } = parseDeltaConfig(json, method, configPath);
  const scaled = method.scaled;

  const file = await openSafetensors(weightsPath);
  try {
    const keysErr = (name: string, why: string): never => {
      throw new DorascopeError('E_ADAPTER_KEYS', `${q(weightsPath)}: tensor ${q(name)} ${why}`);
    };
    const prefix = `${method.roles[0]!.split('_')[0]}_`;
    const parts = new Map<string, Map<string, string>>();
    const replacements = new Map<string, string>();
    for (const t of file.tensors) {
      const k = parseMethodKey(t.name, method.roles);
      if (!k) {
        const rk = parseAdapterKey(t.name);
        if (rk.role !== 'replace' || rk.target.split('.').some((s) => s.startsWith(prefix))) {
          keysErr(t.name, `is not a ${method.peftType} tensor dorascope knows (${method.roles.join(', ')})`);
        }
        if (replacements.has(rk.target)) keysErr(t.name, `replaces ${q(rk.target)} a second time`);
        replacements.set(rk.target, t.name);
        continue;
      }
      const p = parts.get(k.module) ?? new Map<string, string>();
      if (p.has(k.role)) keysErr(t.name, `is a second ${k.role} for module ${q(k.module)} (several adapters in one file are not supported)`);
      p.set(k.role, t.name);
      parts.set(k.module, p);
    }
    const paramsOf = (m: DeltaModule): DeltaParams => ({ scaling: m.scaling, feedforward: m.feedforward, fanInFanOut: config.fanInFanOut });
    const modules: DeltaModule[] = [];
    for (const [mod, p] of [...parts].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))) {
      const missing = method.required.find((r) => !p.has(r));
      if (missing) keysErr([...p.values()][0]!, `belongs to module ${q(mod)}, which lacks its ${missing} tensor`);
      const r = scaled ? patternValue(config.rankPattern, mod, config.r, 'rank_pattern') : 1;
      const alpha = scaled ? patternValue(config.alphaPattern, mod, config.loraAlpha, 'alpha_pattern') : 1;
      const names = [...p.values()];
      const isFf = targetMatches(feedforward, mod);
      const m: DeltaModule = {
        module: mod, target: `${mod}.weight`, a: names[0]!, b: names[1] ?? names[0]!, magnitude: undefined, embedding: false,
        method: method.name, r, alpha, scaling: alpha / r, tensors: p, feedforward: isFf, bias: false,
      };
      modules.push(m);
      // A merge that also changes the layer's bias (IA³) adapts `<module>.bias` too, when the base has one.
      if (method.changesBias(paramsOf(m))) modules.push({ ...m, target: `${mod}.bias`, optional: true, bias: true });
    }
    const byModule = new Map<AdapterModule, DeltaModule>(modules.map((m) => [m, m]));
    const layoutFor = (_m: AdapterModule, base: { shape: readonly number[] }): Layout =>
      base.shape.length > 2 ? 'conv' : config.fanInFanOut ? 'conv1d' : 'linear';
    const read = async (m: DeltaModule): Promise<Map<string, DeltaTensor>> => {
      const t = new Map<string, DeltaTensor>();
      for (const [role, name] of m.tensors) t.set(role, { data: await file.readFloat32(name), shape: file.info(name)!.shape });
      return t;
    };
    const exactFeatures = method.exactFeatures;
    const featureAlgebra: FeatureAlgebra | undefined = exactFeatures && {
      // A bias target (IA³'s) is one value per feature: merged, not worth an algebra of its own.
      applies: (am) => byModule.get(am)?.bias === false,
      async terms(am, base, W0, featuresAreRows, what) {
        const m = byModule.get(am)!;
        return exactFeatures(W0, base.shape, featuresAreRows, await read(m), paramsOf(m), what);
      },
      bytes: (am) => [...(byModule.get(am)?.tensors.values() ?? [])].reduce((n, t) => n + (file.info(t)?.byteLength ?? 0), 0),
    };
    return {
      dir, configPath, weightsPath, config, method: method.name, exact: false, modules, replacements, file,
      layoutFor, featureAlgebra,
      tensorsOf: (am) => [...(byModule.get(am)?.tensors ?? [])]
        .sort((x, y) => method.roles.indexOf(x[0]) - method.roles.indexOf(y[0]))
        .map(([role, tensor]) => ({ role, tensor, meaning: method.labels[role] ?? role })),
      readFactors: async (m) => {
        throw new DorascopeError('E_UNSUPPORTED_FORMAT', `adapter module ${q(m.module)} is ${method.peftType}, which has no LoRA factors B·A`);
      },
      async mergeInto(am, base, W, what) {
        const m = byModule.get(am);
        if (!m) throw new DorascopeError('E_MISSING_TENSOR', `adapter ${q(dir)} has no module ${q(am.module)}`);
        const t = await read(m);
        return m.bias ? method.mergeBias(W, t, paramsOf(m), what) : method.merge(W, base.shape, t, paramsOf(m), what);
      },
      close: () => file.close(),
    };
  } catch (e) {
    await file.close();
    throw e;
  }
}

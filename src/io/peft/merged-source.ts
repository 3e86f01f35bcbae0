/**
 * An adapter merged onto a base: a `TensorSource` whose `read(name)` returns PEFT's
 * effective weight for adapted tensors (LoRA W + s·B·A, or its DoRA variant), the
 * adapter's saved tensor for modules_to_save, and the base tensor otherwise. One
 * tensor at a time: the merged model is never held in memory.
 *
 * Listed infos keep the base's dtype (what `merge_and_unload` would write) with
 * byteLength 0 for computed tensors; `read` always returns float32 computed with
 * float64 accumulation (see methods/merge.ts).
 */
import { DorascopeError, q } from '../../errors.js';
import type { LoraFactors } from '../../methods/merge.js';
import type { TensorInfo, TensorSource } from '../types.js';
import { type Adapter, type AdapterModule, openAdapter } from './adapter.js';

export interface MergedAdapterSource extends TensorSource {
  readonly adapter: Adapter;
  readonly base: TensorSource;
  /** Adapted base tensor name → its module. */
  readonly adapted: ReadonlyMap<string, AdapterModule>;
  /** The module's factors for base tensor `name` (for exact ΔM/ΔD algebra without merging). */
  factors(name: string): Promise<LoraFactors>;
  /**
   * Whether the adapter changes tensor `name` (an adapter module on it, or a modules_to_save
   * replacement), from the adapter's keys alone; `read` of any other tensor is the base's.
   */
  touches(name: string): boolean;
}

/**
 * Finds the base tensor an adapter name refers to: exact; else the name with leading
 * module segments dropped (PEFT paths of `GPT2LMHeadModel` say `transformer.h.0...`
 * where a bare `GPT2Model` checkpoint says `h.0...`); else the one base name that ends
 * with `.<name>` (the reverse). Undefined when none or several fit.
 */
export function resolveBaseName(target: string, names: ReadonlySet<string>, all: readonly string[]): string | undefined {
  if (names.has(target)) return target;
  const segs = target.split('.');
  for (let i = 1; i < segs.length - 1; i++) {
    const cand = segs.slice(i).join('.');
    if (names.has(cand)) return cand;
  }
  const hits = all.filter((n) => n.endsWith(`.${target}`));
  return hits.length === 1 ? hits[0] : undefined;
}

export interface MergedAdapterOptions {
  /** Close the base when the merged source is closed (default false: the caller owns it). */
  readonly closeBase?: boolean;
}

export async function openMergedAdapter(adapterOrDir: string | Adapter, base: TensorSource, opts: MergedAdapterOptions = {}): Promise<MergedAdapterSource> {
  const adapter = typeof adapterOrDir === 'string' ? await openAdapter(adapterOrDir) : adapterOrDir;
  try {
    return build(adapter, base, opts.closeBase ?? false);
  } catch (e) {
    if (typeof adapterOrDir === 'string') await adapter.close();
    throw e;
  }
}

function build(adapter: Adapter, base: TensorSource, closeBase: boolean): MergedAdapterSource {
  const baseList = base.list();
  const all = baseList.map((t) => t.name);
  const names = new Set(all);
  const adapted = new Map<string, AdapterModule>();
  for (const m of adapter.modules) {
    const name = resolveBaseName(m.target, names, all);
    if (name === undefined && m.optional) continue;
    if (name === undefined) {
      throw new DorascopeError('E_MISSING_TENSOR', `adapter ${q(adapter.dir)} adapts ${q(m.module)}, but the base ${q(base.path)} has no tensor ${q(m.target)}`);
    }
    if (adapted.has(name)) throw new DorascopeError('E_ADAPTER_KEYS', `adapter ${q(adapter.dir)}: two modules map onto base tensor ${q(name)}`);
    // Decide the layout now so a shape mismatch fails at open, not halfway through an analysis.
    adapter.layoutFor(m, base.info(name)!);
    adapted.set(name, m);
  }
  const replaced = new Map<string, string>();
  const extra: TensorInfo[] = [];
  for (const [target, tensor] of adapter.replacements) {
    const name = resolveBaseName(target, names, all) ?? target;
    const ai = adapter.file.info(tensor)!;
    const bi = base.info(name);
    if (bi && bi.shape.join(',') !== ai.shape.join(',')) {
      throw new DorascopeError('E_SHAPE_MISMATCH', `adapter ${q(adapter.dir)}: ${q(tensor)} has shape [${ai.shape.join(', ')}] but replaces base ${q(name)} of shape [${bi.shape.join(', ')}]`);
    }
    if (adapted.has(name)) throw new DorascopeError('E_ADAPTER_KEYS', `adapter ${q(adapter.dir)}: ${q(name)} is both adapted and replaced`);
    replaced.set(name, tensor);
    if (!bi) extra.push({ name, dtype: ai.dtype, shape: ai.shape, byteLength: 0 });
  }
  const list: TensorInfo[] = baseList
    .map((t) => (adapted.has(t.name) || replaced.has(t.name) ? { name: t.name, dtype: t.dtype, shape: t.shape, byteLength: 0 } : t))
    .concat(extra)
    .sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  const byName = new Map(list.map((t) => [t.name, t]));

  const factors = async (name: string): Promise<LoraFactors> => {
    const m = adapted.get(name);
    if (!m) throw new DorascopeError('E_MISSING_TENSOR', `adapter ${q(adapter.dir)} does not adapt ${q(name)}`);
    return adapter.readFactors(m, base.info(name)!);
  };
  let closed = false;
  return {
    path: adapter.dir,
    kind: 'merged-adapter',
    metadata: base.metadata,
    adapter,
    base,
    adapted,
    factors,
    touches: (name) => adapted.has(name) || replaced.has(name),
    list: () => list,
    info: (name) => byName.get(name),
    async read(name) {
      const rep = replaced.get(name);
      if (rep !== undefined) return adapter.file.readFloat32(rep);
      if (!adapted.has(name)) return base.read(name);
      return adapter.mergeInto(adapted.get(name)!, base.info(name)!, await base.read(name), `${q(name)} (adapter ${q(adapter.dir)})`);
    },
    async close() {
      if (closed) return;
      closed = true;
      await adapter.close();
      if (closeBase) await base.close();
    },
  };
}

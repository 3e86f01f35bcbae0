/**
 * `inspect`: what a checkpoint source holds, from headers alone (no tensor data is
 * read, so a 100 GB sharded model takes as long as reading its shard headers).
 * Returns plain data (the `--json` output) and formats it for people.
 */
import { escapeTerminal } from './escape.js';
import { DorascopeError, q } from '../errors.js';
import type { DType, QuantInfo, TensorSource } from './types.js';
import { classifyPath, openSource, type PathKind } from './sources/open-source.js';
import { listRun } from './sources/trainer-run.js';
import { openAdapter, type Adapter } from './peft/adapter.js';
import { scaleKeys, type AdapterConfig } from './peft/adapter-config.js';
import { resolveBaseName } from './peft/merged-source.js';
import { loraScaling } from '../methods/lora.js';

export interface InspectTensor {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly params: number;
  readonly bytes: number;
  /** A quantized weight (dtype and shape are then the dequantized ones; bytes what is stored). */
  readonly quant?: QuantInfo;
}

export interface DtypeTotal {
  readonly tensors: number;
  readonly params: number;
  readonly bytes: number;
}

export interface InspectAdapterModule {
  readonly module: string;
  readonly method: string;
  readonly r: number;
  readonly alpha: number;
  readonly scaling: number;
  /** The tensors the module reads, under the method's own names (`lora_A`, `hada_w1_a`, `lokr_w1`, `ia3_l`, `vera_lambda_b`, `lora_E`, …). */
  readonly tensors: readonly InspectModuleTensor[];
  /** The base tensor it touches: PEFT's `<module>.weight`, or the name found in `--base`. */
  readonly base_tensor: string;
  /** With --base: the layout decided from shapes and the base shape. */
  readonly layout?: string;
  readonly base_shape?: readonly number[];
}

export interface InspectModuleTensor {
  readonly role: string;
  /** Name in the adapter file. */
  readonly tensor: string;
  readonly shape: readonly number[];
  /** What the role is in the method's update. */
  readonly meaning: string;
}

export interface InspectAdapter {
  readonly method: string;
  /** adapter_config.json's `peft_type` (LORA, VERA, ADALORA, IA3, LOHA, LOKR, …). */
  readonly peft_type: string;
  readonly r: number;
  readonly lora_alpha: number;
  readonly scaling: number;
  /**
   * How the method's config sets its scale, from the keys adapter_config.json holds: `lora_alpha/r` (LoRA,
   * AdaLoRA), `lora_alpha/sqrt(r)` (rsLoRA), `alpha/r` (LoHa, LoKr: LyCORIS' `alpha`), `r only` (VeRA: no
   * scaling) or `none` (IA³: neither r nor alpha; `r`, `lora_alpha` and `scaling` are then 1).
   */
  readonly scale_rule: 'lora_alpha/r' | 'lora_alpha/sqrt(r)' | 'alpha/r' | 'r only' | 'none';
  readonly use_rslora: boolean;
  readonly use_dora: boolean;
  readonly fan_in_fan_out: boolean;
  readonly target_modules: string | readonly string[] | null;
  readonly rank_pattern: Readonly<Record<string, number>>;
  readonly alpha_pattern: Readonly<Record<string, number>>;
  readonly modules_to_save: readonly string[] | null;
  readonly layers_to_transform: readonly number[] | null;
  readonly base_model_name_or_path: string | null;
  readonly modules: readonly InspectAdapterModule[];
  /** modules_to_save tensors: base tensor name → adapter tensor name. */
  readonly replaces: Readonly<Record<string, string>>;
}

export interface InspectCheckpoint {
  readonly name: string;
  readonly step: number;
  readonly step_from: 'trainer_state' | 'name';
  readonly kind: PathKind;
  readonly tensors: number;
  readonly params: number;
  readonly bytes: number;
}

export interface InspectResult {
  readonly path: string;
  /** The folder a hub id resolved to (else the path). */
  readonly resolved: string;
  readonly kind: PathKind;
  readonly tensors: readonly InspectTensor[];
  readonly totals: { readonly tensors: number; readonly params: number; readonly bytes: number; readonly by_dtype: Readonly<Record<string, DtypeTotal>> };
  readonly metadata: Readonly<Record<string, string>>;
  readonly adapter: InspectAdapter | null;
  readonly checkpoints: readonly InspectCheckpoint[] | null;
}

export interface InspectOptions {
  /** For an adapter: the base model to map its modules onto. */
  readonly base?: string | undefined;
  readonly env?: NodeJS.ProcessEnv | undefined;
}

function summarise(src: TensorSource): Pick<InspectResult, 'tensors' | 'totals' | 'metadata'> {
  const tensors = src.list().map((t) => {
    const params = t.shape.reduce((p, d) => p * d, 1);
    return { name: t.name, dtype: t.dtype, shape: t.shape, params, bytes: t.byteLength, ...(t.quant ? { quant: t.quant } : {}) };
  });
  const by: Record<string, DtypeTotal> = {};
  let params = 0;
  let bytes = 0;
  for (const t of tensors) {
    // Quantized weights are counted under how they are stored (NF4, FP4, INT8), not their logical dtype.
    const key = t.quant ? t.quant.type.toUpperCase() : t.dtype;
    const d = by[key] ?? { tensors: 0, params: 0, bytes: 0 };
    by[key] = { tensors: d.tensors + 1, params: d.params + t.params, bytes: d.bytes + t.bytes };
    params += t.params;
    bytes += t.bytes;
  }
  const byDtype = Object.fromEntries(Object.keys(by).sort().map((d) => [d, by[d]!]));
  return { tensors, totals: { tensors: tensors.length, params, bytes, by_dtype: byDtype }, metadata: { ...src.metadata } };
}

function describeAdapter(a: Adapter, base: TensorSource | undefined): InspectAdapter {
  const names = base ? new Set(base.list().map((t) => t.name)) : undefined;
  const all = base ? base.list().map((t) => t.name) : [];
  const modules = a.modules.map((m): InspectAdapterModule => {
    const row = {
      module: m.module, method: m.method, r: m.r, alpha: m.alpha, scaling: m.scaling,
      tensors: a.tensorsOf(m).map((t) => ({ ...t, shape: a.file.info(t.tensor)!.shape })),
      base_tensor: m.target,
    };
    if (!base || !names) return row;
    const name = resolveBaseName(m.target, names, all);
    if (name === undefined && m.optional) return row;
    if (name === undefined) {
      throw new DorascopeError('E_MISSING_TENSOR', `adapter ${q(a.dir)} adapts ${q(m.module)}, but the base ${q(base.path)} has no tensor ${q(m.target)}`);
    }
    const info = base.info(name)!;
    return { ...row, base_tensor: name, layout: a.layoutFor(m, info), base_shape: info.shape };
  });
  const c = a.config;
  return {
    method: a.method, peft_type: c.peftType, r: c.r, lora_alpha: c.loraAlpha, scaling: loraScaling(c.r, c.loraAlpha, c.useRslora), scale_rule: scaleRule(c),
    use_rslora: c.useRslora, use_dora: a.method === 'dora', fan_in_fan_out: c.fanInFanOut,
    target_modules: c.targetModules, rank_pattern: c.rankPattern, alpha_pattern: c.alphaPattern,
    modules_to_save: c.modulesToSave, layers_to_transform: c.layersToTransform, base_model_name_or_path: c.baseModelNameOrPath,
    modules, replaces: Object.fromEntries(a.replacements),
  };
}

function scaleRule(c: AdapterConfig): InspectAdapter['scale_rule'] {
  const k = scaleKeys(c.raw);
  if (k.alpha === 'lora_alpha') return c.useRslora ? 'lora_alpha/sqrt(r)' : 'lora_alpha/r';
  if (k.alpha === 'alpha') return 'alpha/r';
  return k.rank ? 'r only' : 'none';
}

/** The header's rank and scale, in the names the adapter's own config uses. */
function scaleText(a: InspectAdapter): string {
  switch (a.scale_rule) {
    case 'lora_alpha/r': case 'lora_alpha/sqrt(r)':
      return `r ${a.r}, lora_alpha ${a.lora_alpha}, scaling ${a.scaling} (${a.use_rslora ? 'rsLoRA: alpha/sqrt(r)' : 'alpha/r'})`;
    case 'alpha/r': return `r ${a.r}, alpha ${a.lora_alpha}, scaling ${a.scaling} (alpha/r)`;
    case 'r only': return `r ${a.r}, no scaling`;
    case 'none': return 'no rank or scaling (the trained vectors scale the features)';
  }
}

async function checkpointsOf(dir: string, env: NodeJS.ProcessEnv | undefined): Promise<InspectCheckpoint[]> {
  const out: InspectCheckpoint[] = [];
  for (const c of await listRun(dir)) {
    const { kind } = classifyPath(c.path, env);
    const src = await openSource(c.path, { env });
    try {
      const s = summarise(src);
      out.push({ name: c.name, step: c.step, step_from: c.stepFrom, kind, tensors: s.totals.tensors, params: s.totals.params, bytes: s.totals.bytes });
    } finally {
      await src.close();
    }
  }
  return out;
}

/** Everything `dorascope inspect` shows, from headers only. */
export async function inspect(path: string, opts: InspectOptions = {}): Promise<InspectResult> {
  const { kind, path: resolved } = classifyPath(path, opts.env);
  const innerKind = kind === 'hub' ? classifyPath(resolved, opts.env).kind : kind;
  const shown = { path, resolved, kind: innerKind };
  if (innerKind === 'run') {
    const checkpoints = await checkpointsOf(resolved, opts.env);
    return { ...shown, tensors: [], totals: { tensors: 0, params: 0, bytes: 0, by_dtype: {} }, metadata: {}, adapter: null, checkpoints };
  }
  if (innerKind === 'adapter') {
    const a = await openAdapter(resolved);
    const base = opts.base === undefined ? undefined : await openSource(opts.base, { env: opts.env });
    try {
      const src: TensorSource = { path: resolved, kind: 'adapter', metadata: a.file.metadata, list: () => a.file.tensors, info: (n) => a.file.info(n), read: (n) => a.file.readFloat32(n), close: async () => undefined };
      return { ...shown, ...summarise(src), adapter: describeAdapter(a, base), checkpoints: null };
    } finally {
      await a.close();
      await base?.close();
    }
  }
  const src = await openSource(resolved, { env: opts.env });
  try {
    return { ...shown, ...summarise(src), adapter: null, checkpoints: null };
  } finally {
    await src.close();
  }
}

function human(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

function bytesStr(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(2)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}

const shapeStr = (s: readonly number[]): string => `[${s.join(', ')}]`;

/** e.g. `quantized nf4, block 64, double quant (bitsandbytes)`. */
function quantStr(qi: QuantInfo): string {
  const how = qi.type === 'int8' ? 'int8, one absmax per row' : `${qi.type}, block ${qi.blockSize}${qi.doubleQuant ? ', double quant' : ''}`;
  return `quantized ${how} (${qi.method})`;
}

/** The human-readable report (control and bidi characters from the file shown escaped). */
export function formatInspect(r: InspectResult): string {
  // Names and metadata come from the file: escape sequences in them must not reach the terminal.
  const e = escapeTerminal;
  const L: string[] = [];
  L.push(`${e(r.path)}${r.resolved !== r.path ? ` → ${e(r.resolved)}` : ''}`);
  L.push(`kind: ${r.kind}`);
  if (r.checkpoints) {
    L.push(`checkpoints (${r.checkpoints.length}, ordered by step):`);
    for (const c of r.checkpoints) {
      L.push(`  ${e(c.name).padEnd(20)} step ${String(c.step).padStart(8)} (${c.step_from === 'trainer_state' ? 'trainer_state.json' : 'folder name'})  ${c.kind.padEnd(8)} ${c.tensors} tensors, ${human(c.params)} params, ${bytesStr(c.bytes)}`);
    }
    return `${L.join('\n')}\n`;
  }
  L.push(`tensors: ${r.totals.tensors}, parameters: ${human(r.totals.params)} (${r.totals.params}), data: ${bytesStr(r.totals.bytes)}`);
  L.push('by dtype:');
  for (const [d, t] of Object.entries(r.totals.by_dtype)) {
    L.push(`  ${d.padEnd(8)} ${String(t.tensors).padStart(6)} tensors ${human(t.params).padStart(9)} params ${bytesStr(t.bytes).padStart(11)}`);
  }
  const meta = Object.entries(r.metadata);
  L.push(meta.length ? 'metadata:' : 'metadata: (none)');
  for (const [k, v] of meta) L.push(`  ${e(k)}: ${e(v.length > 200 ? `${v.slice(0, 197)}...` : v)}`);
  if (r.adapter) {
    const a = r.adapter;
    L.push(`adapter: ${a.method.toUpperCase()}, ${scaleText(a)}${a.base_model_name_or_path ? `, base ${e(a.base_model_name_or_path)}` : ''}; peft_type ${e(a.peft_type)}`);
    L.push(`  target_modules: ${a.target_modules === null ? '(none)' : typeof a.target_modules === 'string' ? `regex ${e(a.target_modules)}` : e(a.target_modules.join(', '))}`);
    if (Object.keys(a.rank_pattern).length) L.push(`  rank_pattern: ${e(JSON.stringify(a.rank_pattern))}`);
    if (Object.keys(a.alpha_pattern).length) L.push(`  alpha_pattern: ${e(JSON.stringify(a.alpha_pattern))}`);
    if (a.modules_to_save) L.push(`  modules_to_save: ${e(a.modules_to_save.join(', '))}`);
    if (a.layers_to_transform) L.push(`  layers_to_transform: ${a.layers_to_transform.join(', ')}`);
    // Each role the modules use, once, with what it is in the method's update.
    const roles = new Map<string, string>();
    for (const m of a.modules) for (const t of m.tensors) if (!roles.has(t.role)) roles.set(t.role, t.meaning);
    L.push('  tensor roles:');
    for (const [role, meaning] of roles) L.push(`    ${e(role).padEnd(22)} ${meaning}`);
    L.push(`  modules (${a.modules.length}), each → the base tensor it changes:`);
    for (const m of a.modules) {
      const where = m.layout ? ` (${m.layout}, base ${shapeStr(m.base_shape ?? [])})` : '';
      const ts = m.tensors.map((t) => `${e(t.role)} ${shapeStr(t.shape)}`).join(' ');
      L.push(`    ${e(m.module)}  ${m.method} r=${m.r} alpha=${m.alpha} s=${m.scaling}  ${ts}  → ${e(m.base_tensor)}${where}`);
    }
    for (const [b, t] of Object.entries(a.replaces)) L.push(`    ${e(t)}  replaces → ${e(b)}`);
  }
  L.push('tensors:');
  // A loop, not Math.max(...names): spreading 130,000 arguments overflows the call stack.
  let w = 4;
  for (const t of r.tensors) w = Math.max(w, e(t.name).length);
  w = Math.min(80, w);
  for (const t of r.tensors) L.push(`  ${e(t.name).padEnd(w)}  ${t.dtype.padEnd(7)} ${shapeStr(t.shape).padEnd(20)} ${String(t.params).padStart(12)}${t.quant ? `  ${quantStr(t.quant)}` : ''}`);
  return `${L.join('\n')}\n`;
}

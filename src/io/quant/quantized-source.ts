/**
 * A checkpoint saved with bitsandbytes quantization (Transformers' `load_in_4bit` / `load_in_8bit` then
 * `save_pretrained`) as a plain `TensorSource`: each quantized weight is listed under its own name with
 * its logical dtype and shape (and `quant` saying how it is stored), its side tensors (absmax, quant_map,
 * quant state, SCB, ...) are not listed, and `read` returns the dequantized weight — what the model
 * computes with. So `inspect`, `merge` and `analyze` see an ordinary model.
 *
 * Found from the keys: `<param>.quant_state.bitsandbytes__nf4|fp4` marks a 4-bit weight `<param>`
 * (bnb-4bit.ts); `<module>.SCB` beside an int8 `<module>.weight` marks an LLM.int8 weight (bnb-8bit.ts).
 * A folder's config.json `quantization_config`, when present, must say the same (quant-config.ts).
 * The small quant-state tensors (a few hundred bytes of JSON each) are read at open for the shapes.
 */
import { DorascopeError, q } from '../../errors.js';
import type { DType, QuantInfo, TensorInfo, TensorSource } from '../types.js';
import { codeFor, dequantize4bit, nestedAbsmax, parseQuantState, roundToDtype, type QuantState4bit } from './bnb-4bit.js';
import { dequantizeInt8Rows } from './bnb-8bit.js';
import { checkQuantizationConfig, parseQuantizationConfig, type BnbConfig } from './quant-config.js';
import { JSON_CAPS, entryExists, readTextCapped } from '../open-regular.js';
import { parseJsonLenient } from '../sources/lenient-json.js';
import { join } from 'node:path';

const QS_KEY = /^(.+)\.quant_state\.bitsandbytes__(nf4|fp4)$/u;

interface Quant4 { readonly kind: '4bit'; readonly param: string; readonly state: QuantState4bit; readonly qsKey: string }
interface Quant8 { readonly kind: 'int8'; readonly param: string; readonly scb: string; readonly format: string | undefined }
type Entry = Quant4 | Quant8;

const prod = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/** Whether a listing holds bitsandbytes-quantized weights (cheap: names and dtypes only). */
export function hasBnbQuantization(list: readonly TensorInfo[]): boolean {
  const names = new Set(list.map((t) => t.name));
  return list.some((t) => QS_KEY.test(t.name) || (t.name.endsWith('.SCB') && names.has(`${t.name.slice(0, -3)}weight`)));
}

/** Wraps `src` when it holds bitsandbytes-quantized weights; returns `src` itself otherwise. */
export async function withQuantization(src: TensorSource): Promise<TensorSource> {
  const list = src.list();
  const cfg = await folderQuantConfig(src);
  if (!hasBnbQuantization(list)) {
    if (cfg) checkQuantizationConfig(cfg.config, list, cfg.where);
    return src;
  }
  const readBytes = src.readBytes?.bind(src);
  if (!readBytes) throw new DorascopeError('E_INTERNAL', `${q(src.path)}: quantized weights need a source that reads raw bytes`);
  const where = (name: string) => `${q(src.path)}: tensor ${q(name)}`;
  const entries = new Map<string, Entry>();
  const hidden = new Set<string>();
  for (const t of list) {
    const m = QS_KEY.exec(t.name);
    if (m) {
      const param = m[1]!;
      const state = parseQuantState(await readBytes(t.name), where(t.name));
      if (state.quantType !== m[2]) throw new DorascopeError('E_QUANT_STATE', `${where(t.name)}: the key says ${m[2]} but the state says quant_type ${q(state.quantType)}`);
      if (!src.info(param)) throw new DorascopeError('E_MISSING_TENSOR', `${where(t.name)} is a quant state, but the weight ${q(param)} it describes is missing`);
      const need = ['absmax', ...(state.nested ? ['nested_absmax', 'nested_quant_map'] : [])];
      for (const k of need) {
        if (!src.info(`${param}.${k}`)) throw new DorascopeError('E_MISSING_TENSOR', `${q(src.path)}: 4-bit weight ${q(param)} has no ${q(`${param}.${k}`)}${k.startsWith('nested') ? ' (its quant state says double quantization)' : ''}`);
      }
      entries.set(param, { kind: '4bit', param, state, qsKey: t.name });
      for (const k of ['absmax', 'quant_map', 'nested_absmax', 'nested_quant_map']) if (src.info(`${param}.${k}`)) hidden.add(`${param}.${k}`);
      hidden.add(t.name);
    } else if (t.name.endsWith('.SCB')) {
      const prefix = t.name.slice(0, -3);
      const w = src.info(`${prefix}weight`);
      if (!w) continue;
      if (w.dtype !== 'I8') throw new DorascopeError('E_DTYPE', `${where(`${prefix}weight`)} has an LLM.int8 scale ${q(t.name)} but dtype ${w.dtype}, not I8`);
      if (w.shape.length !== 2) throw new DorascopeError('E_SHAPE_MISMATCH', `${where(`${prefix}weight`)}: an LLM.int8 weight must be 2-D (out, in), not [${w.shape.join(', ')}]`);
      if (prod(t.shape) !== w.shape[0]) throw new DorascopeError('E_SHAPE_MISMATCH', `${where(t.name)} has ${prod(t.shape)} scales for the ${w.shape[0]} rows of ${q(`${prefix}weight`)}`);
      const format = src.info(`${prefix}weight_format`) ? `${prefix}weight_format` : undefined;
      entries.set(`${prefix}weight`, { kind: 'int8', param: `${prefix}weight`, scb: t.name, format });
      hidden.add(t.name);
      if (format) hidden.add(format);
    }
  }
  const stored = (e: Entry): string[] => e.kind === 'int8'
    ? [e.param, e.scb, ...(e.format ? [e.format] : [])]
    : [e.param, ...[...hidden].filter((h) => h.startsWith(`${e.param}.`))].sort();
  const infos = new Map<string, TensorInfo>();
  for (const t of list) {
    if (hidden.has(t.name)) continue;
    const e = entries.get(t.name);
    if (!e) { infos.set(t.name, t); continue; }
    const names = stored(e);
    const byteLength = names.reduce((a, n) => a + (src.info(n)?.byteLength ?? 0), 0);
    const quant: QuantInfo = e.kind === 'int8'
      ? { method: 'bitsandbytes', type: 'int8', blockSize: null, doubleQuant: false, stored: names }
      : { method: 'bitsandbytes', type: e.state.quantType, blockSize: e.state.blockSize, doubleQuant: e.state.nested !== null, stored: names };
    const dtype: DType = e.kind === 'int8' ? 'F32' : e.state.dtype;
    const shape = e.kind === 'int8' ? t.shape : e.state.shape;
    infos.set(t.name, { name: t.name, dtype, shape, byteLength, quant });
  }
  const listed = [...infos.values()];
  if (cfg) checkQuantizationConfig(cfg.config, listed, cfg.where);

  const read4 = async (e: Quant4): Promise<Float32Array> => {
    const { state, param } = e;
    const n = prod(state.shape);
    const packed = await readBytes(param);
    if (packed.byteLength < Math.ceil(n / 2)) {
      throw new DorascopeError('E_QUANT_STATE', `${where(param)}: ${packed.byteLength} bytes hold ${2 * packed.byteLength} 4-bit values, but its shape [${state.shape.join(', ')}] needs ${n}`);
    }
    const blocks = Math.ceil(n / state.blockSize);
    let absmax: Float32Array;
    if (state.nested) {
      const qa = await readBytes(`${param}.absmax`);
      if (src.info(`${param}.absmax`)!.dtype !== 'U8') throw new DorascopeError('E_DTYPE', `${where(`${param}.absmax`)}: a double-quantized absmax is uint8, not ${src.info(`${param}.absmax`)!.dtype}`);
      const na = await src.read(`${param}.nested_absmax`);
      const code = await src.read(`${param}.nested_quant_map`);
      if (qa.length !== blocks) throw new DorascopeError('E_QUANT_STATE', `${where(`${param}.absmax`)} has ${qa.length} values, but ${n} values in blocks of ${state.blockSize} need ${blocks}`);
      if (code.length !== 256) throw new DorascopeError('E_QUANT_STATE', `${where(`${param}.nested_quant_map`)} has ${code.length} values, not 256`);
      const nBlocks = Math.ceil(blocks / state.nested.blockSize);
      if (na.length !== nBlocks) throw new DorascopeError('E_QUANT_STATE', `${where(`${param}.nested_absmax`)} has ${na.length} values, but ${blocks} absmax in blocks of ${state.nested.blockSize} need ${nBlocks}`);
      absmax = nestedAbsmax(qa, na, code, state.nested.blockSize, state.nested.offset);
    } else {
      absmax = await src.read(`${param}.absmax`);
      if (absmax.length !== blocks) throw new DorascopeError('E_QUANT_STATE', `${where(`${param}.absmax`)} has ${absmax.length} values, but ${n} values in blocks of ${state.blockSize} need ${blocks}`);
    }
    return roundToDtype(dequantize4bit(packed, absmax, codeFor(state.quantType), state.blockSize, n), state.dtype);
  };

  const read8 = async (e: Quant8): Promise<Float32Array> => {
    if (e.format) {
      const f = await readBytes(e.format);
      if (f.some((b) => b !== 0)) throw new DorascopeError('E_UNSUPPORTED_FORMAT', `${where(e.format)} is ${f[0]}: only the row-major int8 format (0) is read, as bitsandbytes itself now only loads that`);
    }
    const info = infos.get(e.param)!;
    const bytes = await readBytes(e.param);
    const scb = await src.read(e.scb);
    const rows = info.shape[0]!, cols = info.shape[1]!;
    return dequantizeInt8Rows(new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), scb, rows, cols);
  };

  return {
    path: src.path,
    kind: src.kind,
    metadata: src.metadata,
    list: () => listed,
    info: (name) => infos.get(name),
    async read(name) {
      const e = entries.get(name);
      if (e) return e.kind === '4bit' ? read4(e) : read8(e);
      if (hidden.has(name)) throw new DorascopeError('E_MISSING_TENSOR', `${where(name)} is part of a quantized weight's storage; read the weight itself`);
      return src.read(name);
    },
    close: () => src.close(),
  };
}

/** The `quantization_config` of the config.json beside a folder's or sharded model's weights, if any. */
async function folderQuantConfig(src: TensorSource): Promise<{ config: BnbConfig; where: string } | undefined> {
  if (src.kind !== 'folder' && src.kind !== 'sharded') return undefined;
  const path = join(src.path, 'config.json');
  if (!entryExists(path)) return undefined;
  // The weights are read from their keys alone; a config.json that cannot be read (not a regular file, too
  // large, not JSON) only means there is no second witness, so it never blocks reading them.
  let json: unknown;
  try {
    json = parseJsonLenient(await readTextCapped(path, 'model config', JSON_CAPS.config));
  } catch {
    return undefined;
  }
  const config = parseQuantizationConfig(json, q(path));
  return config === undefined ? undefined : { config, where: q(path) };
}

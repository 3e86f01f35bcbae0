/**
 * A minimal WebAssembly assembler: the binary encoding of a module of functions over one memory
 * (WebAssembly Core Specification 2.0, §5 "Binary Format"; SIMD opcodes from §5.4.8). The
 * analysis kernels are written as instruction lists in TypeScript and encoded here at run time,
 * so installing or building dorascope needs no compiler (the module is a few kilobytes).
 */

/** Unsigned LEB128 (§5.2.2). */
export const uleb = (n: number): number[] => {
  const out: number[] = [];
  do { let b = n & 0x7f; n >>>= 7; if (n !== 0) b |= 0x80; out.push(b); } while (n !== 0);
  return out;
};

/** Signed LEB128 of a 32-bit integer. */
export const sleb = (n: number): number[] => {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f; n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) { out.push(b); return out; }
    out.push(b | 0x80);
  }
};

/** Appends `bytes` to `out` one by one (spreading a long array into push or a literal is slow, and would overflow the stack). */
const append = (out: number[], bytes: readonly number[]): number[] => { for (const b of bytes) out.push(b); return out; };
const vec = (items: number[][]): number[] => items.reduce(append, uleb(items.length));
const section = (id: number, body: number[]): number[] => append([id, ...uleb(body.length)], body);

export const I32 = 0x7f, F64 = 0x7c, V128 = 0x7b;
export type ValType = typeof I32 | typeof F64 | typeof V128;

// ---- scalar instructions --------------------------------------------------------------------------
export const get = (i: number): number[] => [0x20, ...uleb(i)];
export const set = (i: number): number[] => [0x21, ...uleb(i)];
export const tee = (i: number): number[] => [0x22, ...uleb(i)];
export const i32c = (v: number): number[] => [0x41, ...sleb(v)];
export const ADD = 0x6a, SUB = 0x6b, MUL = 0x6c, AND = 0x71, GE_U = 0x4f, GT_U = 0x4b;
export const FADD = 0xa0, FSUB = 0xa1, FMUL = 0xa2, F64_PROMOTE_F32 = 0xbb;
export const f64Load = (offset: number): number[] => [0x2b, 3, ...uleb(offset)];
export const f64Store = (offset: number): number[] => [0x39, 3, ...uleb(offset)];
export const BLOCK = [0x02, 0x40], LOOP = [0x03, 0x40], END = [0x0b];
export const brIf = (depth: number): number[] => [0x0d, depth];
export const br = (depth: number): number[] => [0x0c, depth];

// ---- SIMD instructions (prefix 0xfd, then the opcode as LEB128; loads and stores take align, offset) -----
const simd = (code: number): number[] => [0xfd, ...uleb(code)];
const mem = (code: number, align: number) => (offset = 0): number[] => [...simd(code), align, ...uleb(offset)];
export const V_LOAD = mem(0x00, 0), V_STORE = mem(0x0b, 0);
export const V_LOAD16X4_U = mem(0x04, 1), V_LOAD32_ZERO = mem(0x5c, 0);
export const V_LOAD8_SPLAT = mem(0x07, 0), V_LOAD16_SPLAT = mem(0x08, 1), V_LOAD32_SPLAT = mem(0x09, 2);
/** v128.const of one 32-bit pattern in every lane. */
export const vI32 = (v: number): number[] => {
  const b = [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
  return [...simd(12), ...b, ...b, ...b, ...b];
};
export const V_ZERO = vI32(0);
/** i8x16.shuffle of one operand: the high 64 bits into the low half (f32 lanes 2, 3 to 0, 1). */
export const V_HIGH_HALF = [...simd(13), 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15];
export const V_AND = simd(0x4e), V_OR = simd(0x50);
export const I32X4_GT_S = simd(0x3b), I32X4_SHL = simd(0xab);
export const I16X8_EXTEND_LOW_U8 = simd(0x89), I32X4_EXTEND_LOW_U16 = simd(0xa9);
export const F32X4_MUL = simd(0xe6), F32X4_LANE = (l: number): number[] => [...simd(0x1f), l];
export const F64X2_PROMOTE_LOW = simd(0x5f), F64X2_ADD = simd(0xf0), F64X2_SUB = simd(0xf1), F64X2_MUL = simd(0xf2);
export const F64X2_LANE = (l: number): number[] => [...simd(0x21), l];

/** A function under construction: its parameters, and locals handed out by type. */
export class FunctionBuilder {
  private readonly locals: ValType[] = [];
  constructor(readonly params: readonly ValType[], readonly result: ValType | undefined) {}

  /** A new local of `type`; its index. */
  local(type: ValType): number {
    this.locals.push(type);
    return this.params.length + this.locals.length - 1;
  }

  /** The function's body: local declarations (one group per local), then `code` and `end`. */
  body(code: number[]): number[] {
    const b = append(append(vec(this.locals.map((t) => [1, t])), code), END);
    return append(uleb(b.length), b);
  }
}

export interface AssembledFunction {
  readonly name: string;
  readonly fn: FunctionBuilder;
  readonly code: number[];
}

/**
 * A module of `funcs` (each exported under its name) over one memory imported as `env.memory` (at
 * least `pages` 64 KiB pages): instances of several modules can then share one memory, so bytes
 * read into it once serve every kernel (§5.5.5 import section, §2.5.10 imports).
 */
export function assembleModule(funcs: readonly AssembledFunction[], pages = 1): Uint8Array<ArrayBuffer> {
  const name = (s: string) => vec([...s].map((c) => [c.charCodeAt(0)]));
  const types = section(1, vec(funcs.map(({ fn }) => [0x60, ...vec(fn.params.map((t) => [t])), ...vec(fn.result === undefined ? [] : [[fn.result]])])));
  const imports = section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x00, ...uleb(pages)]]));
  const decls = section(3, vec(funcs.map((_, i) => uleb(i))));
  const exports = section(7, vec(funcs.map((f, i) => [...name(f.name), 0x00, ...uleb(i)])));
  const code = section(10, vec(funcs.map((f) => f.fn.body(f.code))));
  return new Uint8Array([types, imports, decls, exports, code].reduce(append, [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
}

/**
 * WebAssembly SIMD kernels for the hot loop of the full-checkpoint analysis: BF16 weights stored
 * (out, in), one output feature per row. BF16 is the top half of a float32, so a lane is decoded
 * by a shift; each float32 is widened to float64 (exact) and the sums run in float64 lanes, so
 * the results are those of the float64 loop up to the order of the additions (≈1e-16 relative).
 *
 *   sq(p, rows, cols, out):        out[r] = Σ_j w[r,j]²                       (f64 per row)
 *   dot(p0, pt, rows, cols, out):  out[2r] = Σ w0·wt, out[2r+1] = Σ wt²;  returns Σ (wt − w0)²
 *
 * The module is assembled here from its instructions (a few hundred bytes; no compiler at install
 * or build time). Hosts without WebAssembly SIMD get `undefined` and the analysis uses its
 * JavaScript loop. Callers copy the bytes into `memory` and call synchronously, so one instance
 * serves every task of a thread.
 */

// ---- a minimal assembler ------------------------------------------------------------------------
const uleb = (n: number): number[] => {
  const out: number[] = [];
  do { let b = n & 0x7f; n >>>= 7; if (n !== 0) b |= 0x80; out.push(b); } while (n !== 0);
  return out;
};
const sleb = (n: number): number[] => {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f; n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) { out.push(b); return out; }
    out.push(b | 0x80);
  }
};
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const I32 = 0x7f, F64 = 0x7c, V128 = 0x7b;
const simd = (code: number): number[] => [0xfd, ...uleb(code)];
const get = (i: number) => [0x20, ...uleb(i)], set = (i: number) => [0x21, ...uleb(i)];
const i32c = (v: number) => [0x41, ...sleb(v)];
const ADD = 0x6a, MUL = 0x6c, AND = 0x71, SHL = 0x74, GE_U = 0x4f;
const FADD = 0xa0, FSUB = 0xa1, FMUL = 0xa2;
const BLOCK = [0x02, 0x40], LOOP = [0x03, 0x40], END = [0x0b];
const brIf = (depth: number) => [0x0d, depth], br = (depth: number) => [0x0c, depth];
const V_LOAD16X4_U = simd(4), V_CONST0 = [...simd(12), ...new Array<number>(16).fill(0)];
const V_HIGH = [...simd(13), 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15]; // i8x16.shuffle: lanes 2, 3 to 0, 1
const V_SHL = simd(171), V_PROMOTE = simd(95), V_ADD = simd(240), V_SUB = simd(241), V_MUL = simd(242);
const lane = (l: number) => [...simd(33), l];
/** BF16 at address (on the stack) → f64 on the stack. */
const SCALAR_BF16 = [0x2f, 0, 0, ...i32c(16), SHL, 0xbe, 0xbb]; // i32.load16_u, <<16, f32.reinterpret_i32, f64.promote_f32
/** Four BF16 at address → f32x4 bits. */
const VEC_BF16 = [...V_LOAD16X4_U, 0, 0, ...i32c(16), ...V_SHL];

/** Sum of the two lanes of each accumulator pair (a, b): (a0 + b0) + (a1 + b1). */
const reduce = (a: number, b: number) => [...get(a), ...lane(0), ...get(b), ...lane(0), FADD, ...get(a), ...lane(1), ...get(b), ...lane(1), FADD, FADD];

function sqBody(): number[] {
  // params 0 p, 1 rows, 2 cols, 3 out; locals 4 r, 5 j, 6 row, 7 n4 (i32); 8 s0, 9 s1, 10 v, 11 lo, 12 hi (v128); 13 s, 14 x (f64)
  const locals = vec([[...uleb(4), I32], [...uleb(5), V128], [...uleb(2), F64]]);
  const code = [
    ...get(2), ...i32c(-4), AND, ...set(7),
    ...BLOCK, ...LOOP,
    ...get(4), ...get(1), GE_U, ...brIf(1),
    ...get(0), ...get(4), ...get(2), MUL, ...i32c(2), MUL, ADD, ...set(6),
    ...V_CONST0, ...set(8), ...V_CONST0, ...set(9), ...i32c(0), ...set(5),
    ...BLOCK, ...LOOP,
    ...get(5), ...get(7), GE_U, ...brIf(1),
    ...get(6), ...get(5), ...i32c(2), MUL, ADD, ...VEC_BF16, ...set(10),
    ...get(10), ...V_PROMOTE, ...set(11), ...get(10), ...get(10), ...V_HIGH, ...V_PROMOTE, ...set(12),
    ...get(8), ...get(11), ...get(11), ...V_MUL, ...V_ADD, ...set(8),
    ...get(9), ...get(12), ...get(12), ...V_MUL, ...V_ADD, ...set(9),
    ...get(5), ...i32c(4), ADD, ...set(5), ...br(0),
    ...END, ...END,
    ...reduce(8, 9), ...set(13),
    ...BLOCK, ...LOOP,
    ...get(5), ...get(2), GE_U, ...brIf(1),
    ...get(6), ...get(5), ...i32c(2), MUL, ADD, ...SCALAR_BF16, ...set(14),
    ...get(13), ...get(14), ...get(14), FMUL, FADD, ...set(13),
    ...get(5), ...i32c(1), ADD, ...set(5), ...br(0),
    ...END, ...END,
    ...get(3), ...get(4), ...i32c(8), MUL, ADD, ...get(13), 0x39, 3, 0, // f64.store
    ...get(4), ...i32c(1), ADD, ...set(4), ...br(0),
    ...END, ...END,
    ...END,
  ];
  return [...locals, ...code];
}

function dotBody(): number[] {
  // params 0 p0, 1 pt, 2 rows, 3 cols, 4 out; locals i32 5 r, 6 j, 7 row0, 8 rowt, 9 n4;
  // v128 10 d0, 11 d1, 12 t0, 13 t1, 14 e0, 15 e1, 16 va, 17 vb, 18 la, 19 lb, 20 ha, 21 hb, 22 df;
  // f64 23 sd, 24 st, 25 se, 26 etot, 27 x, 28 y
  const locals = vec([[...uleb(5), I32], [...uleb(13), V128], [...uleb(6), F64]]);
  const acc = (a: number, x: number, y: number) => [...get(a), ...get(x), ...get(y), ...V_MUL, ...V_ADD, ...set(a)];
  const sacc = (a: number, x: number, y: number) => [...get(a), ...get(x), ...get(y), FMUL, FADD, ...set(a)];
  const code = [
    ...get(3), ...i32c(-4), AND, ...set(9),
    ...BLOCK, ...LOOP,
    ...get(5), ...get(2), GE_U, ...brIf(1),
    ...get(5), ...get(3), MUL, ...i32c(2), MUL, ...set(7),
    ...get(0), ...get(7), ADD, ...set(8), // row0 = p0 + off
    ...get(1), ...get(7), ADD, ...set(7), // rowt = pt + off (in 7), row0 in 8
    ...[10, 11, 12, 13, 14, 15].flatMap((l) => [...V_CONST0, ...set(l)]), ...i32c(0), ...set(6),
    ...BLOCK, ...LOOP,
    ...get(6), ...get(9), GE_U, ...brIf(1),
    ...get(8), ...get(6), ...i32c(2), MUL, ADD, ...VEC_BF16, ...set(16),
    ...get(7), ...get(6), ...i32c(2), MUL, ADD, ...VEC_BF16, ...set(17),
    ...get(16), ...V_PROMOTE, ...set(18), ...get(17), ...V_PROMOTE, ...set(19),
    ...get(16), ...get(16), ...V_HIGH, ...V_PROMOTE, ...set(20), ...get(17), ...get(17), ...V_HIGH, ...V_PROMOTE, ...set(21),
    ...acc(10, 18, 19), ...acc(11, 20, 21), ...acc(12, 19, 19), ...acc(13, 21, 21),
    ...get(19), ...get(18), ...V_SUB, ...set(22), ...acc(14, 22, 22),
    ...get(21), ...get(20), ...V_SUB, ...set(22), ...acc(15, 22, 22),
    ...get(6), ...i32c(4), ADD, ...set(6), ...br(0),
    ...END, ...END,
    ...reduce(10, 11), ...set(23), ...reduce(12, 13), ...set(24), ...reduce(14, 15), ...set(25),
    ...BLOCK, ...LOOP,
    ...get(6), ...get(3), GE_U, ...brIf(1),
    ...get(8), ...get(6), ...i32c(2), MUL, ADD, ...SCALAR_BF16, ...set(27),
    ...get(7), ...get(6), ...i32c(2), MUL, ADD, ...SCALAR_BF16, ...set(28),
    ...sacc(23, 27, 28), ...sacc(24, 28, 28),
    ...get(28), ...get(27), FSUB, ...set(27), ...sacc(25, 27, 27),
    ...get(6), ...i32c(1), ADD, ...set(6), ...br(0),
    ...END, ...END,
    ...get(4), ...get(5), ...i32c(16), MUL, ADD, ...get(23), 0x39, 3, 0,
    ...get(4), ...get(5), ...i32c(16), MUL, ADD, ...get(24), 0x39, 3, 8,
    ...get(26), ...get(25), FADD, ...set(26),
    ...get(5), ...i32c(1), ADD, ...set(5), ...br(0),
    ...END, ...END,
    ...get(26),
    ...END,
  ];
  return [...locals, ...code];
}

function moduleBytes(): Uint8Array<ArrayBuffer> {
  const types = section(1, vec([
    [0x60, ...vec([[I32], [I32], [I32], [I32]]), 0],
    [0x60, ...vec([[I32], [I32], [I32], [I32], [I32]]), ...vec([[F64]])],
  ]));
  const funcs = section(3, vec([[0], [1]]));
  const memory = section(5, vec([[0x00, ...uleb(1)]]));
  const name = (s: string) => vec([...s].map((c) => [c.charCodeAt(0)]));
  const exports = section(7, vec([[...name('sq'), 0x00, 0], [...name('dot'), 0x00, 1], [...name('memory'), 0x02, 0]]));
  const body = (b: number[]) => [...uleb(b.length), ...b];
  const code = section(10, vec([body(sqBody()), body(dotBody())]));
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...types, ...funcs, ...memory, ...exports, ...code]);
}

export interface Bf16RowSums {
  /** Per-row Σ w² of `rows` × `cols` BF16 values at byte `p` into float64s at byte `out`. */
  sq(p: number, rows: number, cols: number, out: number): void;
  /** Per-row Σ w0·wt and Σ wt² (two float64s per row at byte `out`); returns Σ (wt − w0)². */
  dot(p0: number, pt: number, rows: number, cols: number, out: number): number;
  /** The instance's memory; `reserve` grows it. */
  readonly memory: WebAssembly.Memory;
  /** Makes the memory at least `bytes` long (views of its buffer taken before are then stale). */
  reserve(bytes: number): void;
}

let cached: Bf16RowSums | null | undefined;

/** The kernels, or undefined where WebAssembly SIMD is not available (or DORASCOPE_NO_WASM is set). */
export function bf16RowSums(): Bf16RowSums | undefined {
  if (cached !== undefined) return cached ?? undefined;
  cached = null;
  if (process.env['DORASCOPE_NO_WASM']) return undefined;
  try {
    const inst = new WebAssembly.Instance(new WebAssembly.Module(moduleBytes()), {});
    const ex = inst.exports as { sq: Bf16RowSums['sq']; dot: Bf16RowSums['dot']; memory: WebAssembly.Memory };
    cached = {
      sq: ex.sq, dot: ex.dot, memory: ex.memory,
      reserve(bytes) {
        const have = ex.memory.buffer.byteLength;
        if (bytes > have) ex.memory.grow(Math.ceil((bytes - have) / 65536));
      },
    };
  } catch {
    cached = null; // no SIMD (or no WebAssembly): the JavaScript loop serves
  }
  return cached ?? undefined;
}

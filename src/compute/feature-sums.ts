/**
 * WebAssembly SIMD kernels for the hot loop of the full-checkpoint analysis: decode and reduce in
 * one pass, for every storage dtype of wasm-decode.ts. Each float32 lane is widened to float64
 * (exact) and the sums run in float64 lanes, so the results are those of a float64 loop up to the
 * order of the additions (≈1e-16 relative). Weights are row-major (rows, cols); a feature is a row
 * (torch (out, in)) or a column (GPT-2 Conv1D (in, out)):
 *
 *   rowSq(p, rows, cols, out):              out[r] = Σ_j w[r,j]²                      (f64 per row)
 *   rowDot(p0, pt, rows, cols, out):        out[2r] = Σ_j w0·wt, out[2r+1] = Σ_j wt²; returns Σ (wt − w0)²
 *   colSq(p, rows, cols, acc):              acc[j] += Σ_r w[r,j]²                      (f64 per column)
 *   colDot(p0, pt, rows, cols, dot, sst):   dot[j] += Σ_r w0·wt, sst[j] += Σ_r wt²;   returns Σ (wt − w0)²
 *
 * The column kernels read rows contiguously and add each row into per-column accumulators (a
 * block of rows at a time, accumulators in the kernel's memory), never striding down a column;
 * each column's sum is added in row order, as the JavaScript loop does, so those sums are its
 * bits exactly. The row kernels keep four partial sums per row (two float64 lanes × two).
 *
 * The modules are assembled here from their instructions (wasm-assembler.ts), one per pair of
 * dtypes (W0's, W_t's) on first use. Hosts without WebAssembly SIMD get `undefined` and the
 * analysis uses its JavaScript loop. The modules import their memory, so the instances of one
 * arena (`KernelArena`) share it: callers read the bytes into it and call synchronously.
 */
import {
  ADD, AND, BLOCK, END, F32X4_LANE, F64, F64X2_ADD, F64X2_LANE, F64X2_MUL, F64X2_PROMOTE_LOW, F64X2_SUB, F64_PROMOTE_F32, FADD,
  FMUL, FSUB, FunctionBuilder, GE_U, I32, LOOP, MUL, V128, V_HIGH_HALF, V_LOAD, V_STORE, V_ZERO, assembleModule, br, brIf,
  f64Load, f64Store, get, i32c, set, type AssembledFunction,
} from './wasm-assembler.js';
import { DECODERS, type Decoder, type KernelDType } from './wasm-decode.js';

/** `body` while `i` < `limit` (i32 locals); the body advances `i`. */
const whileBelow = (i: number, limit: number, body: number[]): number[] =>
  [...BLOCK, ...LOOP, ...get(i), ...get(limit), GE_U, ...brIf(1), ...body, ...br(0), ...END, ...END];
const inc = (i: number, by: number): number[] => [...get(i), ...i32c(by), ADD, ...set(i)];
/** base + j·size */
const addr = (base: number, j: number, size: number): number[] => [...get(base), ...get(j), ...i32c(size), MUL, ADD];
/** a += x·y, float64 lanes or scalars */
const vacc = (a: number, x: number, y: number): number[] => [...get(a), ...get(x), ...get(y), ...F64X2_MUL, ...F64X2_ADD, ...set(a)];
const sacc = (a: number, x: number, y: number): number[] => [...get(a), ...get(x), ...get(y), FMUL, FADD, ...set(a)];
/** Sum of the lanes of accumulators a and b: (a0 + b0) + (a1 + b1). */
const reduce = (a: number, b: number): number[] =>
  [...get(a), ...F64X2_LANE(0), ...get(b), ...F64X2_LANE(0), FADD, ...get(a), ...F64X2_LANE(1), ...get(b), ...F64X2_LANE(1), FADD, FADD];

/** Scratch of a decode step: two v128 for the decoder, the f32x4 result, its low and high halves as f64x2. */
class Lanes {
  readonly a: number; readonly b: number; readonly v: number; readonly lo: number; readonly hi: number; readonly x: number;
  constructor(fn: FunctionBuilder, private readonly d: Decoder) {
    this.a = fn.local(V128); this.b = fn.local(V128); this.v = fn.local(V128);
    this.lo = fn.local(V128); this.hi = fn.local(V128); this.x = fn.local(F64);
  }

  /** Four elements at `address` (code leaving an i32) into `lo` (elements 0, 1) and `hi` (2, 3). */
  four(address: number[]): number[] {
    return [
      ...address, ...this.d.four(this.a, this.b), ...set(this.v),
      ...get(this.v), ...F64X2_PROMOTE_LOW, ...set(this.lo),
      ...get(this.v), ...get(this.v), ...V_HIGH_HALF, ...F64X2_PROMOTE_LOW, ...set(this.hi),
    ];
  }

  /** One element at `address` into the scalar `x`. */
  one(address: number[]): number[] {
    return [...address, ...this.d.one(this.a, this.b), ...F32X4_LANE(0), F64_PROMOTE_F32, ...set(this.x)];
  }
}

/** Common locals: the loop counters and cols rounded down to a multiple of 4. */
function counters(fn: FunctionBuilder, cols: number): { r: number; j: number; n4: number; init: number[] } {
  const r = fn.local(I32), j = fn.local(I32), n4 = fn.local(I32);
  return { r, j, n4, init: [...get(cols), ...i32c(-4), AND, ...set(n4)] };
}

/** row = p + r·cols·size */
const rowStart = (row: number, p: number, r: number, cols: number, size: number): number[] =>
  [...get(p), ...get(r), ...get(cols), MUL, ...i32c(size), MUL, ADD, ...set(row)];

function rowSq(d: Decoder): AssembledFunction {
  const fn = new FunctionBuilder([I32, I32, I32, I32], undefined);
  const p = 0, rows = 1, cols = 2, out = 3;
  const { r, j, n4, init } = counters(fn, cols);
  const row = fn.local(I32), s0 = fn.local(V128), s1 = fn.local(V128), s = fn.local(F64);
  const w = new Lanes(fn, d);
  const code = [
    ...init,
    ...whileBelow(r, rows, [
      ...rowStart(row, p, r, cols, d.size),
      ...V_ZERO, ...set(s0), ...V_ZERO, ...set(s1), ...i32c(0), ...set(j),
      ...whileBelow(j, n4, [...w.four(addr(row, j, d.size)), ...vacc(s0, w.lo, w.lo), ...vacc(s1, w.hi, w.hi), ...inc(j, 4)]),
      ...reduce(s0, s1), ...set(s),
      ...whileBelow(j, cols, [...w.one(addr(row, j, d.size)), ...sacc(s, w.x, w.x), ...inc(j, 1)]),
      ...get(out), ...get(r), ...i32c(8), MUL, ADD, ...get(s), ...f64Store(0),
      ...inc(r, 1),
    ]),
  ];
  return { name: 'rowSq', fn, code };
}

function rowDot(d0: Decoder, dt: Decoder): AssembledFunction {
  const fn = new FunctionBuilder([I32, I32, I32, I32, I32], F64);
  const p0 = 0, pt = 1, rows = 2, cols = 3, out = 4;
  const { r, j, n4, init } = counters(fn, cols);
  const row0 = fn.local(I32), rowt = fn.local(I32);
  const [d, dh, t, th, e, eh, diff] = [0, 0, 0, 0, 0, 0, 0].map(() => fn.local(V128)) as [number, number, number, number, number, number, number];
  const [sd, st, se, total] = [0, 0, 0, 0].map(() => fn.local(F64)) as [number, number, number, number];
  const a = new Lanes(fn, d0), b = new Lanes(fn, dt);
  const vdiff = (acc: number, x: number, y: number) => [...get(y), ...get(x), ...F64X2_SUB, ...set(diff), ...vacc(acc, diff, diff)];
  const code = [
    ...init,
    ...whileBelow(r, rows, [
      ...rowStart(row0, p0, r, cols, d0.size), ...rowStart(rowt, pt, r, cols, dt.size),
      ...[d, dh, t, th, e, eh].flatMap((l) => [...V_ZERO, ...set(l)]), ...i32c(0), ...set(j),
      ...whileBelow(j, n4, [
        ...a.four(addr(row0, j, d0.size)), ...b.four(addr(rowt, j, dt.size)),
        ...vacc(d, a.lo, b.lo), ...vacc(dh, a.hi, b.hi), ...vacc(t, b.lo, b.lo), ...vacc(th, b.hi, b.hi),
        ...vdiff(e, a.lo, b.lo), ...vdiff(eh, a.hi, b.hi),
        ...inc(j, 4),
      ]),
      ...reduce(d, dh), ...set(sd), ...reduce(t, th), ...set(st), ...reduce(e, eh), ...set(se),
      ...whileBelow(j, cols, [
        ...a.one(addr(row0, j, d0.size)), ...b.one(addr(rowt, j, dt.size)),
        ...sacc(sd, a.x, b.x), ...sacc(st, b.x, b.x),
        ...get(b.x), ...get(a.x), FSUB, ...set(a.x), ...sacc(se, a.x, a.x),
        ...inc(j, 1),
      ]),
      ...get(out), ...get(r), ...i32c(16), MUL, ADD, ...get(sd), ...f64Store(0),
      ...get(out), ...get(r), ...i32c(16), MUL, ADD, ...get(st), ...f64Store(8),
      ...get(total), ...get(se), FADD, ...set(total),
      ...inc(r, 1),
    ]),
    ...get(total),
  ];
  return { name: 'rowDot', fn, code };
}

/** acc[j..j+3] (float64 at `base` + 8j, address in local `at`) += x·y, lanes lo and hi. */
function colAdd(at: number, x: Lanes, y: Lanes): number[] {
  return [
    ...get(at), ...get(at), ...V_LOAD(0), ...get(x.lo), ...get(y.lo), ...F64X2_MUL, ...F64X2_ADD, ...V_STORE(0),
    ...get(at), ...get(at), ...V_LOAD(16), ...get(x.hi), ...get(y.hi), ...F64X2_MUL, ...F64X2_ADD, ...V_STORE(16),
  ];
}
/** acc[j] (float64 at address in local `at`) += x·y */
const colAddOne = (at: number, x: number, y: number): number[] =>
  [...get(at), ...get(at), ...f64Load(0), ...get(x), ...get(y), FMUL, FADD, ...f64Store(0)];

function colSq(d: Decoder): AssembledFunction {
  const fn = new FunctionBuilder([I32, I32, I32, I32], undefined);
  const p = 0, rows = 1, cols = 2, acc = 3;
  const { r, j, n4, init } = counters(fn, cols);
  const row = fn.local(I32), at = fn.local(I32);
  const w = new Lanes(fn, d);
  const code = [
    ...init,
    ...whileBelow(r, rows, [
      ...rowStart(row, p, r, cols, d.size), ...i32c(0), ...set(j),
      ...whileBelow(j, n4, [...w.four(addr(row, j, d.size)), ...addr(acc, j, 8), ...set(at), ...colAdd(at, w, w), ...inc(j, 4)]),
      ...whileBelow(j, cols, [...w.one(addr(row, j, d.size)), ...addr(acc, j, 8), ...set(at), ...colAddOne(at, w.x, w.x), ...inc(j, 1)]),
      ...inc(r, 1),
    ]),
  ];
  return { name: 'colSq', fn, code };
}

function colDot(d0: Decoder, dt: Decoder): AssembledFunction {
  const fn = new FunctionBuilder([I32, I32, I32, I32, I32, I32], F64);
  const p0 = 0, pt = 1, rows = 2, cols = 3, dot = 4, sst = 5;
  const { r, j, n4, init } = counters(fn, cols);
  const row0 = fn.local(I32), rowt = fn.local(I32), at = fn.local(I32);
  const e = fn.local(V128), eh = fn.local(V128), diff = fn.local(V128), se = fn.local(F64);
  const a = new Lanes(fn, d0), b = new Lanes(fn, dt);
  const vdiff = (acc: number, x: number, y: number) => [...get(y), ...get(x), ...F64X2_SUB, ...set(diff), ...vacc(acc, diff, diff)];
  const code = [
    ...init, ...V_ZERO, ...set(e), ...V_ZERO, ...set(eh),
    ...whileBelow(r, rows, [
      ...rowStart(row0, p0, r, cols, d0.size), ...rowStart(rowt, pt, r, cols, dt.size), ...i32c(0), ...set(j),
      ...whileBelow(j, n4, [
        ...a.four(addr(row0, j, d0.size)), ...b.four(addr(rowt, j, dt.size)),
        ...addr(dot, j, 8), ...set(at), ...colAdd(at, a, b),
        ...addr(sst, j, 8), ...set(at), ...colAdd(at, b, b),
        ...vdiff(e, a.lo, b.lo), ...vdiff(eh, a.hi, b.hi),
        ...inc(j, 4),
      ]),
      ...whileBelow(j, cols, [
        ...a.one(addr(row0, j, d0.size)), ...b.one(addr(rowt, j, dt.size)),
        ...addr(dot, j, 8), ...set(at), ...colAddOne(at, a.x, b.x),
        ...addr(sst, j, 8), ...set(at), ...colAddOne(at, b.x, b.x),
        ...get(b.x), ...get(a.x), FSUB, ...set(a.x), ...sacc(se, a.x, a.x),
        ...inc(j, 1),
      ]),
      ...inc(r, 1),
    ]),
    ...reduce(e, eh), ...get(se), FADD,
  ];
  return { name: 'colDot', fn, code };
}

export interface FeatureSumsKernel {
  /** Per-row Σ w² of `rows` × `cols` W0 values at byte `p` into float64s at byte `out`. */
  rowSq(p: number, rows: number, cols: number, out: number): void;
  /** Per-row Σ w0·wt and Σ wt² (two float64s per row at byte `out`); returns Σ (wt − w0)². */
  rowDot(p0: number, pt: number, rows: number, cols: number, out: number): number;
  /** Adds per-column Σ w² of W0 values at byte `p` to the float64s at byte `acc`. */
  colSq(p: number, rows: number, cols: number, acc: number): void;
  /** Adds per-column Σ w0·wt and Σ wt² to the float64s at bytes `dot` and `sst`; returns Σ (wt − w0)². */
  colDot(p0: number, pt: number, rows: number, cols: number, dot: number, sst: number): number;
  /** The memory the kernel works in (its arena's); `reserve` grows it. */
  readonly memory: WebAssembly.Memory;
  /** Makes the memory at least `bytes` long (views of its buffer taken before are then stale). */
  reserve(bytes: number): void;
}

/** The module's bytes for W0 stored as `d0` and W_t as `dt` (exported for tests that validate it). */
export function featureSumsModule(d0: KernelDType, dt: KernelDType): Uint8Array<ArrayBuffer> {
  const a = DECODERS[d0], b = DECODERS[dt];
  return assembleModule([rowSq(a), rowDot(a, b), colSq(a), colDot(a, b)]);
}

const compiled = new Map<string, WebAssembly.Module | null>();

/** The compiled module for a pair of dtypes, once per thread; undefined without WebAssembly SIMD or with DORASCOPE_NO_WASM. */
function moduleFor(d0: KernelDType, dt: KernelDType): WebAssembly.Module | undefined {
  if (process.env['DORASCOPE_NO_WASM']) return undefined;
  const key = `${d0} ${dt}`;
  if (!compiled.has(key)) {
    try {
      compiled.set(key, new WebAssembly.Module(featureSumsModule(d0, dt)));
    } catch {
      compiled.set(key, null); // no SIMD (or no WebAssembly): the JavaScript loop serves
    }
  }
  return compiled.get(key) ?? undefined;
}

/**
 * One memory and the kernels of every pair of dtypes over it. The streaming analysis reads file
 * blocks straight into this memory and runs whichever kernel a block needs where it lies, so no
 * byte is copied between the read and the arithmetic. An arena serves one task at a time
 * (`takeArena` / `giveArena`), so tasks that interleave on one thread never share its bytes.
 */
export class KernelArena {
  readonly memory = new WebAssembly.Memory({ initial: 1 });
  private readonly kernels = new Map<string, FeatureSumsKernel>();

  /** The kernels for W0 stored as `d0` and W_t as `dt` over this arena's memory; undefined where the JavaScript loop serves. */
  kernel(d0: KernelDType, dt: KernelDType): FeatureSumsKernel | undefined {
    const key = `${d0} ${dt}`;
    const have = this.kernels.get(key);
    if (have) return have;
    const m = moduleFor(d0, dt);
    if (!m) return undefined;
    const ex = new WebAssembly.Instance(m, { env: { memory: this.memory } }).exports as unknown as Pick<FeatureSumsKernel, 'rowSq' | 'rowDot' | 'colSq' | 'colDot'>;
    const k: FeatureSumsKernel = {
      rowSq: ex.rowSq, rowDot: ex.rowDot, colSq: ex.colSq, colDot: ex.colDot, memory: this.memory,
      reserve: (bytes) => this.reserve(bytes),
    };
    this.kernels.set(key, k);
    return k;
  }

  /** Makes the memory at least `bytes` long (views of its buffer taken before are then stale). */
  reserve(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes > have) this.memory.grow(Math.ceil((bytes - have) / 65536));
  }
}

/** Arenas given back on this thread, kept for the next task (their memory is already mapped). */
const idle: KernelArena[] = [];
const KEEP_ARENAS = 2;

/**
 * An arena for one task's exclusive use (give it back with `giveArena`); undefined where the
 * JavaScript loop serves: no WebAssembly at all (`node --jitless`), or DORASCOPE_NO_WASM.
 */
export function takeArena(): KernelArena | undefined {
  if (typeof WebAssembly !== 'object' || process.env['DORASCOPE_NO_WASM']) return undefined;
  return idle.pop() ?? new KernelArena();
}

export function giveArena(a: KernelArena): void {
  if (idle.length < KEEP_ARENAS) idle.push(a);
}

/**
 * The kernels for W0 stored as `d0` and W_t as `dt` in an arena of their own, or undefined where
 * WebAssembly SIMD is not available (or the environment variable DORASCOPE_NO_WASM is set: the
 * JavaScript loop then serves).
 */
export function featureSumsKernel(d0: KernelDType, dt: KernelDType): FeatureSumsKernel | undefined {
  return takeArena()?.kernel(d0, dt);
}

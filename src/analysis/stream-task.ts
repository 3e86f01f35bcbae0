/**
 * The streaming form of a full-checkpoint tensor task: W0 and every W_t are read in row blocks,
 * with positional reads into a few reused buffers, decoded into one reused float32 block each,
 * and reduced with the block kernel of decompose.ts. Nothing per tensor is allocated but the
 * per-feature sums (a few float64 per output feature and checkpoint), so memory is bounded by
 * the block size whatever the tensor (a 70B model's 28672×8192 MLP matrix included), and the
 * page faults of a fresh buffer per tensor (most of the cost when the files are in the page
 * cache) are gone. Reads run ahead of the reduction (`READ_AHEAD` blocks in flight on libuv's
 * thread pool) so the copy from the page cache overlaps the arithmetic.
 *
 * The blocks of one tensor come in row order and feed the same functions `decompose` uses on
 * a whole tensor, so the numbers are the same bit for bit (test/analysis/stream-task.test.ts).
 * Where WebAssembly SIMD is available, BF16, F16, F32 and float8 blocks (either feature axis, any
 * mix of those dtypes between base and checkpoint) run on the fused kernels of
 * compute/feature-sums.ts instead: decode and reduce in one pass over the raw bytes, float64
 * lanes, about 3× the JavaScript loop. Per-column sums are then the loop's bits; per-row sums and
 * ‖W_t − W0‖² are the same terms added in another order, so within float64 rounding of it.
 * `kernel: 'js'` forces the loop (as does DORASCOPE_NO_WASM); F64 always takes it.
 */
import { featureSumsKernel, type FeatureSumsKernel } from '../compute/feature-sums.js';
import { isKernelDType } from '../compute/wasm-decode.js';
import { DTYPES, decodeInto } from '../io/dtypes.js';
import type { DType, TensorSource } from '../io/types.js';
import {
  accumulateBlock, accumulateSquares, allFinite, finishDecomposition, newBlockSums, sameBits, unchangedDecomposition,
  type BlockSums, type Decomposition, type FeatureAxis,
} from './decompose.js';

/**
 * Elements per row block (2²⁰: 4 MiB of float32, 2 MiB of BF16 read at a time): large enough that
 * a read's round trip through the thread pool is noise, small enough that the decoded blocks
 * stay in the last-level cache between decoding and reducing.
 */
export const BLOCK_ELEMENTS = 1 << 20;

/** Block reads in flight ahead of the one being reduced. */
const READ_AHEAD = 3;

/**
 * Reused buffers. Taken and given back per block; at most `keep` are kept, so a pool holds a few
 * blocks' worth of memory however many tensors pass through it. Safe for concurrent tasks (each
 * take returns a buffer no one else holds).
 */
export class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  constructor(private readonly keep = 2 * READ_AHEAD + 4) {}

  take(bytes: number): ArrayBuffer {
    const i = this.free.findIndex((b) => b.byteLength >= bytes);
    if (i >= 0) return this.free.splice(i, 1)[0]!;
    // Round up so that blocks of slightly different sizes reuse one buffer; 8-byte multiples keep any typed view aligned.
    return new ArrayBuffer(Math.max(8, 2 ** Math.ceil(Math.log2(Math.max(bytes, 1)))));
  }

  give(b: ArrayBuffer): void {
    if (this.free.length < this.keep) this.free.push(b);
    else {
      // Keep the largest: the next tensor is likely as large as this one.
      let min = 0;
      for (let i = 1; i < this.free.length; i++) if (this.free[i]!.byteLength < this.free[min]!.byteLength) min = i;
      if (this.free[min]!.byteLength < b.byteLength) this.free[min] = b;
    }
  }
}

/** One pool per thread: tasks on a thread reuse one another's buffers. */
const sharedPool = new BufferPool();

/** Whether a source can be read in blocks (file-backed, floating dtype). */
export function canStream(src: TensorSource, name: string): boolean {
  const info = src.info(name);
  return src.readBytesInto !== undefined && info !== undefined && DTYPES[info.dtype].floating && info.byteLength > 0;
}

interface Read {
  readonly src: number;
  readonly block: number;
  readonly buf: ArrayBuffer;
  readonly bytes: Uint8Array;
  readonly done: Promise<void>;
}

/**
 * ΔM/ΔD of base tensor `name` (rows × cols, features along `axis`) against each of `cks`, every
 * source read in blocks of `blockElements` (rounded to whole rows; at least one row). Every source
 * must pass `canStream`; rows·cols > 0.
 */
export async function streamDecompose(base: TensorSource, cks: readonly TensorSource[], name: string, rows: number, cols: number,
  axis: FeatureAxis, perRow: boolean, blockElements = BLOCK_ELEMENTS, pool = sharedPool, kernel: 'auto' | 'js' = 'auto'): Promise<Decomposition[]> {
  const srcs = [base, ...cks];
  const size = srcs.map((s) => DTYPES[s.info(name)!.dtype].size);
  const dtypes = srcs.map((s) => s.info(name)!.dtype);
  const wasm = kernel === 'auto' ? wasmKernels(dtypes) : undefined;
  const token = {};
  const blockRows = Math.max(1, Math.min(rows, Math.floor(blockElements / cols)));
  const nBlocks = Math.ceil(rows / blockRows);
  const k = axis === 'rows' ? rows : cols;
  const squares0 = new Float64Array(k);
  const sums: BlockSums[] = cks.map(() => newBlockSums(k));
  const same = cks.map(() => true);
  // Reads in order: block 0 of the base, of each checkpoint, block 1 of the base, …
  const total = nBlocks * srcs.length;
  const reads: Read[] = [];
  let issued = 0;
  const issue = (): void => {
    const src = issued % srcs.length, block = Math.floor(issued / srcs.length);
    issued++;
    const r0 = block * blockRows, nr = Math.min(blockRows, rows - r0);
    const byteLength = nr * cols * size[src]!;
    const buf = pool.take(byteLength);
    const bytes = new Uint8Array(buf, 0, byteLength);
    const done = srcs[src]!.readBytesInto!(name, bytes, r0 * cols * size[src]!);
    done.catch(() => undefined); // awaited in order below; this keeps a failure ahead from being reported as unhandled
    reads.push({ src, block, buf, bytes, done });
  };
  const f32 = blockRows * cols * 4;
  const w0Buf = pool.take(f32), wtBuf = pool.take(f32);
  const w0 = new Float32Array(w0Buf, 0, blockRows * cols), wt = new Float32Array(wtBuf, 0, blockRows * cols);
  let cmpBuf: ArrayBuffer | undefined; // a third float32 block, for the unchanged check of mixed dtypes on the kernels
  try {
    while (issued < Math.min(total, READ_AHEAD)) issue();
    while (reads.length > 0) {
      const r = reads.shift()!;
      await r.done;
      if (issued < total) issue();
      const r0 = r.block * blockRows, nr = Math.min(blockRows, rows - r0), n = nr * cols;
      const dtype = dtypes[r.src]!;
      if (wasm) {
        // W0's raw block is kept in w0Buf: another task on this thread may use the kernels' memory between awaits.
        const w0Raw = new Uint8Array(w0Buf, 0, n * size[0]!);
        if (r.src === 0) {
          w0Raw.set(r.bytes);
          wasmSquares(wasm[0]!, w0Raw, nr, cols, axis, squares0, r0, { token, block: r.block });
        } else {
          const c = r.src - 1;
          if (same[c]) {
            if (dtype === dtypes[0]) same[c] = sameBytes(w0Raw, r.bytes); // one code per value: equal codes ⇔ equal float32 bits
            else {
              cmpBuf ??= pool.take(f32);
              const a = new Float32Array(wtBuf, 0, n), b = new Float32Array(cmpBuf, 0, n);
              decodeInto(dtypes[0]!, w0Raw, a); decodeInto(dtype, r.bytes, b);
              same[c] = sameBits(a, b);
            }
          }
          sums[c]!.diff2 += wasmDot(wasm[r.src]!, w0Raw, r.bytes, size[r.src]!, nr, cols, axis, sums[c]!, r0, { token, block: r.block });
        }
        pool.give(r.buf);
        continue;
      }
      if (r.src === 0) {
        decodeInto(dtype, r.bytes, w0);
        accumulateSquares(squares0, w0, r0, nr, cols, axis);
      } else {
        const c = r.src - 1;
        // An F32 block is used where it was read (the pooled buffer starts aligned); the others decode into `wt`.
        const w = dtype === 'F32' ? new Float32Array(r.buf, 0, n) : (decodeInto(dtype, r.bytes, wt), wt);
        if (same[c]) same[c] = sameBits(w0.subarray(0, n), w.subarray(0, n));
        accumulateBlock(sums[c]!, w0, w, r0, nr, cols, axis);
      }
      pool.give(r.buf);
    }
  } finally {
    // On a failure, let the reads still in flight finish before their buffers go back to the pool.
    for (const r of reads) { await r.done.catch(() => undefined); pool.give(r.buf); }
    pool.give(w0Buf); pool.give(wtBuf);
    if (cmpBuf) pool.give(cmpBuf);
  }
  const n0 = squares0.map(Math.sqrt);
  const baseFinite = allFinite(n0);
  return sums.map((s, c) => (baseFinite && same[c] ? unchangedDecomposition(k, n0) : finishDecomposition(n0, s, baseFinite, perRow)));
}

/** The kernels for these dtypes (W0's squares, then W0 against each checkpoint), or undefined where the JavaScript loop serves. */
function wasmKernels(dtypes: readonly DType[]): FeatureSumsKernel[] | undefined {
  const d0 = dtypes[0]!;
  if (!isKernelDType(d0)) return undefined;
  const ks = dtypes.map((d) => (isKernelDType(d) ? featureSumsKernel(d0, d) : undefined));
  return ks.every((k) => k !== undefined) ? ks : undefined;
}

interface Owner { readonly token: object; readonly block: number }

/** Which task's W0 block is in each kernel's memory (the copy is skipped for the next checkpoint of the same block). */
const resident = new WeakMap<FeatureSumsKernel, Owner>();

/** Byte layout in a kernel's memory: W0 block at 0, W_t block, then per-row outputs or per-column accumulators. */
function layout(k: FeatureSumsKernel, bytes0: number, bytesT: number, outBytes: number): { pt: number; out: number } {
  const pt = Math.ceil(bytes0 / 16) * 16;
  const out = pt + Math.ceil(bytesT / 16) * 16;
  k.reserve(out + outBytes);
  return { pt, out };
}

function putW0(k: FeatureSumsKernel, w0Raw: Uint8Array, owner: Owner): void {
  const had = resident.get(k);
  if (had?.token === owner.token && had.block === owner.block) return;
  new Uint8Array(k.memory.buffer, 0, w0Raw.byteLength).set(w0Raw);
  resident.set(k, owner);
}

function wasmSquares(k: FeatureSumsKernel, w0Raw: Uint8Array, nr: number, cols: number, axis: FeatureAxis, squares: Float64Array, r0: number, owner: Owner): void {
  const { out } = layout(k, w0Raw.byteLength, 0, 8 * squares.length);
  putW0(k, w0Raw, owner);
  if (axis === 'rows') {
    k.rowSq(0, nr, cols, out);
    squares.set(new Float64Array(k.memory.buffer, out, nr), r0);
  } else {
    // Per-column sums carried across blocks through the kernel's memory: each column's terms are added in row order.
    const acc = new Float64Array(k.memory.buffer, out, cols);
    acc.set(squares);
    k.colSq(0, nr, cols, out);
    squares.set(acc);
  }
}

function wasmDot(k: FeatureSumsKernel, w0Raw: Uint8Array, wtRaw: Uint8Array, sizeT: number, nr: number, cols: number, axis: FeatureAxis,
  s: BlockSums, r0: number, owner: Owner): number {
  const { pt, out } = layout(k, w0Raw.byteLength, nr * cols * sizeT, axis === 'rows' ? 16 * nr : 16 * cols);
  putW0(k, w0Raw, owner);
  const mem = k.memory.buffer;
  new Uint8Array(mem, pt, wtRaw.byteLength).set(wtRaw);
  if (axis === 'rows') {
    const diff2 = k.rowDot(0, pt, nr, cols, out);
    const o = new Float64Array(mem, out, 2 * nr);
    for (let i = 0; i < nr; i++) { s.dot[r0 + i] = o[2 * i]!; s.sst[r0 + i] = o[2 * i + 1]!; }
    return diff2;
  }
  const dot = new Float64Array(mem, out, cols), sst = new Float64Array(mem, out + 8 * cols, cols);
  dot.set(s.dot); sst.set(s.sst);
  const diff2 = k.colDot(0, pt, nr, cols, out, out + 8 * cols);
  s.dot.set(dot); s.sst.set(sst);
  return diff2;
}

/** Whether two byte runs are equal, a 32-bit word at a time (both start 4-aligned: pooled buffers at offset 0). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  const words = a.byteLength >> 2;
  const x = new Int32Array(a.buffer, a.byteOffset, words), y = new Int32Array(b.buffer, b.byteOffset, words);
  for (let i = 0; i < words; i++) if (x[i] !== y[i]) return false;
  for (let i = words * 4; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

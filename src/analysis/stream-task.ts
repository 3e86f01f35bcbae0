/**
 * The streaming form of a full-checkpoint tensor task: W0 and every W_t are read in row blocks,
 * with positional reads into a few reused buffers, and reduced block by block. Nothing per tensor
 * is allocated but the per-feature sums (a few float64 per output feature and checkpoint), so memory is bounded by
 * the block size whatever the tensor (a 70B model's 28672×8192 MLP matrix included), and the
 * page faults of a fresh buffer per tensor (most of the cost when the files are in the page
 * cache) are gone. On the main thread reads run ahead of the reduction (`READ_AHEAD` blocks in
 * flight on libuv's thread pool); on a worker thread each block is read, blocking, just before it is
 * reduced (`BlockReads` says why).
 *
 * The blocks of one tensor come in row order and feed the same functions `decompose` uses on
 * a whole tensor, so the numbers are the same bit for bit (test/analysis/stream-task.test.ts).
 * Where WebAssembly SIMD is available, BF16, F16, F32 and float8 blocks (either feature axis, any
 * mix of those dtypes between base and checkpoint) run on the fused kernels of
 * compute/feature-sums.ts instead: decode and reduce in one pass over the raw bytes, float64
 * lanes, about 3× the JavaScript loop. Their blocks are read straight into the kernels' memory (a
 * copy of every byte fewer: on two cores, with the files in the page cache, that copy cost as
 * much as a tenth of the analysis). Per-column sums are then the loop's bits; per-row sums and
 * ‖W_t − W0‖² are the same terms added in another order, so within float64 rounding of it.
 * `kernel: 'js'` forces the loop (as does DORASCOPE_NO_WASM); F64 always takes it.
 */
import { giveArena, takeArena, type FeatureSumsKernel, type KernelArena } from '../compute/feature-sums.js';
import { isKernelDType, type KernelDType } from '../compute/wasm-decode.js';
import { DorascopeError } from '../errors.js';
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

/** One block of one source, read into bytes the reader owns until `release`. */
interface Read {
  readonly src: number;
  readonly block: number;
  readonly bytes: Uint8Array;
  readonly done: Promise<void>;
  release(): void;
}

/** Where a block of `byteLength` bytes is read to. */
type Place = (byteLength: number) => { bytes: Uint8Array; release(): void };

/**
 * The blocks of one tensor in every source, in order (block 0 of the base, of each checkpoint,
 * block 1 of the base, …): `READ_AHEAD` reads in flight on libuv's thread pool, or (`blocking`)
 * each block read on this thread when it is asked for. On a worker thread the blocking form costs
 * less: no round trip through the pool, and the bytes are still in this core's cache when the
 * kernel reads them (on the 2-core build machine, 0.27 s of CPU and 0.17 s of wall time less for
 * the 4 GB series of docs/benchmarks.md).
 */
class BlockReads {
  private readonly reads: Read[] = [];
  private issued = 0;
  private readonly total: number;
  private readonly ahead: number;

  constructor(private readonly srcs: readonly TensorSource[], private readonly name: string, private readonly rows: number,
    private readonly cols: number, readonly blockRows: number, private readonly size: readonly number[], private readonly place: Place,
    private readonly blocking: boolean) {
    this.total = Math.ceil(rows / blockRows) * srcs.length;
    this.ahead = blocking ? 0 : READ_AHEAD;
    while (this.issued < Math.min(this.total, this.ahead)) this.issue();
  }

  private issue(): void {
    const src = this.issued % this.srcs.length, block = Math.floor(this.issued / this.srcs.length);
    this.issued++;
    const r0 = block * this.blockRows, nr = Math.min(this.blockRows, this.rows - r0);
    const { bytes, release } = this.place(nr * this.cols * this.size[src]!);
    let done: Promise<void>;
    try {
      done = this.srcs[src]!.readBytesInto!(this.name, bytes, r0 * this.cols * this.size[src]!, this.blocking);
    } catch (e) {
      done = Promise.reject(e); // a source may throw before it returns a promise
    }
    done.catch(() => undefined); // awaited in order; this keeps a failure ahead from being reported as unhandled
    this.reads.push({ src, block, bytes, done, release });
  }

  /** The next block, read; undefined after the last. */
  async next(): Promise<Read | undefined> {
    if (this.reads.length === 0 && this.issued < this.total) this.issue();
    const r = this.reads.shift();
    if (!r) return undefined;
    await r.done;
    while (this.issued < this.total && this.reads.length < this.ahead) this.issue();
    return r;
  }

  /** Lets the reads still in flight finish (after a failure) and releases their bytes. */
  async settle(): Promise<void> {
    for (const r of this.reads.splice(0)) { await r.done.catch(() => undefined); r.release(); }
  }
}

/**
 * ΔM/ΔD of base tensor `name` (rows × cols, features along `axis`) against each of `cks`, every
 * source read in blocks of `blockElements` (rounded to whole rows; at least one row). Every source
 * must pass `canStream`; rows·cols > 0.
 */
export async function streamDecompose(base: TensorSource, cks: readonly TensorSource[], name: string, rows: number, cols: number,
  axis: FeatureAxis, perRow: boolean, blockElements = BLOCK_ELEMENTS, pool = sharedPool, kernel: 'auto' | 'js' = 'auto', blocking = false): Promise<Decomposition[]> {
  const srcs = [base, ...cks];
  const dtypes = srcs.map((s) => s.info(name)!.dtype);
  const blockRows = Math.max(1, Math.min(rows, Math.floor(blockElements / cols)));
  const k = axis === 'rows' ? rows : cols;
  const acc: Accumulated = { squares0: new Float64Array(k), sums: cks.map(() => newBlockSums(k)), same: cks.map(() => true) };
  // Kernels exist for every dtype but F64; with WebAssembly SIMD missing an arena has none.
  const arena = kernel === 'auto' && dtypes.every(isKernelDType) ? takeArena() : undefined;
  const kernels = arena && dtypes.map((d) => arena.kernel(dtypes[0] as KernelDType, d as KernelDType));
  if (arena && kernels?.every((x) => x !== undefined)) {
    try {
      await reduceOnKernels(srcs, dtypes, name, rows, cols, axis, blockRows, arena, kernels as FeatureSumsKernel[], acc, pool, blocking);
    } finally {
      giveArena(arena);
    }
  } else {
    if (arena) giveArena(arena);
    await reduceInJs(srcs, dtypes, name, rows, cols, axis, blockRows, acc, pool, blocking);
  }
  const n0 = acc.squares0.map(Math.sqrt);
  const baseFinite = allFinite(n0);
  return acc.sums.map((s, c) => (baseFinite && acc.same[c] ? unchangedDecomposition(k, n0) : finishDecomposition(n0, s, baseFinite, perRow)));
}

/** What the block loops add up: W0's per-feature squares, each checkpoint's sums, and whether it equals W0 so far. */
interface Accumulated {
  readonly squares0: Float64Array;
  readonly sums: BlockSums[];
  readonly same: boolean[];
}

/**
 * The block loop on the WebAssembly kernels. Blocks are read straight into slots of the arena's
 * memory and reduced where they lie; W0's block stays in its slot while the checkpoints' blocks
 * of the same rows pass. Slots: the reads in flight, the block being reduced, W0's current block
 * and the next one (read ahead while the current one is still in use).
 */
async function reduceOnKernels(srcs: readonly TensorSource[], dtypes: readonly DType[], name: string, rows: number, cols: number, axis: FeatureAxis,
  blockRows: number, arena: KernelArena, ks: readonly FeatureSumsKernel[], acc: Accumulated, pool: BufferPool, blocking: boolean): Promise<void> {
  const size = dtypes.map((d) => DTYPES[d].size);
  const slotBytes = Math.ceil((blockRows * cols * Math.max(...size)) / 16) * 16;
  const nSlots = READ_AHEAD + 3;
  const out = nSlots * slotBytes;
  arena.reserve(out + 16 * Math.max(blockRows, cols)); // before any view of the memory is taken: it does not grow below
  const mem = arena.memory.buffer;
  const free = Array.from({ length: nSlots }, (_, i) => (nSlots - 1 - i) * slotBytes);
  const reads = new BlockReads(srcs, name, rows, cols, blockRows, size, (byteLength) => {
    const at = free.pop();
    if (at === undefined) throw new DorascopeError('E_INTERNAL', `streaming ${name}: more blocks held than the ${nSlots} slots allow`);
    return { bytes: new Uint8Array(mem, at, byteLength), release: () => free.push(at) };
  }, blocking);
  let w0: Read | undefined;
  let f32: ArrayBuffer[] = []; // two float32 blocks, for the unchanged check of a checkpoint stored in another dtype than W0
  try {
    for (let r = await reads.next(); r !== undefined; r = await reads.next()) {
      const r0 = r.block * blockRows, nr = Math.min(blockRows, rows - r0);
      if (r.src === 0) {
        w0?.release();
        w0 = r;
        squaresOnKernel(ks[0]!, r.bytes.byteOffset, nr, cols, axis, acc.squares0, r0, out);
        continue;
      }
      const c = r.src - 1;
      if (acc.same[c]) {
        if (dtypes[r.src] === dtypes[0]) acc.same[c] = sameBytes(w0!.bytes, r.bytes); // one code per value: equal codes ⇔ equal float32 bits
        else {
          if (f32.length === 0) f32 = [pool.take(4 * nr * cols), pool.take(4 * nr * cols)];
          const a = new Float32Array(f32[0]!, 0, nr * cols), b = new Float32Array(f32[1]!, 0, nr * cols);
          decodeInto(dtypes[0]!, w0!.bytes, a); decodeInto(dtypes[r.src]!, r.bytes, b);
          acc.same[c] = sameBits(a, b);
        }
      }
      acc.sums[c]!.diff2 += dotOnKernel(ks[r.src]!, w0!.bytes.byteOffset, r.bytes.byteOffset, nr, cols, axis, acc.sums[c]!, r0, out);
      r.release();
    }
  } finally {
    await reads.settle();
    for (const b of f32) pool.give(b);
  }
}

/** The block loop in JavaScript (F64, hosts without WebAssembly SIMD, `kernel: 'js'`): decode each block to float32, then decompose.ts's loops. */
async function reduceInJs(srcs: readonly TensorSource[], dtypes: readonly DType[], name: string, rows: number, cols: number, axis: FeatureAxis,
  blockRows: number, acc: Accumulated, pool: BufferPool, blocking: boolean): Promise<void> {
  const size = dtypes.map((d) => DTYPES[d].size);
  const reads = new BlockReads(srcs, name, rows, cols, blockRows, size, (byteLength) => {
    const buf = pool.take(byteLength);
    return { bytes: new Uint8Array(buf, 0, byteLength), release: () => pool.give(buf) };
  }, blocking);
  const f32 = blockRows * cols * 4;
  const w0Buf = pool.take(f32), wtBuf = pool.take(f32);
  const w0 = new Float32Array(w0Buf, 0, blockRows * cols), wt = new Float32Array(wtBuf, 0, blockRows * cols);
  try {
    for (let r = await reads.next(); r !== undefined; r = await reads.next()) {
      const r0 = r.block * blockRows, nr = Math.min(blockRows, rows - r0), n = nr * cols;
      const dtype = dtypes[r.src]!;
      if (r.src === 0) {
        decodeInto(dtype, r.bytes, w0);
        accumulateSquares(acc.squares0, w0, r0, nr, cols, axis);
      } else {
        const c = r.src - 1;
        // An F32 block is used where it was read (pooled buffers start aligned); the others decode into `wt`.
        const w = dtype === 'F32' ? new Float32Array(r.bytes.buffer, 0, n) : (decodeInto(dtype, r.bytes, wt), wt);
        if (acc.same[c]) acc.same[c] = sameBits(w0.subarray(0, n), w.subarray(0, n));
        accumulateBlock(acc.sums[c]!, w0, w, r0, nr, cols, axis);
      }
      r.release();
    }
  } finally {
    await reads.settle();
    pool.give(w0Buf); pool.give(wtBuf);
  }
}

/** W0's per-feature squares of one block at byte `p`; `out` is scratch in the kernel's memory. */
function squaresOnKernel(k: FeatureSumsKernel, p: number, nr: number, cols: number, axis: FeatureAxis, squares: Float64Array, r0: number, out: number): void {
  const mem = k.memory.buffer;
  if (axis === 'rows') {
    k.rowSq(p, nr, cols, out);
    squares.set(new Float64Array(mem, out, nr), r0);
  } else {
    // Per-column sums carried across blocks through the kernel's memory: each column's terms are added in row order.
    const a = new Float64Array(mem, out, cols);
    a.set(squares);
    k.colSq(p, nr, cols, out);
    squares.set(a);
  }
}

/** One checkpoint block at byte `pt` against W0's at `p0` into `s`; returns the block's Σ (wt − w0)². */
function dotOnKernel(k: FeatureSumsKernel, p0: number, pt: number, nr: number, cols: number, axis: FeatureAxis, s: BlockSums, r0: number, out: number): number {
  const mem = k.memory.buffer;
  if (axis === 'rows') {
    const diff2 = k.rowDot(p0, pt, nr, cols, out);
    const o = new Float64Array(mem, out, 2 * nr);
    for (let i = 0; i < nr; i++) { s.dot[r0 + i] = o[2 * i]!; s.sst[r0 + i] = o[2 * i + 1]!; }
    return diff2;
  }
  const dot = new Float64Array(mem, out, cols), sst = new Float64Array(mem, out + 8 * cols, cols);
  dot.set(s.dot); sst.set(s.sst);
  const diff2 = k.colDot(p0, pt, nr, cols, out, out + 8 * cols);
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

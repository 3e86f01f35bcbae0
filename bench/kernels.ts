/**
 * `npm run bench:kernels [-- --ms 400]`: the per-element cost of the full-checkpoint analysis's inner loop, per
 * storage dtype and feature axis, on one core (process.cpuUsage, user + system of this process, which runs one
 * thread): the fused WebAssembly SIMD kernels (compute/feature-sums.ts) against the JavaScript fallback (decodeInto
 * then the block loop of analysis/decompose.ts). Each measures what the streaming task does per checkpoint block
 * once W0's block is in place: bring W_t's raw block in (copy into the kernel's memory / decode to float32), then the
 * per-feature sums Σ w0·wt, Σ wt² and Σ (wt − w0)². Blocks of 2²⁰ elements as in stream-task.ts: 1024 × 1024
 * (features along rows) and 1024 × 1024 read as Conv1D (features along columns); ns per element pair.
 */
import { cpus, loadavg } from 'node:os';
import { accumulateBlock, newBlockSums, type FeatureAxis } from '../src/analysis/decompose.js';
import { featureSumsKernel } from '../src/compute/feature-sums.js';
import { KERNEL_DTYPES, type KernelDType } from '../src/compute/wasm-decode.js';
import { DTYPES, decodeInto } from '../src/io/dtypes.js';
import { encodeFloat32 } from '../src/io/safetensors/writer.js';
import { mulberry32 } from '../src/random.js';

const msArg = process.argv.indexOf('--ms');
const MS = msArg > 0 ? Number(process.argv[msArg + 1]) : 400;
const ROWS = 1024, COLS = 1024, N = ROWS * COLS;

/** Random weights of trained-weight magnitude stored as `dtype` (float8 codes drawn directly: finite, moderate). */
function block(dtype: KernelDType, seed: number): Uint8Array {
  const next = mulberry32(seed);
  if (dtype === 'F8_E4M3' || dtype === 'F8_E5M2') {
    // Exponent fields well inside the range (no NaN/inf), random sign and mantissa.
    const [mBits, lo, span] = dtype === 'F8_E4M3' ? [3, 2, 6] : [2, 8, 8];
    return Uint8Array.from({ length: N }, () => ((next() < 0.5 ? 0x80 : 0) | ((lo + Math.floor(next() * span)) << mBits) | Math.floor(next() * (1 << mBits))));
  }
  return encodeFloat32(dtype, Float32Array.from({ length: N }, () => 0.05 * (next() * 2 - 1)));
}

/** CPU ns per call of `fn`, repeated for about MS milliseconds after a warm-up. */
function cpuNs(fn: () => void): number {
  for (let i = 0; i < 3; i++) fn();
  const t0 = process.cpuUsage(), w0 = performance.now();
  let calls = 0;
  while (performance.now() - w0 < MS) { fn(); calls++; }
  const t = process.cpuUsage(t0);
  return ((t.user + t.system) * 1000) / calls;
}

function simd(dtype: KernelDType, raw0: Uint8Array, rawT: Uint8Array, axis: FeatureAxis): () => void {
  const k = featureSumsKernel(dtype, dtype);
  if (!k) throw new Error('no WebAssembly SIMD on this host');
  const pt = Math.ceil(raw0.byteLength / 16) * 16, out = pt + Math.ceil(rawT.byteLength / 16) * 16;
  k.reserve(out + 16 * Math.max(ROWS, COLS));
  new Uint8Array(k.memory.buffer, 0, raw0.byteLength).set(raw0);
  const s = newBlockSums(axis === 'rows' ? ROWS : COLS);
  return () => {
    const mem = k.memory.buffer;
    new Uint8Array(mem, pt, rawT.byteLength).set(rawT);
    if (axis === 'rows') {
      s.diff2 += k.rowDot(0, pt, ROWS, COLS, out);
      const o = new Float64Array(mem, out, 2 * ROWS);
      for (let i = 0; i < ROWS; i++) { s.dot[i] = o[2 * i]!; s.sst[i] = o[2 * i + 1]!; }
    } else {
      const dot = new Float64Array(mem, out, COLS), sst = new Float64Array(mem, out + 8 * COLS, COLS);
      dot.set(s.dot); sst.set(s.sst);
      s.diff2 += k.colDot(0, pt, ROWS, COLS, out, out + 8 * COLS);
      s.dot.set(dot); s.sst.set(sst);
    }
  };
}

function js(dtype: KernelDType, raw0: Uint8Array, rawT: Uint8Array, axis: FeatureAxis): () => void {
  const w0 = new Float32Array(N), wt = new Float32Array(N);
  decodeInto(dtype, raw0, w0);
  const s = newBlockSums(axis === 'rows' ? ROWS : COLS);
  return () => {
    // An F32 block is used where it was read, as stream-task.ts does; the others are decoded.
    const w = dtype === 'F32' ? new Float32Array(rawT.buffer, rawT.byteOffset, N) : (decodeInto(dtype, rawT, wt), wt);
    accumulateBlock(s, w0, w, 0, ROWS, COLS, axis);
  };
}

console.log(`machine: ${cpus()[0]?.model} × ${cpus().length}, Node ${process.version}, ${new Date().toISOString().slice(0, 16)}Z, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
console.log(`ns per element pair (CPU time, one thread), blocks of ${ROWS} × ${COLS}`);
console.log('dtype     bytes  rows: SIMD   JS   JS÷SIMD   cols: SIMD   JS   JS÷SIMD');
for (const dtype of KERNEL_DTYPES) {
  const raw0 = block(dtype, 1), rawT = block(dtype, 2);
  const cells: string[] = [];
  for (const axis of ['rows', 'cols'] as const) {
    const a = cpuNs(simd(dtype, raw0, rawT, axis)) / N, b = cpuNs(js(dtype, raw0, rawT, axis)) / N;
    cells.push(`${a.toFixed(2).padStart(10)} ${b.toFixed(2).padStart(5)} ${(b / a).toFixed(1).padStart(8)}`);
  }
  console.log(`${dtype.padEnd(9)} ${String(DTYPES[dtype].size).padStart(5)} ${cells.join('  ')}`);
}
console.log(`load average after: ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);

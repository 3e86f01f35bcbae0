/**
 * `npm run bench:analyze [-- --large] [-- --dtype F16]`: the analysis benchmark (results in docs/benchmarks.md). Generates, under
 * the OS temp folder (deleted afterwards), synthetic Llama-shaped series and prints, each measured within one run:
 *   1. full checkpoints (BF16, or `--dtype`, base and four full checkpoints; default 4 layers of hidden 1024, MLP 2752, 0.1 GB a
 *      file; `--large`: 8 layers of 2048/5504, 0.8 GB a file), all from the page cache:
 *      `dorascope analyze` as users run it (a fresh process: Node's start-up, loading, the tables; the median of
 *      three runs alternating with the read below) and `analyze()` in a process that has loaded it, against
 *      (a) a plain Node read of the same bytes with positional
 *      reads into ONE reused buffer (the I/O limit in Node; goal ≤ 1.5×) and (b) a C program of the same math
 *      (bench/analyze-ref.c: mmap, BF16 decode, float64 row sums, OpenMP on every core), built now with
 *      `cc -O3 -fopenmp` (skipped, with the reason, without a compiler; goal ≤ 2.5×); the C program's ΔM/ΔD sums
 *      are checked against dorascope's;
 *   2. the same cold: each file evicted from the page cache (posix_fadvise DONTNEED, by the C program) before
 *      dorascope and before `cat` of the same files;
 *   3. a DoRA adapter series (r = 16 on q/v; default 8 layers of 2048, `--large` 32 layers of 4096; ten
 *      checkpoints): time per checkpoint against the bare matrix products W0·Aᵀ of the same shapes on the same
 *      tfjs backend (goal ≤ 1.5×), and the fast path's deviation from the float64 product on one module;
 *   4. peak RSS of each series, and of the full series with the model doubled (goal < 1 GB, flat).
 * `--generate full|adapters DIR` only writes a series into DIR and keeps it. Each measurement runs in a child
 * process so that its peak RSS and CPU time are its own.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSafetensorsStreaming } from '../src/io/safetensors/writer.js';
import { openSafetensors } from '../src/io/safetensors/reader.js';
import { headerLengthFrom, parseHeader } from '../src/io/safetensors/header.js';
import { encodeFloat32 } from '../src/io/safetensors/writer.js';
import { analyze } from '../src/analysis/analyze.js';
import { DTYPES } from '../src/io/dtypes.js';
import { jsProduct, matmulNoTranspose, tfjsProduct } from '../src/compute/base-times-a.js';
import { adapterDecompose } from '../src/analysis/exact-adapter-series.js';
import { tf, useWasm } from '../src/compute/backend.js';
import { mulberry32 } from '../src/random.js';

const large = process.argv.includes('--large');
type BenchDType = 'BF16' | 'F16' | 'F32' | 'F8_E4M3' | 'F8_E5M2';
const dtypeAt = process.argv.indexOf('--dtype');
/** `--dtype`: the storage dtype of the full series (default BF16; the C reference reads BF16 only). */
const DTYPE = (dtypeAt > 0 ? process.argv[dtypeAt + 1] : 'BF16') as BenchDType;
if (!['BF16', 'F16', 'F32', 'F8_E4M3', 'F8_E5M2'].includes(DTYPE)) throw new Error(`--dtype ${DTYPE}: one of BF16, F16, F32, F8_E4M3, F8_E5M2`);
const FULL = large ? { hidden: 2048, mlp: 5504, layers: 8, checkpoints: 4 } : { hidden: 1024, mlp: 2752, layers: 4, checkpoints: 4 };
const ADAPTER = large ? { hidden: 4096, layers: 32, r: 16, checkpoints: 10 } : { hidden: 2048, layers: 8, r: 16, checkpoints: 10 };

// ---- generation ------------------------------------------------------------------------------
function fullShapes(layers: number): [string, number[]][] {
  const { hidden: H, mlp: F } = FULL;
  const out: [string, number[]][] = [];
  for (let l = 0; l < layers; l++) {
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) out.push([`model.layers.${l}.self_attn.${m}.weight`, [H, H]]);
    out.push([`model.layers.${l}.mlp.gate_proj.weight`, [F, H]], [`model.layers.${l}.mlp.up_proj.weight`, [F, H]], [`model.layers.${l}.mlp.down_proj.weight`, [H, F]]);
  }
  return out;
}

/**
 * Random weights stored as `dtype`, of moderate magnitude like trained weights: the exponent drawn from four values
 * starting at `lo` (BF16 and F32: |x| ≈ 0.004–0.06; F16 and E5M2 alike; E4M3 0.002–0.12, its subnormals included),
 * random sign and mantissa, one xorshift draw per element.
 */
const CODES: Record<BenchDType, { mBits: number; lo: number; out: (n: number) => Uint8Array | Uint16Array | Uint32Array }> = {
  BF16: { mBits: 7, lo: 119, out: (n) => new Uint16Array(n) },
  F16: { mBits: 10, lo: 7, out: (n) => new Uint16Array(n) },
  F32: { mBits: 23, lo: 119, out: (n) => new Uint32Array(n) },
  F8_E4M3: { mBits: 3, lo: 0, out: (n) => new Uint8Array(n) },
  F8_E5M2: { mBits: 2, lo: 7, out: (n) => new Uint8Array(n) },
};

function randomCodes(n: number, seed: number, dtype: BenchDType): Uint8Array | Uint16Array | Uint32Array {
  const { mBits, lo, out: alloc } = CODES[dtype];
  const out = alloc(n), bits = 8 * DTYPES[dtype].size, mant = (1 << mBits) - 1;
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = ((x >>> 31) * 2 ** (bits - 1) + ((lo + ((x >>> 29) & 3)) << mBits)) + (x & mant);
  }
  return out;
}

async function writeRandomModel(path: string, shapes: [string, number[]][], seed: number, dtype = DTYPE): Promise<void> {
  const specs = shapes.map(([name, shape]) => ({ name, dtype, shape }));
  const index = new Map(specs.map((s, i) => [s.name, i]));
  await writeSafetensorsStreaming(path, specs, (name) => {
    const s = specs[index.get(name)!]!;
    return randomCodes(s.shape[0]! * s.shape[1]!, seed * 100_003 + index.get(name)!, dtype);
  });
}

async function generateFull(dir: string, layers: number): Promise<void> {
  const shapes = fullShapes(layers);
  await writeRandomModel(join(dir, 'base.safetensors'), shapes, 1);
  for (let c = 1; c <= FULL.checkpoints; c++) await writeRandomModel(join(dir, `ck${c}.safetensors`), shapes, 1 + c);
}

async function generateAdapters(dir: string): Promise<void> {
  const { hidden: H, layers, r, checkpoints } = ADAPTER;
  const shapes: [string, number[]][] = [];
  for (let l = 0; l < layers; l++) for (const m of ['q_proj', 'v_proj']) shapes.push([`model.layers.${l}.self_attn.${m}.weight`, [H, H]]);
  await writeRandomModel(join(dir, 'base.safetensors'), shapes, 1, 'BF16');
  const rand = mulberry32(7);
  const uni = (n: number, b: number) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * b);
  for (let c = 1; c <= checkpoints; c++) {
    const ck = join(dir, 'run', `checkpoint-${c * 100}`);
    mkdirSync(ck, { recursive: true });
    const tensors: { name: string; dtype: 'F32'; shape: number[]; data: Uint8Array }[] = [];
    for (const [name] of shapes) {
      const mod = `base_model.model.${name.replace(/\.weight$/u, '')}`;
      tensors.push({ name: `${mod}.lora_A.weight`, dtype: 'F32', shape: [r, H], data: encodeFloat32('F32', uni(r * H, 1 / Math.sqrt(H))) });
      tensors.push({ name: `${mod}.lora_B.weight`, dtype: 'F32', shape: [H, r], data: encodeFloat32('F32', uni(H * r, 0.002 * c)) });
      tensors.push({ name: `${mod}.lora_magnitude_vector`, dtype: 'F32', shape: [H], data: encodeFloat32('F32', uni(H, 0.1).map((v) => 1.6 + v)) });
    }
    const { writeSafetensors } = await import('../src/io/safetensors/writer.js');
    await writeSafetensors(join(ck, 'adapter_model.safetensors'), tensors, { format: 'pt' });
    writeFileSync(join(ck, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 2 * r, use_dora: true, use_rslora: false, target_modules: ['q_proj', 'v_proj'] }));
    writeFileSync(join(ck, 'trainer_state.json'), JSON.stringify({ global_step: c * 100 }));
  }
}

// ---- measurements (child processes) ------------------------------------------------------------
const rssMB = () => process.resourceUsage().maxRSS / 1024;
/** CPU seconds of the whole process (all threads) since `from`: far less sensitive than wall time to other load on the machine. */
const cpuSince = (from: NodeJS.CpuUsage) => { const u = process.cpuUsage(from); return (u.user + u.system) / 1e6; };

const seriesFiles = (dir: string) => ['base.safetensors', ...readdirSync(dir).filter((f) => f.startsWith('ck')).sort()].map((f) => join(dir, f));

/** dorascope as the CLI runs it (default workers, tables written), from a child so that its CPU time and RSS are its own. */
async function childFull(dir: string): Promise<void> {
  const [base, ...cks] = seriesFiles(dir);
  const out = mkdtempSync(join(tmpdir(), 'dorascope-bench-out-'));
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const res = await analyze({ base: base!, runs: cks.map((f) => ({ path: f })), out, quiet: true });
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(c0);
  rmSync(out, { recursive: true, force: true });
  const sumDM = res.rows.reduce((a, r) => a + r.delta_m, 0), sumDD = res.rows.reduce((a, r) => a + r.delta_d, 0);
  process.stdout.write(JSON.stringify({ wall, user: cpu.user / 1e6, sys: cpu.system / 1e6, rss: rssMB(), sumDM, sumDD }));
}

/** The I/O limit in Node: every byte of every file, positional reads of 8 MiB into one reused buffer. */
function childRead(dir: string): void {
  const buf = Buffer.allocUnsafe(8 << 20);
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  let bytes = 0;
  for (const f of seriesFiles(dir)) {
    const fd = openSync(f, 'r');
    for (let pos = 0, n: number; (n = readSync(fd, buf, 0, buf.length, pos)) > 0; pos += n) bytes += n;
    closeSync(fd);
  }
  const cpu = process.cpuUsage(c0);
  process.stdout.write(JSON.stringify({ wall: (performance.now() - t0) / 1000, user: cpu.user / 1e6, sys: cpu.system / 1e6, bytes }));
}

/** CPU seconds of waited-for children (utime + stime of /proc/self/stat's cutime and cstime), to time the C program and cat. */
function childrenCpu(): number {
  try {
    const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[13]) + Number(f[14])) / 100; // fields 16 and 17 of proc(5), in clock ticks (USER_HZ = 100)
  } catch { return NaN; }
}

/** Builds bench/analyze-ref.c; undefined with the reason when it cannot. */
function buildRef(dir: string): { bin?: string; why?: string } {
  const src = join(process.cwd(), 'bench', 'analyze-ref.c');
  if (!existsSync(src)) return { why: `${src} not found (run from the repository root)` };
  const bin = join(dir, 'analyze-ref');
  let cc = spawnSync('cc', ['-O3', '-march=native', '-fopenmp', '-o', bin, src, '-lm'], { encoding: 'utf8' });
  if (!cc.error && cc.status !== 0) cc = spawnSync('cc', ['-O3', '-fopenmp', '-o', bin, src, '-lm'], { encoding: 'utf8' }); // compilers without -march=native
  if (cc.error) return { why: `no C compiler (cc: ${cc.error.message})` };
  if (cc.status !== 0) return { why: `cc -O3 -fopenmp failed: ${cc.stderr.trim().split('\n').slice(-2).join(' ')}` };
  return { bin };
}

/** "base_offset ck_offset rows cols" per tensor, from the headers (the generated checkpoints share the base's layout). */
function refTensors(base: string, ck: string): string {
  const entries = (path: string) => {
    const fd = openSync(path, 'r');
    const size = statSync(path).size;
    const prefix = Buffer.alloc(8);
    readSync(fd, prefix, 0, 8, 0);
    const n = headerLengthFrom(prefix, size, path);
    const h = Buffer.alloc(n);
    readSync(fd, h, 0, n, 8);
    closeSync(fd);
    return new Map(parseHeader(h, size, path).entries.map((e) => [e.name, { ...e, at: 8 + n + e.begin }]));
  };
  const b = entries(base), c = entries(ck);
  return `${[...b.values()].map((e) => `${e.at} ${c.get(e.name)!.at} ${e.shape[0]} ${e.shape[1]}`).join('\n')}\n`;
}

type Timed = { wall: number; user: number; sys: number };

/** `dorascope analyze` as users run it, a fresh process with the default options; CPU of the process and its threads. */
function cliFull(dir: string): Timed {
  const [base, ...cks] = seriesFiles(dir);
  const out = mkdtempSync(join(tmpdir(), 'dorascope-bench-cli-'));
  const c0 = childrenCpu(), t0 = performance.now();
  const r = spawnSync(process.execPath, [join(process.cwd(), 'bin', 'dorascope.js'), 'analyze', '--base', base!, ...cks, '--out', join(out, 'analysis'), '--quiet'], { encoding: 'utf8' });
  const wall = (performance.now() - t0) / 1000;
  rmSync(out, { recursive: true, force: true });
  if (r.status !== 0) throw new Error(`dorascope analyze failed:\n${r.stderr}`);
  return { wall, user: childrenCpu() - c0, sys: 0 };
}

/** The run of median wall time. */
const median = <T extends { wall: number }>(xs: T[]): T => [...xs].sort((a, b) => a.wall - b.wall)[Math.floor(xs.length / 2)]!;
type FullResult = Timed & { rss: number; sumDM: number; sumDD: number };

/** Every measurement of one full series, warm then cold. */
function measureFull(dir: string, withBaselines: boolean) {
  const files = seriesFiles(dir);
  const bytes = files.reduce((a, f) => a + statSync(f).size, 0);
  if (!withBaselines) return { bytes, ours: inChild<FullResult>('full', dir) };
  inChild<Timed>('read', dir); // warms the page cache
  // Three of each, alternating, so that a change of load on the machine falls on both.
  const reads: Timed[] = [], clis: Timed[] = [];
  for (let i = 0; i < 3; i++) { reads.push(inChild<Timed>('read', dir)); clis.push(cliFull(dir)); }
  const read = median(reads), cli = median(clis);
  const ours = inChild<FullResult>('full', dir);
  const ref = buildRef(dir);
  let c: (Timed & { sumDM: number; sumDD: number }) | { why: string };
  if (ref.bin && DTYPE === 'BF16') {
    const input = refTensors(files[0]!, files[1]!);
    const c0 = childrenCpu(), t0 = performance.now();
    // Passive waits: OpenMP's default spinning at the barriers inflates the CPU figure, and on a loaded machine the wall time too.
    const r = spawnSync(ref.bin, [files[0]!, String(files.length - 1), ...files.slice(1)], { input, encoding: 'utf8', env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' } });
    const wall = (performance.now() - t0) / 1000;
    if (r.status !== 0) throw new Error(`analyze-ref failed: ${r.stderr}`);
    const m = /sumDM (\S+) sumDD (\S+)/u.exec(r.stdout)!;
    c = { wall, user: childrenCpu() - c0, sys: 0, sumDM: Number(m[1]), sumDD: Number(m[2]) };
  } else c = { why: ref.why ?? `it reads BF16 only (this series is ${DTYPE})` };
  // Cold: evict, then cat; evict, then dorascope.
  let cold: { cat: number; ours: Timed } | { why: string } = { why: 'needs the C program (it evicts the files)' };
  if (ref.bin) {
    const drop = () => spawnSync(ref.bin!, ['--drop', ...files]);
    drop();
    const t0 = performance.now();
    spawnSync('cat', files, { stdio: ['ignore', 'ignore', 'inherit'] });
    const cat = (performance.now() - t0) / 1000;
    drop();
    cold = { cat, ours: cliFull(dir) };
  }
  return { bytes, read, cli, ours, c, cold };
}

async function childAdapters(dir: string): Promise<void> {
  const { hidden: H, layers, r, checkpoints } = ADAPTER;
  const run = { path: join(dir, 'run'), label: 'dora' };
  const base = join(dir, 'base.safetensors');
  let t0 = performance.now();
  await analyze({ base, runs: [run], write: false, quiet: true, product: 'tfjs' });
  const ours = (performance.now() - t0) / 1000;
  const rss = rssMB();
  t0 = performance.now();
  let c0 = process.cpuUsage();
  await analyze({ base, runs: [run], write: false, quiet: true, product: 'tfjs', workers: 0 });
  const one = (performance.now() - t0) / 1000;
  const oneCpu = cpuSince(c0);
  // The bare products of the same shapes on the same backend: (H×H)·(H×R) per module, R = r·checkpoints.
  await useWasm();
  const R = r * checkpoints;
  const a = new Float32Array(H * H).map((_, i) => ((i * 7919) % 1000) / 1e5);
  const b = new Float32Array(H * R).map((_, i) => ((i * 104729) % 1000) / 1e5);
  matmulNoTranspose(tf(), a, b, H, H, R); // warm-up
  t0 = performance.now();
  c0 = process.cpuUsage();
  for (let m = 0; m < 2 * layers; m++) matmulNoTranspose(tf(), a, b, H, H, R);
  const bare = (performance.now() - t0) / 1000;
  const bareCpu = cpuSince(c0);
  // Precision: the tfjs (float32) product against the float64 loop, on one module.
  const mod = { base, runs: [run], write: false, quiet: true, modules: ['q_proj'], layers: [0] } as const;
  const f32 = await analyze({ ...mod, product: 'tfjs' });
  const f64 = await analyze({ ...mod, product: 'js' });
  let dev = 0;
  f32.rows.forEach((x, i) => {
    const y = f64.rows[i]!;
    dev = Math.max(dev, Math.abs(x.delta_m - y.delta_m) / Math.abs(y.delta_m), Math.abs(x.delta_d - y.delta_d) / Math.abs(y.delta_d));
  });
  // The same for these factors read as plain LoRA (no magnitude): LoRA's ΔM depends on W0·Aᵀ directly, DoRA's does not.
  const baseFile = await openSafetensors(base);
  const w0 = await baseFile.readFloat32('model.layers.0.self_attn.q_proj.weight');
  await baseFile.close();
  const ww = new Float64Array(H);
  for (let n = 0; n < H; n++) { let acc = 0; for (let j = 0; j < H; j++) acc += w0[n * H + j]! ** 2; ww[n] = acc; }
  const ad = await openSafetensors(join(dir, 'run', 'checkpoint-100', 'adapter_model.safetensors'));
  const pre = 'base_model.model.model.layers.0.self_attn.q_proj';
  const lora = { r, A: await ad.readFloat32(`${pre}.lora_A.weight`), B: await ad.readFloat32(`${pre}.lora_B.weight`), scaling: 2 };
  await ad.close();
  const l32 = adapterDecompose(lora, H, ww, await tfjsProduct(w0, lora.A, H, H, r, true), r, 0);
  const l64 = adapterDecompose(lora, H, ww, await jsProduct(w0, lora.A, H, H, r, true), r, 0);
  const devLora = Math.max(Math.abs(l32.deltaM - l64.deltaM) / l64.deltaM, Math.abs(l32.deltaD - l64.deltaD) / l64.deltaD);
  process.stdout.write(JSON.stringify({ ours, one, bare, oneCpu, bareCpu, rss, dev, devLora, gflops: (2 * H * H * R * 2 * layers) / bare / 1e9 }));
}

function inChild<T>(mode: string, dir: string): T {
  const res = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', mode, dir, ...(large ? ['--large'] : [])], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (res.status !== 0) throw new Error(`${mode} child failed:\n${res.stderr}`);
  return JSON.parse(res.stdout) as T;
}

function withTempDir<T>(needBytes: number, what: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const fs = statfsSync(tmpdir());
  const free = fs.bavail * fs.bsize;
  if (free < needBytes * 1.1) throw new Error(`${what} needs ${(needBytes / 1e9).toFixed(1)} GB under ${tmpdir()}, only ${(free / 1e9).toFixed(1)} GB free`);
  const dir = mkdtempSync(join(tmpdir(), 'dorascope-bench-'));
  process.stderr.write(`${what}: generating ${(needBytes / 1e9).toFixed(2)} GB in ${dir}\n`);
  return fn(dir).finally(() => rmSync(dir, { recursive: true, force: true }));
}

async function main(): Promise<void> {
  if (process.argv[2] === '--child') {
    const mode = process.argv[3], dir = process.argv[4]!;
    return mode === 'full' ? childFull(dir) : mode === 'read' ? childRead(dir) : childAdapters(dir);
  }
  if (process.argv[2] === '--generate') {
    // `--generate full|adapters DIR`: write one series and keep it (for profiling by hand).
    mkdirSync(process.argv[4]!, { recursive: true });
    return process.argv[3] === 'full' ? generateFull(process.argv[4]!, FULL.layers) : generateAdapters(process.argv[4]!);
  }
  const fullBytes = (layers: number) => (FULL.checkpoints + 1) * layers * DTYPES[DTYPE].size * (4 * FULL.hidden ** 2 + 3 * FULL.hidden * FULL.mlp);
  const full: ReturnType<typeof measureFull>[] = [];
  for (const layers of [FULL.layers, 2 * FULL.layers]) {
    full.push(await withTempDir(fullBytes(layers), `full series, ${layers} layers × ${FULL.checkpoints} checkpoints + base`, async (dir) => {
      await generateFull(dir, layers);
      return measureFull(dir, layers === FULL.layers); // at twice the size only dorascope's peak RSS
    }));
  }
  const { hidden: H, layers: AL, r, checkpoints: AC } = ADAPTER;
  const adapterBytes = 2 * AL * H * H * 2 + AC * 2 * AL * (2 * r * H + H) * 4;
  type Ad = { ours: number; one: number; bare: number; oneCpu: number; bareCpu: number; devLora: number; rss: number; dev: number; gflops: number };
  const ad = await withTempDir(adapterBytes, `DoRA adapter series, r ${r} on q/v of ${AL} layers of ${H}, ${AC} checkpoints`, async (dir) => {
    await generateAdapters(dir);
    return inChild<Ad>('adapters', dir);
  });

  console.log(`machine: ${cpus()[0]?.model} × ${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 16)}Z${large ? ' (--large)' : ''}`);
  const f = full[0]!;
  const gb = f.bytes / 1e9;
  const t = (x: Timed) => `${x.wall.toFixed(2)} s wall, ${x.user.toFixed(2)} s user + ${x.sys.toFixed(2)} s system`;
  console.log(`1. full series: base + ${FULL.checkpoints} checkpoints, ${FULL.layers} layers (hidden ${FULL.hidden}, MLP ${FULL.mlp}), ${DTYPE}, ${gb.toFixed(2)} GB, page cache warm`);
  if (f.read) {
    const ours = f.cli!, cpu = (x: Timed) => x.user + x.sys;
    console.log(`   dorascope analyze (the CLI, a fresh process; median of 3): ${ours.wall.toFixed(2)} s wall, ${cpu(ours).toFixed(2)} s CPU (${(gb / ours.wall).toFixed(2)} GB/s)`);
    console.log(`   analyze() in a process that has loaded it: ${t(f.ours)}; peak RSS ${f.ours.rss.toFixed(0)} MB`);
    console.log(`   (a) Node, positional reads into one reused buffer (median of 3): ${t(f.read)} (${(gb / f.read.wall).toFixed(2)} GB/s); dorascope ÷ this: ${(ours.wall / f.read.wall).toFixed(2)} by wall (goal ≤ 1.5), ${(cpu(ours) / cpu(f.read)).toFixed(2)} by CPU`);
    if ('why' in f.c!) console.log(`   (b) C reference skipped: ${f.c.why}`);
    else {
      const dev = Math.max(Math.abs(f.c.sumDM - f.ours.sumDM) / Math.abs(f.ours.sumDM), Math.abs(f.c.sumDD - f.ours.sumDD) / Math.abs(f.ours.sumDD));
      console.log(`   (b) C reference (mmap, float64 sums, OpenMP on ${cpus().length} threads): ${f.c.wall.toFixed(2)} s wall, ${f.c.user.toFixed(2)} s CPU (${(gb / f.c.wall).toFixed(2)} GB/s); ` +
        `dorascope ÷ this: ${(ours.wall / f.c.wall).toFixed(2)} by wall (goal ≤ 2.5), ${(cpu(ours) / f.c.user).toFixed(2)} by CPU; ΣΔM, ΣΔD agree to ${dev.toExponential(1)} relative`);
    }
    if ('why' in f.cold!) console.log(`2. cold cache skipped: ${f.cold.why}`);
    else console.log(`2. cold cache (files evicted first): dorascope ${f.cold.ours.wall.toFixed(2)} s (${(gb / f.cold.ours.wall).toFixed(2)} GB/s), cat of the same files ${f.cold.cat.toFixed(2)} s (${(gb / f.cold.cat).toFixed(2)} GB/s), ratio ${(f.cold.ours.wall / f.cold.cat).toFixed(2)}`);
  }
  console.log(`3. DoRA adapter series (r ${r}, q/v of ${AL} layers of ${H}, ${AC} checkpoints): ${(ad.ours / AC).toFixed(2)} s per checkpoint, ` +
    `bare products (one thread) ${(ad.bare / AC).toFixed(2)} s per checkpoint (${ad.gflops.toFixed(1)} GFLOP/s), ratio ${(ad.ours / ad.bare).toFixed(2)} (goal ≤ 1.5); ` +
    `on the main thread only ${(ad.one / AC).toFixed(2)} s per checkpoint, ratio ${(ad.one / ad.bare).toFixed(2)} (by CPU time ${(ad.oneCpu / ad.bareCpu).toFixed(2)}); ` +
    `tfjs vs float64 product on one module: ${ad.dev.toExponential(1)} relative (DoRA), ${ad.devLora.toExponential(1)} (the same factors as LoRA); peak RSS ${ad.rss.toFixed(0)} MB`);
  console.log(`4. peak RSS: full ${full[0]!.ours.rss.toFixed(0)} MB, full at twice the model ${full[1]!.ours.rss.toFixed(0)} MB (×${(full[1]!.ours.rss / full[0]!.ours.rss).toFixed(2)}), adapters ${ad.rss.toFixed(0)} MB (goal < 1024 MB, flat)`);
}

await main();

/**
 * `npm run bench:analyze [-- --small]`: the analysis benchmark (results in docs/benchmarks.md). Generates, under the OS temp folder
 * (deleted afterwards), synthetic Llama-shaped series and prints, each measured within one run:
 *   1. full checkpoints (BF16 base of 8 layers, hidden 2048, MLP 5504, four full checkpoints, ~4 GB):
 *      analysis GB/s of checkpoint bytes and its ratio to a plain read-and-decode pass over the same
 *      files (goal ≥ 0.7);
 *   2. a DoRA adapter series (r = 16 on q/v of 32 layers of hidden 4096, ten checkpoints): time per
 *      checkpoint and its ratio to the bare matrix products W0·Aᵀ of the same shapes on the same
 *      tfjs backend (goal ≤ 2×), and the fast path's deviation from the float64 product on one module;
 *   3. peak RSS of each series, and of the full series with the model doubled (goal < 1 GB, flat).
 * `--small` shrinks every series (hidden 1024/2752, 4 layers; adapters on 8 layers of 2048) for a
 * quick run; `--generate full|adapters DIR` only writes a series into DIR and keeps it. Each measurement runs in a child process so its peak RSS is its own.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSafetensorsStreaming } from '../src/io/safetensors/writer.js';
import { openSafetensors } from '../src/io/safetensors/reader.js';
import { encodeFloat32 } from '../src/io/safetensors/writer.js';
import { analyze } from '../src/analysis/analyze.js';
import { jsProduct, matmulNoTranspose, tfjsProduct } from '../src/compute/base-times-a.js';
import { adapterDecompose } from '../src/analysis/exact-adapter-series.js';
import { tf, useWasm } from '../src/compute/backend.js';
import { mulberry32 } from '../src/random.js';

const small = process.argv.includes('--small');
const FULL = small ? { hidden: 1024, mlp: 2752, layers: 4, checkpoints: 4 } : { hidden: 2048, mlp: 5504, layers: 8, checkpoints: 4 };
const ADAPTER = small ? { hidden: 2048, layers: 8, r: 16, checkpoints: 10 } : { hidden: 4096, layers: 32, r: 16, checkpoints: 10 };

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

/** Random BF16 values of moderate magnitude (exponent 119–122, |x| ≈ 0.004–0.06, like trained weights), two per 32-bit draw. */
function randomBf16(n: number, seed: number): Uint16Array {
  const out = new Uint16Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i += 2) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = (x & 0x8000) | ((119 + ((x >>> 7) & 3)) << 7) | (x & 0x7f);
    if (i + 1 < n) out[i + 1] = ((x >>> 16) & 0x8000) | ((119 + ((x >>> 23) & 3)) << 7) | ((x >>> 16) & 0x7f);
  }
  return out;
}

async function writeBf16Model(path: string, shapes: [string, number[]][], seed: number): Promise<void> {
  const specs = shapes.map(([name, shape]) => ({ name, dtype: 'BF16' as const, shape }));
  const index = new Map(specs.map((s, i) => [s.name, i]));
  await writeSafetensorsStreaming(path, specs, (name) => {
    const s = specs[index.get(name)!]!;
    return randomBf16(s.shape[0]! * s.shape[1]!, seed * 100_003 + index.get(name)!);
  });
}

async function generateFull(dir: string, layers: number): Promise<void> {
  const shapes = fullShapes(layers);
  await writeBf16Model(join(dir, 'base.safetensors'), shapes, 1);
  for (let c = 1; c <= FULL.checkpoints; c++) await writeBf16Model(join(dir, `ck${c}.safetensors`), shapes, 1 + c);
}

async function generateAdapters(dir: string): Promise<void> {
  const { hidden: H, layers, r, checkpoints } = ADAPTER;
  const shapes: [string, number[]][] = [];
  for (let l = 0; l < layers; l++) for (const m of ['q_proj', 'v_proj']) shapes.push([`model.layers.${l}.self_attn.${m}.weight`, [H, H]]);
  await writeBf16Model(join(dir, 'base.safetensors'), shapes, 1);
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

async function childFull(dir: string): Promise<void> {
  const cks = readdirSync(dir).filter((f) => f.startsWith('ck')).sort();
  const bytes = cks.reduce((a, f) => a + statSync(join(dir, f)).size, 0);
  // Plain read-and-decode of every checkpoint tensor (the limit of any analysis on this machine).
  let t0 = performance.now();
  let c0 = process.cpuUsage();
  for (const f of cks) {
    const s = await openSafetensors(join(dir, f));
    for (const t of s.tensors) await s.readFloat32(t.name);
    await s.close();
  }
  const raw = (performance.now() - t0) / 1000;
  const rawCpu = cpuSince(c0);
  const opts = { base: join(dir, 'base.safetensors'), runs: cks.map((f) => ({ path: join(dir, f) })), write: false, quiet: true } as const;
  t0 = performance.now();
  await analyze(opts); // default: two worker threads on a multi-core machine
  const ours = (performance.now() - t0) / 1000;
  const rss = rssMB();
  t0 = performance.now();
  c0 = process.cpuUsage();
  await analyze({ ...opts, workers: 0 });
  const one = (performance.now() - t0) / 1000;
  const oneCpu = cpuSince(c0);
  process.stdout.write(JSON.stringify({ bytes, raw, ours, one, rss, rawCpu, oneCpu }));
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
  const res = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', mode, dir, ...(small ? ['--small'] : [])], { encoding: 'utf8', maxBuffer: 1 << 20 });
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
    return process.argv[3] === 'full' ? childFull(process.argv[4]!) : childAdapters(process.argv[4]!);
  }
  if (process.argv[2] === '--generate') {
    // `--generate full|adapters DIR`: write one series and keep it (for profiling by hand).
    mkdirSync(process.argv[4]!, { recursive: true });
    return process.argv[3] === 'full' ? generateFull(process.argv[4]!, FULL.layers) : generateAdapters(process.argv[4]!);
  }
  const fullBytes = (layers: number) => (FULL.checkpoints + 1) * layers * 2 * (4 * FULL.hidden ** 2 + 3 * FULL.hidden * FULL.mlp);
  type Full = { bytes: number; raw: number; ours: number; one: number; rss: number; rawCpu: number; oneCpu: number };
  const full: Full[] = [];
  for (const layers of [FULL.layers, 2 * FULL.layers]) {
    full.push(await withTempDir(fullBytes(layers), `full series, ${layers} layers × ${FULL.checkpoints} checkpoints + base`, async (dir) => {
      await generateFull(dir, layers);
      return inChild<Full>('full', dir);
    }));
  }
  const { hidden: H, layers: AL, r, checkpoints: AC } = ADAPTER;
  const adapterBytes = 2 * AL * H * H * 2 + AC * 2 * AL * (2 * r * H + H) * 4;
  type Ad = { ours: number; one: number; bare: number; oneCpu: number; bareCpu: number; devLora: number; rss: number; dev: number; gflops: number };
  const ad = await withTempDir(adapterBytes, `DoRA adapter series, r ${r} on q/v of ${AL} layers of ${H}, ${AC} checkpoints`, async (dir) => {
    await generateAdapters(dir);
    return inChild<Ad>('adapters', dir);
  });

  console.log(`machine: ${cpus()[0]?.model} × ${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 16)}Z${small ? ' (--small)' : ''}`);
  for (const [i, f] of full.entries()) {
    const gb = f.bytes / 1e9;
    console.log(`1. full series, ${(i + 1) * FULL.layers} layers (hidden ${FULL.hidden}, MLP ${FULL.mlp}), ${gb.toFixed(2)} GB of checkpoints: analysis ${(gb / f.ours).toFixed(3)} GB/s, ` +
      `read+decode ${(gb / f.raw).toFixed(3)} GB/s, ratio ${(f.raw / f.ours).toFixed(2)} (goal ≥ 0.7); ` +
      `on the main thread only ${(gb / f.one).toFixed(3)} GB/s, ratio ${(f.raw / f.one).toFixed(2)} (by CPU time ${(f.rawCpu / f.oneCpu).toFixed(2)}); peak RSS ${f.rss.toFixed(0)} MB`);
  }
  console.log(`2. DoRA adapter series (r ${r}, q/v of ${AL} layers of ${H}, ${AC} checkpoints): ${(ad.ours / AC).toFixed(2)} s per checkpoint, ` +
    `bare products (one thread) ${(ad.bare / AC).toFixed(2)} s per checkpoint (${ad.gflops.toFixed(1)} GFLOP/s), ratio ${(ad.ours / ad.bare).toFixed(2)} (goal ≤ 2); ` +
    `on the main thread only ${(ad.one / AC).toFixed(2)} s per checkpoint, ratio ${(ad.one / ad.bare).toFixed(2)} (by CPU time ${(ad.oneCpu / ad.bareCpu).toFixed(2)}); ` +
    `tfjs vs float64 product on one module: ${ad.dev.toExponential(1)} relative (DoRA), ${ad.devLora.toExponential(1)} (the same factors as LoRA); peak RSS ${ad.rss.toFixed(0)} MB`);
  console.log(`3. peak RSS: full ${full[0]!.rss.toFixed(0)} MB, full at twice the model ${full[1]!.rss.toFixed(0)} MB (×${(full[1]!.rss / full[0]!.rss).toFixed(2)}), adapters ${ad.rss.toFixed(0)} MB (goal < 1024 MB, flat)`);
}

await main();

/**
 * `npm run bench:train [-- --backends wasm,cpu,webgpu --layers 6 --d-model 256 --steps 6 --profile --baseline]`
 *
 * For each backend (default wasm; one that fails to initialise is skipped with its reason), on the
 * same model and batch: step time and tokens/s of full fine-tuning, LoRA and DoRA (r = 8 on q, v),
 * the DoRA/LoRA step-time ratio (goal ≤ 1.10), the model-FLOPs utilisation against that backend's
 * own plain (untransposed) matmul GFLOP/s measured in the same run (goal ≥ 0.4 on wasm: each step
 * is divided by a plain-matmul burst timed right after it, so a drifting machine load cancels), and the
 * tensors left behind by the timed steps (goal 0). `--profile` adds, per method, the kernels that
 * dominate one step (tf.profile, each kernel's fastest of three steps, so other processes' noise
 * mostly drops out). `--baseline` also times, on wasm, one step of each method with tfjs-backend-wasm's
 * own kernels (src/compute/kernels replaced) and prints the speed-up of ours. Everything is measured
 * within one run; compare ratios, not milliseconds.
 *
 * Model FLOPs per token (PaLM appendix B's accounting): 2N forward for the N weights of the matrix
 * products (not the embedding, a gather) plus 4·L·T·d for attention's two
 * T×T products; a full step is 3× forward. LoRA/DoRA skip the frozen weights' gradients: 4N
 * plus 12·L·T·d. Adapter products and elementwise work are not counted (they are overhead).
 */
import type { Tensor } from '@tensorflow/tfjs-core';
import { selectBackend, tf, type BackendName } from '../src/compute/backend.js';
import { registerWasmKernels, restoreWasmKernels } from '../src/compute/kernels/register.js';
import { initWeights, lmLoss, weightShapes, type Adapters, type LlamaConfig } from '../src/train/model.js';
import { initLora, loraVariant, type LoraParams } from '../src/train/adapters/lora.js';
import { loraScaling } from '../src/methods/lora.js';
import { doraVariant, initMagnitude } from '../src/train/adapters/dora.js';
import { AdamW } from '../src/train/adamw.js';
import { runLoop } from '../src/train/loop.js';
import { seededRandom } from '../src/train/data.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}
const layers = Number(arg('layers', '6')), d = Number(arg('d-model', '256'));
const rows = Number(arg('batch', '4')), len = Number(arg('context', '64'));
// webgpu runs last: a software adapter's (llvmpipe) threads keep using the process's CPU afterwards,
// which would spoil the CPU-time figures of a CPU backend measured after it.
const backends = (arg('backends', 'wasm').split(',').filter(Boolean) as BackendName[])
  .sort((a, b) => Number(a === 'webgpu') - Number(b === 'webgpu'));
const profile = process.argv.includes('--profile'), baseline = process.argv.includes('--baseline');
// The cpu backend is 15–40× slower than wasm: fewer timed steps keep the whole run to minutes.
const stepsFor = (b: BackendName) => Number(arg('steps', b === 'cpu' ? '1' : '6'));

const cfg: LlamaConfig = {
  vocab_size: 256, hidden_size: d, intermediate_size: Math.round((8 * d) / 3), num_hidden_layers: layers,
  num_attention_heads: 4, max_position_embeddings: len, rms_norm_eps: 1e-6, rope_theta: 10000,
};
type Method = 'full' | 'lora' | 'dora';
const METHODS: Method[] = ['full', 'lora', 'dora'];

const tokens = rows * (len - 1); // lmLoss predicts positions 1..len-1 from 0..len-2
// The embedding is a gather (no product), so embed_tokens is not counted; lm_head is.
const nMatmul = [...weightShapes(cfg)].filter(([name, s]) => s.length === 2 && !name.includes('embed_tokens')).reduce((a, [, s]) => a + s[0]! * s[1]!, 0);
const attnPerToken = 4 * layers * (len - 1) * d;
const flopsPerStep = (m: Method) => tokens * ((m === 'full' ? 6 : 4) * nMatmul + 3 * attnPerToken);

/** A plain matmul of a fixed size, timed in bursts (wall and process CPU time). */
interface Probe { a: Tensor; w: Tensor; n: number; reps: number }

async function burst(p: Probe): Promise<{ gflops: number; cpuGflops: number }> {
  const t = tf();
  const s0 = performance.now(), c0 = process.cpuUsage();
  const outs = [];
  for (let i = 0; i < p.reps; i++) outs.push(t.matMul(p.a, p.w));
  await outs[outs.length - 1]!.data();
  const s = (performance.now() - s0) / 1000, c = process.cpuUsage(c0);
  for (const o of outs) o.dispose();
  const flops = 2 * p.n ** 3 * p.reps;
  return { gflops: flops / s / 1e9, cpuGflops: flops / ((c.user + c.system) / 1e6) / 1e9 };
}

/**
 * Best plain (untransposed, batch 1) matmul GFLOP/s over a few square sizes (b is reused, as
 * XNNPACK caches its packing), three bursts of ~0.1 s each; returns the best size as a probe
 * that each timed step is compared with right after it runs.
 */
async function plainMatmul(b: BackendName): Promise<{ gflops: number; cpuGflops: number; probe: Probe }> {
  const t = tf();
  const sizes = b === 'cpu' ? [128, 256] : b === 'webgpu' ? [256, 1024, 2048] : [256, 512];
  let best: { gflops: number; cpuGflops: number; probe: Probe } | undefined;
  for (const n of sizes) {
    const a = t.randomUniform([n, n]), w = t.randomUniform([n, n]);
    const once = await burst({ a, w, n, reps: 1 }); // warm-up, then size the bursts to ~0.1 s
    const reps = Math.max(1, Math.min(200, Math.round((0.1 * once.gflops * 1e9) / (2 * n ** 3))));
    const probe = { a, w, n, reps };
    let g = { gflops: 0, cpuGflops: 0 };
    for (let round = 0; round < 3; round++) {
      const r = await burst(probe);
      g = { gflops: Math.max(g.gflops, r.gflops), cpuGflops: Math.max(g.cpuGflops, r.cpuGflops) };
    }
    if (best === undefined || g.gflops > best.gflops) {
      if (best !== undefined) t.dispose([best.probe.a, best.probe.w]);
      best = { ...g, probe };
    } else t.dispose([a, w]);
  }
  return best!;
}

interface Result {
  ms: number;
  cpuMs: number;
  /** Median over steps of (model FLOP/s of the step) / (plain matmul GFLOP/s of the burst right after it). */
  util: number;
  utilCpu: number;
  leak: number;
  top?: string[];
}

async function run(method: Method, steps: number, probe: Probe, withProfile = profile): Promise<Result> {
  const t = tf();
  const rand = seededRandom(1);
  const w = initWeights(cfg, rand, method === 'full');
  let ad: Adapters | undefined;
  const params = method === 'full' ? [...w.values()] : [];
  if (method !== 'full') {
    const ls = new Map<string, LoraParams>();
    for (const [name, shape] of weightShapes(cfg)) {
      if (!/(q_proj|v_proj)\.weight$/.test(name)) continue;
      const p = initLora(shape[0]!, shape[1]!, 8, loraScaling(8, 16, false), rand);
      if (method === 'dora') p.magnitude = initMagnitude(w.get(name)!, p);
      ls.set(name.slice(0, -7), p);
      params.push(p.A, p.B, ...(p.magnitude ? [p.magnitude] : []));
    }
    ad = { variant: method === 'lora' ? loraVariant : doraVariant(true), layers: ls };
  }
  const ids = t.tensor2d(Int32Array.from({ length: rows * len }, () => Math.floor(rand() * 256)), [rows, len], 'int32');
  const opt = new AdamW({ lr: 1e-3 });
  const loss = () => lmLoss(cfg, w, ids, ad);
  await runLoop({ params, optimizer: opt, steps: 1, loss }); // warm-up: first-call setup, optimizer moments
  const before = t.memory().numTensors;
  const wall: number[] = [], cpu: number[] = [], util: number[] = [], utilCpu: number[] = [];
  let t0 = performance.now(), c0 = process.cpuUsage();
  await runLoop({
    params, optimizer: opt, fromStep: 2, steps: steps + 1, loss,
    onStep: async () => {
      const c = process.cpuUsage(c0), ms = performance.now() - t0, cpuMs = (c.user + c.system) / 1000;
      wall.push(ms);
      cpu.push(cpuMs);
      // The load of a shared machine drifts: compare each step with a matmul burst timed just after it.
      const g = await burst(probe);
      util.push(flopsPerStep(method) / (ms / 1000) / 1e9 / g.gflops);
      utilCpu.push(flopsPerStep(method) / (cpuMs / 1000) / 1e9 / g.cpuGflops);
      t0 = performance.now();
      c0 = process.cpuUsage();
    },
  });
  const leak = t.memory().numTensors - before;
  const res: Result = { ms: median(wall), cpuMs: median(cpu), util: median(util), utilCpu: median(utilCpu), leak };
  if (withProfile) res.top = await topKernels(() => runLoop({ params, optimizer: opt, fromStep: 100, steps: 100, loss }));
  opt.dispose();
  ids.dispose();
  t.disposeVariables();
  return res;
}

/** Kernel time by kernel name (and shapes for matmuls), each kernel's fastest of three profiled steps. */
async function topKernels(step: () => Promise<unknown>): Promise<string[]> {
  const t = tf();
  const runs = [];
  for (let i = 0; i < 3; i++) runs.push(await t.profile(async () => { await step(); }));
  const agg = new Map<string, { ms: number; n: number }>();
  let total = 0;
  const first = runs[0]!.kernels;
  for (let i = 0; i < first.length; i++) {
    const k = first[i]!;
    const ms = Math.min(...runs.map((r) => r.kernels[i]?.kernelTimeMs as number ?? Infinity));
    const key = k.name === 'BatchMatMul' ? `BatchMatMul ${k.inputShapes.map((s) => `[${s}]`).join('·')}` : k.name;
    const e = agg.get(key) ?? { ms: 0, n: 0 };
    e.ms += ms;
    e.n++;
    total += ms;
    agg.set(key, e);
  }
  const lines = [`kernels: ${first.length}, ${total.toFixed(1)} ms in kernels`];
  for (const [k, e] of [...agg].sort((x, y) => y[1].ms - x[1].ms).slice(0, 12))
    lines.push(`${e.ms.toFixed(1).padStart(8)} ms ${String(e.n).padStart(4)}×  ${k}`);
  return lines;
}

function median(x: number[]): number {
  const s = [...x].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

console.log(`model: ${layers} layers, d_model ${d}, d_ff ${cfg.intermediate_size}, ${cfg.num_attention_heads} heads, ` +
  `${(nMatmul / 1e6).toFixed(2)} M matmul weights; batch ${rows}×${len} (${tokens} predicted tokens); LoRA/DoRA r = 8 on q,v`);
console.log(`model FLOPs per step: full ${(flopsPerStep('full') / 1e9).toFixed(2)} G, adapters ${(flopsPerStep('lora') / 1e9).toFixed(2)} G`);
for (const b of backends) {
  let device: string;
  try {
    device = (await selectBackend(b)).device;
  } catch (e) {
    console.log(`\n[${b}] skipped: ${(e as Error).message}`);
    continue;
  }
  const steps = stepsFor(b);
  const mm = await plainMatmul(b);
  // On CPU backends process CPU time is also shown: on a shared machine it is far steadier than
  // wall time (the utilisation by CPU time divides by the matmul's GFLOP/s per CPU second).
  const byCpu = b === 'wasm' || b === 'cpu';
  console.log(`\n[${b}] ${device}; plain ${mm.probe.n}² matmul ${mm.gflops.toFixed(2)} GFLOP/s` +
    `${byCpu ? ` (${mm.cpuGflops.toFixed(2)} per CPU second)` : ''}; median of ${steps} timed step(s)`);
  const res = new Map<Method, Result>();
  for (const m of METHODS) {
    const r = await run(m, steps, mm.probe);
    res.set(m, r);
    console.log(`${m.padEnd(5)} step ${r.ms.toFixed(1).padStart(8)} ms  ${(tokens / (r.ms / 1000)).toFixed(0).padStart(6)} tokens/s  ` +
      `utilisation ${r.util.toFixed(3)}${byCpu ? ` (by CPU time: step ${r.cpuMs.toFixed(0)} ms, ${r.utilCpu.toFixed(3)})` : ''}  leaked tensors ${r.leak}`);
    for (const line of r.top ?? []) console.log(`      ${line}`);
  }
  const ratio = (k: 'ms' | 'cpuMs') => (res.get('dora')![k] / res.get('lora')![k]).toFixed(3);
  // Same model FLOPs, so the inverse ratio of utilisations is the step-time ratio with the load normalised out.
  const norm = (res.get('lora')!.util / res.get('dora')!.util).toFixed(3);
  console.log(`DoRA/LoRA step-time ratio: ${ratio('ms')}${byCpu ? ` (by CPU time ${ratio('cpuMs')})` : ''}, ` +
    `load-normalised ${norm} (goal ≤ 1.10)`);

  if (baseline && b === 'wasm') {
    // tfjs's own kernels are 2–4× slower: one timed step each keeps this to about a minute
    restoreWasmKernels(tf());
    const parts: string[] = [];
    for (const m of METHODS) {
      const r = await run(m, 1, mm.probe, false);
      const ours = res.get(m)!;
      parts.push(`${m} ${(r.ms / ours.ms).toFixed(2)}× (load-normalised ${(ours.util / r.util).toFixed(2)}×; ${r.ms.toFixed(0)} ms)`);
    }
    registerWasmKernels(tf());
    console.log(`speed-up over tfjs-backend-wasm's own kernels (one step each): ${parts.join(', ')}`);
  }
  tf().dispose([mm.probe.a, mm.probe.w]);
}

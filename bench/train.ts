/**
 * `npm run bench:train`: step time and tokens/s of full, LoRA and DoRA on the
 * same model, the DoRA/LoRA step-time ratio (goal ≤ 1.10), model-FLOPs
 * utilisation against the backend's own plain matmul GFLOP/s measured in the
 * same run, and a tensor-leak check. Backends: BENCH_BACKENDS (default wasm).
 * Model size: BENCH_LAYERS, BENCH_DMODEL (default 2, 128), BENCH_STEPS (default 8).
 */
import { initBackend, tf, type BackendName } from '../src/train/backend.js';
import { initWeights, lmLoss, weightShapes, type Adapters, type LlamaConfig } from '../src/train/model.js';
import { initLora, loraScaling, loraVariant, type LoraParams } from '../src/train/adapters/lora.js';
import { doraVariant, initMagnitude } from '../src/train/adapters/dora.js';
import { AdamW } from '../src/train/adamw.js';
import { runLoop } from '../src/train/loop.js';
import { seededRandom } from '../src/train/data.js';

const layers = Number(process.env.BENCH_LAYERS ?? 2), d = Number(process.env.BENCH_DMODEL ?? 128);
const steps = Number(process.env.BENCH_STEPS ?? 8), rows = 4, len = 64;
const cfg: LlamaConfig = {
  vocab_size: 256, hidden_size: d, intermediate_size: Math.round((8 * d) / 3), num_hidden_layers: layers,
  num_attention_heads: 4, max_position_embeddings: len, rms_norm_eps: 1e-6, rope_theta: 10000,
};

async function matmulGflops(): Promise<number> {
  const t = tf();
  const n = 256, a = t.randomUniform([n, n]), b = t.randomUniform([n, n]);
  t.matMul(a, b).dispose();
  const reps = 20, t0 = performance.now();
  for (let i = 0; i < reps; i++) { const c = t.matMul(a, b); await c.data(); c.dispose(); }
  const s = (performance.now() - t0) / 1000;
  a.dispose(); b.dispose();
  return (2 * n ** 3 * reps) / s / 1e9;
}

async function run(method: 'full' | 'lora' | 'dora'): Promise<{ ms: number; leak: number }> {
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
  await runLoop({ params, optimizer: opt, steps: 1, loss: () => lmLoss(cfg, w, ids, ad) }); // warm-up
  const before = t.memory().numTensors;
  const t0 = performance.now();
  await runLoop({ params, optimizer: opt, fromStep: 2, steps: steps + 1, loss: () => lmLoss(cfg, w, ids, ad) });
  const ms = (performance.now() - t0) / steps;
  const leak = t.memory().numTensors - before;
  opt.dispose(); ids.dispose(); t.disposeVariables();
  return { ms, leak };
}

const backends = (process.env.BENCH_BACKENDS ?? 'wasm').split(',') as BackendName[];
const nParams = [...weightShapes(cfg).values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
const tokens = rows * len;
console.log(`model: ${layers} layers, d_model ${d}, ${nParams} params; batch ${rows}×${len} tokens; ${steps} timed steps`);
for (const b of backends) {
  await initBackend(b);
  const gf = await matmulGflops();
  const res: Record<string, { ms: number; leak: number }> = {};
  for (const m of ['full', 'lora', 'dora'] as const) res[m] = await run(m);
  console.log(`\n[${b}] plain 256² matmul: ${gf.toFixed(2)} GFLOP/s`);
  for (const m of ['full', 'lora', 'dora'] as const) {
    const { ms, leak } = res[m]!;
    // 6·N·tokens for a full step (fwd+bwd), the usual estimate; adapters skip weight grads, ≈ 4·N·tokens
    const flops = (m === 'full' ? 6 : 4) * nParams * tokens;
    const mfu = flops / (ms / 1000) / 1e9 / gf;
    console.log(`${m.padEnd(5)} step ${ms.toFixed(1)} ms  ${(tokens / (ms / 1000)).toFixed(0)} tokens/s  MFU ${mfu.toFixed(3)}  leaked tensors ${leak}`);
  }
  console.log(`DoRA/LoRA step-time ratio: ${(res.dora!.ms / res.lora!.ms).toFixed(3)} (goal ≤ 1.10)`);
}

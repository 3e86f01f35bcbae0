/**
 * `npm run bench:analyze`: full-checkpoint analysis throughput against a plain read-and-decode
 * pass over the same files (the limit on this machine), and peak memory at one and two model
 * sizes (it must not grow with the model). Generates a synthetic Llama-shaped BF16 series under
 * the OS temp folder and deletes it afterwards.
 *   BENCH_HIDDEN (default 1024), BENCH_MLP (2752), BENCH_LAYERS (4), BENCH_CHECKPOINTS (4)
 * Each size runs in a child process so its peak RSS is its own.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, readdirSync } from 'node:fs';
import { tmpdir, cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSafetensorsStreaming } from '../src/io/safetensors/writer.js';
import { openSafetensors } from '../src/io/safetensors/reader.js';
import { analyze } from '../src/analysis/analyze.js';
import { mulberry32 } from '../src/random.js';

const env = (k: string, d: number) => Number(process.env[k] ?? d);
const H = env('BENCH_HIDDEN', 1024), F = env('BENCH_MLP', 2752), CK = env('BENCH_CHECKPOINTS', 4);

function shapes(layers: number): [string, number[]][] {
  const out: [string, number[]][] = [];
  for (let l = 0; l < layers; l++) {
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) out.push([`model.layers.${l}.self_attn.${m}.weight`, [H, H]]);
    out.push([`model.layers.${l}.mlp.gate_proj.weight`, [F, H]], [`model.layers.${l}.mlp.up_proj.weight`, [F, H]], [`model.layers.${l}.mlp.down_proj.weight`, [H, F]]);
  }
  return out;
}

async function writeModel(path: string, layers: number, seed: number, base?: number): Promise<void> {
  const specs = shapes(layers).map(([name, shape]) => ({ name, dtype: 'BF16' as const, shape }));
  await writeSafetensorsStreaming(path, specs, (name) => {
    const shape = specs.find((s) => s.name === name)!.shape;
    const n = shape[0]! * shape[1]!;
    const rand = mulberry32(seed * 7919 + name.length * 31 + (base ?? 0));
    const out = new Uint16Array(n);
    // Random BF16 bit patterns of moderate magnitude (exponent 120–124): cheap to make, decodes to normal floats.
    for (let i = 0; i < n; i++) out[i] = ((rand() < 0.5 ? 0x8000 : 0) | ((120 + Math.floor(rand() * 5)) << 7) | Math.floor(rand() * 128));
    return out;
  });
}

async function child(dir: string): Promise<void> {
  const files = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();
  const bytes = files.filter((f) => f !== 'base.safetensors').reduce((a, f) => a + statSync(join(dir, f)).size, 0);
  // 1. Raw: read and decode every tensor of every checkpoint once.
  let t0 = performance.now();
  for (const f of files.filter((x) => x !== 'base.safetensors')) {
    const s = await openSafetensors(join(dir, f));
    for (const t of s.tensors) await s.readFloat32(t.name);
    await s.close();
  }
  const raw = (performance.now() - t0) / 1000;
  // 2. The analysis over the same checkpoints (plus one read of the base).
  t0 = performance.now();
  await analyze({ base: join(dir, 'base.safetensors'), runs: files.filter((f) => f !== 'base.safetensors').map((f) => ({ path: join(dir, f) })), write: false, quiet: true });
  const ours = (performance.now() - t0) / 1000;
  process.stdout.write(JSON.stringify({ bytes, raw, ours, maxRssMB: process.resourceUsage().maxRSS / 1024 }));
}

async function main(): Promise<void> {
  if (process.argv[2] === '--child') return child(process.argv[3]!);
  const results: { layers: number; bytes: number; raw: number; ours: number; maxRssMB: number }[] = [];
  for (const layers of [env('BENCH_LAYERS', 4), 2 * env('BENCH_LAYERS', 4)]) {
    const dir = mkdtempSync(join(tmpdir(), 'dorascope-bench-'));
    try {
      process.stderr.write(`generating ${layers} layers × (${CK} checkpoints + base), hidden ${H}, mlp ${F}, BF16 in ${dir}\n`);
      await writeModel(join(dir, 'base.safetensors'), layers, 0);
      for (let c = 1; c <= CK; c++) await writeModel(join(dir, `ck${c}.safetensors`), layers, c);
      const res = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', dir], { encoding: 'utf8', maxBuffer: 1 << 20 });
      if (res.status !== 0) throw new Error(res.stderr);
      results.push({ layers, ...JSON.parse(res.stdout) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  console.log(`machine: ${cpus()[0]?.model} × ${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}`);
  for (const r of results) {
    const gbs = r.bytes / 1e9;
    console.log(`${r.layers} layers, ${gbs.toFixed(2)} GB of checkpoints: analysis ${(gbs / r.ours).toFixed(3)} GB/s, raw read+decode ${(gbs / r.raw).toFixed(3)} GB/s, ratio ${(r.raw / r.ours).toFixed(2)} (goal ≥ 0.7); peak RSS ${r.maxRssMB.toFixed(0)} MB`);
  }
  console.log(`peak RSS at twice the model: ×${(results[1]!.maxRssMB / results[0]!.maxRssMB).toFixed(2)} (goal: unchanged)`);
}

await main();

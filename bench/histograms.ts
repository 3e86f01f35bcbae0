/**
 * Peak RSS and time of binning a large rows.arrow (src/report/feature-histograms.ts), and of the old way (the whole table
 * in memory, as loadFeatures did before) with --before. Generates the file under the OS temp folder and deletes
 * it afterwards. Each measurement runs in its own child process, so each peak RSS is its own.
 *
 *   npm run bench:histograms -- [ROWS] [--before] [--batch N] [--keep DIR]
 *
 * Shape: 70B-like modules (q 8192, k 1024, v 1024, o 8192, gate/up 28672, down 8192 output features), one run,
 * 4 checkpoints, as many layers as ROWS (default 10^7) needs; record batches of 65,536 rows (--batch N).
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Float64, Int32, RecordBatchFileWriter, Table, Utf8, makeVector, tableFromIPC, vectorFromArray, type RecordBatch } from 'apache-arrow';
import { binFeatures } from '../src/report/feature-histograms.js';

const MODULES: [string, number][] = [['q_proj', 8192], ['k_proj', 1024], ['v_proj', 1024], ['o_proj', 8192], ['gate_proj', 28672], ['up_proj', 28672], ['down_proj', 8192]];
const STEPS = [250, 500, 750, 1000];
let BATCH = 65_536; // --batch N: rows per record batch (analyze --per-row writes one batch today)

async function generate(path: string, rows: number): Promise<number> {
  const perLayerStep = MODULES.reduce((a, [, n]) => a + n, 0);
  const layers = Math.ceil(rows / perLayerStep / STEPS.length);
  const writer = new RecordBatchFileWriter();
  const fh = await open(path, 'w');
  let written = 0;
  const pump = (async () => { for await (const chunk of writer) { await fh.write(chunk); written += chunk.byteLength; } })();
  // The writer queues without backpressure: wait for the file to catch up with what it has queued (its private
  // byte position; a benchmark may peek) so that generating 10^7+ rows stays within a few batches of memory.
  const queued = (): number => (writer as unknown as { _position: number })._position;
  let seed = 1;
  const rnd = (): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
  const buf = { run: [] as string[], checkpoint: [] as string[], step: [] as number[], tensor: [] as string[], layer: [] as number[], module: [] as string[], row: [] as number[], m0: [] as number[], mt: [] as number[], cos: [] as number[] };
  let n = 0;
  const flush = async (): Promise<void> => {
    if (buf.run.length === 0) return;
    const f64 = (x: number[]) => makeVector({ type: new Float64(), data: Float64Array.from(x) });
    const i32 = (x: number[]) => makeVector({ type: new Int32(), data: Int32Array.from(x) });
    const t = new Table({ run: vectorFromArray(buf.run, new Utf8()), checkpoint: vectorFromArray(buf.checkpoint, new Utf8()), step: i32(buf.step),
      tensor: vectorFromArray(buf.tensor, new Utf8()), layer: i32(buf.layer), module: vectorFromArray(buf.module, new Utf8()), row: i32(buf.row),
      m0: f64(buf.m0), mt: f64(buf.mt), cos: f64(buf.cos) });
    for (const b of t.batches as RecordBatch[]) writer.write(b);
    for (const k of Object.keys(buf) as (keyof typeof buf)[]) buf[k].length = 0;
    while (written < queued()) await new Promise((r) => setTimeout(r, 1));
  };
  for (const step of STEPS) for (let layer = 0; layer < layers; layer++) for (const [module, features] of MODULES) {
    const tensor = `model.layers.${layer}.self_attn.${module}.weight`;
    for (let k = 0; k < features && n < rows; k++, n++) {
      const m0 = 0.5 + rnd();
      buf.run.push('dora'); buf.checkpoint.push(`checkpoint-${step}`); buf.step.push(step); buf.tensor.push(tensor); buf.layer.push(layer);
      buf.module.push(module); buf.row.push(k); buf.m0.push(m0); buf.mt.push(m0 + (rnd() - 0.5) * 1e-3 * step / 1000); buf.cos.push(1 - rnd() ** 2 * 1e-4);
      if (buf.run.length === BATCH) await flush();
    }
  }
  await flush();
  writer.finish();
  await pump;
  await fh.close();
  return n;
}

/** The old way, for comparison: the whole table, then per-row arrays (what loadFeatures did before). */
async function before(path: string): Promise<number> {
  const t = tableFromIPC(await readFile(path));
  const get = (c: string): unknown[] => t.getChild(c)!.toArray() as unknown as unknown[];
  const [run, layer, step, m0, mt, cos] = ['run', 'layer', 'step', 'm0', 'mt', 'cos'].map(get) as unknown[][];
  const n = t.numRows;
  const f = { run: [] as string[], layer: new Int32Array(n), step: new Int32Array(n), dm: new Float64Array(n), dcos: new Float64Array(n) };
  for (let i = 0; i < n; i++) {
    f.run.push(String(run![i])); f.layer[i] = Number(layer![i]); f.step[i] = Number(step![i]);
    f.dm[i] = Math.abs(Number(mt![i]) - Number(m0![i])); f.dcos[i] = 1 - Number(cos![i]);
  }
  return f.dm.length;
}

async function child(mode: string, path: string): Promise<void> {
  const t = performance.now();
  const out = mode === 'bin' ? await binFeatures(path) : null;
  const n = mode === 'bin' ? out!.rows : mode === 'before' ? await before(path) : 0;
  const ms = performance.now() - t;
  // VmHWM, not getrusage's maxRSS: Linux carries the parent's high-water mark across fork + exec into the latter.
  const hwm = /VmHWM:\s+(\d+) kB/u.exec(await readFile('/proc/self/status', 'utf8'));
  process.stdout.write(JSON.stringify({ mode, rows: n, groups: out?.groups.length ?? null, ms, maxRssMB: (hwm ? Number(hwm[1]) : process.resourceUsage().maxRSS) / 1024 }));
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--child') return child(args[1]!, args[2]!);
  const b = args.indexOf('--batch');
  if (b >= 0) BATCH = Number(args.splice(b, 2)[1]);
  const k = args.indexOf('--keep');
  const keep = k >= 0 ? args.splice(k, 2)[1]! : null;
  const rows = Number(args.find((a) => /^\d+$/u.test(a)) ?? 1e7);
  const dir = keep ?? await mkdtemp(join(tmpdir(), 'dorascope-bench-hist-'));
  try {
    const path = join(dir, 'rows.arrow');
    let t = performance.now();
    if (!keep || !(await stat(path).catch(() => null))) { // --keep DIR: generate there once, reuse, never delete
      const n = await generate(path, rows);
      console.log(`generated ${n.toLocaleString('en')} rows, ${((await stat(path)).size / 2 ** 20).toFixed(0)} MiB, in ${((performance.now() - t) / 1000).toFixed(1)} s (${path})`);
    }
    const self = fileURLToPath(import.meta.url);
    const prof = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []; // a profile of each child
    const run = (mode: string): Record<string, number> => JSON.parse(execFileSync(process.execPath, [...prof, self, '--child', mode, path], { encoding: 'utf8', maxBuffer: 1 << 20 }));
    const base = run('none');
    console.log(`node + modules loaded, nothing read: peak RSS ${base.maxRssMB!.toFixed(0)} MB`);
    for (const mode of ['bin', ...(args.includes('--before') ? ['before'] : [])]) {
      t = performance.now();
      const r = run(mode);
      console.log(`${mode === 'bin' ? 'binFeatures (two passes)' : 'before: whole table in memory'}: ${r.rows!.toLocaleString('en')} rows${r.groups ? `, ${r.groups} groups` : ''}, `
        + `${(r.ms! / 1000).toFixed(2)} s (${(r.rows! / r.ms! / 1000).toFixed(2)} M rows/s), peak RSS ${r.maxRssMB!.toFixed(0)} MB`);
    }
  } finally {
    if (!keep) await rm(dir, { recursive: true, force: true });
  }
}

await main();

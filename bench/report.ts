/**
 * `npm run bench:report`: how long a report takes to draw in headless, software-rendered Chromium (the flags
 * of src/report/chromium.ts: --disable-gpu, so WebGL runs on the CPU) at 70B-model scale.
 *
 * Generates synthetic analysis folders under the OS temp folder (deleted afterwards): 80 layers × 7 modules
 * × 20 checkpoints = 11,200 points (a 70B model) and twice that (160 layers), renders `report` of each and
 * `compare` of two runs of each, and opens every page BENCH_REPEAT times (default 3) in one browser,
 * timing navigation → all figures drawn (the page sets `data-drawn` when its last figure is drawn). Prints the
 * median, the ratio to a page holding one empty Plotly plot (plotly.js inlined the same way, so the ratio
 * removes the cost of parsing plotly.js and the machine's speed), the extra time per 1,000 points, each
 * figure's own draw time, and the HTML size. Absolute times on a shared machine are noisy; the ratios within
 * one run are the figures to compare.
 */
import { mkdtempSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { writeDecomposition, type DecompositionRow } from '../src/analysis/table.js';
import { correlate } from '../src/analysis/stats.js';
import { mulberry32 } from '../src/random.js';
import { findChromium, launchChromium } from '../src/report/chromium.js';
import { renderCompare, renderReport } from '../src/report/render.js';
import { renderPage } from '../src/report/html.js';
import { writeFileAtomic } from '../src/io/atomic.js';

const REPEAT = Number(process.env.BENCH_REPEAT ?? 3);
const MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
const H = 8192, F = 28672; // Llama-2-70B shapes, for the rows/cols columns

/** One synthetic run: ΔD grows with step, ΔM follows it with a run-specific slope plus noise. */
function synthRows(run: string, method: string, layers: number, steps: number, seed: number): DecompositionRow[] {
  const rand = mulberry32(seed);
  const slope = method === 'ft' ? -2 : 3;
  const out: DecompositionRow[] = [];
  for (let c = 1; c <= steps; c++) {
    for (let l = 0; l < layers; l++) {
      for (const m of MODULES) {
        const mlp = m === 'gate_proj' || m === 'up_proj' || m === 'down_proj';
        const [rows, cols] = m === 'down_proj' ? [H, F] : mlp ? [F, H] : [H, H];
        const dd = (c / steps) * 1e-3 * (0.5 + rand());
        const dm = Math.max(0, 0.01 + slope * dd + 2e-3 * (rand() - 0.5));
        out.push({ run, method, checkpoint: `checkpoint-${c * 100}`, step: c * 100, module: m, layer: l,
          tensor: `model.layers.${l}.${mlp ? 'mlp' : 'self_attn'}.${m}.weight`,
          rows, cols, delta_m: dm, delta_d: dd, zero_rows: 0, shrunk_rows: 0, rel_delta_fro: 0, mean_m0: 1, mean_mt: 1 + dm, flag: '' });
      }
    }
  }
  return out;
}

async function writeFolder(dir: string, run: string, method: string, layers: number, steps: number, seed: number): Promise<number> {
  mkdirSync(dir, { recursive: true });
  const rows = synthRows(run, method, layers, steps, seed);
  await writeDecomposition(dir, rows);
  const stats = (rs: DecompositionRow[]) => correlate(rs.map((r) => r.delta_d), rs.map((r) => r.delta_m), 200);
  const adapter = method === 'ft' ? null : { r: 16, lora_alpha: 32, use_rslora: false, use_dora: method === 'dora' };
  const config = adapter && { peft_type: 'LORA', ...adapter, target_modules: MODULES };
  writeFileSync(join(dir, 'summary.json'), JSON.stringify({ tool: 'dorascope', version: '0.1.0', runs: [{
    run, method, adapter, checkpoints: Array.from({ length: steps }, (_, c) => ({ name: `checkpoint-${(c + 1) * 100}`, step: (c + 1) * 100 })),
    overall: stats(rows), modules: Object.fromEntries(MODULES.map((m) => [m, stats(rows.filter((r) => r.module === m))])) }] }));
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ tool: 'dorascope', command: ['bench'], runs: [{ run, method, adapter_config: config }] }));
  return rows.length;
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };

async function main(): Promise<void> {
  const exe = findChromium();
  if (!exe) { console.error('bench:report needs Chromium (CHROMIUM_PATH or apt-get install chromium)'); process.exit(1); }
  const work = mkdtempSync(join(tmpdir(), 'dorascope-bench-report-'));
  try {
    console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; Chromium ${exe}; ${REPEAT} loads per page`);
    const t0 = performance.now();
    await writeFolder(join(work, 'a'), 'ft', 'ft', 80, 20, 1);
    await writeFolder(join(work, 'a2'), 'dora', 'dora', 80, 20, 2);
    await writeFolder(join(work, 'b'), 'ft', 'ft', 160, 20, 3);
    await writeFolder(join(work, 'b2'), 'dora', 'dora', 160, 20, 4);
    console.log(`generated 4 analysis folders in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    // The baseline: our page template with plotly.js inlined and one empty plot.
    const plotly = readFileSync(createRequire(import.meta.url).resolve('plotly.js-dist-min/plotly.min.js'), 'utf8');
    const empty = join(work, 'empty.html');
    await writeFileAtomic(empty, renderPage({ title: 'empty', figures: [{ id: 'empty', title: 'empty', data: [], layout: {} }],
      table: { columns: [], rows: [] }, provenance: { facts: [], tables: [], raw: [] }, plotly: { inline: plotly } }));
    const pages: { name: string; points: number; path: string; buildMs: number }[] = [{ name: 'one empty plot', points: 0, path: empty, buildMs: 0 }];
    const timed = async (name: string, points: number, make: () => Promise<string>) => {
      const t = performance.now();
      const path = await make();
      pages.push({ name, points, path, buildMs: performance.now() - t });
    };
    await timed('report 80 layers', 11_200, () => renderReport({ dir: join(work, 'a'), out: join(work, 'report-a.html') }));
    await timed('report 160 layers', 22_400, () => renderReport({ dir: join(work, 'b'), out: join(work, 'report-b.html') }));
    await timed('compare 2 × 80 layers', 22_400, () => renderCompare({ dirs: [join(work, 'a'), join(work, 'a2')], out: join(work, 'compare-a.html') }));
    // The same compare with plotly.js linked (--plotly-src) instead of inlined: a smaller page, and Chromium can
    // cache the compiled script across loads.
    await timed('compare 2 × 80, --plotly-src', 22_400, async () => {
      writeFileSync(join(work, 'plotly.min.js'), plotly);
      return renderCompare({ dirs: [join(work, 'a'), join(work, 'a2')], out: join(work, 'compare-a-src.html'), plotlySrc: 'plotly.min.js' });
    });
    await timed('compare 2 × 160 layers', 44_800, () => renderCompare({ dirs: [join(work, 'b'), join(work, 'b2')], out: join(work, 'compare-b.html') }));

    const ctx = await launchChromium(exe);
    try {
      const results: { ms: number[]; shown: number[]; figs: Record<string, number[]> }[] = [];
      for (const p of pages) {
        const r = { ms: [] as number[], shown: [] as number[], figs: {} as Record<string, number[]> };
        for (let k = 0; k < REPEAT; k++) {
          const page = await ctx.newPage();
          const url = pathToFileURL(p.path).href;
          const plotlyUrl = pathToFileURL(join(work, 'plotly.min.js')).href;
          await page.route('**/*', (req) => ([url, plotlyUrl].includes(req.request().url()) ? req.continue() : req.abort()));
          const t = performance.now();
          await page.goto(url, { waitUntil: 'commit', timeout: 300_000 });
          await page.waitForSelector('html[data-shown]', { timeout: 300_000 });
          r.shown.push(performance.now() - t);
          await page.evaluate(() => (window as unknown as { dorascope: { drawAll(): Promise<unknown> } }).dorascope.drawAll());
          await page.waitForSelector('html[data-drawn]', { timeout: 300_000 });
          r.ms.push(performance.now() - t);
          const timings = await page.evaluate(() => (window as unknown as { dorascope: { timings: { id: string; ms: number }[] } }).dorascope.timings);
          for (const f of timings) (r.figs[f.id] ??= []).push(f.ms);
          await page.close();
        }
        results.push(r);
      }
      const base = median(results[0]!.ms);
      console.log('\nmedian ms from navigation: "first screen" = figures near the first screen drawn; "all" = every figure drawn');
      console.log('page                          points  HTML MB  build ms  first screen  all drawn  all ÷ empty  ms/1k pts  per figure (ms)');
      pages.forEach((p, i) => {
        const r = results[i]!;
        const ms = median(r.ms);
        const per1k = p.points ? ((ms - base) / (p.points / 1000)).toFixed(1) : '';
        const figs = Object.entries(r.figs).map(([id, xs]) => `${id} ${median(xs).toFixed(0)}`).join(', ');
        console.log(`${p.name.padEnd(28)} ${String(p.points).padStart(7)} ${(statSync(p.path).size / 2 ** 20).toFixed(1).padStart(8)} ${p.buildMs.toFixed(0).padStart(9)} ${median(r.shown).toFixed(0).padStart(13)} ${ms.toFixed(0).padStart(10)} ${(ms / base).toFixed(2).padStart(12)} ${per1k.padStart(10)}  ${figs}`);
      });
    } finally {
      await ctx.close();
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();

/** Writes an analysis folder in the documented schema (docs/analysis.md) with numbers the test chooses. */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromArrays, tableToIPC } from 'apache-arrow';
import { rng } from '../helpers/random.js';

export interface Row { run: string; method: string; step: number; module: string; layer: number; tensor: string; dm: number; dd: number; rows?: number; cols?: number }

/** Ordinary least squares of y on x, written here apart from any project code. */
export function ols(x: number[], y: number[]): { slope: number; intercept: number } {
  const n = x.length;
  const mx = x.reduce((a, b) => a + b, 0) / n, my = y.reduce((a, b) => a + b, 0) / n;
  let sxy = 0, sxx = 0;
  for (let i = 0; i < n; i++) { sxy += (x[i]! - mx) * (y[i]! - my); sxx += (x[i]! - mx) ** 2; }
  return { slope: sxy / sxx, intercept: my - (sxy / sxx) * mx };
}

/** Rows for every step × layer × module, with small ΔM/ΔD drawn from the project's seeded generator. */
export function grid(run: string, method: string, layers: number, modules: string[], steps: number[], seed = 1): Row[] {
  const rnd = rng(seed);
  const out: Row[] = [];
  for (const step of steps) for (let l = 0; l < layers; l++) for (const m of modules)
    out.push({ run, method, step, module: m, layer: l, tensor: `model.layers.${l}.${m}.weight`, dm: rnd() * 0.01, dd: rnd() * 0.001 });
  return out;
}

/** `manifest` replaces the minimal manifest.json (e.g. to record runs[].adapter_config). */
export async function writeAnalysis(rows: Row[], dir?: string, manifest?: Record<string, unknown>): Promise<string> {
  const d = dir ?? (await mkdtemp(join(tmpdir(), 'dorascope-report-')));
  const table = tableFromArrays({
    run: rows.map((r) => r.run), method: rows.map((r) => r.method), checkpoint: rows.map((r) => `checkpoint-${r.step}`),
    step: Int32Array.from(rows.map((r) => r.step)), module: rows.map((r) => r.module), layer: Int32Array.from(rows.map((r) => r.layer)),
    tensor: rows.map((r) => r.tensor), rows: Int32Array.from(rows.map((r) => r.rows ?? 8)), cols: Int32Array.from(rows.map((r) => r.cols ?? 8)),
    delta_m: Float64Array.from(rows.map((r) => r.dm)), delta_d: Float64Array.from(rows.map((r) => r.dd)),
  });
  await writeFile(join(d, 'decomposition.arrow'), tableToIPC(table, 'file'));
  const runs = [...new Set(rows.map((r) => r.run))].map((run) => {
    const rr = rows.filter((r) => r.run === run);
    const modules: Record<string, unknown> = {};
    for (const m of new Set(rr.map((r) => r.module))) {
      const mm = rr.filter((r) => r.module === m);
      const f = ols(mm.map((r) => r.dd), mm.map((r) => r.dm));
      modules[m] = { n: mm.length, pearson_r: 0.5, spearman_rho: 0.4, slope: f.slope, intercept: f.intercept, r_ci95: [0.1, 0.9], slope_ci95: [f.slope - 1, f.slope + 1] };
    }
    return { run, method: rr[0]!.method, adapter: { r: 8, lora_alpha: 16, use_rslora: false, use_dora: rr[0]!.method === 'dora' },
      checkpoints: [...new Set(rr.map((r) => r.step))].map((s) => ({ name: `checkpoint-${s}`, step: s })),
      overall: { n: rr.length, pearson_r: 0.5, spearman_rho: 0.4, slope: 1, intercept: 0, r_ci95: [0.1, 0.9], slope_ci95: [0, 2] }, modules };
  });
  await writeFile(join(d, 'summary.json'), JSON.stringify({ tool: 'dorascope', version: '0.1.0', runs }));
  await writeFile(join(d, 'manifest.json'), JSON.stringify(manifest ?? { tool: 'dorascope', command: ['analyze'] }));
  return d;
}

/** rows.arrow (`--per-row`): features chosen by the test. */
export async function writeFeatureRows(dir: string, f: { run: string; step: number; layer: number; m0: number; mt: number; cos: number }[]): Promise<void> {
  const t = tableFromArrays({
    run: f.map((r) => r.run), checkpoint: f.map((r) => `checkpoint-${r.step}`), step: Int32Array.from(f.map((r) => r.step)),
    tensor: f.map((r) => `model.layers.${r.layer}.q_proj.weight`), layer: Int32Array.from(f.map((r) => r.layer)),
    module: f.map(() => 'q_proj'), row: Int32Array.from(f.map((_, i) => i)),
    m0: Float64Array.from(f.map((r) => r.m0)), mt: Float64Array.from(f.map((r) => r.mt)), cos: Float64Array.from(f.map((r) => r.cos)),
  });
  await writeFile(join(dir, 'rows.arrow'), tableToIPC(t, 'file'));
}

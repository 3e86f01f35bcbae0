/**
 * `npm run bench:stats`: time of summary.json's statistics (analysis/run-summary.ts `runStatistics`: the pooled
 * Figure 2 statistics and the step/layer views of layer-step-stats.ts, each with its 2,000-resample bootstrap,
 * over all modules and per module, on absolute and relative ΔM) for synthetic decomposition rows of:
 *   - a 70B-shaped run: 80 layers × 7 modules × 20 checkpoints (11,200 rows);
 *   - the series of `npm run bench:analyze` at its default size: full fine-tuning, 4 layers × 7 modules ×
 *     4 checkpoints, and the DoRA adapter series, 8 layers × 2 modules (q, v) × 10 checkpoints.
 * Prints wall and CPU seconds per case (best of `--repeat N`, default 3). Results in docs/benchmarks.md.
 */
import { cpus, loadavg } from 'node:os';
import { runStatistics, type SummaryRow } from '../src/analysis/run-summary.js';
import { mulberry32 } from '../src/random.js';

const MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

/** ΔD and ΔM growing with the step, with a per-layer scale and noise, like a fine-tuning run's rows. */
function rows(layers: number, modules: readonly string[], checkpoints: number, seed: number): SummaryRow[] {
  const rand = mulberry32(seed);
  const out: SummaryRow[] = [];
  for (let c = 1; c <= checkpoints; c++) {
    for (let l = 0; l < layers; l++) {
      for (const m of modules) {
        const scale = 1 + l / layers;
        const dd = 1e-4 * c * scale * (1 + 0.3 * rand());
        const dm = 2e-3 * c * (2 - scale) * (1 + 0.3 * rand());
        out.push({ run: 'run', module: m, tensor: `model.layers.${l}.${m}.weight`, step: 100 * c, rows: 4096, delta_d: dd, delta_m: dm,
          shrunk_rows: Math.floor(4096 * rand()), mean_m0: scale, mean_mt: scale + dm * (rand() - 0.5), flag: '' });
      }
    }
  }
  return out;
}

const repeat = Number(process.argv[process.argv.indexOf('--repeat') + 1] ?? 3) || 3;
const cases: [string, SummaryRow[]][] = [
  ['70B-shaped: 80 layers × 7 modules × 20 checkpoints', rows(80, MODULES, 20, 1)],
  ['bench:analyze full series: 4 layers × 7 modules × 4 checkpoints', rows(4, MODULES, 4, 2)],
  ['bench:analyze adapter series: 8 layers × 2 modules × 10 checkpoints', rows(8, ['q_proj', 'v_proj'], 10, 3)],
];
console.log(`machine: ${cpus()[0]?.model} × ${cpus().length}, Node ${process.version}, ${new Date().toISOString().slice(0, 16)}Z, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
for (const [name, rs] of cases) {
  let wall = Infinity, cpu = Infinity, r: number | null = null;
  for (let i = 0; i < repeat; i++) {
    const c0 = process.cpuUsage(), t0 = performance.now();
    const s = runStatistics(rs, 'run');
    wall = Math.min(wall, (performance.now() - t0) / 1000);
    const u = process.cpuUsage(c0);
    cpu = Math.min(cpu, (u.user + u.system) / 1e6);
    r = s.detail.overall.layer_step.within_checkpoint.r_ci95?.[0] ?? null;
  }
  console.log(`${name} (${rs.length} rows): ${wall.toFixed(3)} s wall, ${cpu.toFixed(3)} s CPU (best of ${repeat}; within-checkpoint r's interval starts at ${r})`);
}

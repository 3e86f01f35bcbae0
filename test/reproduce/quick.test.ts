/**
 * `dorascope reproduce --quick` end to end, through the CLI in-process. Everything checked here is
 * recomputed from the files on disk, independently of the pipeline's own bookkeeping: checkpoint folders
 * (HF Trainer / PEFT layout) → expected analysis rows (layers × modules × checkpoints × runs, layers read
 * from the base's config.json) → decomposition.arrow read with apache-arrow → summary.json → README.
 */
import { describe, expect, it, beforeAll, afterAll, vi } from 'vitest';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { main } from '../../src/cli/main.js';
import { QUICK, checkpointSteps, mainRuns } from '../../src/reproduce/plan.js';

describe('reproduce --quick end to end', () => {
  let out = '';
  let code = -1;
  let stdout = '';
  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), 'dorascope-quick-'));
    const w = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((stdout += String(s)), true));
    const e = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      code = await main(['reproduce', '--quick', '--out', out, '--backend', 'wasm']);
    } finally {
      w.mockRestore();
      e.mockRestore();
    }
  }, 600_000);
  afterAll(async () => {
    if (out) await rm(out, { recursive: true, force: true });
  });

  it('exits 0 and prints where the report is', () => {
    expect(code).toBe(0);
    expect(stdout).toContain(join(out, 'index.html'));
  });

  const plan = mainRuns(QUICK, { lora: 1, dora: 1 });
  const first = (config: string) => `${config}-b0s${QUICK.ftSeeds[0]}`;

  it('writes HF Trainer / PEFT checkpoint folders for every planned run, at the planned steps', async () => {
    const runsDir = join(out, 'checkpoints', 'runs');
    const runs = (await readdir(runsDir)).sort();
    expect(runs).toEqual(plan.runs.map((r) => r.name).sort());
    for (const b of [0, 1]) for (const c of ['ft', 'ft-wd0', `lora-r${QUICK.mainRank}`, `dora-r${QUICK.mainRank}`, `dora-r${QUICK.mainRank / 2}`]) expect(runs).toContain(`${c}-b${b}s${QUICK.ftSeeds[0]}`);
    for (const run of runs) {
      const cps = (await readdir(join(runsDir, run))).filter((n) => /^checkpoint-\d+$/.test(n));
      const steps = cps.map((n) => Number(n.slice('checkpoint-'.length))).sort((a, b) => a - b);
      expect(steps).toEqual(checkpointSteps(QUICK));
      const full = run.startsWith('ft');
      for (const cp of cps) {
        const files = await readdir(join(runsDir, run, cp));
        if (full) expect(files).toEqual(expect.arrayContaining(['model.safetensors', 'config.json', 'trainer_state.json']));
        else expect(files).toEqual(expect.arrayContaining(['adapter_model.safetensors', 'adapter_config.json', 'trainer_state.json']));
      }
      const args = JSON.parse(await readFile(join(runsDir, run, `checkpoint-${QUICK.steps}`, 'training_args.json'), 'utf8'));
      const spec = plan.runs.find((r) => r.name === run)!;
      // The recipe reached the trainer (HF TrainingArguments names).
      expect([args.weight_decay, args.lr_scheduler_type, args.warmup_ratio]).toEqual([spec.weightDecay, 'linear', QUICK.recipe.warmupRatio]);
      if (!full) {
        const cfg = JSON.parse(await readFile(join(runsDir, run, cps[0]!, 'adapter_config.json'), 'utf8'));
        expect(cfg.r).toBe(spec.rank);
        expect(cfg.use_dora).toBe(run.startsWith('dora'));
      }
    }
    // One base per base seed, each with its held-out loss curve.
    for (const b of [0, 1]) expect(await readdir(join(out, 'checkpoints', `base-${b}`))).toContain(`checkpoint-${QUICK.pretrainSteps}`);
  });

  it('analyses every run against its own base, one row per layer × module × checkpoint', async () => {
    const baseCfg = JSON.parse(await readFile(join(out, 'checkpoints', 'base-0', `checkpoint-${QUICK.pretrainSteps}`, 'config.json'), 'utf8'));
    const layers: number = baseCfg.num_hidden_layers;
    expect(layers).toBe(QUICK.model.layers);
    const nCp = checkpointSteps(QUICK).length;
    for (const b of [0, 1]) {
      const rows = (await readTable(join(out, 'analysis-seeds', `base-${b}`, 'decomposition.arrow')));
      const mine = plan.runs.filter((r) => r.baseIndex === b).map((r) => r.name);
      expect([...new Set(rows.map((r) => r['run']))].sort()).toEqual([...mine].sort());
      expect(rows.length).toBe(mine.length * layers * 2 * nCp);
      const keys = new Set(rows.map((r) => `${r['run']}|${r['step']}|${r['module']}|${r['layer']}`));
      expect(keys.size).toBe(rows.length);
      for (const r of rows) {
        expect(Number.isFinite(r['delta_m'])).toBe(true);
        expect(r['delta_d'] as number).toBeGreaterThanOrEqual(0);
      }
    }
    const fig2 = await readTable(join(out, 'analysis', 'decomposition.arrow'));
    expect([...new Set(fig2.map((r) => r['run']))]).toEqual(plan.roles.map((r) => first(r.config)));
  });

  it('summary.json: a headline per method and statistic over both bases, counted from the tables on disk', async () => {
    const s = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'));
    for (const k of ['tool', 'version', 'command', 'preset', 'backend', 'machine', 'seconds', 'bases', 'learning_rates', 'lr_sweep', 'runs', 'headline', 'weight_decay_control', 'rank_sweep', 'claims', 'paper']) {
      expect(s).toHaveProperty(k);
    }
    expect(s.headline.map((r: { label: string }) => r.label)).toEqual(['FT', `LoRA r${QUICK.mainRank}`, `DoRA r${QUICK.mainRank}`, `DoRA† r${QUICK.mainRank / 2}`]);
    expect(s.headline_steps).toEqual([4, 8, 12, 16]);
    const rows = [...await readTable(join(out, 'analysis-seeds', 'base-0', 'decomposition.arrow')), ...await readTable(join(out, 'analysis-seeds', 'base-1', 'decomposition.arrow'))];
    for (const h of s.headline) {
      for (const c of h.cells) {
        expect(c.per_seed.map((p: { run: string }) => p.run)).toEqual([0, 1].map((b) => `${h.config}-b${b}s${QUICK.ftSeeds[0]}`));
        for (const p of c.per_seed) {
          const n = rows.filter((x) => x['run'] === p.run && x['module'] === 'q_proj' && s.headline_steps.includes(x['step'])).length;
          expect(p.n).toBe(n);
        }
        if (c.statistic === 'layer_partialled') expect(c.verdict).toBeNull();
        else expect(['agrees', 'opposite', 'inconclusive']).toContain(c.verdict);
      }
    }
    expect(s.weight_decay_control.map((c: { weight_decay: number }) => c.weight_decay)).toEqual(QUICK.weightDecayControl);
    expect(s.weight_decay_control[0].decay_budget).toBe(0);
    expect(s.weight_decay_control[1].decay_budget).toBeGreaterThan(0);
    expect(s.bases).toHaveLength(2);
    for (const b of s.bases) expect(b.curve.length).toBeGreaterThanOrEqual(QUICK.pretrainSteps / QUICK.pretrainEvalEvery);
    expect(s.rank_sweep).toHaveLength(2 * QUICK.ranks.length);
  });

  it('writes the report pages, tables and a README with the command and the verdict', async () => {
    for (const f of ['index.html', 'weight-decay.html', 'all-modules.html', 'rank-sweep.html', 'pretraining.html', 'results.arrow', 'results.parquet', 'results.csv', 'control.csv', 'rank_sweep.csv', 'README.md']) {
      expect((await stat(join(out, f))).size).toBeGreaterThan(0);
    }
    const html = await readFile(join(out, 'index.html'), 'utf8');
    for (const r of plan.roles) expect(html).toContain(first(r.config));
    expect(await readFile(join(out, 'weight-decay.html'), 'utf8')).toContain('FT wd=0');
    const md = await readFile(join(out, 'README.md'), 'utf8');
    expect(md).toContain(`dorascope reproduce --quick --out ${out} --backend wasm`);
    expect(md).toContain('## Verdict');
    expect(md).toMatch(/\| FT \| -0\.62 \|/u);
    expect(md).toContain('## Weight-decay control');
    expect(md).toMatch(/Backend: (wasm|cpu)/);
    const results = tableFromIPC(await readFile(join(out, 'results.arrow')));
    expect(results.numRows).toBe(4 * 6);
  });

  it('--rejudge recomputes the same statistics from the saved tables, and says so in the README', async () => {
    const before = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'));
    const e = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    let rc = -1;
    try { rc = await main(['reproduce', '--rejudge', out]); } finally { e.mockRestore(); }
    expect(rc).toBe(0);
    const after = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'));
    expect(after.headline).toEqual(before.headline);
    expect(after.weight_decay_control).toEqual(before.weight_decay_control);
    expect(after.runs).toEqual(before.runs);
    expect(after.rejudged.version).toBe(before.version);
    expect(await readFile(join(out, 'README.md'), 'utf8')).toMatch(/recomputed from the saved tables on .* \(`dorascope reproduce --rejudge`\)/u);
  });
});

async function readTable(path: string): Promise<Record<string, unknown>[]> {
  // int64 columns (step) come back as bigint: plain numbers, as the summary holds them.
  return tableFromIPC(await readFile(path)).toArray().map((r) => Object.fromEntries(Object.entries(r.toJSON() as Record<string, unknown>)
    .map(([k, v]) => [k, typeof v === 'bigint' ? Number(v) : v])));
}

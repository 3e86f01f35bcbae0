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

  it('writes HF Trainer / PEFT checkpoint folders, at least four per run, at the planned steps', async () => {
    const runsDir = join(out, 'checkpoints', 'runs');
    const runs = (await readdir(runsDir)).sort();
    expect(runs).toEqual(mainRuns(QUICK, { full: 1, lora: 1, dora: 1 }).runs.map((r) => r.name).sort());
    expect(runs).toContain('ft');
    expect(runs).toContain(`lora-r${QUICK.mainRank}`);
    expect(runs).toContain(`dora-r${QUICK.mainRank}`);
    expect(runs).toContain(`dora-r${QUICK.mainRank / 2}`);
    for (const run of runs) {
      const cps = (await readdir(join(runsDir, run))).filter((n) => /^checkpoint-\d+$/.test(n));
      const steps = cps.map((n) => Number(n.slice('checkpoint-'.length))).sort((a, b) => a - b);
      expect(steps.length).toBeGreaterThanOrEqual(4);
      expect(steps).toEqual(checkpointSteps(QUICK));
      for (const cp of cps) {
        const files = await readdir(join(runsDir, run, cp));
        if (run === 'ft') expect(files).toEqual(expect.arrayContaining(['model.safetensors', 'config.json', 'trainer_state.json']));
        else expect(files).toEqual(expect.arrayContaining(['adapter_model.safetensors', 'adapter_config.json', 'trainer_state.json']));
      }
      if (run !== 'ft') {
        const cfg = JSON.parse(await readFile(join(runsDir, run, cps[0]!, 'adapter_config.json'), 'utf8'));
        expect(cfg.r).toBe(Number(run.split('-r')[1]));
        expect(cfg.use_dora).toBe(run.startsWith('dora'));
      }
    }
  });

  it('has one analysis row per layer × module × checkpoint × run, consistent with the folders', async () => {
    const baseCfg = JSON.parse(await readFile(join(out, 'checkpoints', 'base', await lastCp(join(out, 'checkpoints', 'base')), 'config.json'), 'utf8'));
    const layers: number = baseCfg.num_hidden_layers;
    expect(layers).toBe(QUICK.model.layers);
    const roleRuns = ['ft', `lora-r${QUICK.mainRank}`, `dora-r${QUICK.mainRank}`, `dora-r${QUICK.mainRank / 2}`];
    const table = tableFromIPC(await readFile(join(out, 'analysis', 'decomposition.arrow')));
    const names = table.schema.fields.map((f) => f.name);
    expect(names.slice(0, 11)).toEqual(['run', 'method', 'checkpoint', 'step', 'module', 'layer', 'tensor', 'rows', 'cols', 'delta_m', 'delta_d']);
    const rows = table.toArray().map((r) => r.toJSON() as Record<string, unknown>);
    const nCp = checkpointSteps(QUICK).length;
    expect(rows.length).toBe(layers * 2 * nCp * roleRuns.length);
    // Every (run, step, module, layer) once, the steps being the checkpoint folders on disk.
    const keys = new Set(rows.map((r) => `${r['run']}|${r['step']}|${r['module']}|${r['layer']}`));
    expect(keys.size).toBe(rows.length);
    for (const run of roleRuns) {
      const onDisk = (await readdir(join(out, 'checkpoints', 'runs', run))).filter((n) => n.startsWith('checkpoint-')).map((n) => Number(n.split('-')[1]));
      for (const step of onDisk) for (const module of ['q_proj', 'v_proj']) for (let l = 0; l < layers; l++) expect(keys.has(`${run}|${step}|${module}|${l}`)).toBe(true);
    }
    for (const r of rows) {
      expect(Number.isFinite(r['delta_m'])).toBe(true);
      expect(r['delta_d'] as number).toBeGreaterThanOrEqual(0);
    }

    // summary.json of the reproduction: expected fields, and stats counts matching the rows.
    const s = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'));
    for (const k of ['tool', 'version', 'command', 'preset', 'backend', 'machine', 'seconds', 'learning_rates', 'lr_sweep', 'runs', 'results', 'rank_sweep', 'claims', 'paper']) {
      expect(s).toHaveProperty(k);
    }
    expect(s.results.map((r: { label: string }) => r.label)).toEqual(['FT', `LoRA r${QUICK.mainRank}`, `DoRA r${QUICK.mainRank}`, `DoRA† r${QUICK.mainRank / 2}`]);
    for (const r of s.results) {
      expect(r.stats.n).toBe(rows.filter((x) => x['run'] === r.run && x['module'] === 'q_proj').length);
      expect(['agrees', 'opposite', 'inconclusive']).toContain(r.verdict);
    }
    expect(s.rank_sweep).toHaveLength(2 * QUICK.ranks.length);
    const a = JSON.parse(await readFile(join(out, 'analysis', 'summary.json'), 'utf8'));
    for (const run of a.runs) {
      expect(run.checkpoints.map((c: { step: number }) => c.step)).toEqual(checkpointSteps(QUICK));
      expect(run.modules.q_proj.n + run.modules.v_proj.n).toBe(run.overall.n);
    }
  });

  it('writes the report pages, tables and a README with the command and results table', async () => {
    for (const f of ['index.html', 'all-modules.html', 'rank-sweep.html', 'results.arrow', 'results.csv', 'rank_sweep.csv', 'README.md']) {
      expect((await stat(join(out, f))).size).toBeGreaterThan(0);
    }
    const html = await readFile(join(out, 'index.html'), 'utf8');
    for (const run of ['ft', `lora-r${QUICK.mainRank}`, `dora-r${QUICK.mainRank}`]) expect(html).toContain(run);
    const md = await readFile(join(out, 'README.md'), 'utf8');
    expect(md).toContain(`dorascope reproduce --quick --out ${out} --backend wasm`);
    expect(md).toMatch(/\| FT \| — \|/);
    expect(md).toMatch(/Backend: (wasm|cpu)/);
    const results = tableFromIPC(await readFile(join(out, 'results.arrow')));
    expect(results.numRows).toBe(4);
  });
});

async function lastCp(dir: string): Promise<string> {
  const cps = (await readdir(dir)).filter((n) => /^checkpoint-\d+$/.test(n)).sort((a, b) => Number(a.split('-')[1]) - Number(b.split('-')[1]));
  return cps[cps.length - 1]!;
}

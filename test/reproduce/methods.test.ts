/**
 * `dorascope reproduce --quick --methods all`: VeRA, DVoRA, QLoRA and QDoRA trained beside the paper's four
 * in one run and compared side by side. Checked from the files on disk: each run's saved format, which base
 * each analysis measured it against, the rows per run, the headline without a paper verdict for the methods
 * the paper's Figure 2 does not have, and the compare page naming every run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { runQuiet } from '../helpers/cli-quiet.js';
import { QUICK, checkpointSteps, mainRuns } from '../../src/reproduce/plan.js';
import { parseMethods } from '../../src/reproduce/methods.js';

const EXTRA = ['vera', 'dvora', 'qlora', 'qdora'];

describe('reproduce --quick --methods all', () => {
  let out = '';
  let code = -1;
  let stderr = '';
  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), 'dorascope-methods-'));
    ({ code, stderr } = await runQuiet(['reproduce', '--quick', '--methods', 'all', '--out', out, '--backend', 'wasm']));
  }, 600_000);
  afterAll(async () => {
    if (out) await rm(out, { recursive: true, force: true });
  });

  const plan = mainRuns(QUICK, { lora: 1, dora: 1, vera: 1, dvora: 1 }, parseMethods('all'));
  const seed = QUICK.ftSeeds[0];
  const runsDir = () => join(out, 'checkpoints', 'runs');

  it('trains every planned run, each extra method in its own format', async () => {
    expect(code, stderr.slice(-2000)).toBe(0);
    expect((await readdir(runsDir())).sort()).toEqual(plan.runs.map((r) => r.name).sort());
    const last = `checkpoint-${QUICK.steps}`;
    for (const b of [0, 1]) {
      const cfg = async (run: string) => JSON.parse(await readFile(join(runsDir(), run, last, 'adapter_config.json'), 'utf8'));
      const vera = await cfg(`vera-r${QUICK.veraRank}-b${b}s${seed}`);
      expect([vera.peft_type, vera.r, vera.save_projection, vera.use_dora ?? false]).toEqual(['VERA', QUICK.veraRank, true, false]);
      const dvora = await cfg(`dvora-r${QUICK.veraRank}-b${b}s${seed}`);
      expect([dvora.peft_type, dvora.use_dora]).toEqual(['VERA', true]);
      for (const [m, dora] of [['qlora', false], ['qdora', true]] as const) {
        const run = `${m}-r${QUICK.mainRank}-b${b}s${seed}`;
        const c = await cfg(run);
        expect([c.peft_type, c.r, c.use_dora]).toEqual(['LORA', QUICK.mainRank, dora]);
        // The 4-bit base is saved beside the run, with Transformers' quantization_config.
        const qc = JSON.parse(await readFile(join(runsDir(), run, 'quantized-base', 'config.json'), 'utf8')).quantization_config;
        expect([qc.quant_method, qc.load_in_4bit, qc.bnb_4bit_quant_type]).toEqual(['bitsandbytes', true, 'nf4']);
      }
    }
  });

  it('measures the 4-bit runs against their dequantized base in -nf4 folders, every other run against the full-precision base', async () => {
    const nCp = checkpointSteps(QUICK).length;
    const perRun = QUICK.model.layers * 2 * nCp;
    for (const b of [0, 1]) {
      const plain = await runsOf(join(out, 'analysis-seeds', `base-${b}`));
      const nf4 = await runsOf(join(out, 'analysis-seeds', `base-${b}-nf4`));
      const mine = plan.runs.filter((r) => r.baseIndex === b);
      expect([...plain.keys()].sort()).toEqual(mine.filter((r) => r.quantize === undefined).map((r) => r.name).sort());
      expect([...nf4.keys()].sort()).toEqual([...mine.filter((r) => r.quantize !== undefined).map((r) => r.name), 'quantization'].sort());
      for (const [run, n] of [...plain, ...nf4]) expect(n).toBe(run === 'quantization' ? QUICK.model.layers * 2 : perRun);
      const manifest = JSON.parse(await readFile(join(out, 'analysis-seeds', `base-${b}-nf4`, 'manifest.json'), 'utf8'));
      expect(manifest.quantized_base.path).toBe(join(runsDir(), `qlora-r${QUICK.mainRank}-b${b}s${seed}`, 'quantized-base'));
    }
  });

  it('the headline has all eight methods; only the paper\'s carry its value and a verdict', async () => {
    const s = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'));
    expect(s.headline.map((h: { label: string }) => h.label)).toEqual([
      'FT', `LoRA r${QUICK.mainRank}`, `DoRA r${QUICK.mainRank}`, `DoRA† r${QUICK.mainRank / 2}`,
      `VeRA r${QUICK.veraRank}`, `DVoRA r${QUICK.veraRank}`, `QLoRA r${QUICK.mainRank}`, `QDoRA r${QUICK.mainRank}`,
    ]);
    for (const h of s.headline) {
      const extra = EXTRA.includes(h.method);
      expect(h.paper_r === null).toBe(extra);
      for (const c of h.cells) {
        expect(c.per_seed).toHaveLength(2);
        for (const p of c.per_seed) expect(p.n).toBe(QUICK.model.layers * QUICK.headlineCheckpoints);
        if (extra) expect(c.verdict).toBeNull();
      }
    }
    expect(Object.keys(s.learning_rates).sort()).toEqual(['dora', 'dvora', 'full', 'lora', 'vera']);
    // The rank sweep stays LoRA's and DoRA's own runs (QLoRA at the same rank is not a LoRA point).
    expect(s.rank_sweep.map((p: { run: string }) => p.run).sort()).toEqual(
      QUICK.ranks.flatMap((r) => [`lora-r${r}-b0s${seed}`, `dora-r${r}-b0s${seed}`]).sort());
    const md = await readFile(join(out, 'README.md'), 'utf8');
    expect(md).toMatch(/\*\*QDoRA r\d+\*\* \(not in the paper's Figure 2, not judged\)/u);
  });

  it('one compare page shows every method side by side, with the quantization step', async () => {
    const html = await readFile(join(out, 'index.html'), 'utf8');
    for (const r of plan.roles) expect(html).toContain(`${r.config}-b0s${seed}`);
    expect(html).toContain('quantization');
  });
});

/** Rows per run of an analysis folder's decomposition table. */
async function runsOf(dir: string): Promise<Map<string, number>> {
  const t = tableFromIPC(await readFile(join(dir, 'decomposition.arrow')));
  const out = new Map<string, number>();
  for (const run of t.getChild('run')!.toArray() as string[]) out.set(String(run), (out.get(String(run)) ?? 0) + 1);
  return out;
}

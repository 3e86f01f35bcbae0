/**
 * `dorascope reproduce`: the DoRA paper's weight-decomposition analysis (arXiv 2402.09353, §3.2,
 * Figure 2) end to end on a model trained here, following plan.ts:
 *   1. pretrain a small base on real text (or take `--base`);
 *   2. sweep the learning rate per method family (task metric only);
 *   3. fine-tune FT, LoRA and DoRA at every rank of the sweep (DoRA† = DoRA at r/2), same data, steps, seed;
 *   4. analyse q_proj and v_proj of every layer of the four paper methods (and all projections for the
 *      extra report), render the compare report and the rank-sweep figure;
 *   5. write summary.json, results tables and README.md with the command, machine, backend and time.
 * Checkpoints go to `work` (default OUT/checkpoints) so the published folder stays small.
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join, resolve, relative } from 'node:path';
import { tableFromArrays, tableToIPC } from 'apache-arrow';
import { writeFileAtomic } from '../io/atomic.js';
import { DorascopeError, q } from '../errors.js';
import { VERSION } from '../version.js';
import type { Engine, TrainOutcome } from './engine.js';
import { readFinalMetric, type RunMetric } from './metrics.js';
import { FULL, QUICK, lrSweepRuns, mainRuns, type Preset, type RunSpec, type TrainMethod } from './plan.js';
import { chooseLearningRate } from './sweep.js';
import { accuracyClaims, resultRows, summaryRuns, type RankPoint, type ResultRow } from './results.js';
import { describeMachine, renderReadme, type ReproRecord, type SweepRow } from './readme.js';
import { rankFigure, writeRankPage } from './rank-figure.js';
import { PAPER_FIGURE2, PAPER_CITATION } from './paper.js';

export interface ReproduceOptions {
  readonly out: string;
  readonly quick?: boolean;
  /** Skip pretraining and fine-tune this base (a folder or file of full weights). */
  readonly base?: string;
  /** Where checkpoints go (default OUT/checkpoints). */
  readonly work?: string;
  /** Delete the checkpoints when done (the report, tables and summary stay). */
  readonly dropCheckpoints?: boolean;
  readonly backend?: string;
  /** Also export the report's figures as PNG into OUT/png (needs Chromium). */
  readonly png?: boolean;
  /** The command line to record (default: process.argv). */
  readonly command?: readonly string[];
  readonly log?: (line: string) => void;
  /** Mainly for tests and other front ends; default: dorascope's own trainer, analysis and report. */
  readonly engine?: Engine;
  /** A markdown file whose text goes into the README's Discussion section (written by a person, after reading the run). */
  readonly notes?: string;
  /** Overrides of the preset (documented in the README when used). */
  readonly preset?: Preset;
}

export interface ReproduceResult {
  readonly out: string;
  readonly report: string;
  readonly readme: string;
  readonly summary: string;
  readonly results: readonly ResultRow[];
  readonly seconds: Readonly<Record<string, number>>;
}

/** Modules of the paper's Figure 2 (query) and of our second panel (value). */
export const FIGURE2_MODULES = ['q_proj', 'v_proj'] as const;
/** The extra report: every projection of the Llama block (FT moves the MLP too; adapters do not). */
export const ALL_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

export async function reproduce(opts: ReproduceOptions): Promise<ReproduceResult> {
  const t0 = performance.now();
  const seconds: Record<string, number> = {};
  const timed = async <T>(key: string, f: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    try {
      return await f();
    } finally {
      seconds[key] = (seconds[key] ?? 0) + (performance.now() - t) / 1000;
    }
  };
  const log = opts.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  const preset = opts.preset ?? (opts.quick ? QUICK : FULL);
  const out = resolve(opts.out);
  const work = resolve(opts.work ?? join(out, 'checkpoints'));
  const engine = opts.engine ?? (await import('./engine-dorascope.js')).dorascopeEngine();
  let backend = opts.backend ?? 'auto';
  await mkdir(out, { recursive: true });
  await mkdir(work, { recursive: true });

  // 1. Base model.
  let base: string;
  let baseNote: string;
  if (opts.base !== undefined) {
    base = resolve(opts.base);
    baseNote = `given with --base: ${opts.base}`;
  } else {
    log(`reproduce: pretraining the base model (${preset.pretrainSteps} steps) into ${work}/base`);
    await rm(join(work, 'base'), { recursive: true, force: true });
    const pre = await timed('pretrain', () =>
      engine.pretrain({ out: join(work, 'base'), model: preset.model, steps: preset.pretrainSteps, lr: preset.pretrainLr, batchSize: preset.batchSize, seed: preset.seed, backend }),
    );
    backend = pre.backend;
    base = pre.lastCheckpoint;
    // A path inside OUT is shown relative to it; the work folder usually lies elsewhere (absolute then).
    const rel = relative(out, base);
    const where = rel !== '' && !rel.startsWith('..') ? rel : resolve(base);
    baseNote = `pretrained here for ${preset.pretrainSteps} steps (lr ${preset.pretrainLr}), ${where}${opts.dropCheckpoints ? ' (removed at the end: --drop-checkpoints)' : ''}`;
  }

  const trainRun = async (spec: RunSpec, dir: string): Promise<{ outcome: TrainOutcome; metric: RunMetric }> => {
    // A run folder left by an earlier reproduction would be resumed or mixed with this one: start it afresh
    // (only the folders this pipeline names are removed, inside its own work folder).
    await rm(join(dir, spec.name), { recursive: true, force: true });
    const outcome = await engine.finetune({ ...spec, base, out: join(dir, spec.name), batchSize: preset.batchSize, seed: preset.seed, targetModules: preset.targetModules, backend });
    backend = outcome.backend;
    return { outcome, metric: await readFinalMetric(outcome.lastCheckpoint) };
  };

  // 2. Learning-rate sweep per family (full, lora, dora at the main rank).
  const sweepRows: SweepRow[] = [];
  const chosen = {} as Record<TrainMethod, number>;
  await timed('lr sweep', async () => {
    const byFamily = new Map<TrainMethod, { lr: number; metric: RunMetric }[]>();
    for (const spec of lrSweepRuns(preset)) {
      log(`reproduce: lr sweep ${spec.name} (${spec.steps} steps)`);
      const { metric } = await trainRun(spec, join(work, 'sweep'));
      byFamily.set(spec.method, [...(byFamily.get(spec.method) ?? []), { lr: spec.lr, metric }]);
    }
    for (const [family, points] of byFamily) {
      chosen[family] = chooseLearningRate(family, points);
      for (const p of points) {
        sweepRows.push({ family, lr: p.lr, metricName: p.metric.name, metric: p.metric.value, evalLoss: p.metric.evalLoss, chosen: p.lr === chosen[family] });
      }
    }
  });
  log(`reproduce: chosen learning rates: full ${chosen.full}, lora ${chosen.lora}, dora ${chosen.dora}`);

  // 3. The real runs.
  const { runs, roles } = mainRuns(preset, chosen);
  const trained = new Map<string, { outcome: TrainOutcome; metric: RunMetric }>();
  await timed('fine-tuning', async () => {
    for (const spec of runs) {
      log(`reproduce: fine-tuning ${spec.name} (lr ${spec.lr}, ${spec.steps} steps)`);
      trained.set(spec.name, await trainRun(spec, join(work, 'runs')));
    }
  });

  // 4. Analysis and reports.
  const roleRuns = [...new Set(roles.map((r) => r.run))];
  const analysisDir = join(out, 'analysis');
  const allDir = join(out, 'analysis-all-modules');
  const runsFor = roleRuns.map((name) => ({ label: name, path: trained.get(name)!.outcome.runDir }));
  await timed('analysis', async () => {
    log(`reproduce: analysing ${FIGURE2_MODULES.join(', ')} of ${roleRuns.join(', ')}`);
    await engine.analyze({ base, runs: runsFor, modules: FIGURE2_MODULES, out: analysisDir });
    log(`reproduce: analysing every projection (${ALL_MODULES.join(', ')}) for the extra report`);
    await engine.analyze({ base, runs: runsFor, modules: ALL_MODULES, out: allDir });
  });
  const title = `dorascope reproduction of DoRA Figure 2 (${preset.name})`;
  const report = join(out, 'index.html');
  await timed('report', async () => {
    await engine.compare({ dirs: [analysisDir], out: report, title });
    await engine.compare({ dirs: [allDir], out: join(out, 'all-modules.html'), title: `${title}: every projection` });
    if (opts.png) await engine.png({ dirs: [analysisDir], out: report, title, pngDir: join(out, 'png') });
  });

  // 5. Results, rank sweep, summary and README.
  const summaryPath = join(analysisDir, 'summary.json');
  const analysisSummary = JSON.parse(await readFile(summaryPath, 'utf8')) as unknown;
  const metrics = new Map([...trained].map(([k, v]) => [k, v.metric]));
  const lrs = new Map(runs.map((r) => [r.name, r.lr]));
  const results = resultRows(roles, summaryRuns(analysisSummary, summaryPath), metrics, lrs);
  const rank: RankPoint[] = runs
    .filter((r): r is RunSpec & { method: 'lora' | 'dora'; rank: number } => r.method !== 'full' && r.rank !== undefined && preset.ranks.includes(r.rank))
    .map((r) => ({ method: r.method, rank: r.rank, run: r.name, metric: metrics.get(r.name)!.value, evalLoss: metrics.get(r.name)!.evalLoss }));
  const claims = accuracyClaims(rank, preset.mainRank);
  const data = await engine.describeData();
  await writeRankPage(join(out, 'rank-sweep.html'), `${title}: rank sweep`, rankFigure(rank, data.metric));
  await writeResultsTables(out, results, rank);

  if (opts.dropCheckpoints) await rm(work, { recursive: true, force: true });
  seconds['total'] = (performance.now() - t0) / 1000;
  const command = ['dorascope', ...(opts.command ?? process.argv.slice(2))].join(' ');
  const machine = describeMachine();
  const created = new Date().toISOString();
  const record: ReproRecord = {
    title,
    command,
    created,
    preset,
    backend,
    machine,
    seconds,
    base: baseNote,
    task: `${data.task}; pretraining text: ${data.pretrain}`,
    runs,
    sweep: sweepRows,
    results,
    rank,
    claims,
    files: [
      { path: 'index.html', what: 'compare report (Figure 2 per method and module, Figure 3, trajectories, table)' },
      { path: 'all-modules.html', what: 'the same for every projection (q, k, v, o, gate, up, down)' },
      { path: 'rank-sweep.html', what: 'validation metric against rank, LoRA and DoRA' },
      { path: 'analysis/', what: 'decomposition.arrow/.csv, summary.json, manifest.json of q_proj and v_proj' },
      { path: 'analysis-all-modules/', what: 'the same over every projection' },
      { path: 'results.arrow, results.csv', what: 'the results table; rank_sweep.csv: the rank sweep' },
      { path: 'summary.json', what: 'everything above as JSON (plan, learning rates, results, timings, machine)' },
      ...(opts.png ? [{ path: 'png/', what: 'the report figures as PNG' }] : []),
    ],
    ...(opts.notes === undefined ? {} : { notes: await readNotes(opts.notes) }),
  };
  const summary = join(out, 'summary.json');
  await writeFileAtomic(
    summary,
    `${JSON.stringify(
      {
        tool: 'dorascope',
        version: VERSION,
        kind: 'reproduce',
        created,
        command,
        paper: { citation: PAPER_CITATION, figure2: PAPER_FIGURE2 },
        preset,
        backend,
        machine,
        seconds,
        base: baseNote,
        data,
        learning_rates: chosen,
        lr_sweep: sweepRows,
        runs: runs.map((r) => ({ ...r, checkpoints_dir: opts.dropCheckpoints ? null : relative(out, trained.get(r.name)!.outcome.runDir), metric: metrics.get(r.name) })),
        roles,
        results,
        rank_sweep: rank,
        claims,
        analysis: { dir: 'analysis', modules: FIGURE2_MODULES, all_modules_dir: 'analysis-all-modules' },
      },
      null,
      2,
    )}\n`,
  );
  const readme = join(out, 'README.md');
  await writeFileAtomic(readme, renderReadme(record));
  log(`reproduce: done in ${seconds['total'].toFixed(0)} s; report: ${report}`);
  return { out, report, readme, summary, results, seconds };
}

async function readNotes(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw new DorascopeError('E_NOT_FOUND', `cannot read the notes file ${q(path)}: ${(e as Error).message}`, undefined, { cause: e });
  }
}

async function writeResultsTables(out: string, results: readonly ResultRow[], rank: readonly RankPoint[]): Promise<void> {
  const num = (v: number | null | undefined): number => (v === null || v === undefined ? Number.NaN : v);
  const cols = {
    label: results.map((r) => r.label),
    run: results.map((r) => r.run),
    method: results.map((r) => r.method),
    rank: Int32Array.from(results.map((r) => r.rank ?? -1)),
    lr: Float64Array.from(results.map((r) => r.lr)),
    module: results.map((r) => r.module),
    n: Int32Array.from(results.map((r) => r.stats?.n ?? 0)),
    pearson_r: Float64Array.from(results.map((r) => num(r.stats?.pearson_r))),
    r_lo: Float64Array.from(results.map((r) => num(r.stats?.r_ci95?.[0]))),
    r_hi: Float64Array.from(results.map((r) => num(r.stats?.r_ci95?.[1]))),
    slope: Float64Array.from(results.map((r) => num(r.stats?.slope))),
    slope_lo: Float64Array.from(results.map((r) => num(r.stats?.slope_ci95?.[0]))),
    slope_hi: Float64Array.from(results.map((r) => num(r.stats?.slope_ci95?.[1]))),
    paper_r: Float64Array.from(results.map((r) => num(r.paperR))),
    verdict: results.map((r) => r.verdict ?? ''),
    metric: Float64Array.from(results.map((r) => num(r.metric.value))),
    eval_loss: Float64Array.from(results.map((r) => num(r.metric.evalLoss))),
  };
  await writeFileAtomic(join(out, 'results.arrow'), tableToIPC(tableFromArrays(cols), 'file'));
  await writeFileAtomic(join(out, 'results.csv'), csv(cols));
  await writeFileAtomic(
    join(out, 'rank_sweep.csv'),
    csv({ method: rank.map((r) => r.method), rank: rank.map((r) => r.rank), run: rank.map((r) => r.run), metric: rank.map((r) => num(r.metric)), eval_loss: rank.map((r) => num(r.evalLoss)) }),
  );
}

function csv(cols: Record<string, ArrayLike<unknown>>): string {
  const names = Object.keys(cols);
  const n = cols[names[0]!]!.length;
  const cell = (v: unknown): string => {
    const s = typeof v === 'number' && Number.isNaN(v) ? '' : String(v);
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const lines = [names.join(',')];
  for (let i = 0; i < n; i++) lines.push(names.map((k) => cell(cols[k]![i])).join(','));
  return `${lines.join('\n')}\n`;
}

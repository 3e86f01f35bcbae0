/**
 * The last step of a reproduction: from the decomposition tables of every run and the facts of the
 * training (plan, bases, metrics, timings), compute the headline statistics with their verdicts
 * (headline.ts) and write results.arrow/.parquet/.csv, control.csv, rank_sweep.csv, summary.json and README.md.
 * `rejudge` runs it again on a finished reproduction folder, without training: the statistics and the
 * text then come from this version of dorascope, the numbers they are computed from from the saved tables.
 */
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { tableFromArrays, tableToIPC } from 'apache-arrow';
import { writeFileAtomic } from '../io/atomic.js';
import { writeParquetFile } from '../io/parquet.js';
import { DorascopeError, q } from '../errors.js';
import { readDecomposition } from '../analysis/table.js';
import { VERSION } from '../version.js';
import { checkpointSteps, headlineSteps, runDecayBudget, type MainRole, type Plan, type Preset, type RunSpec, type TrainMethod } from './plan.js';
import { accuracyClaims, type RankPoint } from './results.js';
import { headline, type ControlRow, type HeadlineRow } from './headline.js';
import { renderReadme, type Machine, type ReproRecord, type SweepRow } from './readme.js';
import { PAPER_FIGURE2, PAPER_CITATION } from './paper.js';
import type { RunMetric } from './metrics.js';
import type { Engine } from './engine.js';
import { figurePages, renderPages, reproductionTitle } from './pages.js';
import { csvStringCell } from '../io/escape.js';
import { JSON_CAPS, readTextCapped } from '../io/open-regular.js';

/** What `rejudge` reads back from a reproduction's summary.json (written by `summaryJson` below). */
interface SavedReproduction {
  readonly kind: string;
  readonly command: string;
  readonly created: string;
  readonly preset: Preset;
  readonly backend: string;
  readonly machine: Machine;
  readonly seconds: Record<string, number>;
  readonly task: string;
  readonly runs: (RunSpec & { checkpoints_dir: string | null; metric: RunMetric; decay_budget: number })[];
  readonly roles: MainRole[];
  readonly learning_rates: Record<TrainMethod, number>;
  readonly weight_decay_control: { weight_decay: number; config: string }[];
  readonly lr_sweep: SweepRow[];
  readonly rank_sweep: RankPoint[];
  readonly bases: { seed: number | null; note: string; late_improvement: number | null; curve: { step: number; evalLoss: number }[] }[];
}

/** The module of the paper's Figure 2: the headline statistics use the query matrices. */
export const HEADLINE_MODULE = 'q_proj';

/** What training produced, before any statistic. */
export type RunFacts = Omit<ReproRecord, 'headline' | 'control' | 'claims' | 'headlineSteps' | 'module' | 'files'> & {
  /** Each run's checkpoint folder relative to the output folder (null when dropped). */
  readonly checkpointsDirs: Readonly<Record<string, string | null>>;
  readonly png: boolean;
};

export async function judge(out: string, facts: RunFacts, seedDirs: readonly string[]): Promise<{ readme: string; summary: string; headline: { rows: HeadlineRow[]; control: ControlRow[] } }> {
  const rows = (await Promise.all(seedDirs.map((d) => readDecomposition(d)))).flat();
  const steps = headlineSteps(checkpointSteps(facts.preset), facts.preset.headlineCheckpoints);
  const head = headline({ rows, runs: facts.plan.runs, module: HEADLINE_MODULE, steps }, facts.plan.roles, facts.plan.control, runDecayBudget);
  const record: ReproRecord = {
    ...facts, headlineSteps: steps, module: HEADLINE_MODULE, headline: head.rows, control: head.control,
    claims: accuracyClaims(facts.rank, facts.preset.mainRank), files: files(facts.png, facts.bases.some((b) => b.curve.length > 0)),
  };
  await writeTables(out, head.rows, head.control, facts.rank);
  const summary = join(out, 'summary.json');
  await writeFileAtomic(summary, `${JSON.stringify(summaryJson(record, facts.checkpointsDirs), null, 2)}\n`);
  const readme = join(out, 'README.md');
  await writeFileAtomic(readme, renderReadme(record));
  return { readme, summary, headline: head };
}

/**
 * Recomputes the statistics, tables, summary.json and README.md of a finished reproduction folder, and
 * renders its pages again (with `png`, its figures as PNG too).
 */
export async function rejudge(dir: string, opts: { png?: boolean; engine?: Engine } = {}): Promise<{ readme: string; summary: string; headline: { rows: HeadlineRow[]; control: ControlRow[] } }> {
  const out = resolve(dir);
  const path = join(out, 'summary.json');
  let s: SavedReproduction;
  try {
    s = JSON.parse(await readTextCapped(path, 'the reproduction summary', JSON_CAPS.manifest)) as SavedReproduction;
  } catch (e) {
    if (e instanceof DorascopeError) throw e;
    throw new DorascopeError('E_ANALYSIS_DIR', `cannot read ${q(path)}: ${(e as Error).message}`, undefined, { cause: e });
  }
  if (s?.kind !== 'reproduce' || !Array.isArray(s.runs) || !Array.isArray(s.roles) || !Array.isArray(s.weight_decay_control) || !Array.isArray(s.bases)) {
    throw new DorascopeError('E_ANALYSIS_DIR', `${q(path)} is not the summary of a reproduction written by this version (kind "reproduce" with runs and roles)`);
  }
  const runs = s.runs;
  const plan: Plan = {
    runs: runs.map(({ checkpoints_dir: _c, metric: _m, decay_budget: _d, ...spec }) => spec),
    roles: s.roles, lr: s.learning_rates,
    control: s.weight_decay_control.map((c) => ({ weightDecay: c.weight_decay, config: c.config })),
  };
  const seedRoot = join(out, 'analysis-seeds');
  const seedDirs = (await readdir(seedRoot)).filter((n) => /^base-\d+(?:-nf4)?$/u.test(n)).sort().map((n) => join(seedRoot, n));
  const facts: RunFacts = {
    title: reproductionTitle(s.preset.name), command: s.command, created: s.created, preset: s.preset,
    backend: s.backend, machine: s.machine, seconds: s.seconds, task: s.task, plan, sweep: s.lr_sweep, rank: s.rank_sweep,
    bases: s.bases.map((b) => ({ seed: b.seed, path: '', note: b.note, curve: b.curve, lateImprovement: b.late_improvement })),
    metrics: Object.fromEntries(runs.map((r) => [r.name, r.metric])),
    checkpointsDirs: Object.fromEntries(runs.map((r) => [r.name, r.checkpoints_dir])),
    png: opts.png === true || (await readdir(out)).includes('png'),
    rejudged: { created: new Date().toISOString(), version: VERSION },
  };
  const engine = opts.engine ?? (await import('./engine-dorascope.js')).dorascopeEngine();
  await renderPages(engine, out, facts.title, plan.control.map((c) => c.weightDecay), opts.png === true);
  await figurePages(out, facts.title, facts.rank, (await engine.describeData()).metric, facts.bases);
  return judge(out, facts, seedDirs);
}

const files = (png: boolean, pretrained: boolean): { path: string; what: string }[] => [
  { path: 'index.html', what: 'compare report of the first base and seed (Figure 2 per method and module, Figure 3, trajectories, table)' },
  { path: 'weight-decay.html', what: 'the weight-decay control: full fine-tuning at each weight decay, one panel per setting' },
  { path: 'all-modules.html', what: 'the same as index.html for every projection (q, k, v, o, gate, up, down)' },
  { path: 'rank-sweep.html', what: 'validation metric against rank, LoRA and DoRA' },
  ...(pretrained ? [{ path: 'pretraining.html', what: 'held-out loss of each base while it was pretrained' }] : []),
  { path: 'analysis/, analysis-all-modules/, analysis-weight-decay/', what: 'decomposition.arrow/.csv, summary.json, manifest.json behind the three reports' },
  { path: 'analysis-seeds/base-N/', what: 'every run on base N (all seeds, the control, the rank sweep): what the headline statistics are computed from' },
  { path: 'results.arrow, results.parquet, results.csv', what: 'the headline table (method × statistic, each seed and the range); control.csv: the weight-decay control; rank_sweep.csv: the rank sweep' },
  { path: 'summary.json', what: 'everything above as JSON (plan, learning rates, per-seed statistics, timings, machine)' },
  ...(png ? [{ path: 'png/', what: 'the report figures as PNG' }] : []),
];

function summaryJson(r: ReproRecord, checkpointsDirs: Readonly<Record<string, string | null>>): Record<string, unknown> {
  return {
    tool: 'dorascope', version: VERSION, kind: 'reproduce', created: r.created, command: r.command,
    ...(r.rejudged === undefined ? {} : { rejudged: r.rejudged }),
    paper: { citation: PAPER_CITATION, figure2: PAPER_FIGURE2 },
    preset: r.preset, backend: r.backend, machine: r.machine, seconds: r.seconds,
    bases: r.bases.map((b) => ({ seed: b.seed, note: b.note, late_improvement: b.lateImprovement, curve: b.curve })),
    task: r.task, learning_rates: r.plan.lr, lr_sweep: r.sweep,
    runs: r.plan.runs.map((s) => ({ ...s, decay_budget: runDecayBudget(s), checkpoints_dir: checkpointsDirs[s.name] ?? null, metric: r.metrics[s.name] })),
    roles: r.plan.roles, headline_module: r.module, headline_steps: r.headlineSteps,
    headline: r.headline, weight_decay_control: r.control, rank_sweep: r.rank, claims: r.claims,
  };
}

async function writeTables(out: string, head: readonly HeadlineRow[], control: readonly ControlRow[], rank: readonly RankPoint[]): Promise<void> {
  const num = (v: number | null | undefined): number => (v === null || v === undefined ? Number.NaN : v);
  const flat = head.flatMap((h) => h.cells.map((c) => ({ h, c })));
  const cols = {
    label: flat.map(({ h }) => h.label), method: flat.map(({ h }) => h.method), config: flat.map(({ h }) => h.config),
    statistic: flat.map(({ c }) => c.statistic),
    runs: Int32Array.from(flat.map(({ c }) => c.across.n_runs)),
    mean: Float64Array.from(flat.map(({ c }) => num(c.across.mean))),
    min: Float64Array.from(flat.map(({ c }) => num(c.across.min))),
    max: Float64Array.from(flat.map(({ c }) => num(c.across.max))),
    paper_r: Float64Array.from(flat.map(({ h }) => num(h.paper_r))),
    verdict: flat.map(({ c }) => c.verdict ?? ''),
    seeds: flat.map(({ c }) => c.per_seed.map((p) => `${p.run}: ${fmtR(p.r)} ${fmtCi(p.ci)}`).join('; ')),
  };
  const results = tableFromArrays(cols);
  await writeFileAtomic(join(out, 'results.arrow'), tableToIPC(results, 'file'));
  await writeParquetFile(join(out, 'results.parquet'), results);
  await writeFileAtomic(join(out, 'results.csv'), csv(cols));
  const ctl = control.flatMap((c) => c.cells.map((cell) => ({ c, cell })));
  await writeFileAtomic(join(out, 'control.csv'), csv({
    weight_decay: ctl.map(({ c }) => c.weight_decay), decay_budget: ctl.map(({ c }) => c.decay_budget), statistic: ctl.map(({ cell }) => cell.statistic),
    runs: ctl.map(({ cell }) => cell.across.n_runs), mean: ctl.map(({ cell }) => num(cell.across.mean)), min: ctl.map(({ cell }) => num(cell.across.min)),
    max: ctl.map(({ cell }) => num(cell.across.max)), verdict_vs_ft: ctl.map(({ cell }) => cell.verdict ?? ''),
    signed_rel_delta_m: ctl.map(({ c }) => num(c.magnitude.signed_rel_delta_m.mean)), frac_features_shrunk: ctl.map(({ c }) => num(c.magnitude.frac_features_shrunk.mean)),
  }));
  await writeFileAtomic(join(out, 'rank_sweep.csv'),
    csv({ method: rank.map((r) => r.method), rank: rank.map((r) => r.rank), run: rank.map((r) => r.run), metric: rank.map((r) => num(r.metric)), eval_loss: rank.map((r) => num(r.evalLoss)) }));
}

const fmtR = (v: number | null): string => (v === null ? 'n/a' : v.toFixed(3));
const fmtCi = (c: [number, number] | null): string => (c === null ? '' : `[${c[0].toFixed(3)}, ${c[1].toFixed(3)}]`);

function csv(cols: Record<string, ArrayLike<unknown>>): string {
  const names = Object.keys(cols);
  const n = cols[names[0]!]!.length;
  const cell = (v: unknown): string => {
    if (typeof v === 'number') return Number.isNaN(v) ? '' : String(v);
    return csvStringCell(String(v)); // formula-looking text neutralised (OWASP)
  };
  const lines = [names.join(',')];
  for (let i = 0; i < n; i++) lines.push(names.map((k) => cell(cols[k]![i])).join(','));
  return `${lines.join('\n')}\n`;
}


/**
 * The README.md of a reproduction folder: the exact command, machine, backend and time taken, the
 * results table beside the paper's numbers, the learning-rate sweep, the rank sweep and an honest
 * reading of what agreed and what did not. Pure: a record in, markdown out.
 */
import { cpus, totalmem, platform, release } from 'node:os';
import type { Preset, RunSpec } from './plan.js';
import type { Claim, RankPoint, ResultRow, Stats } from './results.js';
import { PAPER_CITATION } from './paper.js';

export interface Machine {
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly os: string;
  readonly node: string;
}

export function describeMachine(): Machine {
  const c = cpus();
  return {
    cpu: c[0]?.model.trim() ?? 'unknown',
    cores: c.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${platform()} ${release()}`,
    node: process.version,
  };
}

export interface SweepRow {
  readonly family: string;
  readonly lr: number;
  readonly metricName: string | null;
  readonly metric: number | null;
  readonly evalLoss: number | null;
  readonly chosen: boolean;
}

export interface ReproRecord {
  readonly title: string;
  readonly command: string;
  readonly created: string;
  readonly preset: Preset;
  readonly backend: string;
  readonly machine: Machine;
  readonly seconds: Readonly<Record<string, number>>;
  readonly base: string;
  readonly task: string;
  readonly runs: readonly RunSpec[];
  readonly sweep: readonly SweepRow[];
  readonly results: readonly ResultRow[];
  readonly rank: readonly RankPoint[];
  readonly claims: readonly Claim[];
  readonly files: readonly { path: string; what: string }[];
  /** Hand-written discussion (markdown) from `--notes FILE`, kept verbatim under its own heading. */
  readonly notes?: string;
}

const f = (v: number | null | undefined, d = 3): string => (v === null || v === undefined || !Number.isFinite(v) ? 'n/a' : v.toFixed(d));
const ci = (c: readonly [number, number] | null | undefined, d = 3): string => (c ? `[${f(c[0], d)}, ${f(c[1], d)}]` : 'n/a');
const stat = (s: Stats | null): string => (s ? `${f(s.pearson_r, 2)} ${ci(s.r_ci95, 2)}` : 'n/a');
const minutes = (s: number): string => (s >= 90 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(0)} s`);

export function renderReadme(r: ReproRecord): string {
  const p = r.preset;
  const total = r.seconds['total'] ?? 0;
  const L: string[] = [];
  L.push(`# ${r.title}`, '');
  L.push(
    `The weight-decomposition analysis of ${PAPER_CITATION} (§3, Figure 2), reproduced end to end by dorascope on a`,
    `model trained here: pretrain a small Llama-shaped model, fine-tune it with full fine-tuning, LoRA, DoRA and DoRA†,`,
    `then measure how each run moved the magnitude (ΔM) and direction (ΔD) of every layer's query and value matrices.`,
    '',
  );
  L.push('Open [index.html](index.html) for the figures (Figure 2 a/b/c, Figure 3, trajectories, table) and');
  L.push('[rank-sweep.html](rank-sweep.html) for the task metric against rank.', '');
  L.push('## How this was made', '');
  L.push('```sh', r.command, '```', '');
  L.push(`- Date: ${r.created}`);
  L.push(`- Machine: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memoryGiB} GiB, ${r.machine.os}, Node ${r.machine.node}`);
  L.push(`- Backend: ${r.backend}`);
  L.push(`- Time taken: ${minutes(total)} in all (${Object.entries(r.seconds).filter(([k]) => k !== 'total').map(([k, v]) => `${k} ${minutes(v)}`).join(', ')})`);
  L.push(`- Preset: \`${p.name}\`; model ${p.model.layers} layers, d_model ${p.model.dModel}, ${p.model.heads} heads, d_ff ${p.model.dFf}, context ${p.model.context}`);
  L.push(`- Base: ${r.base}`);
  L.push(`- Task: ${r.task}`);
  L.push(`- Fine-tuning: ${p.steps} steps, batch ${p.batchSize}, checkpoint every ${p.saveEvery} steps, seed ${p.seed}; adapters on ${p.targetModules.join(', ')}, alpha = 2r`, '');
  L.push('## Results', '');
  L.push(`Headline module: \`${r.results[0]?.module ?? 'q_proj'}\` of every layer (the paper's Figure 2 uses query matrices), all checkpoints.`);
  L.push('Slope = least-squares slope of ΔM (y) on ΔD (x); r = Pearson correlation; intervals are the analysis\'s 95% bootstrap intervals.', '');
  L.push('| method | rank | lr | points | r [95% CI] | paper r | slope [95% CI] | sign vs paper | r, q+v [95% CI] | validation metric |');
  L.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const x of r.results) {
    const m = x.metric.value === null ? `loss ${f(x.metric.evalLoss, 4)}` : `${x.metric.name} ${f(x.metric.value, 4)} (loss ${f(x.metric.evalLoss, 4)})`;
    L.push(
      `| ${x.label} | ${x.rank ?? '—'} | ${x.lr} | ${x.stats?.n ?? 0} | ${stat(x.stats)} | ${f(x.paperR, 2)} | ${f(x.stats?.slope, 3)} ${ci(x.stats?.slope_ci95)} | ${x.verdict ?? '—'} | ${stat(x.overall)} | ${m} |`,
    );
  }
  L.push('');
  L.push('"sign vs paper" is decided by the slope\'s 95% interval alone: *agrees* when it lies wholly on the paper\'s side of');
  L.push('zero, *opposite* when wholly on the other side, *inconclusive* when it contains zero. The rule was fixed before the run.', '');
  L.push('### The paper\'s accuracy claims on our rank sweep', '');
  L.push('| claim | holds here | values |', '| --- | --- | --- |');
  for (const c of r.claims) L.push(`| ${c.claim} | ${c.holds === null ? 'n/a' : c.holds ? 'yes' : 'no'} | ${c.detail} |`);
  L.push('', 'One seed per run: differences in the metric smaller than run-to-run noise are not evidence either way.', '');
  L.push('### Rank sweep', '');
  L.push('| method | rank | run | validation metric | validation loss |', '| --- | --- | --- | --- | --- |');
  for (const x of r.rank) L.push(`| ${x.method} | ${x.rank} | ${x.run} | ${f(x.metric, 4)} | ${f(x.evalLoss, 4)} |`);
  L.push('', '### Learning-rate sweep', '');
  L.push(`Each family tried every learning rate for ${p.sweepSteps} steps; the chosen one (highest validation metric, ties to the`);
  L.push('lower validation loss, then the smaller rate) was used for all its runs. DoRA† and the rank sweep use their family\'s rate.', '');
  L.push('| family | lr | metric | validation loss | chosen |', '| --- | --- | --- | --- | --- |');
  for (const s of r.sweep) L.push(`| ${s.family} | ${s.lr} | ${s.metricName ?? ''} ${f(s.metric, 4)} | ${f(s.evalLoss, 4)} | ${s.chosen ? '✓' : ''} |`);
  L.push('', '## Reading the result', '');
  for (const line of discussion(r.results, p)) L.push(line);
  if (r.notes !== undefined) L.push('', '## Discussion', '', r.notes.trim());
  L.push('', '## Files', '');
  for (const x of r.files) L.push(`- \`${x.path}\`: ${x.what}`);
  L.push('');
  return L.join('\n');
}

/** An honest paragraph per outcome; it reports, it does not explain away. */
function discussion(rows: readonly ResultRow[], p: Preset): string[] {
  const out: string[] = [];
  const agree = rows.filter((x) => x.verdict === 'agrees').map((x) => x.label);
  const opp = rows.filter((x) => x.verdict === 'opposite').map((x) => x.label);
  const inc = rows.filter((x) => x.verdict === 'inconclusive').map((x) => x.label);
  if (agree.length > 0) out.push(`- Same slope sign as the paper, with the interval excluding zero: ${agree.join(', ')}.`);
  if (opp.length > 0) out.push(`- Opposite sign to the paper, with the interval excluding zero: ${opp.join(', ')}.`);
  if (inc.length > 0) out.push(`- Interval contains zero (no sign can be claimed): ${inc.join(', ')}.`);
  if (opp.length + inc.length > 0) {
    out.push(
      '',
      'Where this run differs from the paper, the likely reasons are of scale, not of the measurement (the analysis was',
      'not changed to chase the paper\'s signs): the paper fine-tunes VL-BART and LLaMA (hundreds of millions to billions',
      `of parameters, thousands of steps) while this model has ${p.model.layers} layers of width ${p.model.dModel} and each run trains`,
      `for ${p.steps} steps, so every method may still be in the early phase where magnitude and direction grow together; each`,
      'run has one seed; and the points (layers × checkpoints) are few, so the intervals are wide. See docs/reproduce.md',
      'for what was tried.',
    );
  }
  return out;
}

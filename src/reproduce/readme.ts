/**
 * The README.md of a reproduction folder: the verdict first (per method and statistic, the value
 * across seeds, the paper's value, agrees / opposite / inconclusive by verdict.ts's rule), the
 * weight-decay control, a reading of the numbers generated from them by fixed sentences, then how
 * it was made (command, machine, backend, time, bases and their pretraining curves, recipe) and the
 * sweeps. Pure: a record in, markdown out.
 */
import { cpus, totalmem, platform, release } from 'node:os';
import type { AcrossSeeds } from '../analysis/layer-step-stats.js';
import type { Plan, Preset } from './plan.js';
import type { Claim, RankPoint } from './results.js';
import type { ControlRow, HeadlineCell, HeadlineRow } from './headline.js';
import type { EvalPoint, RunMetric } from './metrics.js';
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

export interface BaseRecord {
  /** The base seed; null for a base given with --base. */
  readonly seed: number | null;
  readonly path: string;
  readonly note: string;
  readonly curve: readonly EvalPoint[];
  /** metrics.ts `lateImprovement`: relative fall of the held-out loss over the last quarter. */
  readonly lateImprovement: number | null;
}

export interface ReproRecord {
  readonly title: string;
  readonly command: string;
  readonly created: string;
  readonly preset: Preset;
  readonly backend: string;
  readonly machine: Machine;
  readonly seconds: Readonly<Record<string, number>>;
  readonly bases: readonly BaseRecord[];
  readonly task: string;
  readonly plan: Plan;
  readonly sweep: readonly SweepRow[];
  readonly headlineSteps: readonly number[];
  readonly module: string;
  readonly headline: readonly HeadlineRow[];
  readonly control: readonly ControlRow[];
  readonly rank: readonly RankPoint[];
  readonly claims: readonly Claim[];
  readonly metrics: Readonly<Record<string, RunMetric>>;
  readonly files: readonly { path: string; what: string }[];
  /** Hand-written discussion (markdown) from `--notes FILE`, kept verbatim under its own heading. */
  readonly notes?: string;
  /** Set when the statistics and text were recomputed from the saved tables (`reproduce --rejudge`). */
  readonly rejudged?: { readonly created: string; readonly version: string };
}

const f = (v: number | null | undefined, d = 2): string => (v === null || v === undefined || !Number.isFinite(v) ? 'n/a' : v.toFixed(d));
const pct = (v: number | null | undefined): string => (v === null || v === undefined || !Number.isFinite(v) ? 'n/a' : `${(100 * v).toFixed(1)}%`);
const minutes = (s: number): string => (s >= 90 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(0)} s`);
/** Mean over runs with the range: `−0.41 (−0.60 … −0.20)`; one run: its value. */
const across = (a: AcrossSeeds, d = 2, fmt = (v: number | null) => f(v, d)): string =>
  (a.n_runs === 0 ? 'n/a' : a.n_runs === 1 ? fmt(a.mean) : `${fmt(a.mean)} (${fmt(a.min)} … ${fmt(a.max)})`);
const cellText = (c: HeadlineCell): string => {
  const v = across(c.across);
  if (c.verdict === null) return v;
  const n = c.per_seed.filter((p) => p.verdict === c.verdict).length;
  return `${v} **${c.verdict}**${c.per_seed.length > 1 ? ` ${c.verdict === 'inconclusive' ? `(${seedTally(c)})` : `(${n}/${c.per_seed.length})`}` : ''}`;
};
const seedTally = (c: HeadlineCell): string => {
  const count = (v: string) => c.per_seed.filter((p) => p.verdict === v).length;
  return `${count('agrees')} agree, ${count('opposite')} opposite, ${count('inconclusive')} inconclusive`;
};
const cell = (row: { cells: readonly HeadlineCell[] }, key: string): HeadlineCell | undefined => row.cells.find((c) => c.statistic === key);

/** `, and beside them VeRA r16, QDoRA r4 (--methods)` when the run trained methods beyond the paper's. */
function extrasText(r: ReproRecord): string {
  const extra = r.headline.filter((h) => h.paper_r === null).map((h) => h.label);
  return extra.length === 0 ? '' : ` (and, beside them, ${extra.join(', ')}: \`--methods\`; the 4-bit runs measured against their dequantized base)`;
}

export function renderReadme(r: ReproRecord): string {
  const L: string[] = [];
  const nRuns = r.headline[0]?.cells[0]?.per_seed.length ?? 0;
  L.push(`# ${r.title}`, '');
  L.push(
    `The weight-decomposition analysis of ${PAPER_CITATION} (§3, Figure 2), reproduced end to end by dorascope on`,
    `models trained here: pretrain small Llama-shaped bases, fine-tune each with full fine-tuning (FT), LoRA, DoRA and DoRA†${extrasText(r)}`,
    'on several seeds, then measure how every run moved the magnitude (ΔM) and direction (ΔD) of each layer\'s query matrix.',
    '',
    'Open [index.html](index.html) for Figure 2 and the trajectories of the first base and seed, [weight-decay.html](weight-decay.html)',
    'for the weight-decay control, and [rank-sweep.html](rank-sweep.html) for the task metric against rank.', '',
  );
  verdictSection(L, r, nRuns);
  controlSection(L, r);
  L.push('## What the numbers say', '');
  for (const line of reading(r)) L.push(line);
  if (r.notes !== undefined) L.push('', '## Discussion', '', r.notes.trim());
  madeSection(L, r);
  sweepSections(L, r);
  L.push('', '## Files', '');
  for (const x of r.files) L.push(`- \`${x.path}\`: ${x.what}`);
  L.push('');
  return L.join('\n');
}

function verdictSection(L: string[], r: ReproRecord, nRuns: number): void {
  const stats = r.headline[0]?.cells ?? [];
  L.push('## Verdict', '');
  L.push(`\`${r.module}\` of every layer at checkpoints ${r.headlineSteps.join(', ')} (evenly spaced, the last one final, as the paper's`,
    `three intermediate checkpoints and the final one). Each cell: the mean over ${nRuns} run${nRuns === 1 ? '' : 's'} (every base × fine-tuning seed)`,
    'with the range across them, then the verdict against the sign of the paper\'s r and how many runs gave it.', '');
  L.push(`| method | paper r | ${stats.map((c) => c.label).join(' | ')} |`);
  L.push(`| --- | --- | ${stats.map(() => '---').join(' | ')} |`);
  for (const h of r.headline) L.push(`| ${h.label} | ${f(h.paper_r)} | ${h.cells.map(cellText).join(' | ')} |`);
  L.push('', 'The rule, fixed in code before the run (src/reproduce/verdict.ts): a run *agrees* when the statistic\'s 95% interval lies wholly',
    'on the side of zero of the paper\'s r, is *opposite* when wholly on the other side, *inconclusive* when it contains zero; a',
    'method agrees (or is opposite) only when every run does. The pooled r is the paper\'s statistic (every layer and checkpoint',
    'pooled); the within-checkpoint r correlates across layers at each checkpoint (Fisher-z averaged); the step-partialled r',
    'removes each checkpoint\'s mean first; the layer-partialled r removes each layer\'s mean (the common trend over steps, on which',
    'the paper makes no claim); relative ΔM divides by each layer\'s mean magnitude. Every interval comes from a bootstrap over layers (each',
    'with all its checkpoints: the points of one layer are not independent). See docs/analysis.md.', '');
  L.push('<details><summary>Every run with its 95% interval</summary>', '');
  L.push(`| method | run | ${stats.map((c) => c.label).join(' | ')} |`, `| --- | --- | ${stats.map(() => '---').join(' | ')} |`);
  for (const h of r.headline) {
    const runs = h.cells[0]?.per_seed ?? [];
    runs.forEach((run, i) => {
      L.push(`| ${h.label} | ${run.run} | ${h.cells.map((c) => {
        const p = c.per_seed[i]!;
        return `${f(p.r)} ${p.ci ? `[${f(p.ci[0])}, ${f(p.ci[1])}]` : ''}${p.verdict ? ` ${p.verdict}` : ''} (n=${p.n})`;
      }).join(' | ')} |`);
    });
  }
  L.push('', '</details>', '');
}

function controlSection(L: string[], r: ReproRecord): void {
  if (r.control.length === 0) return;
  L.push('## Weight-decay control', '');
  L.push('Full fine-tuning with the same data, steps, learning rate and seeds at each weight decay. The decay budget is wd · Σ lr_t',
    'over the run: without gradients AdamW\'s decoupled decay would shrink every weight by about exp(−budget). Verdicts against the',
    'paper\'s FT sign (negative).', '');
  L.push('| weight decay | decay budget | pooled r | within-checkpoint r | step-partialled r | mean signed Δm / m₀ | features shrunk |');
  L.push('| --- | --- | --- | --- | --- | --- | --- |');
  for (const c of r.control) {
    const g = (k: string) => { const x = cell(c, k); return x ? cellText(x) : 'n/a'; };
    L.push(`| ${c.weight_decay} | ${f(c.decay_budget, 4)} | ${g('pooled')} | ${g('within_checkpoint')} | ${g('step_partialled')} | ${across(c.magnitude.signed_rel_delta_m, 2, pct)} | ${across(c.magnitude.frac_features_shrunk, 2, pct)} |`);
  }
  L.push('', 'Figure: [weight-decay.html](weight-decay.html) (ΔM against ΔD, one panel per weight decay, first base and seed).', '');
}

/** Sentences generated from the numbers by fixed rules: they report, they do not explain away. */
export function reading(r: ReproRecord): string[] {
  const out: string[] = [];
  const trend = r.headline.map((h) => cell(h, 'layer_partialled')?.across).filter((a): a is AcrossSeeds => a !== undefined && a.n_runs > 0);
  if (trend.length > 0) {
    const lo = Math.min(...trend.map((a) => a.min!)), hi = Math.max(...trend.map((a) => a.max!));
    out.push(`- **The step effect.** Within each layer, ΔM and ΔD move together over training: the layer-partialled r lies between ${f(lo)} and ${f(hi)}`,
      '  over every run of every method. Pooling checkpoints mixes that common trend into the paper\'s statistic, so the pooled r',
      '  says more about how both quantities grow with steps than about how layers trade magnitude for direction. The within-checkpoint',
      '  and step-partialled r remove it (trajectories: index.html, "ΔM and ΔD over training").');
  }
  for (const h of r.headline) {
    const pooled = cell(h, 'pooled'), within = cell(h, 'within_checkpoint');
    if (!pooled || !within) continue;
    out.push(h.paper_r === null
      ? `- **${h.label}** (not in the paper's Figure 2, not judged): pooled r ${across(pooled.across)}; within-checkpoint r ${across(within.across)}.`
      : `- **${h.label}** (paper r = ${f(h.paper_r)}): pooled r ${across(pooled.across)} — ${pooled.verdict}; within-checkpoint r ${across(within.across)} — ${within.verdict}.`);
  }
  if (r.control.length >= 2) {
    const a = r.control[0]!, b = r.control[r.control.length - 1]!;
    const wa = cell(a, 'within_checkpoint')?.across.mean ?? null, wb = cell(b, 'within_checkpoint')?.across.mean ?? null;
    out.push(`- **Weight decay.** From weight decay ${a.weight_decay} to ${b.weight_decay} (decay budget ${f(a.decay_budget, 4)} to ${f(b.decay_budget, 4)}), FT's within-checkpoint r`,
      `  goes from ${f(wa)} to ${f(wb)} on average and its mean signed Δm / m₀ from ${pct(a.magnitude.signed_rel_delta_m.mean)} to ${pct(b.magnitude.signed_rel_delta_m.mean)}`,
      `  (features shrunk: ${pct(a.magnitude.frac_features_shrunk.mean)} to ${pct(b.magnitude.frac_features_shrunk.mean)}). The paper's VL-BART runs train about 10^5 steps with`,
      '  weight decay 0.01, a decay budget of order 0.1 for FT (plan.ts): the control shows which regime a short run must match.');
  }
  const holds: string[] = [], fails: string[] = [], open: string[] = [];
  for (const h of r.headline) {
    for (const c of h.cells) {
      if (c.verdict === null) continue;
      const text = `${h.label}, ${c.label}`;
      (c.verdict === 'agrees' ? holds : c.verdict === 'opposite' ? fails : open).push(text);
    }
  }
  out.push('', `**Which of the paper's sign claims hold here.** Agree: ${holds.length ? holds.join('; ') : 'none'}.`,
    `Opposite: ${fails.length ? fails.join('; ') : 'none'}. Inconclusive (intervals contain zero, or runs disagree): ${open.length ? open.join('; ') : 'none'}.`);
  return out;
}

function madeSection(L: string[], r: ReproRecord): void {
  const p = r.preset;
  const total = r.seconds['total'] ?? 0;
  const rec = p.recipe;
  L.push('', '## How this was made', '');
  L.push('```sh', r.command, '```', '');
  L.push(`- Date: ${r.created}`);
  if (r.rejudged) L.push(`- Statistics, tables and this text recomputed from the saved tables on ${r.rejudged.created} by dorascope ${r.rejudged.version} (\`dorascope reproduce --rejudge\`); training and analysis as above`);
  L.push(`- Machine: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memoryGiB} GiB, ${r.machine.os}, Node ${r.machine.node}`);
  L.push(`- Backend: ${r.backend}`);
  L.push(`- Time taken: ${minutes(total)} in all (${Object.entries(r.seconds).filter(([k]) => k !== 'total').map(([k, v]) => `${k} ${minutes(v)}`).join(', ')})`);
  L.push(`- Preset: \`${p.name}\`; model ${p.model.layers} layers, d_model ${p.model.dModel}, ${p.model.heads} heads, d_ff ${p.model.dFf}, context ${p.model.context}`);
  for (const [i, b] of r.bases.entries()) L.push(`- Base ${i}: ${b.note}; held-out loss ${f(b.curve[0]?.evalLoss, 3)} → ${f(b.curve.at(-1)?.evalLoss, 3)}, still falling ${pct(b.lateImprovement)} over the last quarter of pretraining${b.curve.length ? ' ([pretraining.html](pretraining.html))' : ''}`);
  L.push(`- Task: ${r.task}`);
  L.push(`- Fine-tuning: ${p.steps} steps, batch ${p.batchSize}, a checkpoint every ${p.saveEvery} steps, fine-tuning seeds ${p.ftSeeds.join(', ')} on every base; adapters on ${p.targetModules.join(', ')}, alpha = 2r`);
  L.push(`- Recipe (after VL-BART's, docs/reproduce.md): AdamW with decoupled weight decay ${rec.weightDecay} for every method, ${rec.scheduler} decay after a warmup of ${pct(rec.warmupRatio)} of the steps; learning rates: adapters ${Object.entries(r.plan.lr).filter(([k]) => k !== 'full').map(([k, v]) => `${v} (${k})`).join(', ')} from the sweep, FT ${r.plan.lr.full} (${rec.ftLrFactor} × LoRA's)`);
}

function sweepSections(L: string[], r: ReproRecord): void {
  const p = r.preset;
  L.push('', '## The paper\'s accuracy claims on the rank sweep', '');
  L.push('| claim | holds here | values |', '| --- | --- | --- |');
  for (const c of r.claims) L.push(`| ${c.claim} | ${c.holds === null ? 'n/a' : c.holds ? 'yes' : 'no'} | ${c.detail} |`);
  L.push('', 'One run per point (first base and seed): differences smaller than run-to-run noise are not evidence either way.', '');
  L.push('| method | rank | run | validation metric | validation loss |', '| --- | --- | --- | --- | --- |');
  for (const x of [...r.rank].sort((a, b) => a.method.localeCompare(b.method) || a.rank - b.rank)) L.push(`| ${x.method} | ${x.rank} | ${x.run} | ${f(x.metric, 4)} | ${f(x.evalLoss, 4)} |`);
  L.push('', '## Learning-rate sweep', '');
  L.push(`Each adapter family tried every learning rate for ${p.sweepSteps} steps on the first base; the chosen one (highest validation metric,`,
    'ties to the lower validation loss, then the smaller rate) was used for all its runs; FT took the fixed fraction of LoRA\'s.', '');
  L.push('| family | lr | metric | validation loss | chosen |', '| --- | --- | --- | --- | --- |');
  for (const s of r.sweep) L.push(`| ${s.family} | ${s.lr} | ${s.metricName ?? ''} ${f(s.metric, 4)} | ${f(s.evalLoss, 4)} | ${s.chosen ? '✓' : ''} |`);
}

/**
 * `dorascope reproduce`: the DoRA paper's weight-decomposition analysis (arXiv 2402.09353, §3.2,
 * Figure 2) end to end on models trained here, following plan.ts:
 *   1. pretrain one base per base seed (or take `--base`), recording the held-out loss curve;
 *   2. sweep the adapters' learning rate (task metric only); full fine-tuning takes 1/10 of it;
 *   3. fine-tune FT, LoRA, DoRA and DoRA† on every base × fine-tuning seed, the weight-decay control of
 *      FT beside them, and the rank sweep on the first base and seed;
 *   4. analyse q_proj and v_proj of every run against its base; render the compare reports (Figure 2 of
 *      the first base and seed, every projection, the weight-decay control) and the figure pages;
 *   5. compute the headline statistics on evenly spaced checkpoints with a verdict per method and
 *      statistic (headline.ts, verdict.ts), and write summary.json, the tables and README.md.
 * Checkpoints go to `work` (default OUT/checkpoints) so the published folder stays small.
 */
import { mkdir, rm } from 'node:fs/promises';
import { openSafetensors } from '../io/safetensors/reader.js';
import { join, resolve, relative } from 'node:path';
import { checkNoOverlap } from '../io/output-guard.js';
import { DorascopeError, q } from '../errors.js';
import type { Engine, TrainOutcome } from './engine.js';
import { lateImprovement, readEvalCurve, readFinalMetric, type RunMetric } from './metrics.js';
import { FULL, QUICK, lrSweepRuns, mainRuns, type Plan, type Preset, type RunSpec } from './plan.js';
import { entryConfig, PAPER_METHODS, type LrFamily, type MethodEntry } from './methods.js';
import { chooseLearningRate } from './sweep.js';
import type { RankPoint } from './results.js';
import type { ControlRow, HeadlineRow } from './headline.js';
import { describeMachine, type BaseRecord, type SweepRow } from './readme.js';
import { judge, type RunFacts } from './judge.js';
import { figurePages, QUANTIZED_SUFFIX, renderPages, reproductionTitle } from './pages.js';
import { JSON_CAPS, readTextCapped } from '../io/open-regular.js';

export interface ReproduceOptions {
  readonly out: string;
  readonly quick?: boolean;
  /** Skip pretraining and fine-tune this base (a folder or file of full weights); one base then. */
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
  /** The preset (default: FULL, or QUICK with `quick`). */
  readonly preset?: Preset;
  /** Methods trained and compared beside the paper's four (methods.ts `parseMethods`): VeRA, DVoRA, QLoRA, QDoRA. */
  readonly methods?: readonly MethodEntry[];
}

export interface ReproduceResult {
  readonly out: string;
  readonly report: string;
  readonly readme: string;
  readonly summary: string;
  readonly headline: readonly HeadlineRow[];
  readonly control: readonly ControlRow[];
  readonly seconds: Readonly<Record<string, number>>;
}

/** Modules of the paper's Figure 2 (query) and of our second panel (value). */
export const FIGURE2_MODULES = ['q_proj', 'v_proj'] as const;
/** The headline statistics use the query matrices, as the paper's Figure 2. */
export const HEADLINE_MODULE = 'q_proj';
/** The extra report: every projection of the Llama block (FT moves the MLP too; adapters do not). */
export const ALL_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

/** What the steps share: options, the engine, the clock and the backend actually in use. */
interface Ctx {
  readonly opts: ReproduceOptions;
  readonly preset: Preset;
  readonly out: string;
  readonly work: string;
  readonly engine: Engine;
  readonly log: (line: string) => void;
  readonly seconds: Record<string, number>;
  readonly extras: readonly MethodEntry[];
  backend: string;
}

async function timed<T>(ctx: Ctx, key: string, f: () => Promise<T>): Promise<T> {
  const t = performance.now();
  try {
    return await f();
  } finally {
    ctx.seconds[key] = (ctx.seconds[key] ?? 0) + (performance.now() - t) / 1000;
  }
}

/** 1. One base per base seed, each with its held-out loss curve. */
async function pretrainBases(ctx: Ctx): Promise<BaseRecord[]> {
  const { preset, opts, work } = ctx;
  if (opts.base !== undefined) return [{ seed: null, path: resolve(opts.base), note: `given with --base: ${opts.base}`, curve: [], lateImprovement: null }];
  const bases: BaseRecord[] = [];
  for (const [i, seed] of preset.baseSeeds.entries()) {
    const dir = join(work, `base-${i}`);
    ctx.log(`reproduce: pretraining base ${i} (seed ${seed}, ${preset.pretrainSteps} steps) into ${dir}`);
    await rm(dir, { recursive: true, force: true });
    const pre = await timed(ctx, 'pretrain', () => ctx.engine.pretrain({
      out: dir, model: preset.model, steps: preset.pretrainSteps, lr: preset.pretrainLr, batchSize: preset.batchSize, seed, backend: ctx.backend, evalEvery: preset.pretrainEvalEvery,
    }));
    ctx.backend = pre.backend;
    const curve = await readEvalCurve(pre.lastCheckpoint);
    const rel = relative(ctx.out, pre.lastCheckpoint);
    const where = rel !== '' && !rel.startsWith('..') ? rel : resolve(pre.lastCheckpoint);
    bases.push({
      seed, path: pre.lastCheckpoint, curve, lateImprovement: lateImprovement(curve),
      note: `pretrained here for ${preset.pretrainSteps} steps (lr ${preset.pretrainLr}, seed ${seed}), ${where}${opts.dropCheckpoints ? ' (removed at the end: --drop-checkpoints)' : ''}`,
    });
  }
  return bases;
}

async function trainRun(ctx: Ctx, spec: RunSpec, dir: string, bases: readonly BaseRecord[]): Promise<{ outcome: TrainOutcome; metric: RunMetric }> {
  // A run folder left by an earlier reproduction would be resumed or mixed with this one: start it afresh
  // (only the folders this pipeline names are removed, inside its own work folder).
  await rm(join(dir, spec.name), { recursive: true, force: true });
  const base = bases[Math.min(spec.baseIndex, bases.length - 1)]!.path;
  const outcome = await ctx.engine.finetune({ ...spec, base, out: join(dir, spec.name), batchSize: ctx.preset.batchSize, targetModules: ctx.preset.targetModules, backend: ctx.backend });
  ctx.backend = outcome.backend;
  return { outcome, metric: await readFinalMetric(outcome.lastCheckpoint) };
}

/** 2. The adapters' learning-rate sweep on the first base. */
async function sweepLearningRates(ctx: Ctx, bases: readonly BaseRecord[]): Promise<{ chosen: { lora: number } & Partial<Record<LrFamily, number>>; rows: SweepRow[] }> {
  const rows: SweepRow[] = [];
  const chosen: Partial<Record<LrFamily, number>> = {};
  await timed(ctx, 'lr sweep', async () => {
    const byFamily = new Map<LrFamily, { lr: number; metric: RunMetric }[]>();
    for (const { family, ...spec } of lrSweepRuns(ctx.preset, ctx.extras)) {
      ctx.log(`reproduce: lr sweep ${spec.name} (${spec.steps} steps)`);
      const { metric } = await trainRun(ctx, spec, join(ctx.work, 'sweep'), bases);
      byFamily.set(family, [...(byFamily.get(family) ?? []), { lr: spec.lr, metric }]);
    }
    for (const [family, points] of byFamily) {
      chosen[family] = chooseLearningRate(family, points);
      for (const p of points) rows.push({ family, lr: p.lr, metricName: p.metric.name, metric: p.metric.value, evalLoss: p.metric.evalLoss, chosen: p.lr === chosen[family] });
    }
  });
  if (chosen.lora === undefined) throw new DorascopeError('E_INTERNAL', 'the learning-rate sweep chose no rate for LoRA');
  return { chosen: { ...chosen, lora: chosen.lora }, rows };
}

/** 3. Every run of the plan. */
async function fineTune(ctx: Ctx, plan: Plan, bases: readonly BaseRecord[]): Promise<Map<string, { outcome: TrainOutcome; metric: RunMetric }>> {
  const trained = new Map<string, { outcome: TrainOutcome; metric: RunMetric }>();
  await timed(ctx, 'fine-tuning', async () => {
    for (const [i, spec] of plan.runs.entries()) {
      ctx.log(`reproduce: fine-tuning ${spec.name} (${i + 1}/${plan.runs.length}; lr ${spec.lr}, weight decay ${spec.weightDecay}, ${spec.steps} steps)`);
      trained.set(spec.name, await trainRun(ctx, spec, join(ctx.work, 'runs'), bases));
    }
  });
  return trained;
}

/**
 * The quantized base a group of 4-bit runs (QLoRA, QDoRA) trained on: each run saved its own copy, and
 * the copies of runs on one base must be the same bytes (quantization is deterministic), since one
 * analysis measures them all against it. undefined for an empty group.
 */
async function sharedQuantizedBase(names: readonly string[], trained: ReadonlyMap<string, { outcome: TrainOutcome }>): Promise<string | undefined> {
  const paths = names.map((n) => {
    const p = trained.get(n)!.outcome.quantizedBase;
    if (p === undefined) throw new DorascopeError('E_INTERNAL', `the 4-bit run ${q(n)} did not report its quantized base`);
    return p;
  });
  if (paths.length === 0) return undefined;
  for (const p of paths.slice(1)) {
    if (!(await sameTensors(join(paths[0]!, 'model.safetensors'), join(p, 'model.safetensors')))) {
      throw new DorascopeError('E_INTERNAL', `the quantized bases ${q(paths[0]!)} and ${q(p)} of runs on one base differ: quantization should be deterministic`);
    }
  }
  return paths[0];
}

/** Whether two safetensors files hold the same tensors, bytes and all (the header's metadata, which names the run's method, aside), one tensor at a time. */
async function sameTensors(a: string, b: string): Promise<boolean> {
  const fa = await openSafetensors(a);
  try {
    const fb = await openSafetensors(b);
    try {
      if (fa.tensors.length !== fb.tensors.length) return false;
      for (const t of fa.tensors) {
        const u = fb.info(t.name);
        if (u === undefined || u.dtype !== t.dtype || u.shape.join() !== t.shape.join()) return false;
        if (!Buffer.from(await fa.readBytes(t.name)).equals(await fb.readBytes(t.name))) return false;
      }
      return true;
    } finally {
      await fb.close();
    }
  } finally {
    await fa.close();
  }
}

/**
 * 4. Analyses and the compare reports. Runs trained on a 4-bit base (QLoRA, QDoRA) are measured in
 * folders of their own (`…-nf4`) against that base dequantized — what they computed with — with the
 * quantization step itself as a run; every other run against its full-precision base.
 */
async function analyseAndReport(ctx: Ctx, plan: Plan, bases: readonly BaseRecord[], trained: ReadonlyMap<string, { outcome: TrainOutcome }>, title: string): Promise<string[]> {
  const first = plan.runs.filter((r) => r.baseIndex === 0 && r.seed === ctx.preset.ftSeeds[0]);
  const dirOf = (name: string) => trained.get(name)!.outcome.runDir;
  const roleRuns = plan.roles.map((role) => first.find((r) => r.config === role.config)!);
  const controlRuns = plan.control.map((c) => ({ label: `FT wd=${c.weightDecay}`, path: dirOf(first.find((r) => r.config === c.config)!.name) }));
  const seedDirs: string[] = [];
  const inputs = (runs: readonly RunSpec[]) => runs.map((r) => ({ label: r.name, path: dirOf(r.name) }));
  /** Analyses `runs` on `base` into `out`, the 4-bit runs among them into `out`-nf4; returns the folders written. */
  const analyseSplit = async (base: string, runs: readonly RunSpec[], modules: readonly string[], out: string): Promise<string[]> => {
    const plain = runs.filter((r) => r.quantize === undefined), quantized = runs.filter((r) => r.quantize !== undefined);
    await ctx.engine.analyze({ base, runs: inputs(plain), modules, out });
    const quantizedBase = await sharedQuantizedBase(quantized.map((r) => r.name), trained);
    if (quantizedBase === undefined) return [out];
    await ctx.engine.analyze({ base, quantizedBase, runs: inputs(quantized), modules, out: `${out}${QUANTIZED_SUFFIX}` });
    return [out, `${out}${QUANTIZED_SUFFIX}`];
  };
  await timed(ctx, 'analysis', async () => {
    const base0 = bases[0]!.path;
    ctx.log(`reproduce: analysing ${FIGURE2_MODULES.join(', ')} of ${roleRuns.map((r) => r.name).join(', ')}`);
    await analyseSplit(base0, roleRuns, FIGURE2_MODULES, join(ctx.out, 'analysis'));
    await analyseSplit(base0, roleRuns, ALL_MODULES, join(ctx.out, 'analysis-all-modules'));
    await ctx.engine.analyze({ base: base0, runs: controlRuns, modules: FIGURE2_MODULES, out: join(ctx.out, 'analysis-weight-decay') });
    for (const [i, b] of bases.entries()) {
      const runs = plan.runs.filter((r) => Math.min(r.baseIndex, bases.length - 1) === i);
      ctx.log(`reproduce: analysing the ${runs.length} runs on base ${i}`);
      seedDirs.push(...(await analyseSplit(b.path, runs, FIGURE2_MODULES, join(ctx.out, 'analysis-seeds', `base-${i}`))));
    }
  });
  await timed(ctx, 'report', () => renderPages(ctx.engine, ctx.out, title, plan.control.map((c) => c.weightDecay), ctx.opts.png === true));
  return seedDirs;
}


/** What `reproduce` writes in OUT besides the checkpoint folder. */
const REPRODUCE_OUTPUTS = ['README.md', 'summary.json', 'results.arrow', 'results.parquet', 'results.csv', 'control.csv', 'rank_sweep.csv', 'index.html',
  'all-modules.html', 'weight-decay.html', 'rank-sweep.html', 'pretraining.html', 'analysis', `analysis${QUANTIZED_SUFFIX}`, 'analysis-all-modules',
  `analysis-all-modules${QUANTIZED_SUFFIX}`, 'analysis-weight-decay', 'analysis-seeds', 'png'];

/**
 * OUT and the checkpoint folder are rewritten: neither may overlap a given base. The notes may
 * sit in OUT (it is not emptied), but not where one of its outputs goes.
 */
function checkReproduceOutputs(out: string, work: string, opts: ReproduceOptions): void {
  const baseInput = opts.base === undefined ? [] : [{ role: 'base (--base)', path: opts.base }];
  checkNoOverlap({ out, kind: 'reproduce', inputs: baseInput });
  checkNoOverlap({ out: work, option: '--work', kind: 'reproduce', inputs: baseInput });
  if (opts.notes === undefined) return;
  for (const o of [work, ...REPRODUCE_OUTPUTS.map((f) => join(out, f))]) checkNoOverlap({ out: o, kind: 'reproduce', inputs: [{ role: 'notes (--notes)', path: opts.notes }] });
}

export async function reproduce(opts: ReproduceOptions): Promise<ReproduceResult> {
  const t0 = performance.now();
  const preset = opts.preset ?? (opts.quick ? QUICK : FULL);
  const out = resolve(opts.out);
  const work = resolve(opts.work ?? join(out, 'checkpoints'));
  checkReproduceOutputs(out, work, opts);
  const ctx: Ctx = {
    opts, preset, out, work,
    engine: opts.engine ?? (await import('./engine-dorascope.js')).dorascopeEngine(),
    log: opts.log ?? ((s: string) => process.stderr.write(`${s}\n`)), seconds: {}, backend: opts.backend ?? 'auto', extras: opts.methods ?? [],
  };
  await mkdir(out, { recursive: true });
  await mkdir(ctx.work, { recursive: true });
  const title = reproductionTitle(preset.name);

  const bases = await pretrainBases(ctx);
  const sweep = await sweepLearningRates(ctx, bases);
  const plan = mainRuns(preset, sweep.chosen, ctx.extras);
  ctx.log(`reproduce: learning rates: ${Object.entries(plan.lr).map(([k, v]) => `${k} ${v}`).join(', ')}; ${plan.runs.length} runs`);
  const trained = await fineTune(ctx, plan, bases);
  const seedDirs = await analyseAndReport(ctx, plan, bases, trained, title);

  const metrics = new Map([...trained].map(([k, v]) => [k, v.metric]));
  const first = plan.runs.filter((r) => r.baseIndex === 0 && r.seed === preset.ftSeeds[0]);
  const sweepConfigs = new Set(PAPER_METHODS.filter((m) => m.rankSweep === true).flatMap((m) => preset.ranks.map((r) => entryConfig(m, r))));
  const rank: RankPoint[] = first
    // The rank sweep's points: the runs of the sweep's methods at the sweep's ranks (by configuration, so QLoRA
    // at LoRA's rank is not a LoRA point).
    .filter((r): r is RunSpec & { method: 'lora' | 'dora'; rank: number } => r.rank !== undefined && preset.ranks.includes(r.rank) && sweepConfigs.has(r.config))
    .map((r) => ({ method: r.method, rank: r.rank, run: r.name, metric: metrics.get(r.name)!.value, evalLoss: metrics.get(r.name)!.evalLoss }));
  const data = await ctx.engine.describeData();
  await figurePages(out, title, rank, data.metric, bases);
  if (opts.dropCheckpoints) await rm(ctx.work, { recursive: true, force: true });
  ctx.seconds['total'] = (performance.now() - t0) / 1000;
  const facts: RunFacts = {
    title, preset, backend: ctx.backend, machine: describeMachine(), seconds: ctx.seconds, created: new Date().toISOString(),
    command: ['dorascope', ...(opts.command ?? process.argv.slice(2))].join(' '),
    bases, task: `${data.task}; pretraining text: ${data.pretrain}`, plan, sweep: sweep.rows, rank,
    metrics: Object.fromEntries(metrics), png: opts.png === true,
    checkpointsDirs: Object.fromEntries(plan.runs.map((r) => [r.name, opts.dropCheckpoints ? null : relative(out, trained.get(r.name)!.outcome.runDir)])),
    ...(opts.notes === undefined ? {} : { notes: await readNotes(opts.notes) }),
  };
  const { readme, summary, headline: head } = await judge(out, facts, seedDirs);
  ctx.log(`reproduce: done in ${ctx.seconds['total'].toFixed(0)} s; report: ${join(out, 'index.html')}`);
  return { out, report: join(out, 'index.html'), readme, summary, headline: head.rows, control: head.control, seconds: ctx.seconds };
}

async function readNotes(path: string): Promise<string> {
  try {
    return await readTextCapped(path, 'notes file', JSON_CAPS.config);
  } catch (e) {
    if (e instanceof DorascopeError) throw e;
    throw new DorascopeError('E_NOT_FOUND', `cannot read the notes file ${q(path)}: ${(e as Error).message}`, undefined, { cause: e });
  }
}


/**
 * The reproduction's plan as plain data: which bases to pretrain (one per base seed), which fine-tuning
 * runs to make (the paper's four methods per base and fine-tuning seed, a weight-decay control of full
 * fine-tuning, a rank sweep, a learning-rate sweep) and how long each trains. Building the plan is
 * pure, so tests and the README read the same numbers the pipeline runs.
 *
 * Methods (paper §3.2, §5): full fine-tuning, LoRA at rank r, DoRA at rank r, DoRA† = DoRA at r/2.
 *
 * The recipe follows the VL-BART setup the paper's Figure 2 was measured on (NVlabs/DoRA,
 * image_video_text_understanding/VL-T5/scripts/image/dora.sh, which follows VL-Adapter):
 * AdamW with decoupled weight decay, linear decay after a warmup of 10% of the steps, and full
 * fine-tuning at a learning rate 10× below the adapters' (VL-Adapter, ylsung/VL_adapter
 * VL-T5/scripts/image/full_finetuning.sh: lr 1e-4; single_lora.sh: lr 1e-3). One weight decay is
 * used for every method, as there. Those runs train for about 10^5 steps (20 epochs at batch 300–500
 * over four V&L training sets of about 10^6 examples together), so their decay budget — weight
 * decay × the sum of the learning rates over the run — is of order 0.1 for full fine-tuning
 * (0.01 × 1e-4 × ~10^5 / 2) and 10× that for the adapters. A run of a few hundred steps reaches the
 * same budget only with a larger weight decay; `decayBudget` prints it beside every run, and the
 * weight-decay control (0, 0.1, 1, 3) shows how the result moves with it.
 *
 * The learning rate of the adapters is chosen by a small sweep on the task metric only (tuning the
 * recipe is allowed, tuning the analysis is not); LoRA alpha is 2r, so alpha/r = 2 stays fixed across
 * the rank sweep (LoRA paper §4.1).
 */
import { DorascopeError, q } from '../errors.js';
import { lrAt, makeSchedule, resolveWarmup } from '../train/schedule.js';
import { entryConfig, PAPER_METHODS, EXTRA_METHODS, type LrFamily, type MethodEntry, type ReproMethod, type TrainMethod } from './methods.js';

export type { LrFamily, ReproMethod, TrainMethod } from './methods.js';

export interface ModelShape {
  readonly layers: number;
  readonly dModel: number;
  readonly heads: number;
  readonly dFf: number;
  readonly context: number;
}

/** The optimiser and schedule every fine-tuning run uses (see the header for where they come from). */
export interface Recipe {
  /** Hugging Face scheduler name; `linear`: warmup, then linear decay to 0. */
  readonly scheduler: 'linear';
  readonly warmupRatio: number;
  /** AdamW decoupled weight decay of the main runs, every method. */
  readonly weightDecay: number;
  /** Full fine-tuning's learning rate as a fraction of the adapters' chosen rate. */
  readonly ftLrFactor: number;
}

export interface RunSpec {
  /** Folder and label of the run, e.g. `lora-r8-b0s0`. */
  readonly name: string;
  /** The configuration it is a seed of, e.g. `lora-r8` (`ft-wd0.1` for the weight-decay control). */
  readonly config: string;
  readonly method: TrainMethod;
  /** The frozen base kept in 4-bit NF4 blocks while training (QLoRA, QDoRA). */
  readonly quantize?: 'nf4';
  /** Adapter rank; undefined for full fine-tuning. */
  readonly rank?: number;
  readonly alpha?: number;
  readonly lr: number;
  readonly steps: number;
  readonly saveEvery: number;
  readonly weightDecay: number;
  readonly scheduler: string;
  readonly warmupRatio: number;
  /** Index into the preset's base seeds (which base it fine-tunes) and its own fine-tuning seed. */
  readonly baseIndex: number;
  readonly seed: number;
}

export interface Preset {
  readonly name: 'quick' | 'full' | 'gpu';
  readonly model: ModelShape;
  readonly pretrainSteps: number;
  readonly pretrainLr: number;
  /** Held-out loss every this many pretraining steps: the curve shows whether the base has converged. */
  readonly pretrainEvalEvery: number;
  readonly batchSize: number;
  readonly steps: number;
  readonly saveEvery: number;
  /** Checkpoints the headline statistics use, evenly spaced ending at the last (the paper: three intermediate and the final). */
  readonly headlineCheckpoints: number;
  /** Steps of each learning-rate sweep run (shorter than the real runs). */
  readonly sweepSteps: number;
  readonly mainRank: number;
  /** VeRA's and DVoRA's rank (`--methods vera,dvora`): frozen shared projections allow a much higher one than LoRA's. */
  readonly veraRank: number;
  /** Ranks of the accuracy sweep (paper Figure 5), trained on the first base and seed only. */
  readonly ranks: readonly number[];
  /** Learning rates tried per adapter family; full fine-tuning takes `recipe.ftLrFactor` × LoRA's choice. */
  readonly lrGrid: Readonly<Record<LrFamily, readonly number[]>>;
  readonly recipe: Recipe;
  /** Full fine-tuning repeated at these weight decays (same data, steps and learning rate). */
  readonly weightDecayControl: readonly number[];
  /** Modules whose LoRA/DoRA adapters are trained (PEFT's default for Llama: q_proj, v_proj). */
  readonly targetModules: readonly string[];
  /** One base is pretrained per seed; every fine-tuning seed runs on every base. */
  readonly baseSeeds: readonly number[];
  readonly ftSeeds: readonly number[];
}

const RECIPE: Recipe = { scheduler: 'linear', warmupRatio: 0.1, weightDecay: 1, ftLrFactor: 0.1 };

/** Tiny model: `dorascope demo` and CI, about a minute on 2 CPU cores. Three layers: the fewest a within-checkpoint r needs. */
export const QUICK: Preset = {
  name: 'quick',
  model: { layers: 3, dModel: 32, heads: 2, dFf: 64, context: 32 },
  pretrainSteps: 40,
  pretrainLr: 3e-3,
  pretrainEvalEvery: 10,
  batchSize: 16,
  steps: 16,
  saveEvery: 2,
  headlineCheckpoints: 4,
  sweepSteps: 6,
  mainRank: 4,
  veraRank: 16,
  ranks: [2, 4],
  // VeRA trains scaling vectors only, at rates 10× LoRA's (VeRA paper, Table 8–9: 1e-2 to 4e-2 for the vectors).
  lrGrid: { lora: [1e-2], dora: [1e-2], vera: [3e-2], dvora: [3e-2] },
  recipe: RECIPE,
  weightDecayControl: [0, 1],
  targetModules: ['q_proj', 'v_proj'],
  baseSeeds: [1234, 1235],
  ftSeeds: [1],
};

/** The published run: 8 layers, 2 bases × 2 fine-tuning seeds; about half an hour on 2 quiet CPU cores (wasm). */
export const FULL: Preset = {
  name: 'full',
  model: { layers: 8, dModel: 64, heads: 4, dFf: 172, context: 32 },
  pretrainSteps: 800,
  pretrainLr: 3e-3,
  pretrainEvalEvery: 50,
  batchSize: 16,
  steps: 160,
  saveEvery: 20,
  headlineCheckpoints: 4,
  sweepSteps: 40,
  mainRank: 8,
  veraRank: 32,
  ranks: [2, 4, 8, 16],
  lrGrid: { lora: [3e-3, 1e-2], dora: [3e-3, 1e-2], vera: [1e-2, 3e-2], dvora: [1e-2, 3e-2] },
  recipe: RECIPE,
  weightDecayControl: [0, 0.1, 1, 3],
  targetModules: ['q_proj', 'v_proj'],
  baseSeeds: [1234, 1235],
  ftSeeds: [1, 2],
};

/** For a GPU backend (`--backend webgpu`): wider, deeper and longer; not run on CPU. */
export const GPU: Preset = {
  ...FULL,
  name: 'gpu',
  model: { layers: 12, dModel: 256, heads: 8, dFf: 688, context: 64 },
  pretrainSteps: 4000,
  pretrainLr: 1e-3,
  pretrainEvalEvery: 200,
  batchSize: 32,
  steps: 800,
  saveEvery: 100,
  sweepSteps: 200,
  mainRank: 16,
  veraRank: 128,
  ranks: [4, 8, 16, 32],
  lrGrid: { lora: [1e-3, 3e-3], dora: [1e-3, 3e-3], vera: [1e-2, 3e-2], dvora: [1e-2, 3e-2] },
  ftSeeds: [1, 2, 3],
};

export const PRESETS = { quick: QUICK, full: FULL, gpu: GPU } as const;

export function presetByName(name: string): Preset {
  const p = (PRESETS as Record<string, Preset>)[name];
  if (p === undefined) throw new DorascopeError('E_USAGE', `unknown reproduction preset ${q(name)} (expected ${Object.keys(PRESETS).join(', ')})`);
  return p;
}

/** `ft`, `lora-r8`, … : the configuration of a paper method without base and seed. */
export function configName(method: 'full' | 'lora' | 'dora', rank?: number): string {
  return method === 'full' ? 'ft' : `${method}-r${rank}`;
}

/** The weight-decay control's configuration names, e.g. `ft-wd0.1`. */
export function wdConfigName(wd: number): string {
  return `ft-wd${wd}`;
}

export function runName(config: string, base: number, seed: number): string {
  return `${config}-b${base}s${seed}`;
}

/** A method (one of the paper's four, or one `--methods` added) as a configuration trained on every base and seed. */
export interface MainRole {
  /** Label shown in tables and the report: FT, LoRA r8, DoRA r8, DoRA† r4, QDoRA r8, … */
  readonly label: string;
  readonly method: ReproMethod;
  readonly config: string;
  readonly rank: number | null;
}

interface PlannedRole {
  readonly role: MainRole;
  readonly entry: MethodEntry;
}

function plannedRoles(p: Preset, extras: readonly MethodEntry[]): PlannedRole[] {
  return [...PAPER_METHODS, ...extras].map((entry) => {
    const rank = entry.rank(p);
    return { entry, role: { label: entry.label(rank), method: entry.method, config: entryConfig(entry, rank), rank } };
  });
}

/** The paper's four roles, then those of the `extras` methods (methods.ts). */
export function roles(p: Preset, extras: readonly MethodEntry[] = []): MainRole[] {
  return plannedRoles(p, extras).map((r) => r.role);
}

/** The adapter families whose learning rate the sweep chooses: LoRA's and DoRA's, and those of the extra methods. */
export function sweptFamilies(extras: readonly MethodEntry[]): LrFamily[] {
  const out: LrFamily[] = ['lora', 'dora'];
  for (const e of extras) if (e.lrFamily !== null && !out.includes(e.lrFamily)) out.push(e.lrFamily);
  return out;
}

const common = (p: Preset, steps: number, saveEvery: number) =>
  ({ steps, saveEvery, scheduler: p.recipe.scheduler, warmupRatio: p.recipe.warmupRatio });

/** The method that stands for a learning-rate family in the sweep (full precision: QLoRA takes LoRA's rate). */
function familyEntry(family: LrFamily): MethodEntry {
  const e = [...PAPER_METHODS, ...EXTRA_METHODS].find((m) => m.lrFamily === family && m.quantize === undefined);
  if (e === undefined) throw new DorascopeError('E_INTERNAL', `no method trains the learning-rate family ${family}`);
  return e;
}

/** Fields of a run of method `e` at `rank` (trainer method, rank, alpha, quantised base). */
function methodFields(e: MethodEntry, rank: number | null): Pick<RunSpec, 'method' | 'rank' | 'alpha' | 'quantize'> {
  return {
    method: e.train,
    ...(rank === null ? {} : { rank }),
    ...(rank !== null && e.alpha !== undefined ? { alpha: e.alpha(rank) } : {}),
    ...(e.quantize === undefined ? {} : { quantize: e.quantize }),
  };
}

/** The adapters' learning-rate sweep: on the first base and fine-tuning seed, at each family's rank. */
export function lrSweepRuns(p: Preset, extras: readonly MethodEntry[] = []): (RunSpec & { family: LrFamily })[] {
  const out: (RunSpec & { family: LrFamily })[] = [];
  for (const family of sweptFamilies(extras)) {
    const e = familyEntry(family);
    const rank = e.rank(p);
    const config = `sweep-${entryConfig(e, rank)}`;
    for (const lr of p.lrGrid[family]) {
      out.push({
        name: `${config}-lr${lr}`, config, family, ...methodFields(e, rank), lr,
        weightDecay: p.recipe.weightDecay, baseIndex: 0, seed: p.ftSeeds[0]!, ...common(p, p.sweepSteps, p.sweepSteps),
      });
    }
  }
  return out;
}

export interface Plan {
  readonly runs: RunSpec[];
  readonly roles: MainRole[];
  /** Weight-decay control: configuration per weight decay (the main FT configuration where they coincide). */
  readonly control: { readonly weightDecay: number; readonly config: string }[];
  /** The chosen learning rates: `full` and each swept family. */
  readonly lr: Readonly<{ full: number } & Partial<Record<LrFamily, number>>>;
}

/**
 * Every run, each trained once: the four roles and the weight-decay control on every base × seed;
 * the rank sweep's other ranks on the first base and seed (DoRA† is the DoRA run at r/2).
 */
export function mainRuns(p: Preset, adapterLr: Readonly<{ lora: number } & Partial<Record<LrFamily, number>>>, extras: readonly MethodEntry[] = []): Plan {
  const planned = plannedRoles(p, extras);
  const rs = planned.map((r) => r.role);
  const lr = { full: adapterLr.lora * p.recipe.ftLrFactor, ...adapterLr };
  const rateOf = (e: MethodEntry): number => {
    const v = e.lrFamily === null ? lr.full : lr[e.lrFamily];
    if (v === undefined) throw new DorascopeError('E_INTERNAL', `no learning rate was chosen for ${e.key} (family ${e.lrFamily})`);
    return v;
  };
  const wd = p.recipe.weightDecay;
  const control = p.weightDecayControl.map((w) => ({ weightDecay: w, config: w === wd ? 'ft' : wdConfigName(w) }));
  const runs: RunSpec[] = [];
  const adapter = (e: MethodEntry, rank: number, base: number, seed: number): RunSpec => ({
    name: runName(entryConfig(e, rank), base, seed), config: entryConfig(e, rank), ...methodFields(e, rank), lr: rateOf(e), weightDecay: wd, baseIndex: base, seed, ...common(p, p.steps, p.saveEvery),
  });
  p.baseSeeds.forEach((_, b) => {
    for (const seed of p.ftSeeds) {
      runs.push({ name: runName('ft', b, seed), config: 'ft', method: 'full', lr: lr.full, weightDecay: wd, baseIndex: b, seed, ...common(p, p.steps, p.saveEvery) });
      for (const c of control) {
        if (c.config !== 'ft') runs.push({ name: runName(c.config, b, seed), config: c.config, method: 'full', lr: lr.full, weightDecay: c.weightDecay, baseIndex: b, seed, ...common(p, p.steps, p.saveEvery) });
      }
      for (const { entry, role } of planned) if (role.rank !== null) runs.push(adapter(entry, role.rank, b, seed));
    }
  });
  const have = new Set(runs.map((r) => r.name));
  // The rank sweep (paper Figure 5): the methods marked for it, at every rank of the preset.
  for (const e of PAPER_METHODS.filter((m) => m.rankSweep === true)) {
    for (const rank of p.ranks) {
      const spec = adapter(e, rank, 0, p.ftSeeds[0]!);
      if (!have.has(spec.name)) { runs.push(spec); have.add(spec.name); }
    }
  }
  return { runs, roles: rs, control, lr };
}

/** Checkpoint steps a run writes: saveEvery, 2·saveEvery, ..., steps (the last always saved). */
export function checkpointSteps(run: Pick<RunSpec, 'steps' | 'saveEvery'>): number[] {
  const out: number[] = [];
  for (let s = run.saveEvery; s < run.steps; s += run.saveEvery) out.push(s);
  out.push(run.steps);
  return out;
}

/**
 * `count` checkpoints evenly spaced over `steps`, ending at the last (the paper's Figure 2 uses three
 * intermediate checkpoints and the final one): of 8 checkpoints, the 2nd, 4th, 6th and 8th.
 */
export function headlineSteps(steps: readonly number[], count: number): number[] {
  if (steps.length <= count) return [...steps];
  const out: number[] = [];
  for (let k = count; k >= 1; k--) out.unshift(steps[Math.round((steps.length * k) / count) - 1]!);
  return [...new Set(out)];
}

/**
 * The decay budget wd · Σ_t lr_t: AdamW's decoupled decay multiplies every weight by (1 − lr_t·wd) at
 * step t, so without gradients a weight would shrink by about exp(−budget) over the run.
 */
export function decayBudget(weightDecay: number, lrs: readonly number[]): number {
  let s = 0;
  for (const lr of lrs) s += lr;
  return weightDecay * s;
}

/** wd · Σ lr_t of a run under its schedule. */
export function runDecayBudget(spec: Pick<RunSpec, 'weightDecay' | 'lr' | 'steps' | 'scheduler' | 'warmupRatio'>): number {
  const schedule = makeSchedule(spec.scheduler, spec.lr, spec.steps, resolveWarmup(spec.steps, 0, spec.warmupRatio));
  const lrs: number[] = [];
  for (let t = 1; t <= spec.steps; t++) lrs.push(lrAt(schedule, t));
  return decayBudget(spec.weightDecay, lrs);
}

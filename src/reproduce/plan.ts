/**
 * The reproduction's plan as plain data: which model to pretrain, which fine-tuning runs to make
 * (the paper's four methods, the rank sweep, the learning-rate sweep) and how long each trains.
 * Building the plan is pure, so tests and the README read the same numbers the pipeline runs.
 *
 * Methods (paper §3.2, §5): full fine-tuning, LoRA at rank r, DoRA at rank r, DoRA† = DoRA at r/2.
 * All runs share data, steps, seed and checkpoint schedule; only the learning rate differs, chosen per
 * method family by a small sweep (the paper also tunes per method; tuning the recipe is allowed, tuning
 * the analysis is not). LoRA alpha is 2r, so the scaling alpha/r = 2 stays fixed across the rank sweep
 * (LoRA paper §4.1 keeps alpha fixed per r for the same reason: the learning rate need not be retuned).
 */
import { DorascopeError } from '../errors.js';

/** Method names as the analysis records them (`ft` = full fine-tuning). */
export type ReproMethod = 'ft' | 'lora' | 'dora';
/** Method names as the trainer takes them. */
export type TrainMethod = 'full' | 'lora' | 'dora';

export interface ModelShape {
  readonly layers: number;
  readonly dModel: number;
  readonly heads: number;
  readonly dFf: number;
  readonly context: number;
}

export interface RunSpec {
  /** Folder and label of the run, e.g. `lora-r8`. */
  readonly name: string;
  readonly method: TrainMethod;
  /** LoRA/DoRA rank; undefined for full fine-tuning. */
  readonly rank?: number;
  readonly alpha?: number;
  readonly lr: number;
  readonly steps: number;
  readonly saveEvery: number;
}

export interface Preset {
  readonly name: 'quick' | 'full';
  readonly model: ModelShape;
  readonly pretrainSteps: number;
  readonly pretrainLr: number;
  readonly batchSize: number;
  readonly steps: number;
  /** steps / saveEvery checkpoints per run; the paper uses three intermediate and the final one. */
  readonly saveEvery: number;
  /** Steps of each learning-rate sweep run (shorter than the real runs). */
  readonly sweepSteps: number;
  readonly mainRank: number;
  readonly ranks: readonly number[];
  /** Learning rates tried per method family. */
  readonly lrGrid: Readonly<Record<TrainMethod, readonly number[]>>;
  /** Modules whose LoRA/DoRA adapters are trained (PEFT's default for Llama: q_proj, v_proj). */
  readonly targetModules: readonly string[];
  readonly seed: number;
}

/** Tiny model: `dorascope demo` and CI, < 5 minutes on 2 CPU cores end to end. */
export const QUICK: Preset = {
  name: 'quick',
  model: { layers: 2, dModel: 32, heads: 2, dFf: 64, context: 32 },
  pretrainSteps: 60,
  pretrainLr: 3e-3,
  batchSize: 16,
  steps: 24,
  saveEvery: 6,
  sweepSteps: 8,
  mainRank: 4,
  ranks: [2, 4, 8, 16],
  lrGrid: { full: [1e-3, 3e-3], lora: [3e-3, 1e-2], dora: [3e-3, 1e-2] },
  targetModules: ['q_proj', 'v_proj'],
  seed: 1234,
};

/** The published run: small enough for ≤ 25 minutes on 2 shared CPU cores. */
export const FULL: Preset = {
  name: 'full',
  model: { layers: 4, dModel: 64, heads: 4, dFf: 256, context: 48 },
  pretrainSteps: 600,
  pretrainLr: 3e-3,
  batchSize: 32,
  steps: 200,
  saveEvery: 50,
  sweepSteps: 50,
  mainRank: 8,
  ranks: [2, 4, 8, 16],
  lrGrid: { full: [3e-4, 1e-3, 3e-3], lora: [1e-3, 3e-3, 1e-2], dora: [1e-3, 3e-3, 1e-2] },
  targetModules: ['q_proj', 'v_proj'],
  seed: 1234,
};

export function presetByName(name: string): Preset {
  if (name === 'quick') return QUICK;
  if (name === 'full') return FULL;
  throw new DorascopeError('E_USAGE', `unknown reproduction preset ${JSON.stringify(name)} (expected quick or full)`);
}

export function runName(method: TrainMethod, rank?: number): string {
  return method === 'full' ? 'ft' : `${method}-r${rank}`;
}

export function analysisMethod(method: TrainMethod): ReproMethod {
  return method === 'full' ? 'ft' : method;
}

/** One of the paper's four methods, pointing at the trained run that plays it. */
export interface MainRole {
  /** Label shown in tables and the report: FT, LoRA r8, DoRA r8, DoRA† r4. */
  readonly label: string;
  readonly method: ReproMethod;
  readonly run: string;
  readonly rank: number | null;
}

export function lrSweepRuns(p: Preset): RunSpec[] {
  const out: RunSpec[] = [];
  for (const method of ['full', 'lora', 'dora'] as const) {
    const rank = method === 'full' ? undefined : p.mainRank;
    for (const lr of p.lrGrid[method]) {
      out.push({
        name: `sweep-${runName(method, rank)}-lr${lr}`,
        method,
        ...(rank === undefined ? {} : { rank, alpha: 2 * rank }),
        lr,
        steps: p.sweepSteps,
        saveEvery: p.sweepSteps,
      });
    }
  }
  return out;
}

/**
 * The real runs, deduplicated: FT, LoRA and DoRA at every rank of the sweep (which includes the main
 * rank r and r/2, so DoRA† is the DoRA run at r/2 and is trained once).
 */
export function mainRuns(p: Preset, lr: Readonly<Record<TrainMethod, number>>): { runs: RunSpec[]; roles: MainRole[] } {
  const half = p.mainRank / 2;
  if (!Number.isInteger(half) || half < 1) {
    throw new DorascopeError('E_USAGE', `the main rank must be even and ≥ 2 for DoRA† (r/2), got ${p.mainRank}`);
  }
  const ranks = [...new Set([...p.ranks, p.mainRank, half])].sort((a, b) => a - b);
  const runs: RunSpec[] = [{ name: 'ft', method: 'full', lr: lr.full, steps: p.steps, saveEvery: p.saveEvery }];
  for (const method of ['lora', 'dora'] as const) {
    for (const rank of ranks) {
      runs.push({ name: runName(method, rank), method, rank, alpha: 2 * rank, lr: lr[method], steps: p.steps, saveEvery: p.saveEvery });
    }
  }
  const roles: MainRole[] = [
    { label: 'FT', method: 'ft', run: 'ft', rank: null },
    { label: `LoRA r${p.mainRank}`, method: 'lora', run: runName('lora', p.mainRank), rank: p.mainRank },
    { label: `DoRA r${p.mainRank}`, method: 'dora', run: runName('dora', p.mainRank), rank: p.mainRank },
    { label: `DoRA† r${half}`, method: 'dora', run: runName('dora', half), rank: half },
  ];
  return { runs, roles };
}

/** Checkpoint steps a run writes: saveEvery, 2·saveEvery, ..., steps (the last always saved). */
export function checkpointSteps(run: Pick<RunSpec, 'steps' | 'saveEvery'>): number[] {
  const out: number[] = [];
  for (let s = run.saveEvery; s < run.steps; s += run.saveEvery) out.push(s);
  out.push(run.steps);
  return out;
}

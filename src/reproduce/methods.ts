/**
 * The fine-tuning methods a reproduction trains and compares, as data. The paper's four (§3.2, §5:
 * full fine-tuning, LoRA at rank r, DoRA at r, DoRA† = DoRA at r/2) are always trained; `--methods`
 * adds the PEFT methods DoRA is compared with elsewhere in the paper and by its users:
 *
 * - VeRA (Kopiczko et al. 2024): frozen shared random projections, trained scaling vectors; and
 *   DVoRA, DoRA's magnitude on VeRA's direction update (DoRA paper §5.4, Table 5).
 * - QLoRA / QDoRA (Dettmers et al. 2023; Answer.AI/NVIDIA's QDoRA): LoRA / DoRA on a frozen base
 *   kept in 4-bit NF4 blocks.
 *
 * A new method is one entry here (and its trainer plug-in); nothing else in the pipeline names it.
 */
import { DorascopeError, q } from '../errors.js';

/** Method names as the analysis and the tables record them (`ft` = full fine-tuning). */
export type ReproMethod = 'ft' | 'lora' | 'dora' | 'vera' | 'dvora' | 'qlora' | 'qdora';
/** Method names as the trainer takes them. */
export type TrainMethod = 'full' | 'lora' | 'dora' | 'vera' | 'dvora';

/** What a method's rank depends on (plan.ts `Preset` has these). */
interface Ranks {
  readonly mainRank: number;
  readonly veraRank: number;
}

/** Which learning-rate sweep picks a method's rate (full fine-tuning takes a fraction of LoRA's). */
export type LrFamily = 'lora' | 'dora' | 'vera' | 'dvora';

export interface MethodEntry {
  /** Name on the command line (`--methods vera,qdora`) and in the configuration name. */
  readonly key: string;
  /** Analysis-side method name: the paper's Figure 2 value, if any, is looked up by it. */
  readonly method: ReproMethod;
  readonly train: TrainMethod;
  /** The frozen base's storage while training (4-bit NF4 for QLoRA/QDoRA). */
  readonly quantize?: 'nf4';
  /** null: full fine-tuning (its rate is `recipe.ftLrFactor` × LoRA's). */
  readonly lrFamily: LrFamily | null;
  /** The rank it trains at under preset `p` (null: full fine-tuning). */
  readonly rank: (p: Ranks) => number | null;
  /** LoRA's alpha at `rank`, for the methods that have one (alpha = 2r: alpha/r fixed across ranks, LoRA paper §4.1). */
  readonly alpha?: (rank: number) => number;
  readonly label: (rank: number | null) => string;
  /** Trained at every rank of the preset's rank sweep (paper Figure 5: LoRA and DoRA). */
  readonly rankSweep?: true;
}

const twice = (r: number) => 2 * r;

/** The paper's four, in the order the paper shows them. */
export const PAPER_METHODS: readonly MethodEntry[] = [
  { key: 'ft', method: 'ft', train: 'full', lrFamily: null, rank: () => null, label: () => 'FT' },
  { key: 'lora', method: 'lora', train: 'lora', lrFamily: 'lora', rank: (p) => p.mainRank, alpha: twice, label: (r) => `LoRA r${r}`, rankSweep: true },
  { key: 'dora', method: 'dora', train: 'dora', lrFamily: 'dora', rank: (p) => p.mainRank, alpha: twice, label: (r) => `DoRA r${r}`, rankSweep: true },
  { key: 'dora', method: 'dora', train: 'dora', lrFamily: 'dora', rank: (p) => half(p.mainRank), alpha: twice, label: (r) => `DoRA† r${r}` },
];

/**
 * The other methods `--methods` can add. VeRA trains at a much higher rank than LoRA (the shared
 * projections are frozen, only r + d_out scalars per layer train; VeRA paper §4 uses r = 256–1024
 * on models of width 1024–4096, a quarter of the width and more): `preset.veraRank`. QLoRA and QDoRA
 * take LoRA's and DoRA's chosen rates, as QLoRA's users do.
 */
export const EXTRA_METHODS: readonly MethodEntry[] = [
  { key: 'vera', method: 'vera', train: 'vera', lrFamily: 'vera', rank: (p) => p.veraRank, label: (r) => `VeRA r${r}` },
  { key: 'dvora', method: 'dvora', train: 'dvora', lrFamily: 'dvora', rank: (p) => p.veraRank, label: (r) => `DVoRA r${r}` },
  { key: 'qlora', method: 'qlora', train: 'lora', quantize: 'nf4', lrFamily: 'lora', rank: (p) => p.mainRank, alpha: twice, label: (r) => `QLoRA r${r}` },
  { key: 'qdora', method: 'qdora', train: 'dora', quantize: 'nf4', lrFamily: 'dora', rank: (p) => p.mainRank, alpha: twice, label: (r) => `QDoRA r${r}` },
];

function half(rank: number): number {
  const h = rank / 2;
  if (!Number.isInteger(h) || h < 1) {
    throw new DorascopeError('E_USAGE', `the main rank must be even and ≥ 2 for DoRA† (r/2), got ${rank}`);
  }
  return h;
}

/** `ft`, `lora-r8`, `qdora-r8`, …: a method's configuration, without base and seed. */
export function entryConfig(e: MethodEntry, rank: number | null): string {
  return rank === null ? e.key : `${e.key}-r${rank}`;
}

/**
 * The extra methods named by `--methods` (comma-separated keys of EXTRA_METHODS, or `all`), in
 * the catalogue's order, each once. Empty or undefined: none (the paper's four only).
 */
export function parseMethods(list: string | undefined): MethodEntry[] {
  if (list === undefined || list.trim() === '') return [];
  const names = list.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (names.includes('all')) return [...EXTRA_METHODS];
  const known = new Set(EXTRA_METHODS.map((e) => e.key));
  for (const n of names) {
    if (!known.has(n)) {
      const paper = PAPER_METHODS.some((e) => e.key === n) ? ' (the paper\'s four are always trained)' : '';
      throw new DorascopeError('E_USAGE', `--methods: unknown method ${q(n.slice(0, 40))}${paper}; expected a comma-separated list of ${[...known].join(', ')}, or all`);
    }
  }
  return EXTRA_METHODS.filter((e) => names.includes(e.key));
}

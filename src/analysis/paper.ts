/**
 * What the DoRA paper reports, so a reproduction can print its numbers beside ours.
 * Source: Liu et al., "DoRA: Weight-Decomposed Low-Rank Adaptation", ICML 2024, arXiv 2402.09353.
 * - §3.2 / Figure 2: correlation between ΔD (x) and ΔM (y) over the query matrices of VL-BART at
 *   three intermediate checkpoints and the final one: FT −0.62, LoRA 0.83, DoRA −0.31 (Figure 2's
 *   caption and text, read as Pearson r). The qualitative claim is the
 *   sign: FT and DoRA move magnitude and direction in opposite directions (negative slope), LoRA
 *   in step (positive slope).
 * - §5 / Figure 5 and Tables 1–2: DoRA scores at least LoRA at equal rank, and DoRA† (half the rank)
 *   still at least LoRA.
 */

/** The methods the paper's Figure 2 shows (analysis's `method` column: full fine-tuning, LoRA, DoRA). */
export type PaperMethod = 'ft' | 'lora' | 'dora';

export interface PaperFigure2 {
  readonly method: PaperMethod;
  /** Correlation of ΔM on ΔD reported in the paper for this method. */
  readonly r: number;
  /** The sign the paper's argument rests on. */
  readonly sign: -1 | 1;
}

export const PAPER_FIGURE2: readonly PaperFigure2[] = [
  { method: 'ft', r: -0.62, sign: -1 },
  { method: 'lora', r: 0.83, sign: 1 },
  { method: 'dora', r: -0.31, sign: -1 },
];

/** The paper's Figure 2 value for a method name (undefined for a method the figure does not show). */
export function paperValue(method: string): PaperFigure2 | undefined {
  return PAPER_FIGURE2.find((p) => p.method === method);
}

export const PAPER_CITATION = 'Liu et al., DoRA: Weight-Decomposed Low-Rank Adaptation, ICML 2024, arXiv 2402.09353';

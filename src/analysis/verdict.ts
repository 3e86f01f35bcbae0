/**
 * The rule that turns a statistic into agrees / opposite / inconclusive against the paper, fixed in
 * code before any run. The paper's Figure 2 argument rests on the sign of the relation between ΔM and
 * ΔD (negative for FT and DoRA, positive for LoRA), so every statistic is judged by its sign:
 * - one run: `agrees` when the statistic's 95% interval lies wholly on the paper's side of 0,
 *   `opposite` when wholly on the other side, `inconclusive` when it contains 0 or is undefined;
 * - several seeds of one configuration: `agrees` (or `opposite`) only when every seed's verdict is
 *   `agrees` (or `opposite`); any mixture is `inconclusive`.
 */
export type Verdict = 'agrees' | 'opposite' | 'inconclusive';

export function verdict(sign: -1 | 1, ci: readonly [number, number] | null | undefined): Verdict {
  if (ci === null || ci === undefined || !Number.isFinite(ci[0]) || !Number.isFinite(ci[1])) return 'inconclusive';
  if (ci[0] > 0) return sign > 0 ? 'agrees' : 'opposite';
  if (ci[1] < 0) return sign < 0 ? 'agrees' : 'opposite';
  return 'inconclusive';
}

export function combineVerdicts(vs: readonly Verdict[]): Verdict {
  if (vs.length === 0) return 'inconclusive';
  if (vs.every((v) => v === 'agrees')) return 'agrees';
  if (vs.every((v) => v === 'opposite')) return 'opposite';
  return 'inconclusive';
}

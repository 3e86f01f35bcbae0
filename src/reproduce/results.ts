/**
 * The paper's accuracy claims (§5, Figure 5: DoRA ≥ LoRA at equal rank, DoRA† at half the rank ≥ LoRA)
 * checked on the reproduction's rank sweep. Pure: metrics in, plain rows out.
 */
export interface RankPoint {
  readonly method: 'lora' | 'dora';
  readonly rank: number;
  readonly run: string;
  readonly metric: number | null;
  readonly evalLoss: number | null;
}

export interface Claim {
  readonly claim: string;
  /** null when a metric is missing. */
  readonly holds: boolean | null;
  readonly detail: string;
}

/** The paper's accuracy claims (§5, Figure 5) checked on the rank sweep: single seed, so no interval. */
export function accuracyClaims(points: readonly RankPoint[], mainRank: number): Claim[] {
  const at = (m: 'lora' | 'dora', r: number): number | null => points.find((p) => p.method === m && p.rank === r)?.metric ?? null;
  const fmt = (v: number | null): string => (v === null ? 'n/a' : v.toFixed(4));
  const cmp = (a: number | null, b: number | null): boolean | null => (a === null || b === null ? null : a >= b);
  const claims: Claim[] = [];
  const ranks = [...new Set(points.map((p) => p.rank))].sort((a, b) => a - b);
  for (const r of ranks) {
    const d = at('dora', r);
    const l = at('lora', r);
    claims.push({ claim: `DoRA ≥ LoRA at r=${r}`, holds: cmp(d, l), detail: `DoRA ${fmt(d)} vs LoRA ${fmt(l)}` });
  }
  const half = mainRank / 2;
  const dh = at('dora', half);
  const lm = at('lora', mainRank);
  claims.push({ claim: `DoRA† (r=${half}) ≥ LoRA (r=${mainRank})`, holds: cmp(dh, lm), detail: `DoRA† ${fmt(dh)} vs LoRA ${fmt(lm)}` });
  return claims;
}

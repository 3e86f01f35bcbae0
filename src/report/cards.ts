/**
 * The result cards at the top of a report: for each run its pooled r and slope with their 95% intervals, and,
 * when its method is one the DoRA paper's Figure 2 shows (FT, LoRA, DoRA), the paper's r beside ours on the
 * paper's selection (the query matrices) and the verdict by the rule `reproduce` uses (src/analysis/verdict.ts).
 */
import { paperValue, PAPER_CITATION } from '../analysis/paper.js';
import { verdict } from '../analysis/verdict.js';
import { fmt, orderModules } from './figures/common.js';
import type { ResultCard } from './html.js';
import type { RunSummary, Stats } from './load.js';

const ci = (c: [number, number] | null | undefined): string => (c ? ` [${fmt(c[0])}, ${fmt(c[1])}]` : ' [n/a]');

/** The paper's Figure 2 uses the query matrices: a module named q_proj, q or query. */
export function queryModule(modules: readonly string[]): string | undefined {
  return modules.find((m) => /^(q|q_proj|query)$/u.test(m));
}

export const VERDICT_RULE = 'The paper\'s argument rests on the sign of r: agrees when the 95% interval lies wholly on the paper\'s side '
  + 'of 0, opposite when wholly on the other side, inconclusive when it contains 0 (the rule of dorascope reproduce).';

/** The modules a run's pooled statistics pool, in model order: "q+v (_proj)" for q_proj and v_proj, "fc1+fc2". */
export function pooledModules(r: RunSummary): string {
  const ms = orderModules(Object.keys(r.modules));
  if (ms.length === 0) return 'n/a';
  return ms.every((m) => m.endsWith('_proj')) ? `${ms.map((m) => m.slice(0, -5)).join('+')} (_proj)` : ms.join('+');
}

export function resultCards(runs: readonly RunSummary[]): ResultCard[] {
  return runs.map((r) => {
    const s = r.overall;
    const ckpts = r.checkpoints.length;
    const lines: [string, string][] = [
      ['r, pooled', `${fmt(s?.pearson_r)}${ci(s?.r_ci95)}`],
      ['slope, pooled', `${fmt(s?.slope)}${ci(s?.slope_ci95)}`],
    ];
    const caption = `pooled: ${pooledModules(r)}, ${ckpts} checkpoint${ckpts === 1 ? '' : 's'}, n=${s?.n ?? 'n/a'}; 95% bootstrap intervals`;
    const paper = paperValue(r.method);
    if (!paper) return { run: r.run, method: r.method, caption, lines };
    const q = queryModule(Object.keys(r.modules));
    // The paper's statistic is over the query matrices; a run without them is judged on its pooled r, and says so.
    const ours: Stats | null = q ? r.modules[q] ?? null : s;
    // A layer's checkpoints are not independent points: judge by the interval of the bootstrap over layers
    // (summary.json `detail`, as `reproduce` does) when the folder has it, else by the point bootstrap.
    const clustered = (q ? r.detail?.modules[q] : r.detail?.overall)?.layer_step.pooled?.r_ci95 ?? undefined; // `pooled` is absent in folders written before it existed
    const interval = clustered ?? ours?.r_ci95;
    return {
      run: r.run, method: r.method, caption, lines,
      paper: {
        lines: [
          [`r, ${q ?? 'pooled (no query module)'}`, `${fmt(ours?.pearson_r)}${ci(interval)}${clustered ? ' (bootstrap over layers)' : ''}`],
          ['r, paper (Fig. 2)', `${paper.r.toFixed(2)} (${paper.sign < 0 ? 'negative' : 'positive'})`],
        ],
        verdict: verdict(paper.sign, interval),
        rule: `${VERDICT_RULE} Paper: ${PAPER_CITATION}, §3.2, query matrices of VL-BART.`,
      },
    };
  });
}

/** The verdict rule lives in the analysis layer (src/analysis/verdict.ts) so the report can apply it too. */
export { verdict, combineVerdicts, type Verdict } from '../analysis/verdict.js';

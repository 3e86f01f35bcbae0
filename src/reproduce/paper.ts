/** The paper's values live in the analysis layer (src/analysis/paper.ts) so the report can show them too. */
export { PAPER_FIGURE2, PAPER_CITATION, paperValue, type PaperFigure2, type PaperMethod } from '../analysis/paper.js';

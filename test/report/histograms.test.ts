import { describe, expect, it } from 'vitest';
import { loadAnalysis } from '../../src/report/load.js';
import { histogramFigure } from '../../src/report/figures/histograms.js';
import { grid, writeAnalysis, writeFeatureRows } from './helpers.js';

describe('per-feature histograms', () => {
  it('show |m_t − m_0| and 1 − cos of the chosen layer at the last step', async () => {
    const dir = await writeAnalysis(grid('dora', 'dora', 2, ['q_proj'], [5, 9]));
    await writeFeatureRows(dir, [
      { run: 'dora', step: 5, layer: 0, m0: 1, mt: 9, cos: 0 }, // earlier step: left out
      { run: 'dora', step: 9, layer: 0, m0: 1, mt: 1.5, cos: 0.75 },
      { run: 'dora', step: 9, layer: 0, m0: 2, mt: 1.25, cos: 1 },
      { run: 'dora', step: 9, layer: 1, m0: 2, mt: 2, cos: 0.5 },
    ]);
    const a = await loadAnalysis(dir);
    const h = histogramFigure('hist', a.features!);
    expect(h.data.length).toBe(4); // 2 layers × (ΔM, ΔD) × 1 run
    const visible = h.data.filter((t) => t.visible === true);
    expect(visible.map((t) => t.x)).toEqual([[0.5, 0.75], [0.25, 0]]);
    expect(h.title).toContain('step 9');
    expect(visible[0]!.hovertemplate).toBe('run dora<br>layer 0<br>step 9<br>|m_t − m_0| %{x}: %{y} features<extra></extra>');
  });

  it('a run name cannot inject markup or a %{…} field into the hover template', async () => {
    const dir = await writeAnalysis(grid('r%{x}<b>', 'dora', 1, ['q_proj'], [1]));
    await writeFeatureRows(dir, [{ run: 'r%{x}<b>', step: 1, layer: 0, m0: 1, mt: 2, cos: 0.5 }]);
    const h = histogramFigure('hist', (await loadAnalysis(dir)).features!);
    expect(String(h.data[0]!.hovertemplate)).toMatch(/^run r&#37;\{x\}&lt;b&gt;<br>/u);
  });
});

import { describe, expect, it } from 'vitest';
import { loadAnalysis } from '../../src/report/load.js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildFigures, renderReport } from '../../src/report/render.js';
import { trainableParams, type AnalysedTensor } from '../../src/report/trainable-params.js';
import { isDorascopeError } from '../../src/errors.js';
import { writeAnalysis, type Row } from './helpers.js';

// Two layers of a small model: q_proj 16 × 32, v_proj 8 × 32, mlp.up_proj 64 × 32 (rows = output features).
const T: AnalysedTensor[] = [0, 1].flatMap((l) => [
  { tensor: `model.layers.${l}.self_attn.q_proj.weight`, rows: 16, cols: 32 },
  { tensor: `model.layers.${l}.self_attn.v_proj.weight`, rows: 8, cols: 32 },
  { tensor: `model.layers.${l}.mlp.up_proj.weight`, rows: 64, cols: 32 },
]);
const CONFIG = { peft_type: 'LORA', r: 8, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'], rank_pattern: { 'layers.1.self_attn.q_proj': 4 } };

describe('trainable parameters of the analysed tensors', () => {
  it('LoRA: r·(in + out) per adapted tensor, rank_pattern where it matches, untargeted tensors not counted', () => {
    // q: 8·(16+32) = 384 (layer 0), 4·(16+32) = 192 (layer 1, rank_pattern); v: 8·(8+32) = 320 per layer; up_proj: 0.
    expect(trainableParams('lora', CONFIG, T)).toBe(384 + 192 + 320 + 320);
  });
  it('DoRA adds one magnitude per output feature', () => {
    // The LoRA count + 16 + 16 (q rows) + 8 + 8 (v rows).
    expect(trainableParams('dora', { ...CONFIG, use_dora: true }, T)).toBe(1216 + 16 + 16 + 8 + 8);
  });
  it('full fine-tuning: every element of every analysed tensor, each tensor once however many checkpoints', () => {
    // 2 layers × (16·32 + 8·32 + 64·32) = 2 × (512 + 256 + 2048).
    expect(trainableParams('ft', null, [...T, ...T])).toBe(2 * (512 + 256 + 2048));
  });
  it('layers_to_transform and a regex target_modules', () => {
    // Only layer 1, q and v by regex: 192 + 320.
    expect(trainableParams('lora', { ...CONFIG, target_modules: '.*\\.(q|v)_proj', layers_to_transform: [1] }, T)).toBe(512);
  });
  it('unknown (null) without a config, target_modules or shapes; a broken config is a typed error naming where', () => {
    expect(trainableParams('lora', null, T)).toBeNull();
    expect(trainableParams('lora', { r: 8, lora_alpha: 8 }, T)).toBeNull();
    expect(trainableParams('ft', null, [{ tensor: 'w', rows: 0, cols: 4 }])).toBeNull();
    expect(() => trainableParams('lora', { r: -1, lora_alpha: 8, target_modules: ['q'] }, T, 'DIR/manifest.json run "x"'))
      .toThrow(expect.toSatisfy((e) => isDorascopeError(e, 'E_ANALYSIS_DIR') && /manifest\.json run "x".*"r"/u.test(String((e as Error).message))));
  });

  it('the summary table reads adapter_config from manifest.json and shapes from decomposition.arrow', async () => {
    const rowsOf = (run: string, method: string): Row[] => [1, 2].flatMap((step) => T.map((t, i) => ({
      run, method, step, module: t.tensor.split('.')[4]!, layer: Number(t.tensor.split('.')[2]), tensor: t.tensor,
      dm: 0.001 * (i + step), dd: 0.0001 * (i * step + 1), rows: t.rows, cols: t.cols })));
    const lora = await writeAnalysis(rowsOf('lora', 'lora'), undefined, { tool: 'dorascope', runs: [{ run: 'lora', method: 'lora', adapter_config: CONFIG }] });
    const ft = await writeAnalysis(rowsOf('ft', 'ft'));
    for (const [dir, want] of [[lora, 1216], [ft, 5632]] as const) {
      const a = await loadAnalysis(dir);
      const { table } = buildFigures(a.rows, a.runs);
      const col = table.columns.indexOf('trainable params (analysed tensors)');
      expect(col).toBeGreaterThan(0);
      expect(table.rows[0]![col]).toBe(want);
      expect(table.notes?.[table.columns[col]!]).toMatch(/only the tensors this analysis covered/u);
    }
    // r and alpha in the config's own terms: a VeRA config has no alpha, an IA³ config neither (empty cells).
    for (const [config, want] of [[{ peft_type: 'VERA', r: 16, target_modules: ['q_proj'] }, [8, null]], [{ peft_type: 'IA3', target_modules: ['q_proj'], feedforward_modules: [] }, [null, null]], [CONFIG, [8, 16]]] as const) {
      const dir = await writeAnalysis(rowsOf('m', 'vera'), undefined, { tool: 'dorascope', runs: [{ run: 'm', method: 'vera', adapter_config: config }] });
      const a = await loadAnalysis(dir);
      const { table } = buildFigures(a.rows, a.runs);
      expect([table.rows[0]![table.columns.indexOf('r')], table.rows[0]![table.columns.indexOf('alpha')]]).toEqual(want);
    }
    // The page shows the note as the header's tooltip.
    const html = await readFile(await renderReport({ dir: lora, out: join(lora, 'r.html'), plotlySrc: 'plotly.js' }), 'utf8');
    expect(html).toMatch(/<th data-col="6" title="Counts only the tensors this analysis covered[^"]*">trainable params \(analysed tensors\)<\/th>/u);
  });
});

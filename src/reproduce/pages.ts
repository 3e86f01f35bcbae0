/**
 * The HTML pages of a reproduction folder: the compare reports of its three analysis folders
 * (Figure 2 of the first base and seed, every projection, the weight-decay control), the rank sweep and
 * the pretraining curves. Used by `reproduce` and again by `reproduce --rejudge`, so a folder re-judged by
 * a newer dorascope also gets its newer report.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine } from './engine.js';
import type { RankPoint } from './results.js';
import type { BaseRecord } from './readme.js';
import { pretrainFigure, rankFigure, writeFigurePage } from './rank-figure.js';

/** Suffix of the analysis folders of the runs trained on a 4-bit base (QLoRA, QDoRA), measured against it dequantized. */
export const QUANTIZED_SUFFIX = '-nf4';

/** An analysis folder and, where the reproduction wrote one, its 4-bit runs' folder beside it. */
function withQuantized(dir: string): string[] {
  return existsSync(`${dir}${QUANTIZED_SUFFIX}`) ? [dir, `${dir}${QUANTIZED_SUFFIX}`] : [dir];
}

export function reproductionTitle(presetName: string): string {
  return `dorascope reproduction of DoRA Figure 2 (${presetName})`;
}

export async function renderPages(engine: Engine, out: string, title: string, weightDecays: readonly number[], png: boolean): Promise<void> {
  await engine.compare({ dirs: withQuantized(join(out, 'analysis')), out: join(out, 'index.html'), title });
  await engine.compare({ dirs: withQuantized(join(out, 'analysis-all-modules')), out: join(out, 'all-modules.html'), title: `${title}: every projection` });
  await engine.compare({ dirs: [join(out, 'analysis-weight-decay')], out: join(out, 'weight-decay.html'), title: `${title}: full fine-tuning at weight decay ${weightDecays.join(', ')}` });
  if (png) await engine.png({ dirs: withQuantized(join(out, 'analysis')), out: join(out, 'index.html'), title, pngDir: join(out, 'png') });
}

export async function figurePages(out: string, title: string, rank: readonly RankPoint[], metricName: string, bases: readonly Pick<BaseRecord, 'seed' | 'curve'>[]): Promise<void> {
  await writeFigurePage(join(out, 'rank-sweep.html'), `${title}: rank sweep`,
    'One fine-tuning run per point (first base and seed; learning rate per method from the sweep; alpha = 2r).', rankFigure(rank, metricName));
  if (bases.some((b) => b.curve.length > 0)) {
    await writeFigurePage(join(out, 'pretraining.html'), `${title}: pretraining`, 'Held-out loss of each base while it was pretrained.',
      pretrainFigure(bases.map((b, i) => ({ label: `base ${i} (seed ${b.seed})`, curve: b.curve }))));
  }
}

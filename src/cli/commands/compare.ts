import type { CommandModule } from 'yargs';
import { openOrPrint } from './open-report.js';

export const compareCommand: CommandModule = {
  command: 'compare <dirs..>',
  describe: 'Compare several analysis folders (FT vs LoRA vs DoRA...) side by side in one HTML file',
  builder: (y) => y
    .positional('dirs', { type: 'string', array: true, demandOption: true })
    .option('labels', { type: 'string', describe: 'comma-separated names, one per folder' })
    .option('out', { type: 'string', describe: 'output HTML file (default compare.html)' })
    .option('title', { type: 'string' })
    .option('plotly-src', { type: 'string', describe: 'load plotly.js from this URL instead of inlining it' })
    .option('open', { type: 'boolean', default: false }),
  handler: async (argv) => {
    const { renderCompare } = await import('../../report/render.js');
    const a = argv as unknown as { dirs: string[]; labels?: string; out?: string; title?: string; plotlySrc?: string; open: boolean };
    const path = await renderCompare({ dirs: a.dirs, ...(a.labels ? { labels: a.labels.split(',') } : {}),
      ...(a.out ? { out: a.out } : {}), ...(a.title ? { title: a.title } : {}), ...(a.plotlySrc ? { plotlySrc: a.plotlySrc } : {}),
      command: ['dorascope', ...process.argv.slice(2)] });
    await openOrPrint(path, a.open);
  },
};

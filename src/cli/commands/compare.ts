import type { CommandModule } from 'yargs';
import { checkImageDirs, exportImages, openOrPrint } from '../report-output.js';

export const compareCommand: CommandModule = {
  command: 'compare <dirs..>',
  describe: 'Compare several analysis folders (FT vs LoRA vs DoRA...) side by side in one HTML file',
  builder: (y) => y
    .positional('dirs', { type: 'string', array: true, demandOption: true })
    .option('labels', { type: 'string', describe: 'comma-separated names, one per folder' })
    .option('out', { type: 'string', describe: 'output HTML file (default compare.html)' })
    .option('title', { type: 'string' })
    .option('force', { type: 'boolean', default: false, describe: 'replace an existing --out file that is not a dorascope report' })
    .option('plotly-src', { type: 'string', describe: 'link plotly.js from this URL or path (relative to the HTML file) instead of inlining its 4.6 MB' })
    .option('png', { type: 'string', describe: 'also export each figure as PNG into this folder (headless Chromium)' })
    .option('svg', { type: 'string', describe: 'also export each figure as SVG into this folder (headless Chromium)' })
    .option('open', { type: 'boolean', default: false }),
  handler: async (argv) => {
    const { renderCompare } = await import('../../report/render.js');
    const a = argv as unknown as { dirs: string[]; labels?: string; out?: string; title?: string; plotlySrc?: string; open: boolean; force: boolean; png?: string; svg?: string };
    await checkImageDirs(a, a.dirs);
    const path = await renderCompare({ dirs: a.dirs, ...(a.labels ? { labels: a.labels.split(',') } : {}),
      ...(a.out ? { out: a.out } : {}), ...(a.title ? { title: a.title } : {}), ...(a.plotlySrc ? { plotlySrc: a.plotlySrc } : {}),
      command: ['dorascope', ...process.argv.slice(2)], force: a.force });
    await exportImages(path, a);
    await openOrPrint(path, a.open);
  },
};

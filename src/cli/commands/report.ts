import type { CommandModule } from 'yargs';
import { checkImageDirs, exportImages, openOrPrint } from '../report-output.js';

export const reportCommand: CommandModule = {
  command: 'report <dir>',
  describe: 'Render an analysis folder as one self-contained HTML report',
  builder: (y) => y
    .positional('dir', { type: 'string', demandOption: true, describe: 'analysis folder (dorascope analyze --out)' })
    .option('out', { type: 'string', describe: 'output HTML file (default DIR/report.html)' })
    .option('title', { type: 'string' })
    .option('force', { type: 'boolean', default: false, describe: 'replace an existing --out file that is not a dorascope report' })
    .option('plotly-src', { type: 'string', describe: 'link plotly.js from this URL or path (relative to the HTML file) instead of inlining its 4.6 MB' })
    .option('png', { type: 'string', describe: 'also export each figure as PNG into this folder (headless Chromium)' })
    .option('svg', { type: 'string', describe: 'also export each figure as SVG into this folder (headless Chromium)' })
    .option('open', { type: 'boolean', default: false, describe: 'open in the default browser' }),
  handler: async (argv) => {
    const { renderReport } = await import('../../report/render.js');
    const a = argv as unknown as { dir: string; out?: string; title?: string; plotlySrc?: string; open: boolean; force: boolean; png?: string; svg?: string };
    await checkImageDirs(a, [a.dir]);
    const path = await renderReport({ dir: a.dir, ...(a.out ? { out: a.out } : {}), ...(a.title ? { title: a.title } : {}),
      ...(a.plotlySrc ? { plotlySrc: a.plotlySrc } : {}), command: ['dorascope', ...process.argv.slice(2)], force: a.force });
    await exportImages(path, a);
    await openOrPrint(path, a.open);
  },
};

import type { CommandModule } from 'yargs';
import { checkImageDirs, exportImages, openOrPrint } from '../report-output.js';

export const reportCommand: CommandModule = {
  command: 'report <dir>',
  describe: 'Render an analysis folder as one self-contained HTML report',
  builder: (y) => y
    .positional('dir', { type: 'string', demandOption: true, describe: 'analysis folder (dorascope analyze --out)' })
    .option('out', { type: 'string', describe: 'output HTML file (default DIR/report.html)' })
    .option('title', { type: 'string', describe: 'page title (default: "dorascope report: " and the run names)' })
    .option('force', { type: 'boolean', default: false, describe: 'replace an existing --out file that is not a dorascope report' })
    .option('plotly-src', { type: 'string', describe: 'link plotly.js from this URL or path (relative to the HTML file) instead of inlining it (≈1.1 MB)' })
    .option('png', { type: 'string', describe: 'also export each figure as PNG into this folder (headless Chromium)' })
    .option('svg', { type: 'string', describe: 'also export each figure as SVG into this folder (headless Chromium)' })
    .option('open', { type: 'boolean', default: false, describe: 'open in the default browser' })
    .option('json', { type: 'boolean', default: false, describe: 'print a JSON summary on stdout (report and images written, per-run statistics) instead of the path' })
    .example('$0 report analysis', 'analysis/report.html')
    .example('$0 report analysis --out ft-vs-dora.html --title "FT vs DoRA" --open', 'another file and title, opened in the browser')
    .example('$0 report analysis --png figures/', 'the report, and each figure as PNG')
    .example('$0 report analysis --json', 'machine-readable: the path and each run\'s r, slope and intervals'),
  handler: async (argv) => {
    const { renderReport } = await import('../../report/render.js');
    const a = argv as unknown as { dir: string; out?: string; title?: string; plotlySrc?: string; open: boolean; force: boolean; png?: string; svg?: string; json: boolean };
    await checkImageDirs(a, [a.dir]);
    const path = await renderReport({ dir: a.dir, ...(a.out ? { out: a.out } : {}), ...(a.title ? { title: a.title } : {}),
      ...(a.plotlySrc ? { plotlySrc: a.plotlySrc } : {}), command: ['dorascope', ...process.argv.slice(2)], force: a.force });
    const images = await exportImages(path, a, a.json);
    await openOrPrint(path, a.open, a.json);
    if (a.json) {
      const { printJson, readRuns, runStatsJson } = await import('../json-summary.js');
      printJson({ command: 'report', report: path, files: [path, ...images], images, runs: runStatsJson(await readRuns(a.dir)) });
    }
  },
};

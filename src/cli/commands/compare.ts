import type { CommandModule } from 'yargs';
import { checkImageDirs, exportImages, openOrPrint } from '../report-output.js';

export const compareCommand: CommandModule = {
  command: 'compare <dirs..>',
  describe: 'Compare several analysis folders (FT vs LoRA vs DoRA...) side by side in one HTML file',
  builder: (y) => y
    .positional('dirs', { type: 'string', array: true, demandOption: true, describe: 'analysis folders (dorascope analyze --out), one or more',
      default: undefined }) // yargs would show a variadic positional as both required and "[default: []]"
    .option('labels', { type: 'string', describe: 'comma-separated names, one per folder' })
    .option('out', { type: 'string', describe: 'output HTML file (default compare.html)' })
    .option('title', { type: 'string', describe: 'page title (default: "dorascope compare: " and the run names)' })
    .option('force', { type: 'boolean', default: false, describe: 'replace an existing --out file that is not a dorascope report' })
    .option('plotly-src', { type: 'string', describe: 'link plotly.js from this URL or path (relative to the HTML file) instead of inlining it (≈1.1 MB)' })
    .option('png', { type: 'string', describe: 'also export each figure as PNG into this folder (headless Chromium)' })
    .option('svg', { type: 'string', describe: 'also export each figure as SVG into this folder (headless Chromium)' })
    .option('open', { type: 'boolean', default: false, describe: 'open in the default browser' })
    .option('json', { type: 'boolean', default: false, describe: 'print a JSON summary on stdout (page and images written, per-run statistics) instead of the path' })
    .example('$0 compare out/ft out/lora out/dora --labels FT,LoRA,DoRA', 'three analyses side by side in compare.html')
    .example('$0 compare out/ft out/dora --out ft-vs-dora.html --svg figures/', 'another file, and each figure as SVG')
    .example('$0 compare out/ft out/dora --json', 'machine-readable: the path and each run\'s r, slope and intervals'),
  handler: async (argv) => {
    const { renderCompare } = await import('../../report/render.js');
    const a = argv as unknown as { dirs: string[]; labels?: string; out?: string; title?: string; plotlySrc?: string; open: boolean; force: boolean; png?: string; svg?: string; json: boolean };
    await checkImageDirs(a, a.dirs);
    const labels = a.labels ? a.labels.split(',') : undefined;
    const path = await renderCompare({ dirs: a.dirs, ...(labels ? { labels } : {}),
      ...(a.out ? { out: a.out } : {}), ...(a.title ? { title: a.title } : {}), ...(a.plotlySrc ? { plotlySrc: a.plotlySrc } : {}),
      command: ['dorascope', ...process.argv.slice(2)], force: a.force });
    const images = await exportImages(path, a, a.json);
    await openOrPrint(path, a.open, a.json);
    if (a.json) {
      const { printJson, readRuns, runStatsJson } = await import('../json-summary.js');
      const runs = [];
      for (const [i, dir] of a.dirs.entries()) {
        const rs = await readRuns(dir);
        // The same renaming as renderCompare: a label names a folder's run, or prefixes each of several.
        runs.push(...runStatsJson(rs, (run) => (labels ? (rs.length > 1 ? `${labels[i]}/${run}` : labels[i]!) : run)));
      }
      printJson({ command: 'compare', report: path, files: [path, ...images], images, runs });
    }
  },
};

import { spawn } from 'node:child_process';

/** `--open`: hand the file to the desktop's opener (xdg-open / open) when there is one; print the path unless `quiet` (--json prints it in its object). */
export async function openOrPrint(path: string, open: boolean, quiet = false): Promise<void> {
  if (!quiet) process.stdout.write(`${path}\n`);
  if (!open) return;
  const opener = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? null : 'xdg-open';
  if (!opener || (process.platform === 'linux' && !process.env.DISPLAY && !process.env.WAYLAND_DISPLAY)) return;
  await new Promise<void>((res) => {
    const p = spawn(opener, [path], { stdio: 'ignore', detached: true });
    p.on('error', () => res()); // no opener installed: the path printed above is the answer
    p.on('spawn', () => { p.unref(); res(); });
  });
}

/** Refuses (before anything is written) a `--png`/`--svg` folder that is, holds or lies inside an analysis folder read. */
export async function checkImageDirs(o: { png?: string; svg?: string }, analysisDirs: readonly string[]): Promise<void> {
  const { checkNoOverlap } = await import('../io/output-guard.js');
  for (const [option, dir] of [['--png', o.png], ['--svg', o.svg]] as const) {
    if (dir) checkNoOverlap({ out: dir, option, kind: 'images', inputs: analysisDirs.map((path) => ({ role: 'analysis folder', path })) });
  }
}

/** `--png DIR` / `--svg DIR`: images of each figure through headless Chromium (E_CHROMIUM when none); returns their paths, printed unless `quiet`. */
export async function exportImages(html: string, o: { png?: string; svg?: string }, quiet = false): Promise<string[]> {
  const written: string[] = [];
  if (!o.png && !o.svg) return written;
  const { exportFigures } = await import('../report/export.js');
  for (const [fmt, dir] of [['png', o.png], ['svg', o.svg]] as const) {
    if (!dir) continue;
    for (const p of await exportFigures(html, dir, fmt)) {
      written.push(p);
      if (!quiet) process.stdout.write(`${p}\n`);
    }
  }
  return written;
}

/**
 * The end of `analyze` and `combine`: with `--report`, report.html rendered from the folder just written (here, above
 * the analysis, so analysis never imports the report layer); then `--json`'s summary or the folder's name on stdout.
 */
export async function finishAnalysisFolder(command: 'analyze' | 'combine', out: string, started: number,
  runs: Parameters<typeof import('./json-summary.js').runStatsJson>[0], o: { report: boolean; json: boolean; quiet: boolean }): Promise<void> {
  let html: string | undefined;
  if (o.report) {
    const { renderReport } = await import('../report/render.js');
    html = await renderReport({ dir: out });
    if (!o.quiet) process.stderr.write(`report: ${html}\n`);
  }
  if (o.json) {
    const { filesWrittenSince, printJson, runStatsJson } = await import('./json-summary.js');
    printJson({ command, out, ...(html === undefined ? {} : { report: html }), files: filesWrittenSince(out, started), runs: runStatsJson(runs) });
  } else {
    process.stdout.write(`${out}\n`);
  }
}

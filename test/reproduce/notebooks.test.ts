/**
 * The notebooks: outputs cleared in git, and every cell executes without error under a real kernel
 * (scripts/run-notebooks.sh with Debian's jupyter-nbconvert): Deno's for the TypeScript notebooks,
 * ipykernel with Debian's pandas and matplotlib for explore.ipynb (which reads the CSV twin there:
 * Debian has no pyarrow).
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const notebooks = readdirSync(`${root}notebooks`).filter((n) => n.endsWith('.ipynb')).sort();
const PYTHON = ['explore.ipynb'];
const typescript = notebooks.filter((n) => !PYTHON.includes(n));

function hasNbconvert(): boolean {
  return spawnSync('sh', ['-c', 'command -v jupyter-nbconvert || test -x /usr/bin/jupyter-nbconvert'], { stdio: 'ignore' }).status === 0;
}

/** The probe run-notebooks.sh makes: a python3 on PATH, or Debian's, with what explore.ipynb imports. */
function hasPythonStack(): boolean {
  const probe = 'for c in "$(command -v python3)" /usr/bin/python3; do [ -n "$c" ] && "$c" -c "import pandas, matplotlib, ipykernel" && exit 0; done; exit 1';
  return spawnSync('sh', ['-c', probe], { stdio: 'ignore' }).status === 0;
}

function execute(list: readonly string[]): void {
  const res = spawnSync('bash', [`${root}scripts/run-notebooks.sh`, ...list.map((n) => `notebooks/${n}`)], { cwd: root, encoding: 'utf8', timeout: 600_000 });
  // On a cell error nbconvert exits non-zero and prints the traceback: show its tail.
  expect(res.status, `${res.stdout}\n${res.stderr}`.slice(-4000)).toBe(0);
  for (const nb of list) {
    const j = JSON.parse(readFileSync(`${root}test-output/notebooks/${nb}`, 'utf8'));
    const errors = j.cells.flatMap((c: { outputs?: { output_type: string }[] }) => c.outputs ?? []).filter((o: { output_type: string }) => o.output_type === 'error');
    expect(errors).toEqual([]);
  }
}

describe('notebooks', () => {
  it('ships explore-analysis and your-checkpoints (TypeScript) and explore (Python), with outputs cleared', () => {
    expect(notebooks).toEqual(expect.arrayContaining(['explore-analysis.ipynb', 'your-checkpoints.ipynb', 'explore.ipynb']));
    for (const nb of notebooks) {
      const j = JSON.parse(readFileSync(`${root}notebooks/${nb}`, 'utf8'));
      expect(j.metadata.kernelspec.language).toBe(PYTHON.includes(nb) ? 'python' : 'typescript');
      if (PYTHON.includes(nb)) expect(j.metadata.kernelspec.name).toBe('python3');
      for (const c of j.cells) {
        if (c.cell_type !== 'code') continue;
        expect(c.outputs, `${nb} has outputs committed`).toEqual([]);
        expect(c.execution_count).toBeNull();
      }
    }
  });

  const why = hasNbconvert() ? '' : ' (skipped: jupyter-nbconvert is not installed here; .ci/run installs it)';
  it.skipIf(why !== '')(`the TypeScript notebooks execute headlessly without a cell error${why}`, () => {
    expect(existsSync(`${root}node_modules/@deno/linux-x64-glibc/deno`)).toBe(true);
    execute(typescript);
  }, 600_000);

  const whyPy = why !== '' ? why : hasPythonStack() ? '' : ' (skipped: no python3 with pandas, matplotlib and ipykernel here; .ci/run installs python3-pandas python3-matplotlib python3-ipykernel)';
  it.skipIf(whyPy !== '')(`explore.ipynb executes with pandas and matplotlib, checks summary.json and draws Figure 2${whyPy}`, () => {
    execute(PYTHON);
    const j = JSON.parse(readFileSync(`${root}test-output/notebooks/explore.ipynb`, 'utf8'));
    const outputs = j.cells.flatMap((c: { outputs?: unknown[] }) => c.outputs ?? []) as { data?: Record<string, unknown> }[];
    // The figure was drawn (a PNG), and the correlation table (the cell asserts r and slope against summary.json) printed.
    expect(outputs.some((o) => typeof o.data?.['image/png'] === 'string')).toBe(true);
    expect(outputs.some((o) => String(o.data?.['text/plain'] ?? '').includes('r (summary.json)'))).toBe(true);
  }, 600_000);
});

#!/usr/bin/env node
/**
 * Bundles the CLI (dist/cli/main.js) and the analysis worker (dist/analysis/worker.js), with the
 * regular dependencies (yargs, apache-arrow, re2js), into dist/cli-bundle/ (run by `npm run build`,
 * after tsc). For `analyze`, Node then loads some 35 files instead of about 290 modules, each
 * resolved, read and compiled apart: `dorascope analyze` starts about 0.2 s sooner, and so does each
 * analysis worker (docs/benchmarks.md). Commands load their code on first use as before: every
 * dynamic import becomes a chunk of its own. The optional dependencies (tfjs, Dawn, Playwright, the
 * full Plotly bundle) and parquet-wasm (which reads its .wasm beside its module) stay outside, loaded
 * from node_modules as before. The library (dist/index.js) is not bundled.
 *
 * Without esbuild (an install without dev dependencies) this prints a note and exits 0;
 * bin/dorascope.js then runs dist/cli/main.js.
 */
import { existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const out = join(root, 'dist', 'cli-bundle');
// First, so that a build without esbuild never leaves an older bundle for bin/dorascope.js to run.
rmSync(out, { recursive: true, force: true });
let esbuild;
try {
  esbuild = require('esbuild');
} catch {
  process.stderr.write('build-cli: esbuild is not installed (dev dependencies); the CLI runs from dist/cli/main.js\n');
  process.exit(0);
}
const entries = ['dist/cli/main.js', 'dist/analysis/worker.js'].map((f) => join(root, f));
for (const e of entries) if (!existsSync(e)) throw new Error(`build-cli: ${e} is missing (run tsc first)`);
await esbuild.build({
  entryPoints: entries, outdir: out, entryNames: '[name]', bundle: true, splitting: true, format: 'esm', platform: 'node',
  target: 'node20', absWorkingDir: root, logLevel: 'warning', legalComments: 'eof',
  external: ['@tensorflow/*', 'webgpu', 'playwright-core', 'plotly.js-dist-min', 'parquet-wasm', 'parquet-wasm/*', '@duckdb/*'],
  // Bundled CommonJS dependencies call `require` for Node's own modules; an ES module has none.
  banner: { js: "import { createRequire as __dorascopeRequire } from 'node:module';\nconst require = __dorascopeRequire(import.meta.url);" },
});
process.stderr.write(`build-cli: ${out}\n`);

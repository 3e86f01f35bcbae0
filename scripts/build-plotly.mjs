#!/usr/bin/env node
/**
 * Builds the partial plotly.js bundles the reports inline (run by `npm run build`, after tsc):
 *   dist/plotly/plotly-svg.min.js  core + scatter + bar           (the trace types of every report figure)
 *   dist/plotly/plotly-gl.min.js   core + scatter + scattergl + bar (for figures past GL_THRESHOLD points)
 * plotly.js documents this way of making a smaller bundle ("Partial bundles" in its CUSTOM_BUNDLE.md:
 * `require('plotly.js/lib/core')` and `Plotly.register([...])` with the trace modules one needs); the full
 * plotly.js-dist-min is 4.8 MB, these are about 1.1 and 1.4 MB. esbuild's settings follow plotly.js's own
 * esbuild-config.js (IIFE with the global `Plotly`, `global` → `window`, regl → @plotly/regl), except that
 * Node's `buffer` module, which typedarray-pool requires but only uses where `Buffer` exists, is an empty shim.
 *
 * Without plotly.js or esbuild (an install without dev dependencies) this prints a note and exits 0; the
 * report then inlines plotly.js-dist-min instead (src/report/plotly-bundle.ts).
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
let esbuild, plotlyDir;
try {
  esbuild = require('esbuild');
  plotlyDir = dirname(require.resolve('plotly.js/package.json'));
} catch {
  process.stderr.write('build-plotly: plotly.js or esbuild is not installed (dev dependencies); reports will inline plotly.js-dist-min\n');
  process.exit(0);
}
const version = JSON.parse(readFileSync(join(plotlyDir, 'package.json'), 'utf8')).version;

export const BUNDLES = { svg: ['scatter', 'bar'], gl: ['scatter', 'scattergl', 'bar'] };

const out = join(root, 'dist', 'plotly');
const work = join(out, '.src');
rmSync(out, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
writeFileSync(join(work, 'buffer-shim.cjs'), 'module.exports = { Buffer: undefined };\n');
for (const [name, traces] of Object.entries(BUNDLES)) {
  const entry = join(work, `${name}.cjs`);
  writeFileSync(entry, `var Plotly = require('plotly.js/lib/core');\nPlotly.register([${traces.map((t) => `require('plotly.js/lib/${t}')`).join(', ')}]);\nmodule.exports = Plotly;\n`);
  const file = join(out, `plotly-${name}.min.js`);
  await esbuild.build({
    entryPoints: [entry], outfile: file, bundle: true, minify: true, format: 'iife', globalName: 'Plotly',
    absWorkingDir: root, nodePaths: [join(root, 'node_modules')],
    alias: { regl: '@plotly/regl', buffer: join(work, 'buffer-shim.cjs') },
    // The one CSS import (maplibre-gl's, for map traces, which these bundles do not register) is left out.
    loader: { '.css': 'empty' },
    define: { global: 'window', 'define.amd': 'false' }, target: 'es2016', logLevel: 'warning', legalComments: 'eof',
    banner: { js: `/*! plotly.js v${version} (MIT, Plotly, Inc.) partial bundle: ${traces.join(', ')}. Built by dorascope scripts/build-plotly.mjs */` },
  });
  process.stderr.write(`build-plotly: ${file} (${(readFileSync(file).length / 1e6).toFixed(2)} MB)\n`);
}
rmSync(work, { recursive: true, force: true });
writeFileSync(join(out, 'bundles.json'), `${JSON.stringify({ plotly: version, bundles: BUNDLES }, null, 2)}\n`);

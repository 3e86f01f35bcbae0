#!/usr/bin/env node
// Thin launcher: the CLI lives in the compiled library (npm install runs `prepare`, which builds dist/).
// The bundled build of it (scripts/build-cli.mjs) starts faster; it serves unless it is missing or older than
// dist/ (a `tsc` run alone since the last full build), when the modules of dist/ serve.
import { statSync } from 'node:fs';

const mtime = (rel) => statSync(new URL(rel, import.meta.url), { throwIfNoEntry: false })?.mtimeMs;
const bundled = mtime('../dist/cli-bundle/main.js');
const { main } = bundled !== undefined && bundled >= (mtime('../dist/cli/main.js') ?? 0)
  ? await import('../dist/cli-bundle/main.js')
  : await import('../dist/cli/main.js');

process.exitCode = await main(process.argv.slice(2));

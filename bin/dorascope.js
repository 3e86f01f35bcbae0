#!/usr/bin/env node
// Thin launcher: the CLI lives in the compiled library (npm install runs `prepare`, which builds dist/).
// The bundled build of it (scripts/build-cli.mjs) starts faster; without it, the modules of dist/ serve.
import { existsSync } from 'node:fs';

const bundle = new URL('../dist/cli-bundle/main.js', import.meta.url);
const { main } = existsSync(bundle) ? await import(bundle.href) : await import('../dist/cli/main.js');

process.exitCode = await main(process.argv.slice(2));

import { existsSync, readFileSync } from 'node:fs';

/**
 * The package version, read once from package.json: one folder above src/ and dist/, two above
 * the CLI bundle (dist/cli-bundle/, scripts/build-cli.mjs).
 */
export const VERSION: string = (() => {
  const here = ['../package.json', '../../package.json'].map((p) => new URL(p, import.meta.url)).find((u) => existsSync(u));
  if (!here) throw new Error(`dorascope: no package.json above ${import.meta.url}`);
  return (JSON.parse(readFileSync(here, 'utf8')) as { version: string }).version;
})();

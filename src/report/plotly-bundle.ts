/**
 * The plotly.js a report inlines: the smallest partial bundle that registers every trace type its figures
 * use, built at `npm run build` by scripts/build-plotly.mjs into dist/plotly/ (core + scatter + bar,
 * 1.1 MB; with scattergl, 1.4 MB), instead of all of plotly.js (4.8 MB). A build that could not make
 * them (no dev dependencies) falls back to the full plotly.js-dist-min.
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { missingDependency } from '../optional.js';

/** The folder of the built bundles: <package>/dist/plotly, from src/report/ (tests) and dist/report/ alike. */
const BUNDLE_DIR = fileURLToPath(new URL('../../dist/plotly/', import.meta.url));

/** Every trace type in a list of Plotly figures' `data`. */
export function traceTypes(figures: readonly { data: readonly Record<string, unknown>[] }[]): Set<string> {
  const types = new Set<string>();
  for (const f of figures) for (const t of f.data) types.add(typeof t.type === 'string' ? t.type : 'scatter');
  return types;
}

/** The built bundles and the trace types each registers, smallest first, as the build recorded them (bundles.json). */
function builtBundles(): { name: string; traces: readonly string[] }[] {
  try {
    const j = JSON.parse(readFileSync(`${BUNDLE_DIR}bundles.json`, 'utf8')) as { bundles?: Record<string, string[]> };
    return Object.entries(j.bundles ?? {}).map(([name, traces]) => ({ name, traces }));
  } catch {
    return [];
  }
}

/** Path of the smallest built bundle that draws `types`, or of plotly.js-dist-min when none does. */
export function plotlyBundlePath(types: ReadonlySet<string>): string {
  for (const b of builtBundles()) {
    if (![...types].every((t) => b.traces.includes(t))) continue;
    const file = `${BUNDLE_DIR}plotly-${b.name}.min.js`;
    if (existsSync(file)) return file;
  }
  try {
    return createRequire(import.meta.url).resolve('plotly.js-dist-min/plotly.min.js');
  } catch (e) {
    throw missingDependency('plotly.js-dist-min', `a report (${BUNDLE_DIR} has no partial bundle for ${[...types].join(', ')}: `
      + 'build them with `npm run build` and the dev dependencies, or pass --plotly-src)', e);
  }
}

/** The source of the smallest plotly.js that draws `types`. */
export async function plotlyBundle(types: ReadonlySet<string>): Promise<string> {
  return readFile(plotlyBundlePath(types), 'utf8');
}

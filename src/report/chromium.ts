/**
 * Finds and launches the system's Chromium for headless rendering (image export, browser tests):
 * CHROMIUM_PATH first, then the usual install paths. Nothing is downloaded (playwright-core ships no browser).
 */
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DorascopeError, q } from '../errors.js';
import { isModuleNotFound, missingDependency } from '../optional.js';

const USUAL = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable',
  '/Applications/Google Chrome.app/Contents/MacOS/Google Chrome', '/Applications/Chromium.app/Contents/MacOS/Chromium'];

export function findChromium(env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.CHROMIUM_PATH) return existsSync(env.CHROMIUM_PATH) ? env.CHROMIUM_PATH : null;
  return USUAL.find((p) => existsSync(p)) ?? null;
}

export function requireChromium(env: NodeJS.ProcessEnv = process.env): string {
  const p = findChromium(env);
  if (!p) throw new DorascopeError('E_CHROMIUM', env.CHROMIUM_PATH
    ? `CHROMIUM_PATH=${q(env.CHROMIUM_PATH)} does not exist`
    : `no Chromium found (looked in ${USUAL.join(', ')}); install it (apt-get install chromium) or set CHROMIUM_PATH`);
  return p;
}

/** Headless, no sandbox (containers have no user namespaces), and nothing that phones home: reports must work offline. */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic'];

export async function launchChromium(executablePath: string) {
  let chromium: typeof import('playwright-core').chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    if (isModuleNotFound(e, 'playwright-core')) throw missingDependency('playwright-core', 'PNG/SVG export (--png, --svg) and the report checks in Chromium', e);
    throw e;
  }
  const userDataDir = await mkdtemp(join(tmpdir(), 'dorascope-chromium-'));
  return chromium.launchPersistentContext(userDataDir, { executablePath, headless: true, args: CHROMIUM_ARGS });
}

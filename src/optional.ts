/**
 * The heavy dependencies are optional (package.json `optionalDependencies`): an analysis-only
 * install (`npm install --omit=optional`) leaves out tfjs, Dawn (`webgpu`), Playwright, Deno and
 * the full Plotly bundle. Each is loaded when a command first needs it; when it is absent the
 * command stops with E_MISSING_DEPENDENCY naming the package, what needs it and how to install it.
 * docs/install.md lists which command needs which package.
 */
import { createRequire } from 'node:module';
import { DorascopeError } from './errors.js';

const require = createRequire(import.meta.url);

/** True when `err` is Node's "this package is not installed" (not an error thrown while loading it). */
export function isModuleNotFound(err: unknown, pkg: string): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  if (e === null || typeof e !== 'object') return false;
  if (e.code !== 'MODULE_NOT_FOUND' && e.code !== 'ERR_MODULE_NOT_FOUND') return false;
  // Node's message names the specifier it could not find: the package itself, or (when the
  // package is there but one of its own dependencies was omitted) that dependency, which
  // `--omit=optional` leaves out together with it.
  return typeof e.message === 'string' && e.message.includes(pkg.split('/')[0]!);
}

/** tfjs-core with the backends `auto` can end on: what to install for training. */
export const TFJS_PACKAGES = '@tensorflow/tfjs-core @tensorflow/tfjs-backend-wasm @tensorflow/tfjs-backend-cpu';

/**
 * The E_MISSING_DEPENDENCY error for `pkg`, needed by `purpose`; `install` is what to pass to
 * `npm install` when one package is not enough (tfjs-core is no use without a backend).
 */
export function missingDependency(pkg: string, purpose: string, cause?: unknown, install = pkg): DorascopeError {
  return new DorascopeError('E_MISSING_DEPENDENCY',
    `${purpose} needs the optional package ${pkg}, which is not installed: run \`npm install ${install}\` `
    + '(or a plain `npm install` in dorascope\'s folder, without --omit=optional)',
    { package: pkg, purpose, install }, { cause });
}

/** `require(pkg)`, or E_MISSING_DEPENDENCY when it is not installed. `specifier` defaults to `pkg` (a file inside it may be named). */
export function requireOptional<T>(pkg: string, purpose: string, specifier = pkg, install = pkg): T {
  try {
    return require(specifier) as T;
  } catch (e) {
    if (isModuleNotFound(e, pkg)) throw missingDependency(pkg, purpose, e, install);
    throw e;
  }
}

/** `require.resolve(specifier)` inside `pkg`, or E_MISSING_DEPENDENCY. */
export function resolveOptional(pkg: string, purpose: string, specifier = pkg, install = pkg): string {
  try {
    return require.resolve(specifier);
  } catch (e) {
    if (isModuleNotFound(e, pkg)) throw missingDependency(pkg, purpose, e, install);
    throw e;
  }
}

/** Whether `pkg` is installed (its entry point resolves), without loading it. */
export function hasPackage(pkg: string): boolean {
  try {
    require.resolve(pkg);
    return true;
  } catch (e) {
    return !isModuleNotFound(e, pkg);
  }
}

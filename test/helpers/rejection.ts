import { DorascopeError } from '../../src/errors.js';

/** The DorascopeError a promise (or a function) rejects with; any other outcome fails the test. */
export async function rejection(p: Promise<unknown> | (() => unknown)): Promise<DorascopeError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (e instanceof DorascopeError) return e;
    throw e;
  }
  throw new Error('expected a DorascopeError');
}

/** The DorascopeError a synchronous call throws; any other outcome fails the test. */
export function thrown(f: () => unknown): DorascopeError {
  try {
    f();
  } catch (e) {
    if (e instanceof DorascopeError) return e;
    throw e;
  }
  throw new Error('expected a DorascopeError');
}

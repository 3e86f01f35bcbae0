/**
 * Regular expressions that come from users (PEFT `rank_pattern` / `alpha_pattern` keys,
 * `target_modules` given as a string, `analyze --modules-regex`) are evaluated with RE2
 * semantics (re2js, a pure-JS port of RE2): matching takes time linear in the input, so a
 * pattern such as `(.+)+X` cannot hang a run the way it hangs a backtracking engine.
 * RE2 has no backreferences or lookaround; a pattern that uses them is refused with the
 * caller's error code (E_ADAPTER_CONFIG for a config file, E_USAGE for a command line).
 */
import { RE2JS } from 're2js';
import { DorascopeError, q, type ErrorCode } from '../errors.js';

/** A compiled user pattern. `full` is Python's `re.fullmatch`; `search` is `re.search`. */
export interface SafeRegex {
  readonly source: string;
  full(input: string): boolean;
  search(input: string): boolean;
}

/** Longest pattern accepted: RE2's program grows with the pattern, so it is bounded too. */
export const MAX_PATTERN_LENGTH = 4096;

const cache = new Map<string, SafeRegex>();

/** Compiles `source` with a linear-time engine; `what` names where it came from in messages. */
export function compileSafe(source: string, what: string, code: ErrorCode): SafeRegex {
  const hit = cache.get(source);
  if (hit) return hit;
  if (source.length > MAX_PATTERN_LENGTH) {
    throw new DorascopeError(code, `${what}: regular expression of ${source.length} characters is longer than the ${MAX_PATTERN_LENGTH} allowed`);
  }
  let re: RE2JS;
  try {
    re = RE2JS.compile(source);
  } catch (e) {
    throw new DorascopeError(code, `${what}: invalid regular expression ${q(source)}: ${(e as Error).message} (patterns use RE2 syntax: no backreferences or lookaround)`);
  }
  const out: SafeRegex = {
    source,
    full: (input) => re.matcher(input).matches(),
    search: (input) => re.matcher(input).find(),
  };
  if (cache.size > 1024) cache.clear(); // a bound on memory, not a correctness matter
  cache.set(source, out);
  return out;
}

/**
 * PEFT's per-module pattern rules, reimplemented from their documented behaviour:
 * - `rank_pattern` / `alpha_pattern` (peft `utils/other.py` `get_pattern_key`): the
 *   first key, in the config's iteration order, for which the Python regex
 *   `re.match(rf"(.*\.)?({key})$", module_path)` matches wins; the key is a raw regex
 *   fragment (not escaped), so `layers.0.self_attn.q_proj` and `experts.*.w1` both work.
 * - `target_modules` (peft `check_target_module_exists`): a string is a regex that must
 *   match the whole module path (`re.fullmatch`); a list matches a module whose path
 *   equals an entry or ends with `.entry`.
 * Module paths are those of the base model (`model.layers.0.self_attn.q_proj`), without
 * PEFT's `base_model.model.` wrapper prefix.
 */
import { compileSafe, type SafeRegex } from '../safe-regex.js';

// User patterns run on a linear-time engine (see safe-regex.ts): a config file must not be
// able to hang a run with a backtracking pattern.
function compile(src: string, what: string): SafeRegex {
  return compileSafe(src, what, 'E_ADAPTER_CONFIG');
}

/** PEFT's `get_pattern_key`: the first matching key, or undefined when none matches. */
export function patternKey(keys: readonly string[], modulePath: string, what = 'pattern'): string | undefined {
  for (const key of keys) {
    // peft utils/other.py get_pattern_key: re.match(rf"(.*\.)?({key})$", ...) anchors at both ends.
    if (compile(`(?:.*\\.)?(?:${key})`, what).full(modulePath)) return key;
  }
  return undefined;
}

/** The value of the first matching pattern key, else `fallback`. */
export function patternValue(pattern: Readonly<Record<string, number>>, modulePath: string, fallback: number, what = 'pattern'): number {
  const key = patternKey(Object.keys(pattern), modulePath, what);
  return key === undefined ? fallback : pattern[key]!;
}

/** Whether `target_modules` selects this module path (null/undefined selects nothing). */
export function targetMatches(targets: string | readonly string[] | null | undefined, modulePath: string): boolean {
  if (targets === null || targets === undefined) return false;
  if (typeof targets === 'string') {
    if (targets === 'all-linear') return true; // PEFT expands this to every linear layer but the output head
    return compile(`(?:${targets})`, 'target_modules').full(modulePath);
  }
  return targets.some((t) => modulePath === t || modulePath.endsWith(`.${t}`));
}

/** The layer index PEFT's `layers_to_transform` looks at: the number after a `layers`-like segment. */
export function layerIndexOf(modulePath: string): number | undefined {
  const m = /(?:^|\.)(?:layers|h|layer|blocks|block)\.(\d+)\./u.exec(modulePath);
  return m ? Number(m[1]) : undefined;
}

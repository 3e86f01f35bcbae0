/**
 * How a value read from a JSON file is shown in an error message: as it appears in the file,
 * with its JSON type where the type is the problem. `JSON.stringify` alone is wrong for this:
 * it writes NaN and Infinity (which Python's json module emits as bare tokens) as `null`, and
 * `String("10")` hides that the file holds a string, not a number.
 */
export function shownValue(v: unknown): string {
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : v === Infinity ? 'Infinity' : v === -Infinity ? '-Infinity' : String(v);
  if (typeof v === 'string') return `the string ${clip(JSON.stringify(v))}`;
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `the list ${clip(safeJson(v))}`;
  return `the object ${clip(safeJson(v))}`;
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    // Too deep to write out (String() of a nested array recurses the same way).
    return Array.isArray(v) ? '[...nested too deep to show...]' : '{...nested too deep to show...}';
  }
}

function clip(s: string): string {
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

/**
 * `JSON.stringify(v)` clipped to `max` characters, for messages. It never throws: a value nested
 * thousands deep (a hostile file) overflows JSON.stringify's stack, and a message must not turn a
 * typed error into a crash.
 */
export function jsonSnippet(v: unknown, max = 60): string {
  const s = Number.isNaN(v) ? 'NaN' : safeJson(v);
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}

/**
 * Showing text from users' files to programs that interpret it. A tensor name, a metadata
 * value or a module path is data, but a terminal acts on escape sequences (retitle the window,
 * clear the screen), a spreadsheet runs a cell that starts with `=`, and bidirectional controls
 * reorder what a person reads (Trojan Source, CVE-2021-42574). Each output escapes them here.
 */

// C0 controls, DEL and C1 controls (ECMA-48: ESC and CSI start terminal commands).
const CONTROL = '\\u0000-\\u001f\\u007f-\\u009f';
// Unicode bidirectional controls: embeddings and overrides U+202A–U+202E, isolates
// U+2066–U+2069, and the marks U+200E/U+200F/U+061C.
const BIDI = '\\u202a-\\u202e\\u2066-\\u2069\\u200e\\u200f\\u061c';
const SEPARATORS = '\\u2028\\u2029'; // line breaks to a terminal; harmless text in HTML

const TERMINAL_RE = new RegExp(`[${CONTROL}${BIDI}${SEPARATORS}]`, 'gu');
const BIDI_RE = new RegExp(`[${BIDI}]|[\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]`, 'gu');

/** `\xNN` for a control below U+0100, `\u{NNNN}` above: visible and unambiguous. */
function visible(c: string): string {
  const n = c.codePointAt(0)!;
  return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u{${n.toString(16).toUpperCase()}}`;
}

/** A string for a terminal: every control character (tab and newline too) and bidi control shown escaped. */
export function escapeTerminal(s: string): string {
  return s.replace(TERMINAL_RE, visible);
}

/**
 * A string for an HTML page or a figure label: bidi controls and controls other than tab and
 * line breaks (which HTML shows as spaces) shown escaped, so the text reads as it is stored.
 */
export function showInvisible(s: string): string {
  return s.replace(BIDI_RE, visible);
}

/**
 * A CSV cell from a string (OWASP "CSV Injection"): a cell that starts with `=`, `+`, `-`,
 * `@`, tab or carriage return is a formula to spreadsheet programs, so it is prefixed with a
 * single quote; then it is quoted per RFC 4180 when it holds a quote, comma or line break.
 * Numbers are written as numbers by the caller: `-0.5` is a value, not a formula.
 */
export function csvStringCell(s: string): string {
  const t = /^[=+\-@\t\r]/u.test(s) ? `'${s}` : s;
  return /[",\n\r]/u.test(t) ? `"${t.replace(/"/gu, '""')}"` : t;
}

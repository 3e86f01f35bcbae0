/**
 * JSON as Python's `json.dump` writes it: `NaN`, `Infinity` and `-Infinity` appear as
 * bare tokens (e.g. a Trainer `trainer_state.json` after a loss blew up), which
 * `JSON.parse` rejects. We rewrite those tokens, outside strings only, into marker
 * strings and turn the markers back into numbers with a reviver.
 */
const MARK = '\u0000dorascope:';

export function parseJsonLenient(text: string): unknown {
  let out = '';
  let i = 0;
  let last = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i]!;
    if (c === '"') {
      // skip the string, honouring escapes
      i++;
      while (i < n && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
      i++;
      continue;
    }
    const tok = text.startsWith('-Infinity', i) ? '-Infinity' : text.startsWith('Infinity', i) ? 'Infinity' : text.startsWith('NaN', i) ? 'NaN' : null;
    if (tok) {
      // The marker's NUL is written escaped (raw control characters are not valid JSON).
      out += `${text.slice(last, i)}"\\u0000dorascope:${tok}"`;
      i += tok.length;
      last = i;
      continue;
    }
    i++;
  }
  if (last === 0) return JSON.parse(text);
  out += text.slice(last);
  return JSON.parse(out, (_k, v: unknown) => {
    if (typeof v === 'string' && v.startsWith(MARK)) {
      const t = v.slice(MARK.length);
      return t === 'NaN' ? NaN : t === 'Infinity' ? Infinity : -Infinity;
    }
    return v;
  });
}

/**
 * Checks `analyze()`'s options as a library caller passes them (plain JavaScript, a notebook, JSON from
 * elsewhere): a wrong type fails here with E_USAGE naming the option and the value, before any file is
 * opened, instead of a raw TypeError (`ERR_INVALID_ARG_TYPE`, "o.runs.map is not a function") from deep inside.
 */
import { DorascopeError, q } from '../errors.js';

/**
 * The engine of the adapter fast path's product W0·Aᵀ (adapter-fast-path.ts): `auto`, `tfjs` (wasm matmul) or
 * `js` (float64 loop). Spelled out here, not imported from the compute layer, so analyze()'s published types
 * do not pull in TensorFlow.js's.
 */
export type ProductChoice = 'auto' | 'tfjs' | 'js';

const show = (v: unknown): string => {
  if (typeof v === 'string') return q(v);
  if (v === null || typeof v !== 'object') return String(v);
  try { return JSON.stringify(v).slice(0, 80); } catch { return Object.prototype.toString.call(v); }
};

function usage(option: string, expected: string, v: unknown): DorascopeError {
  return new DorascopeError('E_USAGE', `analyze(): option ${option} must be ${expected}, got ${Array.isArray(v) ? 'an array' : typeof v} ${show(v)}`,
    { option, value: v });
}

const optional = (o: Record<string, unknown>, key: string, ok: (v: unknown) => boolean, expected: string): void => {
  const v = o[key];
  if (v !== undefined && !ok(v)) throw usage(key, expected, v);
};

const isString = (v: unknown): boolean => typeof v === 'string';
const isBool = (v: unknown): boolean => typeof v === 'boolean';
const isStringArray = (v: unknown): boolean => Array.isArray(v) && v.every(isString);

/** Throws E_USAGE for the first option whose type is wrong; returns nothing (the options are not copied). */
export function checkAnalyzeOptions(o: unknown): void {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw usage('(options)', 'an object { base, runs, ... }', o);
  const r = o as Record<string, unknown>;
  if (typeof r.base !== 'string' || r.base === '') throw usage('base', 'a non-empty path or org/name string', r.base);
  if (!Array.isArray(r.runs)) throw usage('runs', 'an array of { path, label? }', r.runs);
  r.runs.forEach((run: unknown, i) => {
    const x = run as Record<string, unknown> | null;
    if (x === null || typeof x !== 'object' || typeof x.path !== 'string' || x.path === '') throw usage(`runs[${i}]`, 'an object { path: string, label?: string }', run);
    if (x.label !== undefined && typeof x.label !== 'string') throw usage(`runs[${i}].label`, 'a string', x.label);
  });
  optional(r, 'modules', isStringArray, 'an array of module names (e.g. ["q_proj", "v_proj"])');
  optional(r, 'modulesRegex', isString, 'a regular expression string');
  optional(r, 'layers', (v) => Array.isArray(v) && v.every((n) => Number.isInteger(n) && (n as number) >= 0), 'an array of layer indices ≥ 0');
  optional(r, 'out', (v) => typeof v === 'string' && v !== '', 'a folder path string');
  optional(r, 'quantizedBase', (v) => typeof v === 'string' && v !== '', 'a path or org/name string');
  for (const key of ['write', 'perRow', 'quiet', 'force']) optional(r, key, isBool, 'true or false');
  optional(r, 'command', isStringArray, 'an array of strings');
  optional(r, 'adapterPath', (v) => v === 'fast' || v === 'merge', "'fast' or 'merge'");
  optional(r, 'product', (v) => v === 'auto' || v === 'tfjs' || v === 'js', "'auto', 'tfjs' or 'js'");
  optional(r, 'workers', (v) => Number.isInteger(v) && (v as number) >= 0, 'a whole number ≥ 0');
  optional(r, 'log', (v) => typeof v === 'function', 'a function (line: string) => void');
  optional(r, 'groups', (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && Object.values(v).every(isStringArray),
    'an object { group: [run labels] }');
}

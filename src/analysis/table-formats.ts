/**
 * The file formats of the analysis tables, apart from table.ts so that choosing them (the CLI's
 * --format, the analysis's options) does not load Arrow and Parquet, which only writing needs.
 */
import { DorascopeError, q } from '../errors.js';

/** The file formats of the tables (`analyze --format`); all three by default. */
export type TableFormat = 'arrow' | 'parquet' | 'csv';
export const TABLE_FORMATS: readonly TableFormat[] = ['arrow', 'parquet', 'csv'];

/** Parses `arrow,parquet` (the CLI's --format). */
export function parseFormats(spec: string | readonly string[]): TableFormat[] {
  const parts = (typeof spec === 'string' ? [spec] : spec).flatMap((s) => s.split(',')).map((s) => s.trim().toLowerCase()).filter(Boolean);
  for (const p of parts) {
    if (!(TABLE_FORMATS as readonly string[]).includes(p)) throw new DorascopeError('E_USAGE', `--format ${q(p)}: expected one or more of ${TABLE_FORMATS.join(', ')} (comma-separated)`);
  }
  if (parts.length === 0) throw new DorascopeError('E_USAGE', `--format names no format: expected one or more of ${TABLE_FORMATS.join(', ')}`);
  return TABLE_FORMATS.filter((f) => parts.includes(f));
}

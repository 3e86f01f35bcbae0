/**
 * Where a command may write. Two rules, checked before anything is written:
 *
 * 1. An output never overlaps an input: it may not be an input, lie inside one, or contain one.
 *    Paths are compared as the file system resolves them (symlinks followed, `..` folded), so
 *    `--out base/../base` or a link to the adapter folder is caught as well as `--out base`.
 * 2. An existing output is replaced only when it is dorascope's own result of the same kind,
 *    recognised by its manifest (`manifest.json` or, for `reproduce`, `summary.json` with
 *    `tool: "dorascope"` and `kind`) or, for an HTML report, its generator tag. Anything else
 *    (a file where a folder goes, a folder of someone else's files) needs `--force`.
 *    An empty folder is always fine.
 */
import { closeSync, fstatSync, lstatSync, openSync, readSync, readdirSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { DorascopeError, q } from '../errors.js';

/** What a command writes: a result folder of one kind, or one file (an HTML report). */
export type OutputKind = 'analysis' | 'analysis-shard' | 'merge' | 'reproduce' | 'train' | 'report-html' | 'images';

export interface OutputInput {
  /** How the user named it, for the message: `--base`, `run`, `analysis folder`. */
  readonly role: string;
  readonly path: string;
}

export interface GuardOptions {
  /** The output path as the user gave it. */
  readonly out: string;
  /** `--out` for messages (e.g. `--png` for image folders). */
  readonly option?: string;
  readonly kind: OutputKind;
  readonly inputs: readonly OutputInput[];
  /** Replace an existing output of another kind (never allows writing over an input). */
  readonly force?: boolean | undefined;
}

/** Marker in the `<head>` of every HTML page dorascope writes (report/html.ts), so a re-render may replace it. */
export const HTML_GENERATOR = '<meta name="generator" content="dorascope';

const MAX_LINKS = 40; // as Linux's MAXSYMLINKS: a longer chain is a loop

/**
 * The real path `p` denotes, whether or not it exists yet: the realpath of its deepest
 * existing ancestor, then the rest. A dangling symlink on the way is followed to where
 * it points (a write through it would land there).
 */
export function realPathOf(p: string): string {
  let abs = resolve(p);
  const rest: string[] = [];
  for (let links = 0; ;) {
    try {
      return rest.length === 0 ? realpathSync(abs) : join(realpathSync(abs), ...rest);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') throw new DorascopeError('E_USAGE', `${q(p)} is a symlink loop`, { path: p });
      let link: string | undefined;
      try { if (lstatSync(abs).isSymbolicLink()) link = readlinkSync(abs); } catch { /* does not exist: climb */ }
      if (link !== undefined && links++ < MAX_LINKS) {
        abs = resolve(dirname(abs), link);
        continue;
      }
      const parent = dirname(abs);
      if (parent === abs) return join(abs, ...rest);
      rest.unshift(basename(abs));
      abs = parent;
    }
  }
}

/** Whether `child` is `parent` or lies inside it (both real, absolute paths). */
export function isInside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

function exists(p: string): boolean {
  try { statSync(p); return true; } catch { return false; }
}

/** Refuses (E_OUTPUT_OVERLAP) an output that is, contains or lies inside one of the inputs. */
export function checkNoOverlap(o: GuardOptions): void {
  const opt = o.option ?? '--out';
  const out = realPathOf(o.out);
  for (const input of o.inputs) {
    // A name that is not on disk (a Hugging Face hub id) is read from the hub cache, not from here.
    if (!exists(input.path)) continue;
    const inp = realPathOf(input.path);
    let how: string | undefined;
    if (out === inp) how = 'is';
    else if (isInside(out, inp)) how = 'lies inside';
    else if (isInside(inp, out)) how = 'contains';
    if (how !== undefined) {
      throw new DorascopeError('E_OUTPUT_OVERLAP',
        `${opt} ${q(o.out)} ${how} the ${input.role} ${q(input.path)}${out !== resolve(o.out) || inp !== resolve(input.path) ? ` (both resolve under ${q(how === 'contains' ? out : inp)})` : ''}: ` +
        'dorascope never writes over or into its inputs; choose an output elsewhere', { out: o.out, input: input.path });
    }
  }
}

/** Up to `bytes` bytes of the file from `position` (negative: that many from the end). */
function readHead(path: string, bytes: number, position = 0): string {
  const fd = openSync(path, 'r');
  try {
    const at = position < 0 ? Math.max(0, fstatSync(fd).size + position) : position;
    const buf = Buffer.alloc(bytes);
    const n = readSync(fd, buf, 0, bytes, at);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** The `kind` a dorascope result folder records, or undefined when the folder is not one of ours. */
export function resultKind(dir: string): string | undefined {
  for (const name of ['manifest.json', 'summary.json']) {
    const p = join(dir, name);
    let m: unknown;
    try {
      const st = statSync(p);
      if (!st.isFile() || st.size > 16 << 20) continue;
      m = JSON.parse(readHead(p, st.size));
    } catch { continue; }
    if (typeof m !== 'object' || m === null || (m as { tool?: unknown }).tool !== 'dorascope') continue;
    const r = m as { kind?: unknown; runs?: unknown; base?: unknown };
    if (typeof r.kind === 'string') return r.kind;
    // analyze's manifests from before `kind` was recorded: tool, base and runs.
    if (name === 'manifest.json' && Array.isArray(r.runs) && r.base !== undefined) return 'analysis';
  }
  return undefined;
}

/** Pages written before the generator tag end with the script that defines `window.dorascope` (report/html.ts). */
const HTML_LEGACY_TAIL = 'window.dorascope = { ready:';

function isOurHtml(path: string): boolean {
  try { return readHead(path, 4096).includes(HTML_GENERATOR) || readHead(path, 8192, -8192).includes(HTML_LEGACY_TAIL); } catch { return false; }
}

/** Refuses (E_OUTPUT_EXISTS) replacing an existing output that is not ours of the same kind, unless `force`. */
export function checkReplaceable(o: GuardOptions): void {
  const opt = o.option ?? '--out';
  let st: ReturnType<typeof statSync>;
  try { st = statSync(o.out); } catch { return; }
  const fileOutput = o.kind === 'report-html';
  const force = o.force === true;
  if (fileOutput) {
    if (st.isDirectory()) throw new DorascopeError('E_OUTPUT_EXISTS', `${opt} ${q(o.out)} is a folder; name the HTML file to write`, { out: o.out });
    if (isOurHtml(o.out) || force) return;
    throw new DorascopeError('E_OUTPUT_EXISTS', `${opt} ${q(o.out)} already exists and is not a dorascope report; pass --force to replace it`, { out: o.out });
  }
  if (!st.isDirectory()) {
    if (force) return;
    throw new DorascopeError('E_OUTPUT_EXISTS', `${opt} ${q(o.out)} is an existing file, not a folder; pass --force to replace it with the output folder`, { out: o.out });
  }
  const entries = readdirSync(o.out);
  if (entries.length === 0 || force) return;
  const kind = resultKind(o.out);
  if (kind === o.kind) return;
  const shown = entries.sort().slice(0, 3).map((n) => q(n)).join(', ') + (entries.length > 3 ? ', ...' : '');
  throw new DorascopeError('E_OUTPUT_EXISTS',
    `${opt} ${q(o.out)} is not empty (${shown}) and ${kind === undefined ? 'is not a dorascope result' : `holds a dorascope ${kind} result, not ${o.kind}`}; ` +
    'its contents would be replaced: pass --force to do so, or choose another folder', { out: o.out, kind: kind ?? null });
}

/** Both rules: the output overlaps no input, and replacing what is there is allowed. Writes nothing. */
export function guardOutput(o: GuardOptions): void {
  checkNoOverlap(o);
  checkReplaceable(o);
}

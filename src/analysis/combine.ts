/**
 * `combine`: the folders of `analyze --shard K/N`, K = 1…N, put back together into the folder one
 * unsharded analysis writes. The shards are checked first: each must be a shard, all of the same
 * analysis (equal fingerprints; a difference is reported by the field that differs), every K from 1
 * to N exactly once, and their rows exactly the analysis's work items in order (shard.ts). Then the
 * rows are concatenated in K order (each shard holds a contiguous slice of the table), and every
 * statistic is computed over all of them, as `analyze` does: the tables and summary.json come out
 * byte for byte as one process would have written them. The output is written as one unit with
 * the result-folder machinery and never into a shard (output-guard.ts).
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DorascopeError, isDorascopeError, q } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { JSON_CAPS, readTextCapped } from '../io/open-regular.js';
import { guardOutput, resultKind } from '../io/output-guard.js';
import { writeResultFolder } from '../io/result-folder.js';
import { VERSION } from '../version.js';
import { SHARD_KIND, summarizeRuns, type AnalyzeResult, type RunDescription } from './analyze.js';
import { fingerprint, firstDifference, itemsHash, MAX_SHARDS, type ShardInfo } from './shard.js';
import { PerRowWriter, readDecompositionTable, readPerRowBatches, TABLE_FORMATS, writeDecomposition, type DecompositionRow, type PerRowRecord, type TableFormat } from './table.js';

export interface CombineOptions {
  /** The folder to write: what `analyze --out` would have written. Never one of the shards. */
  readonly out: string;
  /** The shard folders, in any order. */
  readonly shards: readonly string[];
  /** Replace an existing `out` that is not a dorascope analysis folder (never a shard). */
  readonly force?: boolean | undefined;
  /** The command line, for the manifest. */
  readonly command?: readonly string[] | undefined;
  /** Where progress lines go; nothing is printed without it. */
  readonly log?: ((line: string) => void) | undefined;
}

/** One shard folder as read: its summary's runs, its part, and its manifest (for provenance). */
interface Shard {
  readonly dir: string;
  readonly info: ShardInfo;
  readonly runs: RunDescription[];
  readonly manifest: Record<string, unknown>;
}

const refuse = (msg: string, details: Record<string, unknown>): DorascopeError => new DorascopeError('E_SHARD', msg, details);

async function readJsonOf(dir: string, name: string): Promise<unknown> {
  const path = join(dir, name);
  let text: string;
  try {
    text = await readTextCapped(path, 'shard file', JSON_CAPS.manifest);
  } catch (e) {
    const missing = isDorascopeError(e, 'E_NOT_FOUND');
    throw refuse(`${q(dir)} is not a shard folder: ${missing ? `it has no ${name}` : (e as Error).message} (shards are the --out folders of \`dorascope analyze --shard K/N\`)`,
      { folder: dir, field: name });
  }
  try { return JSON.parse(text); } catch (e) {
    throw refuse(`${q(path)} is not valid JSON: ${(e as Error).message}`, { folder: dir, field: name });
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Reads and checks one shard folder's summary.json and manifest.json. */
async function readShard(dir: string): Promise<Shard> {
  if (!(await stat(dir).then((st) => st.isDirectory(), () => false))) {
    throw refuse(`shard folder ${q(dir)} does not exist or is not a folder`, { folder: dir, field: '(folder)' });
  }
  const manifest = await readJsonOf(dir, 'manifest.json');
  const summary = await readJsonOf(dir, 'summary.json');
  const kind = resultKind(dir);
  if (!isObject(manifest) || !isObject(summary) || kind !== SHARD_KIND || summary['kind'] !== SHARD_KIND) {
    throw refuse(`${q(dir)} is not a shard folder: its manifest.json kind is ${kind === undefined ? 'missing' : q(kind)}, not ${q(SHARD_KIND)} ` +
      '(shards are the --out folders of `dorascope analyze --shard K/N`)', { folder: dir, field: 'kind' });
  }
  const info = summary['shard'] as ShardInfo | undefined;
  const bad = (field: string, why: string) => refuse(`${q(join(dir, 'summary.json'))}: shard.${field} ${why}`, { folder: dir, field: `shard.${field}` });
  if (!isObject(info)) throw bad('', 'is missing');
  if (!Number.isInteger(info.n) || info.n < 1 || info.n > MAX_SHARDS) throw bad('n', `is ${JSON.stringify(info.n)}, not a shard count 1 to ${MAX_SHARDS}`);
  if (!Number.isInteger(info.k) || info.k < 1 || info.k > info.n) throw bad('k', `is ${JSON.stringify(info.k)}, not 1 to N = ${info.n}`);
  if (!isObject(info.analysis) || !isObject(info.analysis.items) || !Number.isInteger(info.analysis.items.total) || typeof info.analysis.items.hash !== 'string') {
    throw bad('analysis', 'does not describe the analysis (items.total, items.hash)');
  }
  if (!isObject(info.items) || !Number.isInteger(info.items.first) || !Number.isInteger(info.items.count) || info.items.first < 0 || info.items.count < 0) {
    throw bad('items', `is ${JSON.stringify(info.items)}, not { first, count }`);
  }
  // The fingerprint is recomputed: an edited or damaged summary.json must not pass for its analysis.
  if (info.fingerprint !== fingerprint(info.analysis)) throw bad('fingerprint', 'does not match shard.analysis (the file was changed after analyze wrote it)');
  if (!Array.isArray(summary['runs'])) throw refuse(`${q(join(dir, 'summary.json'))} has no "runs" array`, { folder: dir, field: 'runs' });
  // Not part of the fingerprint: checked for shape here, then against the other parts (checkShards).
  for (const [i, r] of (summary['runs'] as unknown[]).entries()) {
    const where = (field: string) => ({ folder: dir, field: `runs[${i}]${field}` });
    if (!isObject(r) || typeof r['run'] !== 'string' || typeof r['method'] !== 'string' || (r['adapter'] !== null && !isObject(r['adapter'])) || !Array.isArray(r['checkpoints'])) {
      throw refuse(`${q(join(dir, 'summary.json'))}: runs[${i}] is not a run description (run, method, adapter, checkpoints)`, where(''));
    }
    for (const [j, c] of (r['checkpoints'] as unknown[]).entries()) {
      if (!isObject(c) || typeof c['name'] !== 'string' || !Number.isSafeInteger(c['step'])) {
        throw refuse(`${q(join(dir, 'summary.json'))}: runs[${i}].checkpoints[${j}] is ${JSON.stringify(c)?.slice(0, 80)}, not { name, step }`, where(`.checkpoints[${j}]`));
      }
    }
  }
  return { dir, info, runs: summary['runs'] as RunDescription[], manifest };
}

/** The shards sorted by K, after checking they are all the parts of one analysis. */
function checkShards(shards: readonly Shard[]): Shard[] {
  const ref = shards[0]!;
  for (const s of shards.slice(1)) {
    if (s.info.n !== ref.info.n) {
      throw refuse(`${q(s.dir)} is shard ${s.info.k} of ${s.info.n} but ${q(ref.dir)} is shard ${ref.info.k} of ${ref.info.n}: shard.n differs, so they are not parts of one split`,
        { folder: s.dir, field: 'shard.n', other: ref.dir });
    }
    if (s.info.fingerprint !== ref.info.fingerprint) {
      const field = `shard.analysis.${firstDifference(ref.info.analysis, s.info.analysis) ?? ''}`;
      throw refuse(`${q(s.dir)} and ${q(ref.dir)} are shards of different analyses: ${field} differs ` +
        '(every shard must be run with the same inputs, options and dorascope version)', { folder: s.dir, field, other: ref.dir });
    }
    const runsField = firstDifference(ref.runs, s.runs);
    if (runsField !== undefined) {
      throw refuse(`${q(s.dir)} and ${q(ref.dir)} describe the runs differently (summary.json ${runsField})`, { folder: s.dir, field: `runs${runsField.startsWith('[') ? '' : '.'}${runsField}`, other: ref.dir });
    }
  }
  const byK = new Map<number, Shard>();
  for (const s of shards) {
    const other = byK.get(s.info.k);
    if (other !== undefined) throw refuse(`${q(s.dir)} and ${q(other.dir)} are both shard ${s.info.k} of ${s.info.n}: each K must be given once`, { folder: s.dir, field: 'shard.k', other: other.dir });
    byK.set(s.info.k, s);
  }
  const missing: number[] = [];
  for (let k = 1; k <= ref.info.n && missing.length < 10; k++) if (!byK.has(k)) missing.push(k);
  if (missing.length > 0) {
    throw refuse(`shard${missing.length > 1 ? 's' : ''} ${missing.join(', ')}${missing.length === 10 ? ', ...' : ''} of ${ref.info.n} ${missing.length > 1 ? 'are' : 'is'} missing ` +
      `(given: ${shards.length} folder${shards.length > 1 ? 's' : ''}); run \`dorascope analyze --shard K/${ref.info.n}\` for ${missing.length > 1 ? 'them' : 'it'} and pass every folder`,
      { folder: null, field: 'shard.k', missing });
  }
  const sorted = [...byK.values()].sort((a, b) => a.info.k - b.info.k);
  let next = 0;
  for (const s of sorted) {
    if (s.info.items.first !== next) {
      throw refuse(`${q(s.dir)} (shard ${s.info.k}) starts at row ${s.info.items.first + 1}, but the shards before it end at row ${next}`, { folder: s.dir, field: 'shard.items' });
    }
    next += s.info.items.count;
  }
  if (next !== ref.info.analysis.items.total) {
    throw refuse(`the shards hold ${next} rows, but the analysis has ${ref.info.analysis.items.total}`, { folder: sorted.at(-1)!.dir, field: 'shard.items' });
  }
  return sorted;
}

function formatsOf(s: Shard): TableFormat[] {
  const f = s.info.analysis.options['formats'];
  if (!Array.isArray(f) || f.length === 0 || !f.every((x) => (TABLE_FORMATS as readonly unknown[]).includes(x))) {
    throw refuse(`${q(join(s.dir, 'summary.json'))}: shard.analysis.options.formats is ${JSON.stringify(f)}, not a list of ${TABLE_FORMATS.join(', ')}`,
      { folder: s.dir, field: 'shard.analysis.options.formats' });
  }
  return f as TableFormat[];
}

function groupsOf(s: Shard): Record<string, string[]> {
  const g = s.info.analysis.options['groups'];
  if (g === null || g === undefined) return {};
  if (!isObject(g) || !Object.values(g).every((v) => Array.isArray(v) && v.every((x) => typeof x === 'string'))) {
    throw refuse(`${q(join(s.dir, 'summary.json'))}: shard.analysis.options.groups is not { group: [run labels] }`, { folder: s.dir, field: 'shard.analysis.options.groups' });
  }
  return g as Record<string, string[]>;
}

/**
 * Combines the shard folders `o.shards` (any order) into `o.out`: the decomposition tables in the
 * formats the shards were asked for, summary.json with every statistic, and manifest.json.
 * E_SHARD names the folder and the field when the shards are not the N parts of one analysis.
 */
export async function combine(o: CombineOptions): Promise<AnalyzeResult> {
  if (!isObject(o) || typeof o.out !== 'string' || o.out === '') throw new DorascopeError('E_USAGE', 'combine(): option out must be a folder path string', { option: 'out' });
  if (!Array.isArray(o.shards) || o.shards.length === 0 || !o.shards.every((s) => typeof s === 'string' && s !== '')) {
    throw new DorascopeError('E_USAGE', 'combine(): name the shard folders to combine (shards: one or more folder paths)', { option: 'shards' });
  }
  const started = Date.now();
  const say = o.log ?? (() => undefined);
  const shards = checkShards(await Promise.all(o.shards.map(readShard)));
  const ref = shards[0]!;
  // The statistics are this version's: over parts another version wrote, the result would be neither version's analysis.
  if (ref.info.analysis.version !== VERSION) {
    throw refuse(`${q(ref.dir)} was written by dorascope ${ref.info.analysis.version}, and this is ${VERSION}: combine the parts with the version that wrote them`,
      { folder: ref.dir, field: 'shard.analysis.version' });
  }
  const formats = formatsOf(ref);
  const groups = groupsOf(ref);
  guardOutput({ out: o.out, kind: 'analysis', force: o.force, inputs: shards.map((s) => ({ role: `shard folder (${s.info.k}/${s.info.n})`, path: s.dir })) });
  return writeResultFolder(o.out, async (dir) => {
    const rows: DecompositionRow[] = [];
    for (const s of shards) {
      const part = (await readDecompositionTable(s.dir)).rows;
      if (part.length !== s.info.items.count) {
        throw refuse(`${q(join(s.dir, 'decomposition.arrow'))} has ${part.length} rows, but its summary.json says the shard holds ${s.info.items.count}`,
          { folder: s.dir, field: 'decomposition.arrow' });
      }
      for (const r of part) rows.push(r);
    }
    // The rows must be the analysis's work items in order: a table swapped between folders fails here.
    if (itemsHash(rows) !== ref.info.analysis.items.hash) {
      throw refuse(`the shards' decomposition.arrow rows are not the work items their summary.json describes (run, checkpoint, tensor or shape differ); was a table replaced?`,
        { folder: null, field: 'decomposition.arrow' });
    }
    const summary = summarizeRuns(ref.runs, rows, groups);
    await writeDecomposition(dir, rows, formats);
    if (ref.info.analysis.options['perRow'] === true) await combinePerRow(dir, shards, ref.runs, rows, formats);
    await writeFileAtomic(join(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
    await writeFileAtomic(join(dir, 'manifest.json'), `${JSON.stringify(combinedManifest(o, shards, formats, (Date.now() - started) / 1000), null, 2)}\n`);
    say(`combined ${shards.length} shards: ${rows.length} rows to ${join(o.out, 'decomposition')}.{${formats.join(',')}} (+ summary.json, manifest.json)`);
    return { rows, summary, out: o.out };
  });
}

/**
 * rows.arrow (and .parquet) of the whole analysis from the shards' rows.arrow, read a record batch at
 * a time. `analyze` adds each tensor's records in one piece (its record batches are cut per tensor),
 * so the records are regrouped by tensor across shard boundaries before they are added: the file
 * comes out as one process writes it, holding one tensor's records at a time, as the analysis does.
 */
async function combinePerRow(dir: string, shards: readonly Shard[], runs: readonly RunDescription[], rows: readonly DecompositionRow[], formats: readonly TableFormat[]): Promise<void> {
  // The vocabulary `analyze` gives PerRowWriter, rebuilt: runs, their checkpoints, and the tensors and modules in table order.
  const w = await PerRowWriter.open(dir, {
    run: runs.map((r) => r.run), checkpoint: runs.flatMap((r) => r.checkpoints.map((c) => c.name)),
    tensor: rows.map((r) => r.tensor), module: rows.map((r) => r.module),
  }, formats);
  try {
    let pending: PerRowRecord[] = [];
    let tensor: string | undefined;
    const finished = new Set<string>();
    for (const s of shards) {
      for await (const batch of readPerRowBatches(join(s.dir, 'rows.arrow'))) {
        for (const r of batch) {
          if (r.tensor !== tensor) {
            w.add(pending);
            pending = [];
            if (tensor !== undefined) finished.add(tensor);
            if (finished.has(r.tensor)) {
              throw refuse(`${q(join(s.dir, 'rows.arrow'))}: records of tensor ${q(r.tensor)} come after those of a later tensor: the shards' per-feature tables are not in table order`,
                { folder: s.dir, field: 'rows.arrow' });
            }
            tensor = r.tensor;
          }
          pending.push(r);
        }
      }
    }
    w.add(pending);
  } catch (e) {
    await w.abort();
    throw e;
  }
  await w.commit();
}

/** manifest.json of the whole analysis: the shards' record of inputs and options, their timings summed, and each part's provenance. */
function combinedManifest(o: CombineOptions, shards: readonly Shard[], formats: readonly TableFormat[], seconds: number): Record<string, unknown> {
  const m = shards[0]!.manifest;
  const timings = shards.map((s) => (isObject(s.manifest['timings']) ? s.manifest['timings'] : {}));
  const sum = (key: string) => timings.reduce((a, t) => a + (typeof t[key] === 'number' ? t[key] as number : 0), 0);
  return {
    tool: 'dorascope', version: VERSION, kind: 'analysis', created: new Date().toISOString(),
    command: o.command ?? null,
    files: [...formats.map((f) => `decomposition.${f}`), 'summary.json', 'manifest.json',
      ...(shards[0]!.info.analysis.options['perRow'] === true ? formats.filter((f) => f !== 'csv').map((f) => `rows.${f}`) : [])],
    options: m['options'] ?? null, base: m['base'] ?? null, quantized_base: m['quantized_base'] ?? null, runs: m['runs'] ?? null, tensors: m['tensors'] ?? null,
    // The work of all shards (seconds add up across machines), and this command's own time.
    timings: { seconds: sum('seconds'), bytes_read: sum('bytes_read'), workers: null, combine_seconds: seconds },
    shards: {
      n: shards[0]!.info.n, fingerprint: shards[0]!.info.fingerprint,
      parts: shards.map((s) => ({ k: s.info.k, folder: s.dir, rows: s.info.items, created: s.manifest['created'] ?? null, command: s.manifest['command'] ?? null, timings: s.manifest['timings'] ?? null })),
    },
  };
}

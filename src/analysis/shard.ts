/**
 * Splitting one analysis over N processes (`analyze --shard K/N`) so that N machines each do a part,
 * and what a part records so that `combine` can check the parts belong together.
 *
 * The work items are the rows of the decomposition table: every (tensor, run, checkpoint) pair, in
 * the order an unsharded analysis writes them (tensors in the base's order, then runs as given, then
 * each run's checkpoints by step). That order comes from the inputs alone (file headers, folder
 * names, trainer_state.json), never from anything a machine adds (clock, host, path of the output,
 * thread count), so every process computes the same list.
 *
 * Shard K takes a contiguous slice of that list, cut where the bytes to read are split evenly
 * (`shardRange`). Contiguous slices make `combine` a concatenation in K order, and leave at most two
 * tensors per shard split between shards. A tensor with an adapter checkpoint that changes it is
 * never split: the adapter fast path stacks all of a tensor's adapters into one product, and a
 * product over fewer adapters may round differently (adapter-fast-path.ts picks its engine by size).
 * Full checkpoints are decomposed one at a time against the same base norms, so their items split
 * freely with identical numbers.
 */
import { createHash } from 'node:crypto';
import { DorascopeError, q } from '../errors.js';

/** The most shards `--shard K/N` accepts: far more machines than any series needs, small enough to list. */
export const MAX_SHARDS = 10_000;

export interface ShardSpec {
  /** This process's part, 1 to `n`. */
  readonly k: number;
  readonly n: number;
}

/** Parses `K/N` (the CLI's --shard). */
export function parseShard(spec: string): ShardSpec {
  const m = /^\s*(\d{1,6})\s*\/\s*(\d{1,6})\s*$/u.exec(spec);
  if (!m) throw new DorascopeError('E_USAGE', `--shard ${q(spec)}: expected K/N with 1 ≤ K ≤ N ≤ ${MAX_SHARDS} (e.g. 3/8)`, { option: 'shard', value: spec });
  return checkShard({ k: Number(m[1]), n: Number(m[2]) }, `--shard ${q(spec)}`);
}

/** Checks a shard spec (library callers pass `{ k, n }`); returns it. */
export function checkShard(s: unknown, what = 'shard'): ShardSpec {
  const v = s as Partial<ShardSpec> | null;
  const ok = (x: unknown): x is number => Number.isInteger(x);
  if (v === null || typeof v !== 'object' || !ok(v.k) || !ok(v.n)) {
    throw new DorascopeError('E_USAGE', `${what}: expected { k, n } with whole numbers 1 ≤ k ≤ n ≤ ${MAX_SHARDS}`, { option: 'shard', value: s });
  }
  if (v.n < 1 || v.n > MAX_SHARDS) throw new DorascopeError('E_USAGE', `${what}: N = ${v.n} is outside 1 to ${MAX_SHARDS}`, { option: 'shard', value: s });
  if (v.k < 1 || v.k > v.n) throw new DorascopeError('E_USAGE', `${what}: K = ${v.k} is outside 1 to N = ${v.n} (shards are numbered from 1)`, { option: 'shard', value: s });
  return { k: v.k, n: v.n };
}

/** A block of consecutive work items that goes to one shard whole, and the bytes its items read. */
export interface WorkUnit {
  readonly items: number;
  readonly bytes: number;
}

/**
 * Items [first, end) of shard `k` of `n`: unit u (with `before` bytes ahead of it) goes to the shard
 * its byte midpoint falls in, ⌊n·(before + bytes/2) / total⌋ + 1. Midpoints grow with u, so every
 * shard gets a contiguous run of units, each shard about total/n bytes (one unit more or less).
 * Every unit also weighs 1 so that items that read nothing (an adapter's untouched tensors) spread too.
 * BigInt keeps the arithmetic exact (terabytes × 10⁴ shards passes 2⁵³), so all machines agree.
 */
export function shardRange(units: readonly WorkUnit[], s: ShardSpec): { first: number; end: number } {
  const w = units.map((u) => BigInt(u.bytes) + 1n);
  const total = w.reduce((a, b) => a + b, 0n);
  const n = BigInt(s.n);
  let before = 0n, item = 0, first = -1, end = -1;
  for (const [i, u] of units.entries()) {
    const wi = w[i]!;
    const shard = Number((n * (2n * before + wi)) / (2n * total)) + 1;
    if (shard === s.k && first < 0) first = item;
    if (shard > s.k && end < 0) end = item;
    before += wi;
    item += u.items;
  }
  if (end < 0) end = item;
  // No unit's midpoint falls in this shard (more shards than units): an empty part where it would start.
  return first < 0 ? { first: end, end } : { first, end };
}

/** What identifies a work item: the decomposition row's run, checkpoint, tensor and shape. */
export interface ItemKey {
  readonly run: string;
  readonly checkpoint: string;
  readonly tensor: string;
  readonly rows: number;
  readonly cols: number;
}

/** SHA-256 of the work items in order, one JSON array per line (names may hold any character). */
export function itemsHash(items: Iterable<ItemKey>): string {
  const h = createHash('sha256');
  for (const i of items) h.update(`${JSON.stringify([i.run, i.checkpoint, i.tensor, i.rows, i.cols])}\n`);
  return h.digest('hex');
}

/**
 * Everything the numbers of an analysis depend on, as the shard was asked for it: the inputs as
 * given on the command line, the options that change results, dorascope's version, and the work
 * items. Shards of one analysis have equal `ShardAnalysis`; `combine` compares them field by field.
 * Paths are compared as given, so every machine must see the inputs under the same paths (a shared
 * file system mounted alike), which is how a Slurm array or an Indexed Job runs.
 */
export interface ShardAnalysis {
  readonly version: string;
  readonly base: string;
  readonly quantized_base: string | null;
  readonly runs: ReadonlyArray<{ readonly path: string; readonly label: string | null }>;
  readonly options: Readonly<Record<string, unknown>>;
  readonly items: { readonly total: number; readonly hash: string };
}

/** SHA-256 of the analysis description (JSON with keys in the order built). */
export function fingerprint(a: ShardAnalysis): string {
  return createHash('sha256').update(JSON.stringify(a)).digest('hex');
}

/** What a shard's summary.json and manifest.json record under `shard`. */
export interface ShardInfo {
  readonly k: number;
  readonly n: number;
  readonly fingerprint: string;
  readonly analysis: ShardAnalysis;
  /** This part's items: [first, first + count) of the analysis's `total`, in table order. */
  readonly items: { readonly first: number; readonly count: number };
}

/** The path of the first field where two JSON values differ (`options.layers`, `runs[1].path`), or undefined. */
export function firstDifference(a: unknown, b: unknown, path = ''): string | undefined {
  if (JSON.stringify(a) === JSON.stringify(b)) return undefined;
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b)) {
    if (Array.isArray(a) && Array.isArray(b)) {
      if (a.length !== b.length) return path || '(root)';
      for (let i = 0; i < a.length; i++) {
        const d = firstDifference(a[i], b[i], `${path}[${i}]`);
        if (d !== undefined) return d;
      }
    } else {
      const ra = a as Record<string, unknown>, rb = b as Record<string, unknown>;
      for (const key of new Set([...Object.keys(ra), ...Object.keys(rb)])) {
        const d = firstDifference(ra[key], rb[key], path ? `${path}.${key}` : key);
        if (d !== undefined) return d;
      }
    }
  }
  return path || '(root)';
}

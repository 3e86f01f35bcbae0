/**
 * The streaming analysis: every selected base tensor is read once, its per-feature norms are
 * cached for the duration of that tensor, and every checkpoint of every run is compared with it
 * before the next tensor is read (tensor-task.ts). Peak memory is therefore a few tensors (W0,
 * one W_t, and the merged adapter's working copy) per task in flight, whatever the size of the
 * model or the number of checkpoints. Tasks run on the main thread or, for large analyses, on a
 * pool of worker threads (pool.ts), two tasks queued per worker at most.
 *
 * Bad input policy (documented in docs/analysis.md): a tensor missing from a checkpoint and a shape
 * that differs from the base are errors (E_MISSING_TENSOR, E_SHAPE_MISMATCH, naming file and
 * tensor) because no number can be right. Rows no number can describe are kept in the tables
 * with a `flag` and left out of every statistic (`usableRow`, run-summary.ts): NaN/±Inf in the base or a
 * checkpoint (`non_finite`, NaN deltas), a zero-size tensor (`empty`), a tensor the checkpoint
 * leaves as it is (`unchanged`, ΔM = ΔD = 0 exactly; an adapter's untouched tensors are not read).
 */
import { basename, resolve } from 'node:path';
import { join } from 'node:path';
import { DorascopeError, q } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { guardOutput } from '../io/output-guard.js';
import { writeResultFolder } from '../io/result-folder.js';
import { compileSafe } from '../io/safe-regex.js';
import { pathBytes } from '../io/path-bytes.js';
import { classifyPath, openSource } from '../io/sources/open-source.js';
import { listRun, readGlobalStep } from '../io/sources/trainer-run.js';
import type { TensorInfo, TensorSource } from '../io/types.js';
import { VERSION } from '../version.js';
import { Progress, stderrProgress } from '../progress.js';
import { isDefaultTarget, parseTensorName } from './names.js';
import { AnalysisPool, workerUrl } from './pool.js';
import { workerCount } from './worker-count.js';
import { mayChange, openTaskCheckpoint, runTensorTask, TaskScratch, type TaskCheckpoint, type TaskOptions, type TaskResult } from './tensor-task.js';
import { BOOTSTRAP, type Stats } from './stats.js';
import { checkAnalyzeOptions, type ProductChoice } from './options.js';
import { checkGroups, groupSummaries, runStatistics, type GroupSummary, type RunStatistics } from './run-summary.js';
import { TABLE_FORMATS, type TableFormat } from './table-formats.js';
import type { DecompositionRow, PerRowRecord, PerRowWriter } from './table.js';
import { checkShard, fingerprint, itemsHash, shardRange, type ItemKey, type ShardAnalysis, type ShardInfo, type ShardSpec, type WorkUnit } from './shard.js';

export interface AnalyzeRunInput {
  readonly path: string;
  readonly label?: string | undefined;
}

export interface AnalyzeOptions {
  /** Pretrained weights: any checkpoint source (file, folder, sharded, hub id). */
  readonly base: string;
  /**
   * The quantized copy of `base` the runs were trained on (QLoRA/QDoRA: a bitsandbytes NF4/FP4/int8
   * checkpoint). Runs are then measured against it, dequantized (what the model computes with), and a
   * run `quantization` measures the quantization itself: `base` (full precision) against it.
   */
  readonly quantizedBase?: string | undefined;
  readonly runs: readonly AnalyzeRunInput[];
  /** Module names to keep (e.g. q_proj, v_proj); default: every 2-D weight under a layer. */
  readonly modules?: readonly string[] | undefined;
  /** Regex on the full tensor name (instead of `modules`). */
  readonly modulesRegex?: string | undefined;
  /** Layer indices to keep. */
  readonly layers?: readonly number[] | undefined;
  /**
   * Output folder for the tables, summary.json and manifest.json. A library call writes nothing unless it
   * names one (the CLI passes its `--out`, default ./dorascope-out); `write: false` also turns writing off.
   */
  readonly out?: string | undefined;
  readonly write?: boolean | undefined;
  readonly perRow?: boolean | undefined;
  /** Replace an existing `out` that is not a dorascope analysis folder (never an input). */
  readonly force?: boolean | undefined;
  /** No progress output. Default: quiet, unless `log` is given (the CLI passes its `--quiet`). */
  /** File formats of the tables (decomposition, rows): default arrow, parquet and csv (rows: never csv). */
  readonly formats?: readonly TableFormat[] | undefined;
  readonly quiet?: boolean | undefined;
  /** The command line, for the manifest. */
  readonly command?: readonly string[] | undefined;
  /**
   * How adapter checkpoints are analysed: `fast` (default) by exact algebra from W0·Aᵀ and A·Aᵀ
   * (exact-adapter-series.ts), `merge` through the merged weights W′ like any checkpoint.
   */
  readonly adapterPath?: 'fast' | 'merge' | undefined;
  /** The engine of the fast path's product W0·Aᵀ: `auto` (default), `tfjs` (wasm matmul) or `js` (float64 loop). */
  readonly product?: ProductChoice | undefined;
  /** Worker threads (0: main thread only); default automatic (see `workerCount`). Results are identical either way. */
  readonly workers?: number | undefined;
  /** Where progress lines go (default stderr, when `quiet: false`). */
  readonly log?: ((line: string) => void) | undefined;
  /** Runs that are seeds of one configuration, by group name: summary.json gets each statistic's mean and range. */
  readonly groups?: Readonly<Record<string, readonly string[]>> | undefined;
}

/** A run as summary.json names it, before any statistic. */
export interface RunDescription {
  readonly run: string;
  readonly method: string;
  readonly adapter: Record<string, unknown> | null;
  readonly checkpoints: { name: string; step: number }[];
}

export interface RunSummary extends RunDescription {
  readonly overall: Stats;
  readonly modules: Record<string, Stats>;
  readonly detail: RunStatistics['detail'];
}

export interface AnalysisSummary {
  readonly tool: 'dorascope';
  readonly version: string;
  readonly bootstrap: typeof BOOTSTRAP;
  readonly runs: RunSummary[];
  /** Seeds of one configuration (`groups` option); empty when none were named. */
  readonly groups: GroupSummary[];
}

export interface AnalyzeResult {
  readonly rows: DecompositionRow[];
  readonly summary: AnalysisSummary;
  readonly out: string | undefined;
}

/**
 * summary.json of one shard (`analyzeShard`): the runs and what the part is, and no statistic: a
 * correlation over part of the rows describes nothing; `combine` computes them over all rows.
 */
export interface ShardSummary {
  readonly tool: 'dorascope';
  readonly version: string;
  readonly kind: typeof SHARD_KIND;
  readonly shard: ShardInfo;
  readonly runs: RunDescription[];
}

export interface ShardResult {
  /** This part's rows, in the order the whole analysis writes them. */
  readonly rows: DecompositionRow[];
  readonly summary: ShardSummary;
  readonly out: string | undefined;
}

/** The `kind` of a shard's manifest.json and summary.json (output-guard.ts `resultKind`). */
export const SHARD_KIND = 'analysis-shard';

interface Checkpoint extends TaskCheckpoint {
  readonly name: string;
  readonly step: number;
  readonly path: string;
}

interface Run {
  readonly label: string;
  readonly path: string;
  /** `ft`, `quantization`, or the adapter's method (adapter.ts `Adapter.method`). */
  method: string;
  adapter: Record<string, unknown> | null;
  readonly checkpoints: Checkpoint[];
}

/** The largest layer index `--layers` accepts (models have at most a few hundred layers). */
export const MAX_LAYER_INDEX = 100_000;

/** Parses `0-5,8` into layer indices. */
export function parseLayers(spec: string): number[] {
  const out: number[] = [];
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d{1,9})(?:-(\d{1,9}))?$/u.exec(part);
    if (!m) throw new DorascopeError('E_USAGE', `--layers: ${q(part)} is not a layer index or range (e.g. 0-5,8) with indices 0 to ${MAX_LAYER_INDEX}`);
    const a = Number(m[1]), b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new DorascopeError('E_USAGE', `--layers: range ${q(part)} ends before it starts`);
    // Indices are expanded one by one, so the range is bounded: no model has this many layers.
    if (b > MAX_LAYER_INDEX) throw new DorascopeError('E_USAGE', `--layers: ${q(part)} goes past layer ${MAX_LAYER_INDEX}, the largest index accepted`);
    for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}

async function openCheckpoint(path: string, name: string, step: number, base: TensorSource, run: Run): Promise<Checkpoint> {
  const ck = await openTaskCheckpoint(path, base);
  if (ck.adapter) {
    const a = ck.adapter.adapter, c = a.config;
    run.method = a.method;
    run.adapter = { r: c.r, lora_alpha: c.loraAlpha, use_rslora: c.useRslora, use_dora: c.useDora, scaling: a.modules[0]?.scaling ?? null, target_modules: c.targetModules, config: c.raw };
  }
  return { name, step, path, ...ck };
}

export { AUTO_WORKERS_MIN_ELEMENTS, workerCount } from './worker-count.js';

const allCksOf = (runs: readonly Run[]): Checkpoint[] => runs.flatMap((r) => r.checkpoints);

async function openRun(input: AnalyzeRunInput, base: TensorSource): Promise<Run> {
  const { kind, path } = classifyPath(input.path);
  const run: Run = { label: input.label ?? basename(resolve(input.path)).replace(/\.safetensors$/u, ''), path: input.path, method: 'ft', adapter: null, checkpoints: [] };
  if (kind === 'run') {
    for (const c of await listRun(path)) run.checkpoints.push(await openCheckpoint(c.path, c.name, c.step, base, run));
  } else {
    const dir = kind === 'file' ? resolve(path, '..') : path;
    const step = (await readGlobalStep(join(dir, 'trainer_state.json'))) ?? 0;
    run.checkpoints.push(await openCheckpoint(path, basename(resolve(path)), step, base, run));
  }
  return run;
}

/**
 * Analyses the runs and, unless `write: false`, writes the result folder `out` as one unit
 * (src/io/result-folder.ts): refused before anything is read when `out` overlaps an input or
 * holds something other than an earlier analysis (src/io/output-guard.ts).
 */
export async function analyze(o: AnalyzeOptions): Promise<AnalyzeResult> {
  checkAnalyzeOptions(o);
  return await start(o, undefined) as AnalyzeResult;
}

/**
 * Part `shard.k` of `shard.n` of the analysis `o` (shard.ts): the rows of a contiguous slice of the
 * work items, for N processes on N machines. Its folder (`kind: analysis-shard`) holds those rows,
 * the runs, and what `combine` needs to check that the parts belong to one analysis; no statistic.
 */
export async function analyzeShard(o: AnalyzeOptions, shard: ShardSpec): Promise<ShardResult> {
  checkAnalyzeOptions(o);
  return await start(o, checkShard(shard)) as ShardResult;
}

async function start(o: AnalyzeOptions, shard: ShardSpec | undefined): Promise<AnalyzeResult | ShardResult> {
  // A library call writes nothing unless `out` names a folder (the CLI passes its --out).
  const out = o.write === false ? undefined : o.out;
  if (out === undefined) return analyzeInto(o, undefined, undefined, shard);
  guardOutput({ out, kind: shard ? SHARD_KIND : 'analysis', force: o.force, inputs: [{ role: 'base (--base)', path: o.base }, ...(o.quantizedBase === undefined ? [] : [{ role: 'quantized base (--quantized-base)', path: o.quantizedBase }]), ...o.runs.map((r) => ({ role: 'run', path: r.path }))] });
  return writeResultFolder(out, (dir) => analyzeInto(o, out, dir, shard));
}

/** The analysis; its files go to `dir` (the result folder under construction), messages name `out`. */
async function analyzeInto(o: AnalyzeOptions, out: string | undefined, dir: string | undefined, shard: ShardSpec | undefined): Promise<AnalyzeResult | ShardResult> {
  const started = Date.now();
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  // A library call prints nothing unless asked (quiet: false, or a log to write to).
  const quiet = o.quiet ?? o.log === undefined;
  const say = quiet ? () => undefined : log;
  if (o.runs.length === 0) throw new DorascopeError('E_USAGE', 'name at least one run to analyse against the base');
  const wanted = targetFilter(o);

  const basePath = o.quantizedBase ?? o.base;
  const base = await openSource(basePath);
  const runs: Run[] = [];
  let fullBase: TensorSource | undefined;
  let progress: Progress | undefined;
  let perRowOut: PerRowWriter | undefined;
  const workers: { pool?: AnalysisPool } = {};
  try {
    let quant: Quantization | undefined;
    if (o.quantizedBase !== undefined) {
      // The quantization step as a run of its own: full-precision base → dequantized base.
      fullBase = await openSource(o.base);
      quant = { fullBase, run: quantizationRun(o.quantizedBase, base) };
      runs.push(quant.run);
    }
    await openRuns(o, base, runs);
    const targets = selectTargets(o, basePath, base, wanted);
    const nCk = runs.reduce((a, r) => a + r.checkpoints.length, 0);
    say(`dorascope analyze: ${targets.length} tensors × ${nCk} checkpoints in ${runs.length} run(s)`);
    // The quantization run is compared with the full-precision base, every other run with `base`.
    const compared = runs.filter((r) => r !== quant?.run).flatMap((r) => r.checkpoints);
    checkHeaders(basePath, targets, fullBase ? [...compared, { path: o.base, source: fullBase }] : compared);
    const part = shard === undefined ? undefined : shardOf(o, o.formats ?? TABLE_FORMATS, runs, targets, shard);
    const range = part && { first: part.items.first, end: part.items.first + part.items.count };
    if (part) say(`shard ${part.k}/${part.n}: rows ${part.items.first + 1} to ${part.items.first + part.items.count} of ${part.analysis.items.total}`);
    // Tensors this process works on: all, or those with an item in the shard's range (items are tensor-major, nCk a tensor).
    const nTensors = range === undefined ? targets.length : range.end === range.first ? 0 : Math.floor((range.end - 1) / nCk) - Math.floor(range.first / nCk) + 1;

    // Per-feature records stream to rows.arrow tensor by tensor (bounded memory); it appears at the end.
    const formats = o.formats ?? TABLE_FORMATS;
    // A shard always writes the Arrow files too: they are what `combine` reads.
    const written = part && !formats.includes('arrow') ? TABLE_FORMATS.filter((f) => f === 'arrow' || formats.includes(f)) : formats;
    // Arrow and parquet-wasm, which only writing tables needs, are loaded when first needed.
    const tables = () => import('./table.js');
    if (o.perRow && dir !== undefined) {
      // The whole analysis's vocabulary, also in a shard, so that the parts' dictionaries are the whole's.
      perRowOut = await (await tables()).PerRowWriter.open(dir, {
        run: runs.map((r) => r.label), checkpoint: allCksOf(runs).map((c) => c.name),
        tensor: targets.map((t) => t.name), module: targets.map((t) => parseTensorName(t.name).module),
      }, written);
    }
    // A bar on a terminal, plain lines to a log (tensors done, bytes/s, ETA); nothing with quiet.
    progress = o.log === undefined
      ? stderrProgress({ total: nTensors, unit: 'tensors', label: 'analyze', quiet })
      : new Progress({ total: nTensors, unit: 'tensors', label: 'analyze', quiet, tty: false, write: (text) => log(text.replace(/\n$/u, '')) });
    const done = await runTasks(o, basePath, base, quant, runs, targets, progress, perRowOut, range, workers);
    // A worker writes the tables while this thread computes the statistics; the other workers exit (awaited below).
    const writing = workers.pool && dir !== undefined ? workers.pool.writeTables(dir, done.rows, written) : undefined;
    writing?.catch(() => undefined); // awaited below
    workers.pool?.close(true).catch(() => undefined);
    const descriptions = describeRuns(runs);
    const summary: AnalysisSummary | ShardSummary = part
      ? { tool: 'dorascope', version: VERSION, kind: SHARD_KIND, shard: part, runs: descriptions }
      : summarizeRuns(descriptions, done.rows, o.groups ?? {});
    if (out !== undefined && dir !== undefined) {
      await (writing ?? (await tables()).writeDecomposition(dir, done.rows, written));
      await perRowOut?.commit();
      perRowOut = undefined;
      await writeFileAtomic(join(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
      await writeManifest(dir, o, formats, base, fullBase, runs, targets.length, { seconds: (Date.now() - started) / 1000, bytes_read: done.bytesRead, workers: done.workers },
        part && { info: part, written });
      say(`wrote ${done.rows.length} rows to ${join(out, 'decomposition')}.{${written.join(',')}} (+ summary.json, manifest.json${o.perRow ? `, rows.{${written.filter((f) => f !== 'csv').join(',')}}` : ''})`);
    }
    return part ? { rows: done.rows, summary: summary as ShardSummary, out } : { rows: done.rows, summary: summary as AnalysisSummary, out };
  } finally {
    await workers.pool?.close();
    await perRowOut?.abort();
    progress?.interrupt();
    for (const r of runs) for (const c of r.checkpoints) await c.source.close().catch(() => undefined);
    await base.close().catch(() => undefined);
    await fullBase?.close().catch(() => undefined);
  }
}

/** With `quantizedBase`: the full-precision base and the run that measures the quantization against it. */
interface Quantization {
  readonly fullBase: TensorSource;
  readonly run: Run;
}

/** The quantization step as a run: one checkpoint, the dequantized base itself. */
function quantizationRun(quantizedBase: string, base: TensorSource): Run {
  return {
    label: QUANTIZATION_RUN, path: quantizedBase, method: 'quantization', adapter: null,
    checkpoints: [{ name: basename(resolve(quantizedBase)), step: 0, path: quantizedBase, source: base }],
  };
}

/** The tensor selection (`modulesRegex`, else the default targets; then `modules`, `layers`), built before anything is opened. */
function targetFilter(o: AnalyzeOptions): (t: TensorInfo) => boolean {
  const regex = o.modulesRegex === undefined ? undefined : compileSafe(o.modulesRegex, '--modules-regex', 'E_USAGE');
  const moduleSet = o.modules && o.modules.length > 0 ? new Set(o.modules) : undefined;
  const layerSet = o.layers && o.layers.length > 0 ? new Set(o.layers) : undefined;
  return (t) => {
    if (regex) { if (!regex.search(t.name)) return false; if (t.shape.length < 2) return false; }
    else if (!isDefaultTarget(t.name, t.shape)) return false;
    const p = parseTensorName(t.name);
    if (moduleSet && !moduleSet.has(p.module)) return false;
    if (layerSet && !layerSet.has(p.layer)) return false;
    return true;
  };
}

/** Opens every run into `runs` (so the caller closes what was opened, even on error); labels must differ. */
async function openRuns(o: AnalyzeOptions, base: TensorSource, runs: Run[]): Promise<void> {
  for (const r of o.runs) runs.push(await openRun(r, base));
  const labels = new Set<string>();
  for (const r of runs) {
    if (labels.has(r.label)) throw new DorascopeError('E_USAGE', `two runs are labelled ${q(r.label)}: name them with --label NAME=RUN`);
    labels.add(r.label);
  }
  checkGroups(o.groups ?? {}, labels);
}

/** The base tensors to analyse; none is an error naming the selection. */
function selectTargets(o: AnalyzeOptions, basePath: string, base: TensorSource, wanted: (t: TensorInfo) => boolean): TensorInfo[] {
  const targets = base.list().filter(wanted);
  if (targets.length === 0) {
    throw new DorascopeError('E_NO_TENSORS', `no tensor of ${q(basePath)} matches the selection (modules ${o.modules?.join(',') ?? 'default'}${o.modulesRegex ? `, regex ${o.modulesRegex}` : ''}${o.layers ? `, layers ${o.layers.join(',')}` : ''})`);
  }
  return targets;
}

/** Header checks first: a missing tensor or a wrong shape fails before any data is read. */
function checkHeaders(basePath: string, targets: readonly TensorInfo[], checked: ReadonlyArray<{ readonly path: string; readonly source: TensorSource }>): void {
  for (const t of targets) {
    for (const ck of checked) {
      const info = ck.source.info(t.name);
      if (!info) throw new DorascopeError('E_MISSING_TENSOR', `checkpoint ${q(ck.path)} has no tensor ${q(t.name)} (the base ${q(basePath)} has it)`);
      if (info.shape.length !== t.shape.length || info.shape.some((d, i) => d !== t.shape[i])) {
        throw new DorascopeError('E_SHAPE_MISMATCH', `tensor ${q(t.name)} is ${JSON.stringify(info.shape)} in ${q(ck.path)} but ${JSON.stringify(t.shape)} in the base ${q(basePath)}`);
      }
    }
  }
}

/**
 * The work items (shard.ts) and the part of them that shard `s` computes. Items are the table's rows
 * in order: tensor by tensor, each tensor's checkpoints of every run (the quantization run first).
 */
function shardOf(o: AnalyzeOptions, formats: readonly TableFormat[], runs: readonly Run[], targets: readonly TensorInfo[], s: ShardSpec): ShardInfo {
  const cks = runs.flatMap((r) => r.checkpoints.map((c) => ({ run: r.label, c })));
  const units: WorkUnit[] = [];
  const keys: ItemKey[] = [];
  for (const t of targets) {
    const rows = t.shape[0] ?? 0, cols = t.shape.slice(1).reduce((a, b) => a * b, 1);
    const bytes = cks.map(({ c }) => (mayChange(c, t.name) ? c.source.info(t.name)?.byteLength ?? 0 : 0));
    // A tensor an adapter changes stays whole (one stacked product over its adapters: shard.ts).
    if (cks.some(({ c }) => c.adapter !== undefined && mayChange(c, t.name))) units.push({ items: cks.length, bytes: bytes.reduce((a, b) => a + b, 0) });
    else for (const b of bytes) units.push({ items: 1, bytes: b });
    for (const { run, c } of cks) keys.push({ run, checkpoint: c.name, tensor: t.name, rows, cols });
  }
  const analysis: ShardAnalysis = {
    version: VERSION, base: o.base, quantized_base: o.quantizedBase ?? null,
    runs: o.runs.map((r) => ({ path: r.path, label: r.label ?? null })),
    // The options that change the tables or the statistics; not --out, --workers, --quiet or --force.
    options: { formats, modules: o.modules ?? null, modulesRegex: o.modulesRegex ?? null, layers: o.layers ?? null, perRow: o.perRow ?? false,
      adapterPath: o.adapterPath ?? 'fast', product: o.product ?? 'auto', groups: o.groups ?? null },
    items: { total: keys.length, hash: itemsHash(keys) },
  };
  const { first, end } = shardRange(units, s);
  return { k: s.k, n: s.n, fingerprint: fingerprint(analysis), analysis, items: { first, count: end - first } };
}

/**
 * Runs one task per target tensor, on the main thread or on a worker pool, and turns the results
 * into table rows in tensor order (per-feature records go to `perRowOut` as each tensor finishes).
 * With `part` (a shard), only items [first, end) of the table's rows: tensors wholly inside go as
 * usual, the (at most two) tensors cut at an end run their chosen checkpoints on this thread.
 */
async function runTasks(o: AnalyzeOptions, basePath: string, base: TensorSource, quant: Quantization | undefined, runs: readonly Run[],
  targets: readonly TensorInfo[], progress: Progress, perRowOut: PerRowWriter | undefined,
  part: { readonly first: number; readonly end: number } | undefined, workers: { pool?: AnalysisPool }): Promise<{ rows: DecompositionRow[]; bytesRead: number; workers: number }> {
  const allCks = runs.filter((r) => r !== quant?.run).flatMap((r) => r.checkpoints);
  const taskOptions: TaskOptions = { perRow: o.perRow ?? false, adapterPath: o.adapterPath ?? 'fast', product: o.product ?? 'auto' };
  // Item j of tensor ti is row ti·C + j; the quantization run, when there is one, is item 0 (runs[0]).
  const C = allCksOf(runs).length;
  const mine = targets.map((t, ti) => ({ t, chosen: allCksOf(runs).map((_, j) => part === undefined || (ti * C + j >= part.first && ti * C + j < part.end)) }))
    .filter((x) => x.chosen.includes(true));
  const whole = (i: number): boolean => mine[i]?.chosen.every(Boolean) ?? false;
  const offset = quant ? 1 : 0;
  // Only checkpoints that change a tensor cost anything for it (tensor-task.ts).
  const work = mine.reduce((a, { t, chosen }) => a + t.shape.reduce((x, y) => x * y, 1) * allCks.filter((c, i) => chosen[i + offset] && mayChange(c, t.name)).length, 0);
  const nWorkers = workerCount(o.workers, work);
  const url = nWorkers > 0 ? workerUrl() : undefined;
  // The caller closes the pool.
  const pool = url ? AnalysisPool.start(nWorkers, { base: basePath, checkpoints: allCks.map((c) => c.path), options: taskOptions }, url) : undefined;
  if (pool) workers.pool = pool;
  // Tasks are queued at most two per worker ahead of the one being consumed (bounded memory),
  // and consumed in tensor order, so the rows come out as without workers.
  const ahead = pool ? 2 * pool.size : 0;
  const scratch = new TaskScratch(); // the main thread's tasks run one at a time
  const queued: Promise<TaskResult[]>[] = [];
  const task = (i: number, t: TensorInfo): Promise<TaskResult[]> => {
    if (pool === undefined) return runTensorTask(base, allCks, t.name, t.shape, taskOptions, scratch);
    for (let j = i; j <= Math.min(mine.length - 1, i + ahead); j++) {
      const tj = mine[j]?.t;
      if (queued[j] !== undefined || tj === undefined || !whole(j)) continue;
      const p = pool.run(tj.name, tj.shape);
      p.catch(() => undefined); // awaited in order below; this only keeps an early failure from being "unhandled"
      queued[j] = p;
    }
    const queuedTask = queued[i];
    delete queued[i];
    return queuedTask ?? Promise.reject(new DorascopeError('E_INTERNAL', `analysis task ${i} was not queued`));
  };
  const rows: DecompositionRow[] = [];
  let bytesRead = 0;
  for (const [i, { t, chosen }] of mine.entries()) {
    let results: TaskResult[];
    if (whole(i)) {
      results = await task(i, t);
      // On this thread: one more read of a tensor per target, the dequantized one the task above already decoded.
      if (quant) results = [...await runTensorTask(quant.fullBase, quant.run.checkpoints, t.name, t.shape, taskOptions), ...results];
    } else {
      const some = allCks.filter((_, j) => chosen[j + offset]);
      results = [
        ...(quant && chosen[0] ? await runTensorTask(quant.fullBase, quant.run.checkpoints, t.name, t.shape, taskOptions) : []),
        ...(some.length > 0 ? await runTensorTask(base, some, t.name, t.shape, taskOptions, scratch) : []),
      ];
    }
    const bytes = collectRows(runs, t, results, rows, perRowOut, chosen);
    bytesRead += bytes;
    progress.tick(1, { bytes, note: t.name });
  }
  return { rows, bytesRead, workers: pool?.size ?? 0 };
}

/**
 * Appends one tensor's rows (runs and checkpoints in order, as the tasks returned them; only the
 * `chosen` checkpoints, which the results cover); returns the bytes read.
 */
function collectRows(runs: readonly Run[], t: TensorInfo, results: readonly TaskResult[], rows: DecompositionRow[], perRowOut: PerRowWriter | undefined,
  chosen: readonly boolean[]): number {
  const rowsN = t.shape[0] ?? 0;
  const colsN = t.shape.slice(1).reduce((a, b) => a * b, 1);
  const { layer, module } = parseTensorName(t.name);
  let bytes = 0, k = 0, j = 0;
  const perRow: PerRowRecord[] = [];
  for (const run of runs) {
    for (const ck of run.checkpoints) {
      if (!chosen[j++]) continue;
      const result = results[k++];
      if (result === undefined) throw new DorascopeError('E_INTERNAL', `tensor ${q(t.name)}: ${results.length} task results for more checkpoints`);
      const { d, bytes: b } = result;
      bytes += b;
      rows.push({
        run: run.label, method: run.method, checkpoint: ck.name, step: ck.step, module, layer, tensor: t.name,
        rows: rowsN, cols: colsN, delta_m: d.deltaM, delta_d: d.deltaD, zero_rows: d.zeroRows, shrunk_rows: d.shrunkRows,
        rel_delta_fro: d.relDeltaFro, mean_m0: d.meanM0, mean_mt: d.meanMt, flag: d.flag,
      });
      if (d.m0 && d.mt && d.cos) {
        for (let n = 0; n < d.k; n++) {
          perRow.push({ run: run.label, checkpoint: ck.name, step: ck.step, tensor: t.name, layer, module, row: n, m0: d.m0[n]!, mt: d.mt[n]!, cos: d.cos[n]! });
        }
      }
    }
  }
  perRowOut?.add(perRow);
  return bytes;
}

function describeRuns(runs: readonly Run[]): RunDescription[] {
  return runs.map((run) => ({ run: run.label, method: run.method, adapter: run.adapter, checkpoints: run.checkpoints.map((c) => ({ name: c.name, step: c.step })) }));
}

/**
 * summary.json from the runs and all their rows: each run's statistics, and the seed groups' means
 * and ranges. `combine` calls it on the shards' rows put back together.
 */
export function summarizeRuns(runs: readonly RunDescription[], rows: readonly DecompositionRow[], groups: Readonly<Record<string, readonly string[]>>): AnalysisSummary {
  const stats = new Map<string, RunStatistics>();
  const summaries = runs.map((run): RunSummary => {
    const st = runStatistics(rows, run.run);
    stats.set(run.run, st);
    return { ...run, ...st };
  });
  return { tool: 'dorascope', version: VERSION, bootstrap: BOOTSTRAP, runs: summaries, groups: groupSummaries(groups, stats) };
}

/** manifest.json: the files, the options, the inputs (paths, kinds, sizes) and the timings; a shard's says which part it is. */
async function writeManifest(dir: string, o: AnalyzeOptions, formats: readonly TableFormat[], base: TensorSource, fullBase: TensorSource | undefined, runs: readonly Run[], tensors: number,
  timings: { seconds: number; bytes_read: number; workers: number }, shard?: { info: ShardInfo; written: readonly TableFormat[] }): Promise<void> {
  const manifest = {
    tool: 'dorascope', version: VERSION, kind: shard ? SHARD_KIND : 'analysis', created: new Date().toISOString(),
    command: o.command ?? null,
    // Everything the folder holds; readers use nothing else (a report draws histograms only when rows.arrow is listed).
    files: [...(shard?.written ?? formats).map((f) => `decomposition.${f}`), 'summary.json', 'manifest.json', ...(o.perRow ? (shard?.written ?? formats).filter((f) => f !== 'csv').map((f) => `rows.${f}`) : [])],
    options: { formats, modules: o.modules ?? null, modulesRegex: o.modulesRegex ?? null, layers: o.layers ?? null, perRow: o.perRow ?? false, adapterPath: o.adapterPath ?? 'fast', product: o.product ?? 'auto', groups: o.groups ?? null },
    base: { path: o.base, kind: (fullBase ?? base).kind, bytes: pathBytes(o.base) },
    quantized_base: o.quantizedBase === undefined ? null : { path: o.quantizedBase, kind: base.kind, bytes: pathBytes(o.quantizedBase) },
    runs: runs.map((r) => ({
      run: r.label, path: r.path, method: r.method, adapter_config: r.adapter?.['config'] ?? null,
      checkpoints: r.checkpoints.map((c) => ({ name: c.name, step: c.step, path: c.path, kind: c.source.kind, bytes: pathBytes(c.path) })),
    })),
    tensors,
    timings,
    ...(shard ? { shard: shard.info } : {}),
  };
  await writeFileAtomic(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
}

/** The label of the run that measures the quantization step itself (`quantizedBase`). */
export const QUANTIZATION_RUN = 'quantization';

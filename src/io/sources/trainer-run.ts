/**
 * A Hugging Face Trainer output folder: `checkpoint-<N>/` subfolders, each a full model
 * or a PEFT adapter. Checkpoints are ordered by training step, numerically
 * (checkpoint-9 < checkpoint-10 < checkpoint-100). The step is `global_step` from the
 * checkpoint's `trainer_state.json` when present, else N from the folder name.
 * `trainer_state.json` is written by Python's json module, so its `log_history` may hold
 * bare NaN / Infinity (a diverged loss): it is parsed leniently.
 */
import { existsSync, readdirSync, statSync, type Dirent } from 'node:fs';
import { shownValue } from '../json-value.js';
import { entryExists, JSON_CAPS, readTextCapped } from '../open-regular.js';
import { join } from 'node:path';
import { DorascopeError, q } from '../../errors.js';
import { parseJsonLenient } from './lenient-json.js';

export interface RunCheckpoint {
  /** Folder name, e.g. `checkpoint-500`. */
  readonly name: string;
  readonly step: number;
  readonly path: string;
  /** Where the step came from. */
  readonly stepFrom: 'trainer_state' | 'name';
}

const CHECKPOINT_PREFIX = 'checkpoint-';
const CHECKPOINT_RE = /^checkpoint-(\d+)$/u;

/**
 * N of a `checkpoint-<N>` folder name (HF Trainer's `PREFIX_CHECKPOINT_DIR`), or undefined for any
 * other name; N may exceed 2^53 (callers that need an exact step check Number.isSafeInteger).
 */
export function checkpointNumber(name: string): number | undefined {
  const m = CHECKPOINT_RE.exec(name);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

/** The folder name the trainer saves step `step` under. */
export function checkpointFolder(step: number): string {
  return `${CHECKPOINT_PREFIX}${step}`;
}

/** A directory entry that is a folder, or a symlink to one. */
function isFolder(dir: string, d: Dirent): boolean {
  if (d.isDirectory()) return true;
  if (!d.isSymbolicLink()) return false;
  try {
    return statSync(join(dir, d.name)).isDirectory();
  } catch {
    return false;
  }
}

/** Whether `dir` holds at least one `checkpoint-<N>` folder. */
export function isTrainerRun(dir: string): boolean {
  try {
    return readdirSync(dir, { withFileTypes: true }).some((d) => d.isDirectory() && checkpointNumber(d.name) !== undefined);
  } catch {
    return false;
  }
}

/** `global_step` of a trainer_state.json, or undefined when the file or the field is absent. */
export async function readGlobalStep(path: string): Promise<number | undefined> {
  if (!entryExists(path)) return undefined;
  const text = await readTextCapped(path, 'trainer state', JSON_CAPS.trainerState);
  let json: unknown;
  try {
    json = parseJsonLenient(text);
  } catch (e) {
    throw new DorascopeError('E_TRAINER_STATE', `${q(path)} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null) throw new DorascopeError('E_TRAINER_STATE', `${q(path)} is not a JSON object`);
  const g = (json as Record<string, unknown>)['global_step'];
  if (g === undefined || g === null) return undefined;
  if (typeof g !== 'number' || !Number.isSafeInteger(g) || g < 0) {
    throw new DorascopeError('E_TRAINER_STATE', `${q(path)}: global_step is ${shownValue(g)}, not a whole number from 0 to 2^53 (${Number.MAX_SAFE_INTEGER})`, { path, field: 'global_step' });
  }
  return g;
}

/** The checkpoints of a Trainer run folder, ordered by step (ties by folder number). */
export async function listRun(dir: string): Promise<RunCheckpoint[]> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new DorascopeError('E_NOT_FOUND', `run folder ${q(dir)} does not exist`);
  const out: (RunCheckpoint & { n: number })[] = [];
  for (const d of readdirSync(dir, { withFileTypes: true })) {
    // The Trainer names its folders `checkpoint-<global_step>`; a folder that looks like one but
    // whose step does not parse (checkpoint-abc, checkpoint-1e3) would otherwise vanish from the
    // analysis without a word.
    if (!d.name.startsWith(CHECKPOINT_PREFIX) || !isFolder(dir, d)) continue;
    const n = checkpointNumber(d.name) ?? NaN;
    if (!Number.isSafeInteger(n)) {
      throw new DorascopeError('E_CHECKPOINT', `run folder ${q(dir)} holds ${q(d.name)}, whose name is not checkpoint-<step> with a whole step from 0 to 2^53: rename or move it`, { path: join(dir, d.name) });
    }
    const path = join(dir, d.name);
    const g = await readGlobalStep(join(path, 'trainer_state.json'));
    out.push({ name: d.name, path, step: g ?? n, stepFrom: g === undefined ? 'name' : 'trainer_state', n });
  }
  if (out.length === 0) throw new DorascopeError('E_NOT_FOUND', `${q(dir)} holds no checkpoint-<N> folders`);
  out.sort((a, b) => a.step - b.step || a.n - b.n);
  // Two checkpoints at one step (checkpoint-10 beside checkpoint-00010, or a global_step equal
  // to another folder's) would be two points at one x: the run is ambiguous, so say so.
  for (let i = 1; i < out.length; i++) {
    const a = out[i - 1]!, b = out[i]!;
    if (a.step === b.step) {
      const from = (c: RunCheckpoint) => (c.stepFrom === 'trainer_state' ? 'global_step in its trainer_state.json' : 'its folder name');
      throw new DorascopeError('E_CHECKPOINT', `run folder ${q(dir)}: ${q(a.name)} and ${q(b.name)} are both step ${a.step} (${from(a)}; ${from(b)}): remove one`, { step: a.step });
    }
  }
  return out.map(({ n: _n, ...c }) => c);
}

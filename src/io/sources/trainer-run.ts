/**
 * A Hugging Face Trainer output folder: `checkpoint-<N>/` subfolders, each a full model
 * or a PEFT adapter. Checkpoints are ordered by training step, numerically
 * (checkpoint-9 < checkpoint-10 < checkpoint-100). The step is `global_step` from the
 * checkpoint's `trainer_state.json` when present, else N from the folder name.
 * `trainer_state.json` is written by Python's json module, so its `log_history` may hold
 * bare NaN / Infinity (a diverged loss): it is parsed leniently.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
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

const CHECKPOINT_RE = /^checkpoint-(\d+)$/u;

/** Whether `dir` holds at least one `checkpoint-<N>` folder. */
export function isTrainerRun(dir: string): boolean {
  try {
    return readdirSync(dir, { withFileTypes: true }).some((d) => d.isDirectory() && CHECKPOINT_RE.test(d.name));
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
    throw new DorascopeError('E_TRAINER_STATE', `${q(path)}: global_step is ${String(g)}, not a non-negative integer`);
  }
  return g;
}

/** The checkpoints of a Trainer run folder, ordered by step (ties by folder number). */
export async function listRun(dir: string): Promise<RunCheckpoint[]> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new DorascopeError('E_NOT_FOUND', `run folder ${q(dir)} does not exist`);
  const out: (RunCheckpoint & { n: number })[] = [];
  for (const d of readdirSync(dir, { withFileTypes: true })) {
    const m = d.isDirectory() ? CHECKPOINT_RE.exec(d.name) : null;
    if (!m) continue;
    const path = join(dir, d.name);
    const n = Number(m[1]);
    const g = await readGlobalStep(join(path, 'trainer_state.json'));
    out.push({ name: d.name, path, step: g ?? n, stepFrom: g === undefined ? 'name' : 'trainer_state', n });
  }
  if (out.length === 0) throw new DorascopeError('E_NOT_FOUND', `${q(dir)} holds no checkpoint-<N> folders`);
  out.sort((a, b) => a.step - b.step || a.n - b.n);
  return out.map(({ n: _n, ...c }) => c);
}

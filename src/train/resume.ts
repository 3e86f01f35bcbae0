import { JSON_CAPS, readTextCapped } from '../io/open-regular.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DorascopeError, q } from '../errors.js';
import { openSafetensors } from '../io/safetensors/reader.js';
import { listRun } from '../io/sources/trainer-run.js';
import { tf } from '../compute/backend.js';
import type { AdamW } from './adamw.js';
import { FILES, type Trainable } from './checkpoint.js';

/** What a resumed run continues from. */
export interface Resumed {
  dir: string;
  step: number;
  logHistory: Array<Record<string, number | undefined>>;
  /** Draws the data generator had made (replayed so batches continue where they stopped). */
  dataDraws: number;
  tokensSeen: number;
}

const fail = (msg: string, path?: string): never => {
  throw new DorascopeError('E_CHECKPOINT', msg, path === undefined ? {} : { path });
};

/**
 * The newest `checkpoint-<n>` of a run folder. Folders are published by one rename
 * (checkpoint.ts writeFolderAtomic), so every `checkpoint-<n>` is complete; temporary
 * `.checkpoint-<n>.tmp-*` leftovers are not matched (and train removes them). A newest
 * checkpoint without resume state was not written by this trainer: refused, not skipped.
 */
export async function newestCheckpoint(runDir: string, weightsFile: string): Promise<{ dir: string; step: number }> {
  let run: Awaited<ReturnType<typeof listRun>>;
  try {
    run = await listRun(runDir);
  } catch (e) {
    // a malformed trainer_state.json (E_TRAINER_STATE, naming the file) is reported as itself
    if (!(e instanceof DorascopeError) || e.code !== 'E_NOT_FOUND') throw e;
    throw new DorascopeError('E_CHECKPOINT', `--resume: ${q(runDir)} holds no checkpoint-<step> folder to resume from (drop --resume to start afresh)`, { path: runDir }, { cause: e });
  }
  const last = run[run.length - 1]!;
  for (const f of [weightsFile, FILES.optimizer, FILES.scheduler, FILES.rng, FILES.args, FILES.trainerState]) {
    if (!existsSync(join(last.path, f))) {
      fail(`--resume: ${q(last.path)} has no ${f}, so it cannot be resumed (written by another tool, or with another --method?)`, last.path);
    }
  }
  return { dir: last.path, step: last.step };
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  const text = await readTextCapped(path, 'checkpoint state', JSON_CAPS.trainerState);
  let x: unknown;
  try {
    x = JSON.parse(text);
  } catch (e) {
    throw new DorascopeError('E_CHECKPOINT', `cannot read ${q(path)}: ${(e as Error).message}`, { path }, { cause: e });
  }
  if (typeof x !== 'object' || x === null || Array.isArray(x)) fail(`${q(path)} is not a JSON object`, path);
  return x as Record<string, unknown>;
}

/** Assigns each named tensor of a safetensors file to its variable, checking presence, dtype and shape. */
async function loadInto(path: string, entries: readonly Trainable[], suffix = ''): Promise<Readonly<Record<string, string>>> {
  const t = tf();
  const f = await openSafetensors(path);
  try {
    for (const { key, v } of entries) {
      const name = key + suffix;
      const info = f.info(name);
      if (info === undefined) throw new DorascopeError('E_MISSING_TENSOR', `${q(path)} has no tensor ${q(name)}`, { path, name });
      if (info.dtype !== 'F32' || info.shape.join('x') !== v.shape.join('x')) {
        throw new DorascopeError('E_SHAPE_MISMATCH', `${q(path)}: ${name} is ${info.dtype} [${info.shape.join(', ')}], this run needs F32 [${v.shape.join(', ')}] (same options as the original run?)`, { path, name });
      }
      const data = await f.readFloat32(name);
      t.tidy(() => v.assign(t.tensor(data, v.shape)));
    }
    return f.metadata;
  } finally {
    await f.close();
  }
}

/**
 * Restores a checkpoint into a freshly built run: the weights file into `saved` (every
 * tensor the checkpoint holds), the AdamW moments and step into `optimizer`, and returns
 * the log history and data-generator position. `args` must equal training_args.json on
 * every key (they decide the numbers; only --steps, --save-every, --eval-every may change).
 */
export async function restore(
  dir: string, step: number, weightsFile: string, saved: readonly Trainable[],
  trainables: readonly Trainable[], optimizer: AdamW, args: Record<string, unknown>,
): Promise<Resumed> {
  const argsPath = join(dir, FILES.args);
  const was = await readJson(argsPath);
  for (const k of new Set([...Object.keys(was), ...Object.keys(args)])) {
    const a = JSON.stringify(was[k]), b = JSON.stringify(args[k]);
    if (a !== b) fail(`--resume: ${q(dir)} was trained with ${k} = ${a ?? 'unset'}, this run asks ${b ?? 'unset'}; resume with the original options`, argsPath);
  }
  const statePath = join(dir, FILES.trainerState);
  const state = await readJson(statePath);
  if (state['global_step'] !== step) fail(`${q(statePath)}: global_step ${JSON.stringify(state['global_step'])} ≠ folder step ${step}`, statePath);
  const history = state['log_history'];
  if (!Array.isArray(history)) fail(`${q(statePath)} has no log_history array`, statePath);
  const tokens = state['num_input_tokens_seen'];
  const schedPath = join(dir, FILES.scheduler);
  const sched = await readJson(schedPath);
  if (sched['last_epoch'] !== step) fail(`${q(schedPath)}: last_epoch ${JSON.stringify(sched['last_epoch'])} ≠ step ${step}`, schedPath);
  const rngPath = join(dir, FILES.rng);
  const rng = (await readJson(rngPath))['data'] as Record<string, unknown> | undefined;
  const draws = rng?.['draws'];
  if (rng?.['algorithm'] !== 'mulberry32' || typeof draws !== 'number' || !Number.isSafeInteger(draws) || draws < 0) {
    fail(`${q(rngPath)}: data must be { algorithm: "mulberry32", seed, draws ≥ 0 }, got ${JSON.stringify(rng)}`, rngPath);
  }

  await loadInto(join(dir, weightsFile), saved);
  const optPath = join(dir, FILES.optimizer);
  const meta = await loadMoments(optPath, trainables, optimizer);
  const optStep = Number(meta['step']);
  if (optStep !== step) fail(`${q(optPath)}: optimizer step ${JSON.stringify(meta['step'])} ≠ checkpoint step ${step}`, optPath);
  optimizer.step = optStep;
  return {
    dir, step, logHistory: history as Array<Record<string, number | undefined>>, dataDraws: draws as number,
    tokensSeen: typeof tokens === 'number' ? tokens : 0,
  };
}

/** Reads `K.exp_avg` / `K.exp_avg_sq` for every trainable K (the key scheme of checkpoint.ts). */
async function loadMoments(path: string, trainables: readonly Trainable[], optimizer: AdamW): Promise<Readonly<Record<string, string>>> {
  const f = await openSafetensors(path);
  try {
    for (const { key, v } of trainables) {
      const pair: Float32Array[] = [];
      for (const name of [`${key}.exp_avg`, `${key}.exp_avg_sq`]) {
        const info = f.info(name);
        if (info === undefined) throw new DorascopeError('E_MISSING_TENSOR', `${q(path)} has no tensor ${q(name)}`, { path, name });
        if (info.dtype !== 'F32' || info.shape.join('x') !== v.shape.join('x')) {
          throw new DorascopeError('E_SHAPE_MISMATCH', `${q(path)}: ${name} is ${info.dtype} [${info.shape.join(', ')}], expected F32 [${v.shape.join(', ')}]`, { path, name });
        }
        pair.push(await f.readFloat32(name));
      }
      optimizer.setMoments(v, pair[0]!, pair[1]!);
    }
    return f.metadata;
  } finally {
    await f.close();
  }
}

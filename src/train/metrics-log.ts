/**
 * The training metrics as they happen, where people look at them: `metrics.jsonl` in the run
 * folder (one JSON object a line: the `log_history` entry of the step, plus `wall_time`), and with
 * `reportTo: ['tensorboard']` TensorBoard event files in `<run>/tensorboard/`, with the tag names
 * of transformers' TensorBoardCallback (`rewrite_logs` in integrations/integration_utils.py:
 * `eval_loss` → `eval/loss`, anything else `x` → `train/x`).
 */
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { DorascopeError, q } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { EventFileWriter } from './tfevents.js';

/** Integrations `train --report-to` knows besides metrics.jsonl (always written with a run folder). */
export const REPORT_TO = ['tensorboard'] as const;
export type ReportTo = (typeof REPORT_TO)[number];

/** A `log_history` entry: Hugging Face Trainer's key names. */
export interface LogEntry {
  step: number;
  loss: number;
  learning_rate: number;
  eval_loss?: number;
  eval_accuracy?: number;
}

/**
 * A `log_history` entry under Hugging Face's names only: runs written by earlier versions of
 * this trainer also carry `learningRate` and `evalLoss`, which a resumed run renames.
 */
export function hfLogEntry(e: Readonly<Record<string, number | undefined>>): LogEntry {
  const { learningRate, evalLoss, ...rest } = e;
  const out = { ...rest } as Record<string, number | undefined>;
  out['learning_rate'] ??= learningRate;
  if (evalLoss !== undefined) out['eval_loss'] ??= evalLoss;
  return out as unknown as LogEntry;
}

/** transformers' rewrite_logs: the TensorBoard tag of a log_history key. */
export function tensorboardTag(key: string): string {
  return key.startsWith('eval_') ? `eval/${key.slice('eval_'.length)}` : `train/${key}`;
}

export class MetricsLog {
  private constructor(private readonly jsonl: FileHandle, readonly path: string, private readonly events: EventFileWriter | undefined) {}

  /**
   * Opens the logs of a run folder. A resumed run (`startStep` > 0) keeps the lines up to its
   * checkpoint's step and drops later ones, which an interrupted invocation logged but no
   * checkpoint kept (the resumed run logs those steps again).
   */
  static async open(runDir: string, o: { startStep: number; reportTo?: readonly ReportTo[] | undefined }): Promise<MetricsLog> {
    const path = join(runDir, 'metrics.jsonl');
    let kept = '';
    if (o.startStep > 0) {
      const old = await readFile(path, 'utf8').catch(() => '');
      kept = old.split('\n').filter((line) => {
        try { return line !== '' && (JSON.parse(line) as { step?: unknown }).step as number <= o.startStep; } catch { return false; }
      }).map((l) => `${l}\n`).join('');
    }
    await writeFileAtomic(path, kept);
    let fh: FileHandle;
    try {
      fh = await open(path, 'a');
    } catch (e) {
      throw new DorascopeError('E_WRITE', `cannot write ${q(path)}: ${(e as Error).message}`, {}, { cause: e });
    }
    const events = o.reportTo?.includes('tensorboard') ? await EventFileWriter.open(join(runDir, 'tensorboard'), o.startStep + 1).catch(async (e: unknown) => { await fh.close(); throw e; }) : undefined;
    return new MetricsLog(fh, path, events);
  }

  /** Appends one step's entry to every log, at once (a reader following the file sees it now). */
  async log(entry: LogEntry, now = Date.now()): Promise<void> {
    const values = Object.fromEntries(Object.entries(entry).filter(([k, v]) => k !== 'step' && typeof v === 'number')) as Record<string, number>;
    try {
      await this.jsonl.write(`${JSON.stringify({ ...entry, wall_time: now / 1000 })}\n`);
      await this.events?.scalars(entry.step, Object.fromEntries(Object.entries(values).map(([k, v]) => [tensorboardTag(k), v])), now);
    } catch (e) {
      throw new DorascopeError('E_WRITE', `cannot append to the training logs in ${q(this.path)}: ${(e as Error).message}`, {}, { cause: e });
    }
  }

  async close(): Promise<void> {
    await this.jsonl.close().catch(() => undefined);
    await this.events?.close().catch(() => undefined);
  }
}

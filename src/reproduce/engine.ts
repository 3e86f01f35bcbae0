/**
 * The four things a reproduction asks of the rest of dorascope — pretrain, fine-tune, analyse,
 * render — behind one small interface, so the pipeline (reproduce.ts) reads as the paper's recipe and
 * the calls into the trainer, the analysis engine and the report live in one place. Each library
 * module is imported lazily, as the CLI does, so `reproduce --help` does not load TensorFlow.js.
 */
import type { ModelShape, RunSpec } from './plan.js';

export interface PretrainSpec {
  readonly out: string;
  readonly model: ModelShape;
  readonly steps: number;
  readonly lr: number;
  readonly batchSize: number;
  readonly seed: number;
  readonly backend: string;
  /** Held-out loss every this many steps, recorded in trainer_state.json (the pretraining curve). */
  readonly evalEvery: number;
}

export interface FinetuneSpec extends RunSpec {
  readonly base: string;
  readonly out: string;
  readonly batchSize: number;
  readonly seed: number;
  readonly targetModules: readonly string[];
  readonly backend: string;
}

export interface TrainOutcome {
  /** The run folder holding `checkpoint-<step>/` folders. */
  readonly runDir: string;
  /** The newest checkpoint (trainer_state.json with the final eval lives there). */
  readonly lastCheckpoint: string;
  /** The backend actually used (auto resolved). */
  readonly backend: string;
  /** Runs on a 4-bit base: the folder of that base as the run saved it (bitsandbytes layout). */
  readonly quantizedBase?: string;
}

export interface AnalyzeSpec {
  readonly base: string;
  /** The runs trained on this 4-bit copy of `base`: measured against it dequantized, with the quantization as a run. */
  readonly quantizedBase?: string;
  readonly runs: readonly { label: string; path: string }[];
  readonly modules: readonly string[];
  readonly out: string;
}

export interface Engine {
  /** Pretrains the base model on text and returns the folder of its final weights. */
  pretrain(spec: PretrainSpec): Promise<TrainOutcome>;
  finetune(spec: FinetuneSpec): Promise<TrainOutcome>;
  analyze(spec: AnalyzeSpec): Promise<void>;
  /** Compare report of an analysis folder holding several runs; returns the HTML path. */
  compare(spec: { dirs: readonly string[]; out: string; title: string }): Promise<string>;
  /** Exports the report's figures as PNG into `dir` (headless Chromium); returns the files written. */
  png(spec: { dirs: readonly string[]; out: string; title: string; pngDir: string }): Promise<readonly string[]>;
  /** What the pretraining and the downstream task are, for the README. */
  describeData(): Promise<{ pretrain: string; task: string; metric: string }>;
}

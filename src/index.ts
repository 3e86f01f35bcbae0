/**
 * dorascope's public library API: hand-picked named exports (no `export *` of internals).
 * Each area adds its exports under its heading.
 */
// errors
export { DorascopeError, isDorascopeError, type ErrorCode } from './errors.js';
export { VERSION } from './version.js';
// io
export { openSafetensors, type SafetensorsFile, type RawTensor } from "./io/safetensors/reader.js";
export { writeSafetensors, writeSafetensorsStreaming, encodeFloat32, type WriteTensor, type TensorSpec } from "./io/safetensors/writer.js";
export { DTYPES } from './io/dtypes.js';
export type { DType, TensorInfo, TensorSource, SourceKind } from './io/types.js';
export { openSource, type OpenSourceOptions } from './io/sources/open-source.js';
export { openAdapter, type Adapter, type AdapterModule } from './io/peft/adapter.js';
export type { ModuleTensor } from './io/peft/adapter-types.js';
export { openMergedAdapter, type MergedAdapterSource, type MergedAdapterOptions } from './io/peft/merged-source.js';
export { mergeAdapter, type MergeResult } from './io/peft/merge-adapter.js';
export type { AdapterConfig } from './io/peft/adapter-config.js';
// methods: PEFT's merge of one module (LoRA or DoRA, chosen by its factors)
export { mergeFactors } from './methods/variants.js';
export type { LoraFactors, Layout } from './methods/merge.js';
// analysis
export {
  analyze, analyzeShard, parseLayers, type AnalyzeOptions, type AnalyzeResult, type AnalysisSummary, type RunSummary as AnalysisRunSummary,
  type RunDescription, type ShardResult, type ShardSummary,
} from './analysis/analyze.js';
export { combine, type CombineOptions } from './analysis/combine.js';
export { parseShard, MAX_SHARDS, type ShardSpec, type ShardInfo, type ShardAnalysis } from './analysis/shard.js';
export { decompose, featureNorms, type Decomposition, type FeatureAxis, type RowFlag } from './analysis/decompose.js';
export { correlate, pearson, spearman, ols, averageRanks, BOOTSTRAP, type Stats as CorrelationStats } from './analysis/stats.js';
export { readDecomposition, DECOMPOSITION_COLUMNS, type DecompositionRow } from './analysis/table.js';
export { usableRow } from './analysis/run-summary.js';
export { parseTensorName } from './analysis/names.js';
// progress (shared by analyze and train)
export { Progress, stderrProgress, type ProgressOptions, type ProgressUpdate } from './progress.js';
// report
export { renderReport, renderCompare, type ReportOptions, type CompareOptions } from './report/render.js';
export { loadAnalysis, type Analysis, type DecompRow, type Stats, type RunSummary } from './report/load.js';
export { exportFigures } from './report/export.js';
// train
export { train, type TrainOptions, type TrainResult, type TrainMethod, type TrainProgress } from './train/train.js';
export { selectBackend } from './compute/select-backend.js';
export { BACKEND_CHOICES, type BackendChoice, type BackendInfo, type BackendName } from './compute/backend-types.js';
// reproduce
export { reproduce, type ReproduceOptions, type ReproduceResult } from './reproduce/reproduce.js';
export { QUICK, FULL, type Preset } from './reproduce/plan.js';
export { PAPER_FIGURE2, type PaperFigure2 } from './analysis/paper.js';
export { verdict, type Verdict } from './analysis/verdict.js';
